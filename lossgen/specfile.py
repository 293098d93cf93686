"""Spec files: TOML with one table per loss, holding the keys of the Loss constructor."""

from __future__ import annotations

import tomllib
from pathlib import Path

from .errors import SpecError
from .spec import SPEC_KEYS, Loss

REQUIRED_KEYS = ("expr", "inputs", "wrt")
_TYPES = {
    "expr": (str,), "inputs": (list, str), "wrt": (list, str), "params": (dict,),
    "where": (dict,), "domain": (dict,), "doc": (str,), "normalizer": (str,), "transform": (str,),
}


def loads(text: str, origin: str = "<string>") -> dict[str, Loss]:
    """Read spec-file text; `origin` names the file in error messages."""
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise SpecError(f"{origin}: invalid TOML: {' '.join(str(exc).split())}") from None
    if not document:
        raise SpecError(f"{origin}: no loss tables found (write one [name] table per loss)")
    losses = {}
    for name, table in document.items():
        where = f"{origin}: [{name if name.isprintable() else repr(name)}]"
        if not isinstance(table, dict):
            raise SpecError(f"{where}: expected a table of loss fields, got a {type(table).__name__}")
        unknown = sorted(set(table) - set(SPEC_KEYS))
        if unknown:
            raise SpecError(f"{where}: unknown key {unknown[0]!r} (allowed: {', '.join(SPEC_KEYS)})")
        for key in REQUIRED_KEYS:
            if key not in table:
                raise SpecError(f"{where}: missing required key {key!r}")
        for key, value in table.items():
            if not isinstance(value, _TYPES[key]):
                expected = " or ".join(t.__name__ for t in _TYPES[key])
                raise SpecError(f"{where}.{key}: expected {expected}, got {type(value).__name__}")
        try:
            losses[name] = Loss(name, **table)
        except SpecError as exc:
            raise SpecError(f"{where}.{exc}") from None
    return losses


def load(path) -> dict[str, Loss]:
    """Read a TOML spec file: one table per loss; returns {name: Loss}. Errors name the file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SpecError(f"{path}: no such spec file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecError(f"{path}: cannot read spec file ({exc})") from None
    return loads(text, str(path))
