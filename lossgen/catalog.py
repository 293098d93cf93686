"""Catalog: the built-in losses, read from catalog.toml with the same loader users have.

Each Loss is built on first use of its formula, so `lg.get("huber")` parses one formula, not all
of them, and calling a catalog kernel that is in the on-disk cache parses none: the kernel is
cached under the loss's catalog entry, which defines it.
"""

from __future__ import annotations

import functools
import tomllib
from pathlib import Path

from .errors import SpecError
from .spec import Loss
from .specfile import loads

CATALOG_FILE = Path(__file__).with_name("catalog.toml")


@functools.lru_cache(maxsize=1)
def _tables() -> dict[str, str]:
    """Each loss's own TOML table text, by name, in file order."""
    document = tomllib.loads(CATALOG_FILE.read_text(encoding="utf-8"))
    return {name: _table_text(name, table) for name, table in document.items()}


def _table_text(name: str, table: dict) -> str:
    def value(v):
        if isinstance(v, dict):
            return "{ " + ", ".join(f"{k} = {value(x)}" for k, x in v.items()) + " }"
        if isinstance(v, list):
            return "[" + ", ".join(value(x) for x in v) + "]"
        if isinstance(v, str):
            return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
        return repr(v)

    return f"[{name}]\n" + "".join(f"{k} = {value(v)}\n" for k, v in table.items())


def _spec_of(name: str):
    """The LossSpec of a catalog entry, read as a spec file would be."""
    return loads(_tables()[name], f"{CATALOG_FILE}")[name].spec


def catalog_source_key(name: str) -> tuple[str, ...] | None:
    """The source key of a catalog loss as this catalog defines it (None for other names)."""
    table = _tables().get(name)
    return None if table is None else ("catalog", table)


@functools.lru_cache(maxsize=None)
def _build(name: str) -> Loss:
    return Loss.deferred(name, functools.partial(_spec_of, name), catalog_source_key(name))


def catalog() -> dict[str, Loss]:
    """All built-in losses by name (a new dict each call; the Loss objects are shared)."""
    return {name: _build(name) for name in _tables()}


def get(name: str) -> Loss:
    """One built-in loss by name; SpecError lists the names when it is unknown."""
    if not isinstance(name, str) or name not in _tables():
        raise SpecError(f"unknown loss {name!r}; the catalog has: {', '.join(sorted(_tables()))}")
    return _build(name)
