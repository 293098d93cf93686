"""Progress bars for the long command-line runs (build, verify, bench).

A bar is drawn only when stdout is a terminal and tqdm (the `[cli]` extra) is installed: piped
or redirected output, CI logs and tests stay free of control characters. The bar itself goes to
stderr so that stdout carries only results.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")

_active = []  # the bars now drawn, innermost last; write() goes through them


def wanted(stream=None) -> bool:
    """Whether a bar should be drawn: `stream` (default stdout) is a terminal and tqdm is installed."""
    stream = sys.stdout if stream is None else stream
    try:
        interactive = stream.isatty()
    except (AttributeError, ValueError):  # a closed or unusual stream
        return False
    if not interactive:
        return False
    try:
        import tqdm  # noqa: F401
    except ImportError:
        return False
    return True


def progress(items: Iterable[T], *, desc: str, total: int | None = None, unit: str = "it", stream=None) -> Iterator[T]:
    """Yield `items`, drawing a bar on stderr while they run when `wanted(stream)`."""
    if not wanted(stream):
        yield from items
        return
    from tqdm import tqdm

    bar = tqdm(items, desc=desc, total=total, unit=unit, file=sys.stderr, leave=False, dynamic_ncols=True)
    _active.append(bar)
    try:
        yield from bar
    finally:
        _active.remove(bar)
        bar.close()


def write(message: str, file=None) -> None:
    """Print a line (default to stderr) without tearing a bar that is being drawn."""
    file = sys.stderr if file is None else file
    if _active:
        _active[-1].write(message, file=file)
    else:
        print(message, file=file, flush=True)
