"""Budgets: keep the SymPy work done on a user's formula bounded in time and in size.

Formulas come from papers, spec files and the internet, so some are hostile or merely huge.
Three tools keep lossgen from hanging on them:

- `time_limit(seconds)` / `limited(call, seconds, default)`: a wall-clock limit on a block
  (SIGALRM in the main thread). `limited` falls back to `default` when the call runs out of
  time or SymPy fails, which is how optional simplifications degrade to the unsimplified form.
- `tree_size(expr, stop)`: the size of an expression as a tree, counted only up to `stop`, to
  decide *before* an expansion or simplification whether it is affordable. Size checks are
  deterministic; time limits are the backstop for what a size cannot predict.
- `shared_replace(expr, query, value)`, `shared_has(expr, types)` and `distinct_nodes(expr)`:
  `Basic.replace`, `Basic.has` and a walk that visit each distinct subexpression once.
  Derivatives share subtrees heavily (the Hessian of sin(sin(...sin(p)))) is a tree of n**3
  nodes but only n**2 distinct ones), and SymPy's own walks visit every copy.

The limits are module attributes; every message that reports one names it and says how to
raise it, e.g. "lossgen.budget.DERIVE_SECONDS = 120".
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from collections.abc import Callable


# Seconds allowed to build one formula in SymPy (parse.parse_expression) before it is refused.
PARSE_SECONDS = 30.0
# Seconds allowed to derive a loss's gradient and Hessian (and stabilize them) before lossgen
# gives up with a CodegenError instead of appearing to hang.
DERIVE_SECONDS = 60.0
# Distinct subexpressions allowed in the loss, gradient and Hessian together: beyond this the
# generated kernel would have so many temporaries that compiling it takes minutes.
MAX_DERIVATIVE_NODES = 100_000
# Size (in tree nodes) above which an optional expansion or simplification is not attempted.
MAX_SIMPLIFY_NODES = 2_000
# Seconds allowed to one optional simplification before lossgen keeps the unsimplified form.
SIMPLIFY_SECONDS = 2.0


def limit_hint(module: str, name: str) -> str:
    """The standard tail of a message about a limit: which one, and how to raise it."""
    return f"(limit lossgen.{module}.{name}; raise it with lossgen.{module}.{name} = N)"


class TimeLimit(Exception):
    """A block ran past its time limit."""


_DEADLINES: list[float] = []  # perf_counter deadlines of the enclosing time_limit blocks
# After a limit fires, it fires again this often until its block ends (see expire below).
RETRY_SECONDS = 0.05


@contextlib.contextmanager
def time_limit(seconds: float):
    """Raise TimeLimit inside the block after `seconds`.

    Uses SIGALRM, so it limits only the main thread (elsewhere the block runs unlimited). Limits
    nest: an inner block gets at most what its enclosing block has left, and when the inner one
    ends the enclosing timer is re-armed with what remains, so an outer limit that ran out while
    the inner block ran still fires (at once). Re-arming instead of raising here keeps this
    compatible with any other SIGALRM user that saves and restores its own handler.
    """
    if threading.current_thread() is not threading.main_thread() or not hasattr(signal, "setitimer"):
        yield
        return
    outer_left, _ = signal.getitimer(signal.ITIMER_REAL)
    start = time.perf_counter()
    budget = min(seconds, outer_left) if outer_left > 0 else seconds

    def expire(signum, frame):
        # Python prints and drops an exception raised while it runs a weakref callback or a
        # __del__ ("Exception ignored in ..."): the block would then run on with no limit (seen
        # as SymPy's factor() growing to 24 GB). Fire again shortly, until the block has ended.
        signal.setitimer(signal.ITIMER_REAL, RETRY_SECONDS)
        raise TimeLimit()

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, max(budget, 1e-6))
    _DEADLINES.append(start + budget)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
        _DEADLINES.pop()
        if outer_left > 0:
            # The enclosing timer fires as soon as its own handler is back, if its time is up.
            signal.setitimer(signal.ITIMER_REAL, max(outer_left - (time.perf_counter() - start), 1e-6))


def limited(call: Callable, seconds: float = 1.0, default=None):
    """call() under a time limit; `default` when it runs out or SymPy fails.

    When an enclosing limit has run out too, TimeLimit propagates to it. Set LOSSGEN_DEBUG=2 to
    see the SymPy failures that are otherwise absorbed.
    """
    try:
        with time_limit(seconds):
            return call()
    except TimeLimit:
        if any(d <= time.perf_counter() for d in _DEADLINES):
            raise
        return default
    except Exception:  # noqa: BLE001 - a SymPy failure only loses this attempt
        if os.environ.get("LOSSGEN_DEBUG") == "2":
            raise
        return default


def tree_size(expr, stop: int | None = None) -> int:
    """Nodes of `expr` as a tree (every copy of a shared subtree counted), counting stops at `stop`.

    Iterative, so deep expressions cannot overflow the stack; with `stop` it costs at most
    `stop` steps, which makes it a cheap guard before expensive work.
    """
    count = 0
    stack = [expr]
    while stack:
        node = stack.pop()
        count += 1
        if stop is not None and count >= stop:
            return count
        stack.extend(getattr(node, "args", ()))
    return count


def dag_size(exprs, stop: int | None = None) -> int:
    """Distinct subexpressions of one expression or an iterable of them, counting stops at `stop`."""
    import sympy as sp  # here, not at the top: specfile reads budget's limits without SymPy

    if isinstance(exprs, sp.Basic):
        exprs = [exprs]
    seen: set = set()
    stack = list(exprs)
    while stack:
        node = stack.pop()
        if node in seen:
            continue
        seen.add(node)
        if stop is not None and len(seen) >= stop:
            break
        stack.extend(getattr(node, "args", ()))
    return len(seen)


def shared_replace(expr, query: Callable, value: Callable, *, keep_on_error: bool = False, declined: list | None = None):
    """`expr.replace(query, value)` for callables, visiting each distinct subexpression once.

    The result is exactly SymPy's: replace rebuilds bottom-up and the rebuilt form of a node
    depends only on the node, so equal subtrees (which SymPy hashes alike) share one result.
    With keep_on_error, a node that SymPy refuses to rebuild from its rewritten arguments, or
    whose replacement fails, is kept as it was (Max(p, logcosh(2)) raises in SymPy, which cannot
    compare logcosh(2) with p): an optional rewrite declines instead of failing, and the node is
    appended to `declined` when that is a list.
    """
    errors = (TypeError, ValueError, ArithmeticError) if keep_on_error else ()
    memo: dict = {}

    def walk(node):
        try:
            return memo[node]
        except KeyError:
            pass
        except TypeError:  # an unhashable argument: no sharing for it
            return _walk(node)
        result = memo[node] = _walk(node)
        return result

    def _walk(node):
        args = getattr(node, "args", None)
        if args is None:
            return node
        rv = node
        if args:
            newargs = tuple(walk(a) for a in args)
            if args != newargs:
                try:
                    rv = node.func(*newargs)
                except errors:
                    if declined is not None:
                        declined.append(node)
                    return node
                # As Basic.replace(simultaneous=True): a node rebuilt into one of its own
                # replaced arguments is not matched again.
                for old, new in zip(args, newargs):
                    if rv == old and old != new:
                        return rv
        try:
            if query(rv):
                v = value(rv)
                if v is not None and v != rv:
                    rv = v
        except errors:
            if declined is not None:
                declined.append(rv)
        return rv

    return walk(expr)


def distinct_nodes(expr):
    """Each distinct subexpression of `expr` once, conditions included (iterative). Derivatives
    repeat subtrees, so a plain walk (preorder_traversal) can visit exponentially many nodes."""
    seen: set = set()
    stack = [expr]
    while stack:
        node = stack.pop()
        if node in seen:
            continue
        seen.add(node)
        yield node
        stack.extend(getattr(node, "args", ()))


def shared_has(expr, types: tuple[type, ...]) -> bool:
    """Whether any subexpression of `expr` is an instance of one of `types` (each distinct
    subexpression visited once; iterative)."""
    return any(isinstance(node, types) for node in distinct_nodes(expr))


def affordable(expr, max_nodes: int | None = None) -> bool:
    """Whether `expr` is small enough (MAX_SIMPLIFY_NODES) for an optional simplification."""
    limit = MAX_SIMPLIFY_NODES if max_nodes is None else max_nodes
    return tree_size(expr, limit + 1) <= limit


def simplified(call: Callable, expr, fallback=None, *, max_nodes: int | None = None, seconds: float | None = None):
    """call() when `expr` is within the size budget and call() finishes within SIMPLIFY_SECONDS,
    else `fallback` (the unsimplified form; None by default so rules can decline)."""
    if not affordable(expr, max_nodes):
        return fallback
    return limited(call, SIMPLIFY_SECONDS if seconds is None else seconds, fallback)
