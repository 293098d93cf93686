"""Catalog: the built-in losses, read from catalog.toml with the same loader users have."""

from __future__ import annotations

import functools
import types
from pathlib import Path

from .errors import SpecError
from .spec import Loss
from .specfile import load

CATALOG_FILE = Path(__file__).with_name("catalog.toml")


@functools.lru_cache(maxsize=1)
def _catalog() -> types.MappingProxyType:
    return types.MappingProxyType(load(CATALOG_FILE))


def catalog() -> dict[str, Loss]:
    """All built-in losses by name (a new dict each call; the Loss objects are shared)."""
    return dict(_catalog())


def get(name: str) -> Loss:
    """One built-in loss by name; SpecError lists the names when it is unknown."""
    losses = _catalog()
    if name not in losses:
        raise SpecError(f"unknown loss {name!r}; the catalog has: {', '.join(sorted(losses))}")
    return losses[name]
