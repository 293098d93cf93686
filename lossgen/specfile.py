"""Spec files: TOML with one table per loss, holding the keys of the Loss constructor."""

from __future__ import annotations

import tomllib
from pathlib import Path

from .budget import limit_hint
from .errors import SpecError
from .spec import SPEC_KEYS, Loss

REQUIRED_KEYS = ("expr", "inputs", "wrt")
_TYPES = {
    "expr": (str,), "inputs": (list, str), "wrt": (list, str), "params": (dict,),
    "where": (dict,), "domain": (dict,), "doc": (str,), "normalizer": (str,), "transform": (str,),
}
# Bytes read from one spec file: a spec is a few kilobytes, and a bound keeps a path to a huge
# file or a device such as /dev/zero from reading forever.
MAX_SPEC_BYTES = 1_000_000


def _table_label(name: str) -> str:
    """A table name for a message: as written when printable and short, else escaped/shortened."""
    label = name if name.isprintable() else ascii(name)
    return label if len(label) <= 60 else label[:57] + "..."


def loads(text: str, origin: str = "<string>") -> dict[str, Loss]:
    """Read spec-file text; `origin` names the file in error messages."""
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise SpecError(f"{origin}: invalid TOML: {' '.join(str(exc).split())}") from None
    except RecursionError:
        # tomllib reads nested arrays and inline tables recursively.
        raise SpecError(f"{origin}: invalid TOML: arrays or tables nest too deeply") from None
    if not document:
        raise SpecError(f"{origin}: no loss tables found (write one [name] table per loss)")
    losses = {}
    for name, table in document.items():
        where = f"{origin}: [{_table_label(name)}]"
        if not isinstance(table, dict):
            raise SpecError(f"{where}: expected a table of loss fields, got a {type(table).__name__}")
        unknown = sorted(set(table) - set(SPEC_KEYS))
        if unknown:
            raise SpecError(f"{where}: unknown key {_table_label(unknown[0])!r} (allowed: {', '.join(SPEC_KEYS)})")
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
    try:
        path = Path(path)
    except TypeError:
        raise SpecError(f"expected a path to a spec file, got {type(path).__name__}") from None
    # Messages are one line: a path with a newline or other control character is escaped.
    label = str(path) if str(path).isprintable() else ascii(str(path))
    try:
        with path.open("rb") as handle:
            data = handle.read(MAX_SPEC_BYTES + 1)
    except FileNotFoundError:
        raise SpecError(f"{label}: no such spec file") from None
    except (OSError, ValueError) as exc:  # ValueError: a path with a NUL byte
        raise SpecError(f"{label}: cannot read spec file ({ascii(' '.join(str(exc).split()))[1:-1]})") from None
    if len(data) > MAX_SPEC_BYTES:
        raise SpecError(f"{label}: spec file is larger than {MAX_SPEC_BYTES} bytes {limit_hint('specfile', 'MAX_SPEC_BYTES')}")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SpecError(f"{label}: cannot read spec file (not UTF-8: {exc.reason} at byte {exc.start})") from None
    # Universal newlines, as Path.read_text gives them.
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    return loads(text, label)
