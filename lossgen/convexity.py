"""Convexity: the Convexity verdict and the analyses that prove or refute it.

A verdict other than "unknown" is a proof. The analyses in ANALYSES run cheapest first, each for
one *sense*: "convex" asks about the loss L, "concave" about -L. Each answers a Proof, a
Refutation or None ("cannot decide"), and the first answer decides that sense:

* composition: disciplined-convex-programming rules over the expression tree (curvature x
  monotonicity x sign), one entry per function in COMPOSITION_RULES, signs from interval bounds;
* refutation: a point and a direction along which the midpoint inequality fails, found by
  sampling the domain and rechecked in mpmath at a precision raised until two evaluations agree;
* second_order: d2L/dx2 >= 0 on the whole domain by rigorous interval arithmetic with branch and
  bound; a loss with kinks by its smooth pieces, continuity and non-decreasing slope at each
  breakpoint; several wrt inputs by the principal minors of the Hessian.

analyze_convexity combines the two senses: convex and concave is "affine", only one of them is
"convex" or "concave", refuted both ways is "neither". Verdicts hold for every value of the other
inputs and params in their domains, or at the values given as `fixed`.
"""

from __future__ import annotations

import functools
import itertools
import math
import os
import sys
import time
import types
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import mpmath
import numpy as np
import sympy as sp
from sympy.codegen.cfunctions import expm1, log1p
from sympy.core.relational import Relational
from sympy.printing.str import StrPrinter

from .budget import TimeLimit, limited, time_limit  # noqa: F401 - TimeLimit: what an exceeded limit raises, re-exported
from .functions import (
    exp_minus, expm1mx, log1pmx, logaddexp, logcosh, logratio, logsigmoid, scaled_exp, scaled_expm1, sigmoid,
    softplus, sqrt1pm1, to_reference_form, xlogy,
)

VERDICTS = ("affine", "convex", "concave", "neither", "unknown")
SENSES = ("convex", "concave")
DIRECTION_PREFIX = "direction_"


@dataclass(frozen=True)
class Convexity:
    """Convexity of a loss in its wrt inputs jointly.

    verdict: "affine", "convex", "concave", "neither" or "unknown".
    method: the analysis that decided it. certificate: a readable proof (affine/convex/concave;
    for "neither", the two refutations in words). counterexample: input and param values, and a
    direction (keys "direction_<wrt>") along which L(x + d) + L(x - d) < 2 L(x), showing
    convexity fails (concave/neither). concavity_counterexample: the same for -L ("neither").
    """

    verdict: str
    method: str
    certificate: str | None = None
    counterexample: Mapping[str, float] | None = field(default=None)
    concavity_counterexample: Mapping[str, float] | None = field(default=None)

    def __post_init__(self):
        if self.verdict not in VERDICTS:
            raise ValueError(f"verdict must be one of {VERDICTS}, got {self.verdict!r}")

    @property
    def is_convex(self) -> bool:
        """Proved convex (affine included)."""
        return self.verdict in ("convex", "affine")


# ============================================================================================
# The problem: a loss with some values fixed, as one sense (L or -L) sees it
# ============================================================================================

@dataclass(frozen=True, eq=False)
class Problem:
    """A loss to analyze: the formula with `fixed` values substituted, the wrt variables, and the
    interval of every remaining symbol. `sign` is +1 for the loss and -1 for its negation."""

    name: str
    expr: sp.Expr
    stable: sp.Expr
    variables: tuple[sp.Symbol, ...]
    domain: Mapping[sp.Symbol, sp.Interval]
    order: tuple[str, ...]
    fixed: Mapping[str, float]
    defaults: Mapping[sp.Symbol, float]
    intervals: Mapping[str, sp.Interval]
    param_names: tuple[str, ...] = ()
    sign: int = 1

    def negated(self) -> "Problem":
        return Problem(self.name, self.expr, self.stable, self.variables, self.domain, self.order, self.fixed,
                       self.defaults, self.intervals, self.param_names, -self.sign)

    def is_param(self, symbol: sp.Symbol) -> bool:
        return symbol.name in self.param_names

    @property
    def sense(self) -> str:
        return "convex" if self.sign > 0 else "concave"

    @functools.cached_property
    def env(self) -> dict:
        """Every free symbol's range (wrt included), for interval arithmetic."""
        return {s: Range.of(iv) for s, iv in self.domain.items()}

    @property
    def others(self) -> tuple[sp.Symbol, ...]:
        return tuple(s for s in self.domain if s not in self.variables)

    @functools.cached_property
    def hessian(self) -> sp.Matrix | None:
        """The Hessian of the formula as written, where it is smooth in the wrt inputs."""
        if not smooth_in(self.expr, self.variables):
            return None
        n = len(self.variables)
        return sp.Matrix(n, n, lambda i, j: sp.diff(self.expr, self.variables[i], self.variables[j]))


def exact_number(value) -> sp.Expr:
    """A user's number as an exact SymPy number: 0.25 -> 1/4, 2.0 -> 2, 0.1 -> 1/10."""
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        return sp.Integer(int(value))
    return sp.Rational(repr(float(value)))


def make_problem(loss, fixed: Mapping[str, float]) -> Problem:
    """The loss with `fixed` values substituted (validated: known names, inside their domains)."""
    make_problem_check(loss, fixed)
    subs = {loss.symbol(name): exact_number(value) for name, value in fixed.items()}
    expr = loss.expr.xreplace(subs)
    stable = loss.stable_expr.xreplace(subs) if _known(loss.expr) else expr
    if not finite_form(stable):
        # The stable form may use log(y) where the formula has y*log(...): at y = 0 it breaks.
        stable = expr
    free = expr.free_symbols | stable.free_symbols
    names = [n for n in (*loss.inputs, *loss.params)]
    domain = {loss.symbol(n): loss.domain[n] for n in names if loss.symbol(n) in free}
    variables = tuple(loss.symbol(w) for w in loss.wrt)
    for v in variables:
        domain.setdefault(v, loss.domain[v.name])
    defaults = {loss.symbol(k): float(v) for k, v in loss.params.items() if k not in fixed}
    defaults.update({loss.symbol(k): _typical(loss.domain[k]) for k in loss.inputs if k not in fixed})
    return Problem(
        name=loss.name, expr=expr, stable=stable, variables=variables, domain=types.MappingProxyType(domain),
        order=tuple(names), fixed=types.MappingProxyType({k: float(v) for k, v in fixed.items()}),
        defaults=types.MappingProxyType(defaults),
        intervals=types.MappingProxyType({n: loss.domain[n] for n in names}),
        param_names=tuple(loss.params),
    )


def finite_form(expr: sp.Expr) -> bool:
    """No infinite or undefined constant (what substituting an end of a domain can create)."""
    return not expr.has(sp.zoo, sp.nan, sp.oo, -sp.oo)


def _typical(interval: sp.Interval) -> float:
    """A value well inside an interval, used where a representative value is wanted."""
    lo, hi = float(interval.start), float(interval.end)
    if math.isfinite(lo) and math.isfinite(hi):
        return (lo + hi) / 2
    if math.isfinite(lo):
        return lo + 1.0
    if math.isfinite(hi):
        return hi - 1.0
    return 0.5


# Node types the analyses know. Anything else (a row-wise aggregate, say) makes them answer
# "unknown" instead of guessing.
NONSMOOTH = (sp.Abs, sp.Max, sp.Min, sp.Piecewise, sp.sign, sp.Heaviside)
KNOWN_FUNCTIONS = (
    sp.exp, sp.log, log1p, expm1, sp.sin, sp.cos, sp.tanh, sp.sinh, sp.cosh, sp.sech, sp.erf, sp.erfc,
    sp.loggamma, sigmoid, softplus, logsigmoid, logaddexp, logcosh, scaled_exp, scaled_expm1, exp_minus,
    sqrt1pm1, xlogy, logratio, expm1mx, log1pmx,
) + NONSMOOTH
_KNOWN_ATOMS = (sp.Symbol, sp.Number, sp.NumberSymbol, sp.logic.boolalg.BooleanAtom)
_KNOWN_STRUCTURE = (sp.Add, sp.Mul, sp.Pow, Relational, sp.And, sp.Or, sp.Not, sp.functions.elementary.piecewise.ExprCondPair)


def unknown_node(expr: sp.Basic) -> str | None:
    """The name of the first node type the analyses have no rule for, or None."""
    for node in sp.preorder_traversal(expr):
        if isinstance(node, _KNOWN_ATOMS + _KNOWN_STRUCTURE + KNOWN_FUNCTIONS):
            continue
        return type(node).__name__
    return None


def _known(expr) -> bool:
    return unknown_node(expr) is None


def depends(expr: sp.Basic, variables) -> bool:
    return bool(expr.free_symbols & set(variables))


class _KinkPrinter(StrPrinter):
    """Plain text with |u| for Abs(u), for certificates and kink lists."""

    def _print_Abs(self, expr):
        return f"|{self._print(expr.args[0])}|"


def text(expr, limit: int = 90) -> str:
    """Short readable text of an expression for certificates."""
    out = _KinkPrinter().doprint(expr)
    return out if len(out) <= limit else out[: limit - 3] + "..."


# ============================================================================================
# Rigorous interval arithmetic
# ============================================================================================

INF = math.inf
_MAX = sys.float_info.max
_TINY = 5e-324


def _dn(v: float, ulps: int = 1) -> float:
    """A float at or below the true value of a result computed as v with at most `ulps` ulps of error."""
    if v == 0.0 or v != v or math.isinf(v):
        return v
    return v - ulps * math.ulp(v)


def _up(v: float, ulps: int = 1) -> float:
    if v == 0.0 or v != v or math.isinf(v):
        return v
    return v + ulps * math.ulp(v)


class Range:
    """A set of reals [lo, hi] as float bounds, each end open or closed; infinite ends are open.

    Bounds are rigorous: every operation rounds outward. Openness is tracked where it decides a
    sign (is 0 attained?), so that "> 0" can be told from ">= 0"; elsewhere ends are closed,
    which is the weaker, always-true claim.
    """

    __slots__ = ("lo", "hi", "lo_open", "hi_open")

    def __init__(self, lo: float, hi: float, lo_open: bool = False, hi_open: bool = False):
        if lo != lo:
            lo, lo_open = -INF, True
        if hi != hi:
            hi, hi_open = INF, True
        if lo == INF:
            lo, lo_open = _MAX, False
        if hi == -INF:
            hi, hi_open = -_MAX, False
        self.lo, self.hi = lo, hi
        self.lo_open = lo_open or lo == -INF
        self.hi_open = hi_open or hi == INF

    @staticmethod
    def of(interval: sp.Interval) -> "Range":
        """The range of a SymPy interval, rounded outward where its ends are not floats."""
        lo, hi = float(interval.start), float(interval.end)
        lo_open, hi_open = bool(interval.left_open), bool(interval.right_open)
        if math.isfinite(lo) and sp.Rational(lo) != interval.start:
            lo, lo_open = _dn(lo), False
        if math.isfinite(hi) and sp.Rational(hi) != interval.end:
            hi, hi_open = _up(hi), False
        return Range(lo, hi, lo_open, hi_open)

    @staticmethod
    def point(value: float) -> "Range":
        return Range(value, value)

    def nonneg(self) -> bool:
        return self.lo >= 0

    def positive(self) -> bool:
        return self.lo > 0 or (self.lo == 0 and self.lo_open)

    def nonpos(self) -> bool:
        return self.hi <= 0

    def negative(self) -> bool:
        return self.hi < 0 or (self.hi == 0 and self.hi_open)

    def has_zero(self) -> bool:
        return (self.lo < 0 or (self.lo == 0 and not self.lo_open)) and (self.hi > 0 or (self.hi == 0 and not self.hi_open))

    def finite(self) -> bool:
        return math.isfinite(self.lo) and math.isfinite(self.hi)

    @property
    def magnitude(self) -> float:
        return max(abs(self.lo), abs(self.hi))

    def within(self, lo: float, hi: float) -> bool:
        return self.lo >= lo and self.hi <= hi

    def __repr__(self):
        return f"{'(' if self.lo_open else '['}{self.lo:.6g}, {self.hi:.6g}{')' if self.hi_open else ']'}"


FULL = Range(-INF, INF)
POSITIVE = Range(0.0, INF, True)
NONNEGATIVE = Range(0.0, INF)


def _neg(a: Range) -> Range:
    return Range(-a.hi, -a.lo, a.hi_open, a.lo_open)


def _sum_bounds(x: float, y: float) -> tuple[float, bool, float, bool]:
    """Tight bounds (lo, lo_exact, hi, hi_exact) of x + y: the float sum, moved one ulp only to
    the side of its exact rounding error (TwoSum), so exact sums stay exact. An inexact bound
    lies strictly beyond the true sum."""
    s = x + y
    if not math.isfinite(s) or not (math.isfinite(x) and math.isfinite(y)):
        return s, True, s, True
    bb = s - x
    err = (x - (s - bb)) + (y - bb)
    if err == 0:
        return s, True, s, True
    if err > 0:
        return s, False, math.nextafter(s, INF), False
    return math.nextafter(s, -INF), False, s, False


_SPLIT = 134217729.0  # 2**27 + 1, Veltkamp's splitter


def _two_product_error(x: float, y: float, p: float) -> float | None:
    """The exact rounding error x*y - p of p = fl(x*y) (Dekker), or None out of its safe range."""
    if not (1e-280 < abs(x) < 1e280 and 1e-280 < abs(y) < 1e280 and 1e-280 < abs(p) < 1e280):
        return None
    cx = _SPLIT * x
    xh = cx - (cx - x)
    xl = x - xh
    cy = _SPLIT * y
    yh = cy - (cy - y)
    yl = y - yh
    return ((xh * yh - p) + xh * yl + xl * yh) + xl * yl


def _add(a: Range, b: Range) -> Range:
    lo, lo_exact, _, _ = _sum_bounds(a.lo, b.lo)
    _, _, hi, hi_exact = _sum_bounds(a.hi, b.hi)
    # An exact end is attained only where both ends are; an inexact one is never attained.
    lo_open = (a.lo_open or b.lo_open) if lo_exact else True
    hi_open = (a.hi_open or b.hi_open) if hi_exact else True
    return Range(lo, hi, lo_open, hi_open)


def _corner(x: float, y: float) -> tuple[float, bool, float, bool]:
    """Bounds (lo, lo_exact, hi, hi_exact) of x*y; an exact 0 times an unbounded end is 0 (an
    end is a bound, not a value)."""
    if x == 0 or y == 0:
        return 0.0, True, 0.0, True
    p = x * y
    if p == 0:  # underflow: the true product is tiny with the sign of x*y
        return (0.0, False, _TINY, False) if (x > 0) == (y > 0) else (-_TINY, False, 0.0, False)
    if math.isinf(p):
        return p, True, p, True
    err = _two_product_error(x, y, p)
    if err is None:
        return _dn(p), False, _up(p), False
    if err == 0:
        return p, True, p, True
    if err > 0:
        return p, False, math.nextafter(p, INF), False
    return math.nextafter(p, -INF), False, p, False


def _mul(a: Range, b: Range) -> Range:
    corners = []
    for x, xo in ((a.lo, a.lo_open), (a.hi, a.hi_open)):
        for y, yo in ((b.lo, b.lo_open), (b.hi, b.hi_open)):
            lo, lo_exact, hi, hi_exact = _corner(x, y)
            corners.append((lo, (xo or yo) if lo_exact else True, hi, (xo or yo) if hi_exact else True))
    lo = min(c[0] for c in corners)
    hi = max(c[2] for c in corners)
    lo_open = all(c[1] for c in corners if c[0] == lo)
    hi_open = all(c[3] for c in corners if c[2] == hi)
    # A product is 0 exactly where a factor is 0.
    zero = a.has_zero() or b.has_zero()
    if lo == 0:
        lo_open = not zero
    if hi == 0:
        hi_open = not zero
    return Range(lo, hi, lo_open, hi_open)


def _recip(a: Range) -> Range | None:
    if a.positive():
        lo, lo_open = (0.0, True) if math.isinf(a.hi) else (_dn(1.0 / a.hi), False)
        hi = INF if a.lo == 0 else _up(1.0 / a.lo)
        return Range(max(lo, 0.0), hi, lo_open or lo <= 0, False)
    if a.negative():
        return _neg(_recip(_neg(a)))
    if a.lo == 0 and a.hi == 0:
        return None
    return FULL


def _pow_bounds(v: float, e: float) -> tuple[float, float]:
    """Bounds of v**e for a float v (v >= 0 unless e is an integer)."""
    if v == 0:
        return (0.0, 0.0) if e > 0 else (INF, INF)
    if math.isinf(v):
        r = v**e if e == int(e) else (INF if e > 0 else 0.0)
        return r, r
    try:
        r = math.pow(v, e)
    except OverflowError:
        negative = v < 0 and e == int(e) and int(e) % 2 == 1
        return (-INF, -_MAX) if negative else (_MAX, INF)
    if r == 0:
        return (0.0, _TINY) if r >= 0 and (v > 0 or int(e) % 2 == 0) else (-_TINY, 0.0)
    return _dn(r, 2), _up(r, 2)


def _abs(a: Range) -> Range:
    if a.nonneg():
        return a
    if a.nonpos():
        return _neg(a)
    return Range(0.0, max(-a.lo, a.hi), False, False)


def _powi(a: Range, n: int) -> Range | None:
    if n == 0:
        return Range(1.0, 1.0)
    if n < 0:
        inner = _powi(a, -n)
        return None if inner is None else _recip(inner)
    if n % 2 == 0:
        m = _abs(a)
        lo, hi = _pow_bounds(m.lo, n)[0], _pow_bounds(m.hi, n)[1]
        return Range(max(lo, 0.0), hi, lo <= 0 and m.lo == 0 and m.lo_open, False)
    lo, hi = _pow_bounds(a.lo, n)[0], _pow_bounds(a.hi, n)[1]
    return Range(lo, hi, a.lo == 0 and a.lo_open, a.hi == 0 and a.hi_open)


def _pow_real(a: Range, e: float) -> Range | None:
    """a**e for a float exponent that is not an integer: needs a >= 0."""
    if a.lo < 0:
        return None
    if e > 0:
        lo, hi = _pow_bounds(a.lo, e)[0], _pow_bounds(a.hi, e)[1]
        return Range(max(lo, 0.0), hi, a.lo == 0 and a.lo_open, False)
    lo, hi = _pow_bounds(a.hi, e)[0], _pow_bounds(a.lo, e)[1]
    return Range(max(lo, 0.0), hi, math.isinf(a.hi) or lo <= 0, False)


def _safe(fn):
    def call(v):
        try:
            return fn(v)
        except OverflowError:
            return math.copysign(INF, v)
        except ValueError:
            return math.nan

    return call


def _sigmoid_f(v):
    if v >= 0:
        return 1.0 / (1.0 + math.exp(-v)) if v < INF else 1.0
    e = math.exp(v)
    return e / (1.0 + e)


def _softplus_f(v):
    if v == INF:
        return INF
    if v == -INF:
        return 0.0
    return max(v, 0.0) + math.log1p(math.exp(-abs(v)))


def _logcosh_f(v):
    v = abs(v)
    if v == INF:
        return INF
    if v < 20:
        return math.log1p(2.0 * math.sinh(v / 2) ** 2)
    return v - math.log(2.0) + math.log1p(math.exp(-2 * v))


def _mp_f(fn):
    """A float function evaluated in mpmath (for forms that cancel in floats), rounded to 1 ulp."""

    def call(v):
        if math.isinf(v):
            return float(fn(mpmath.mpf(v)))
        with mpmath.workdps(40):
            return float(fn(mpmath.mpf(v)))

    return call


_expm1mx_f = _mp_f(lambda v: mpmath.expm1(v) - v if mpmath.isfinite(v) else (mpmath.inf if v > 0 else mpmath.inf))
_log1pmx_f = _mp_f(lambda v: mpmath.log1p(v) - v if mpmath.isfinite(v) else -mpmath.inf)


def _sqrt1pm1_f(v):
    if v == INF:
        return INF
    return v / (math.sqrt(1.0 + v) + 1.0)


def _log_f(v):
    if v == 0:
        return -INF
    return math.log(v)


def _log1p_f(v):
    if v == -1:
        return -INF
    return math.log1p(v)


def _monotone(a: Range, fn, increasing: bool, image: Range, zero_at: float | None = None, ulps: int = 4) -> Range:
    """Range of a monotone function: its values at the ends, rounded outward, clamped to `image`
    (the function's own range, whose open ends carry strict signs such as exp > 0)."""
    ends = ((a.lo, a.lo_open), (a.hi, a.hi_open)) if increasing else ((a.hi, a.hi_open), (a.lo, a.lo_open))
    out = []
    for k, (v, is_open) in enumerate(ends):
        r = fn(v)
        exact = math.isinf(v) or (zero_at is not None and v == zero_at)
        if r != r:
            r, exact = (-INF if k == 0 else INF), True
        if not exact:
            r = (_dn(r, ulps) if r != 0 else -_TINY) if k == 0 else (_up(r, ulps) if r != 0 else _TINY)
        out.append((r, is_open if exact else False))
    (lo, lo_open), (hi, hi_open) = out
    if lo < image.lo or (lo == image.lo and image.lo_open):
        lo, lo_open = image.lo, image.lo_open
    if hi > image.hi or (hi == image.hi and image.hi_open):
        hi, hi_open = image.hi, image.hi_open
    return Range(lo, hi, lo_open, hi_open)


def _even(a: Range, fn, image: Range, ulps: int = 4) -> Range:
    """Range of a function even and increasing in |x| (cosh, logcosh)."""
    return _monotone(_abs(a), fn, True, image, zero_at=0.0 if fn(0.0) == 0 else None, ulps=ulps)


def _valley(a: Range, fn, image: Range, peak: bool = False) -> Range:
    """Range of a function monotone on each side of 0 with its extremum fn(0) = 0 there."""
    if a.nonneg() or a.nonpos():
        increasing = a.nonneg() != peak
        return _monotone(a, fn, increasing, image, zero_at=0.0)
    left = _monotone(Range(a.lo, 0.0, a.lo_open, False), fn, peak, image, zero_at=0.0)
    right = _monotone(Range(0.0, a.hi, False, a.hi_open), fn, not peak, image, zero_at=0.0)
    return _union([left, right])


def _union(parts: list[Range]) -> Range:
    lo = min(p.lo for p in parts)
    hi = max(p.hi for p in parts)
    lo_open = all(p.lo_open for p in parts if p.lo == lo)
    hi_open = all(p.hi_open for p in parts if p.hi == hi)
    return Range(lo, hi, lo_open, hi_open)


_PI_LO = float(sp.pi)  # just below pi
_PI_HI = math.nextafter(_PI_LO, INF)
# Bounds on the curvature and monotonicity breaks of sin and cos, rounded toward safety.
_HALF_PI_LO, _HALF_PI_HI = _PI_LO / 2, _PI_HI / 2
_THREE_HALF_PI_LO = 4.7123889803846  # below 3*pi/2 = 4.71238898038469


def _trig(a: Range, shift: float) -> Range:
    """sin(x + shift*pi/2), from the ends and the extrema the interval may contain."""
    if not a.finite() or a.hi - a.lo >= 2 * _PI_LO:
        return Range(-1.0, 1.0)
    fn = math.sin if shift == 0 else math.cos
    values = [fn(a.lo), fn(a.hi)]
    lo, hi = min(values) - 4 * math.ulp(1.0), max(values) + 4 * math.ulp(1.0)
    # Extrema of sin(x + s*pi/2) sit at x = pi/2 - s*pi/2 + k*pi; include any that may lie inside.
    base = (1 - shift) * math.pi / 2
    k0 = math.floor((a.lo - base) / math.pi) - 1
    for k in range(k0, k0 + 4):
        c = base + k * math.pi
        if a.lo - 1e-12 * max(1.0, abs(c)) <= c <= a.hi + 1e-12 * max(1.0, abs(c)):
            if k % 2 == 0:
                hi = 1.0
            else:
                lo = -1.0
    return Range(max(lo, -1.0), min(hi, 1.0))


def _max(parts: list[Range]) -> Range:
    lo = max(p.lo for p in parts)
    hi = max(p.hi for p in parts)
    return Range(lo, hi, all(p.lo_open for p in parts if p.lo == lo), all(p.hi_open for p in parts if p.hi == hi))


def _min(parts: list[Range]) -> Range:
    lo = min(p.lo for p in parts)
    hi = min(p.hi for p in parts)
    return Range(lo, hi, all(p.lo_open for p in parts if p.lo == lo), all(p.hi_open for p in parts if p.hi == hi))


def _sign(a: Range) -> Range:
    if a.positive():
        return Range(1.0, 1.0)
    if a.negative():
        return Range(-1.0, -1.0)
    return Range(0.0 if a.nonneg() else -1.0, 0.0 if a.nonpos() else 1.0)


def _heaviside(a: Range, h0: float = 0.5) -> Range:
    if a.positive():
        return Range(1.0, 1.0)
    if a.negative():
        return Range(0.0, 0.0)
    lo = 0.0 if not a.nonneg() else min(h0, 1.0)
    hi = 1.0 if not a.nonpos() else max(h0, 0.0)
    return Range(min(lo, h0), max(hi, h0))


def _log(a: Range) -> Range | None:
    if a.lo < 0:
        return None
    return _monotone(a, _safe(_log_f), True, FULL, zero_at=1.0)


def _exp(a: Range) -> Range:
    return _monotone(a, _safe(math.exp), True, POSITIVE)


_UNIT_OPEN = Range(-1.0, 1.0, True, True)

# Range of each function node from its arguments' ranges (None: undefined there, or unknown).
RANGE_RULES: dict[type, Callable[..., Range | None]] = {
    sp.exp: lambda node, a: _exp(a),
    sp.log: lambda node, a: _log(a),
    log1p: lambda node, a: None if a.lo < -1 else _monotone(a, _safe(_log1p_f), True, FULL, zero_at=0.0),
    expm1: lambda node, a: _monotone(a, _safe(math.expm1), True, Range(-1.0, INF, True), zero_at=0.0),
    sp.sinh: lambda node, a: _monotone(a, _safe(math.sinh), True, FULL, zero_at=0.0),
    sp.cosh: lambda node, a: _even(a, _safe(math.cosh), Range(1.0, INF)),
    sp.sech: lambda node, a: _recip(_even(a, _safe(math.cosh), Range(1.0, INF))),
    sp.tanh: lambda node, a: _monotone(a, _safe(math.tanh), True, _UNIT_OPEN, zero_at=0.0),
    sp.erf: lambda node, a: _monotone(a, _safe(math.erf), True, _UNIT_OPEN, zero_at=0.0),
    sp.erfc: lambda node, a: _monotone(a, _safe(math.erfc), False, Range(0.0, 2.0, True, True)),
    sp.sin: lambda node, a: _trig(a, 0),
    sp.cos: lambda node, a: _trig(a, 1),
    sp.Abs: lambda node, a: _abs(a),
    sp.sign: lambda node, a: _sign(a),
    sp.Heaviside: lambda node, a, *h0: _heaviside(a, float(node.args[1]) if len(node.args) > 1 and node.args[1].is_number else 0.5),
    sp.Max: lambda node, *args: _max(list(args)),
    sp.Min: lambda node, *args: _min(list(args)),
    sigmoid: lambda node, a: _monotone(a, _safe(_sigmoid_f), True, Range(0.0, 1.0, True, True)),
    softplus: lambda node, a: _monotone(a, _safe(_softplus_f), True, POSITIVE),
    logsigmoid: lambda node, a: _neg(_monotone(_neg(a), _safe(_softplus_f), True, POSITIVE)),
    logcosh: lambda node, a: _even(a, _safe(_logcosh_f), NONNEGATIVE),
    sqrt1pm1: lambda node, a: None if a.lo < -1 else _monotone(a, _safe(_sqrt1pm1_f), True, Range(-1.0, INF), zero_at=0.0),
    expm1mx: lambda node, a: _valley(a, _safe(_expm1mx_f), NONNEGATIVE),
    log1pmx: lambda node, a: None if a.lo < -1 else _valley(a, _safe(_log1pmx_f), Range(-INF, 0.0), peak=True),
    logaddexp: lambda node, a, b: _logaddexp(a, b),
    xlogy: lambda node, x, z: None if (lz := _log(z)) is None else _mul(x, lz),
    logratio: lambda node, a, b: None if (la := _log(a)) is None or (lb := _log(b)) is None else _add(la, _neg(lb)),
    scaled_exp: lambda node, z, y: _mul(y, _exp(z)),
    scaled_expm1: lambda node, z, y: _add(_mul(y, _exp(z)), Range(-1.0, -1.0)),
    exp_minus: lambda node, z, y: _add(_exp(z), _neg(y)),
}


def _lae(x: float, y: float) -> float:
    if x == INF or y == INF:
        return INF
    if x == -INF:
        return y
    if y == -INF:
        return x
    m = max(x, y)
    return m + math.log1p(math.exp(-abs(x - y)))


def _logaddexp(a: Range, b: Range) -> Range:
    lo, hi = _lae(a.lo, b.lo), _lae(a.hi, b.hi)
    return Range(_dn(lo, 4) if math.isfinite(lo) else lo, _up(hi, 4) if math.isfinite(hi) else hi)


def _const_range(value: sp.Expr) -> Range:
    v = float(value)
    if value.is_Rational and sp.Rational(v) == value:
        return Range(v, v)
    return Range(_dn(v, 2), _up(v, 2))


class RangeProgram:
    """An expression compiled for repeated rigorous range evaluation over boxes of symbols.

    Calling it with {Symbol: Range} returns the expression's Range, or None where it is undefined
    on the box (log of a negative) or contains a node with no range rule. `ranges(env)` gives the
    range of every subexpression at once.
    """

    def __init__(self, expr: sp.Expr):
        self.expr = expr
        self.index: dict[sp.Basic, int] = {}
        self.steps: list[tuple] = []
        self._compile(expr)

    def _compile(self, root):
        stack = [(root, False)]
        while stack:
            node, ready = stack.pop()
            if node in self.index:
                continue
            children = self._children(node)
            if not ready:
                stack.append((node, True))
                stack.extend((c, False) for c in children if c not in self.index)
                continue
            self.index[node] = len(self.steps)
            self.steps.append((node, self._rule(node), tuple(self.index[c] for c in children)))

    @staticmethod
    def _children(node):
        if isinstance(node, sp.Piecewise):
            return [branch.expr for branch in node.args]
        if isinstance(node, (sp.Symbol, sp.Number, sp.NumberSymbol)) or not isinstance(node, sp.Expr):
            return []
        return list(node.args)

    def _rule(self, node):
        if isinstance(node, sp.Symbol):
            return "symbol"
        if isinstance(node, (sp.Number, sp.NumberSymbol)):
            return _const_range(node) if node.is_finite else None
        if isinstance(node, sp.Add):
            return lambda node, *a: functools.reduce(_add, a)
        if isinstance(node, sp.Mul):
            return lambda node, *a: functools.reduce(_mul, a)
        if isinstance(node, sp.Pow):
            return _pow_rule
        if isinstance(node, sp.Piecewise):
            return _piecewise_rule
        return RANGE_RULES.get(type(node))

    def ranges(self, env: Mapping[sp.Symbol, Range]) -> list:
        values = []
        for node, rule, kids in self.steps:
            if rule == "symbol":
                values.append(env.get(node))
            elif isinstance(rule, Range):
                values.append(rule)
            elif rule is None:
                values.append(None)
            else:
                args = [values[k] for k in kids]
                if any(a is None for a in args):
                    values.append(None)
                    continue
                try:
                    values.append(rule(node, *args))
                except (OverflowError, ZeroDivisionError, ValueError):
                    values.append(None)
        return values

    def __call__(self, env: Mapping[sp.Symbol, Range]) -> Range | None:
        return self.ranges(env)[-1] if self.steps else None

    def of(self, values: list, node: sp.Basic) -> Range | None:
        k = self.index.get(node)
        return None if k is None else values[k]


def _pow_rule(node, base: Range, exponent: Range) -> Range | None:
    e = node.exp
    if e.is_Integer:
        return _powi(base, int(e))
    if e.is_number and e.is_real:
        v = float(e)
        if sp.Rational(v) == e:
            return _pow_real(base, v)
    # General exponent: exp(e*log(b)) on b >= 0.
    lb = _log(base)
    return None if lb is None else _exp(_mul(exponent, lb))


def _piecewise_rule(node, *branches: Range) -> Range:
    # Conditions are ignored: the union of all branches' ranges is a superset.
    return _union(list(branches))


@functools.lru_cache(maxsize=4096)
def range_program(expr: sp.Expr) -> RangeProgram:
    return RangeProgram(expr)


def bound(expr: sp.Expr, env: Mapping[sp.Symbol, Range]) -> Range | None:
    """Rigorous range of `expr` when its symbols range over `env` (None: undefined or unknown)."""
    if expr.is_number:
        try:
            return _const_range(expr) if expr.is_finite and expr.is_real else None
        except TypeError:
            return None
    return range_program(expr)(env)


# --- branch and bound -------------------------------------------------------------------------

def _split_point(r: Range) -> float | None:
    """Where to cut a range in two: the midpoint in arctan scale, so infinite ends split too."""
    if r.lo == r.hi:
        return None
    m = math.tan((math.atan(r.lo) + math.atan(r.hi)) / 2)
    if not (r.lo < m < r.hi):
        m = (r.lo + r.hi) / 2 if r.finite() else None
        if m is None or not (r.lo < m < r.hi):
            return None
    return m


def _width(r: Range) -> float:
    return math.atan(r.hi) - math.atan(r.lo)


@dataclass
class Budget:
    """Work allowed to one branch-and-bound search."""

    boxes: int = 3000
    seconds: float = 1.0


def nonnegative_by_bisection(program: RangeProgram, env: Mapping[sp.Symbol, Range], budget: Budget, strict: bool = False) -> int | None:
    """Prove program >= 0 (> 0 if strict) on the box `env` by splitting it until every piece's
    range is non-negative. Returns the number of boxes used, or None when it could not."""
    names = [s for s in program.expr.free_symbols if s in env]
    deadline = time.perf_counter() + budget.seconds
    stack = [dict(env)]
    count = 0
    while stack:
        box = stack.pop()
        count += 1
        if count > budget.boxes or time.perf_counter() > deadline:
            return None
        r = program(box)
        if r is None:
            return None
        if r.positive() if strict else r.nonneg():
            continue
        if r.negative() or (r.hi <= 0 and strict):
            return None
        widths = sorted(((_width(box[s]), s) for s in names if _split_point(box[s]) is not None), key=lambda t: -t[0])
        if not widths:
            return None
        s = widths[0][1]
        m = _split_point(box[s])
        left, right = dict(box), dict(box)
        left[s] = Range(box[s].lo, m, box[s].lo_open, False)
        right[s] = Range(m, box[s].hi, False, box[s].hi_open)
        stack.extend((right, left))
    return count


# --- proving an expression non-negative ----------------------------------------------------------


def _ops(expr) -> int:
    try:
        return int(sp.count_ops(expr))
    except Exception:  # noqa: BLE001 - count_ops is only a size hint
        return 10**6


def candidate_forms(expr: sp.Expr, max_ops: int = 400):
    """Equal forms of expr in which interval arithmetic loses less: the expression itself, then
    (lazily, each under a time limit) factored, cancelled and simplified forms."""
    yield expr
    size = _ops(expr)
    if size > max_ops:
        return
    attempts = [
        lambda e: sp.factor_terms(e),
        lambda e: sp.factor(sp.together(e)),
        lambda e: sp.cancel(sp.together(e)),
    ]
    if size <= 150 and not expr.has(sp.Piecewise):
        attempts.append(lambda e: sp.factor(sp.simplify(e)))
    seen = {expr}
    for attempt in attempts:
        form = limited(lambda: attempt(expr), 0.5)
        if form is None or form in seen or form.has(sp.nan, sp.zoo, sp.I):
            continue
        seen.add(form)
        yield form


def prove_nonnegative(expr: sp.Expr, env: Mapping[sp.Symbol, Range], *, strict: bool = False,
                      budget: Budget | None = None) -> str | None:
    """A one-line reason why expr >= 0 (> 0 if strict) for all symbols in `env`, or None."""
    if expr == 0:
        return None if strict else "it is identically 0"
    forms = []
    for form in candidate_forms(expr):
        forms.append(form)
        r = bound(form, env)
        if r is not None and (r.positive() if strict else r.nonneg()):
            shown = "" if form == expr else f"written {text(form, 120)}, "
            return f"{shown}interval arithmetic over the domain gives {r}"
    budget = budget or Budget()
    for form in sorted(forms, key=_ops)[:2]:
        if not form.free_symbols:
            continue
        program = range_program(form)
        used = nonnegative_by_bisection(program, env, Budget(budget.boxes // 2, budget.seconds / 2), strict)
        if used is not None:
            shown = "" if form == expr else f"written {text(form, 120)}, "
            return f"{shown}interval arithmetic on {used} boxes covering the domain shows it {'> 0' if strict else '>= 0'}"
    return None


def is_zero(expr: sp.Expr) -> bool:
    """Whether expr is identically 0 (proved by expansion, cancellation or simplification)."""
    if expr == 0:
        return True
    if _nonzero_at_a_point(expr):
        return False  # cheap, and "not proved zero" is always a safe answer
    for attempt in (sp.expand, lambda e: sp.cancel(sp.together(e)), sp.simplify):
        if attempt is sp.simplify and _ops(expr) > 200:
            break
        if limited(lambda: attempt(expr) == 0, 0.5, False):
            return True
    return False


_PROBE = (0.3127, 0.6891, 0.4513, 0.8247, 0.1733, 0.5569)


def _nonzero_at_a_point(expr: sp.Expr) -> bool:
    """Whether expr is clearly nonzero at a point of (0, 1)**n (where most domains have room)."""
    symbols = tuple(sorted(expr.free_symbols, key=lambda s: s.name))
    point = [_PROBE[k % len(_PROBE)] + 0.01 * (k // len(_PROBE)) for k in range(len(symbols))]

    def probe():
        with mpmath.workdps(30):
            value = mpmath_function(expr, symbols)(*[mpmath.mpf(v) for v in point])
            return isinstance(value, mpmath.mpf) and mpmath.isfinite(value) and abs(value) > 1e-8

    return bool(limited(probe, 0.3, False))


# ============================================================================================
# 1. Composition rules (disciplined convex programming)
# ============================================================================================

# A curvature is the pair (convex, concave): affine is both, unknown neither.
AFFINE, CONVEX, CONCAVE, UNKNOWN = (True, True), (True, False), (False, True), (False, False)
_CURVATURE_NAMES = {AFFINE: "affine", CONVEX: "convex", CONCAVE: "concave", UNKNOWN: "unknown"}


def _flip(c: tuple[bool, bool]) -> tuple[bool, bool]:
    return (c[1], c[0])


@dataclass(frozen=True)
class Atom:
    """What a function is on the range of its arguments: curvature, and per argument +1
    (non-decreasing), -1 (non-increasing) or 0 (neither, or not known)."""

    convex: bool
    concave: bool
    monotone: tuple[int, ...]
    why: str


class Composition:
    """Curvature of subexpressions in the wrt variables, with signs from interval bounds."""

    def __init__(self, expr: sp.Expr, variables, env: Mapping[sp.Symbol, Range]):
        self.variables = set(variables)
        self.env = env
        self.program = range_program(expr)
        self.values = self.program.ranges(env)
        self.memo: dict = {}
        self.steps: list[str] = []

    def range(self, expr: sp.Expr) -> Range | None:
        """Rigorous range of a subexpression over the domain."""
        if expr in self.program.index:
            return self.program.of(self.values, expr)
        return bound(expr, self.env)

    def sign(self, expr: sp.Expr) -> int:
        """+1 when expr >= 0 on the domain, -1 when <= 0, 0 when not known."""
        r = self.range(expr)
        if r is None:
            return 0
        return 1 if r.nonneg() else (-1 if r.nonpos() else 0)

    def has_var(self, expr) -> bool:
        return bool(expr.free_symbols & self.variables)

    def note(self, expr, curvature, why: str) -> tuple[bool, bool]:
        if curvature != UNKNOWN:
            line = f"{text(expr, 70)}: {_CURVATURE_NAMES[curvature]} ({why})"
            if line not in self.steps:
                self.steps.append(line)
        return curvature

    def curvature(self, expr: sp.Expr) -> tuple[bool, bool]:
        if expr in self.memo:
            return self.memo[expr]
        if not self.has_var(expr) or expr in self.variables:
            result = AFFINE
        else:
            rule = COMPOSITION_RULES.get(type(expr))
            result = UNKNOWN if rule is None else rule(self, expr)
        self.memo[expr] = result
        return result

    def compose(self, expr, atom: Atom | None) -> tuple[bool, bool]:
        """The DCP composition rule: f(g1, ..., gn) is convex if f is convex and each gi is
        affine, or convex where f is non-decreasing in it, or concave where non-increasing."""
        if atom is None:
            return UNKNOWN
        convex, concave = atom.convex, atom.concave
        for arg, m in zip(expr.args, atom.monotone):
            c = self.curvature(arg)
            if c == AFFINE:
                continue
            convex = convex and ((m > 0 and c[0]) or (m < 0 and c[1]))
            concave = concave and ((m > 0 and c[1]) or (m < 0 and c[0]))
        result = (convex, concave)
        if result == UNKNOWN:
            return UNKNOWN
        args = ", ".join(_CURVATURE_NAMES[self.curvature(a)] for a in expr.args if self.has_var(a))
        return self.note(expr, result, f"{atom.why}; argument {args}")


COMPOSITION_RULES: dict[type, Callable[[Composition, sp.Expr], tuple[bool, bool]]] = {}


def composition_rule(*kinds):
    """Register the curvature rule of one node type (a function, or Add/Mul/Pow/Piecewise)."""

    def register(rule):
        for kind in kinds:
            COMPOSITION_RULES[kind] = rule
        return rule

    return register


def function_rule(*kinds):
    """Register a rule given as an Atom of the arguments' ranges (None: does not apply)."""

    def register(atom_of):
        def rule(ctx: Composition, expr):
            ranges = [ctx.range(a) for a in expr.args]
            return ctx.compose(expr, atom_of(*ranges))

        for kind in kinds:
            COMPOSITION_RULES[kind] = rule
        return atom_of

    return register


def _mono_by_sign(r: Range | None, increasing_where_nonneg: bool = True) -> int:
    """Monotonicity of a function decreasing left of 0 and increasing right of it (|x|, cosh)."""
    if r is None:
        return 0
    if r.nonneg():
        return 1 if increasing_where_nonneg else -1
    if r.nonpos():
        return -1 if increasing_where_nonneg else 1
    return 0


@function_rule(sp.exp)
def _exp_atom(r):
    return Atom(True, False, (1,), "exp is convex and increasing")


@function_rule(expm1)
def _expm1_atom(r):
    return Atom(True, False, (1,), "expm1 is convex and increasing")


@function_rule(log1p)
def _log1p_atom(r):
    return Atom(False, True, (1,), "log1p is concave and increasing") if r is not None and r.lo >= -1 else None


@function_rule(softplus)
def _softplus_atom(r):
    return Atom(True, False, (1,), "softplus is convex and increasing")


@function_rule(logsigmoid)
def _logsigmoid_atom(r):
    return Atom(False, True, (1,), "logsigmoid is concave and increasing")


@function_rule(logaddexp)
def _logaddexp_atom(a, b):
    return Atom(True, False, (1, 1), "logaddexp is convex and increasing in both arguments")


@function_rule(sp.Abs)
def _abs_atom(r):
    return Atom(True, False, (_mono_by_sign(r),), "Abs is convex, increasing for a non-negative argument")


@function_rule(logcosh)
def _logcosh_atom(r):
    return Atom(True, False, (_mono_by_sign(r),), "logcosh is convex, increasing for a non-negative argument")


@function_rule(sp.cosh)
def _cosh_atom(r):
    return Atom(True, False, (_mono_by_sign(r),), "cosh is convex, increasing for a non-negative argument")


@function_rule(expm1mx)
def _expm1mx_atom(r):
    return Atom(True, False, (_mono_by_sign(r),), "exp(x) - 1 - x is convex, increasing for x >= 0")


@function_rule(log1pmx)
def _log1pmx_atom(r):
    if r is None or r.lo < -1:
        return None
    return Atom(False, True, (_mono_by_sign(r, False),), "log(1 + x) - x is concave, decreasing for x >= 0")


@function_rule(sqrt1pm1)
def _sqrt1pm1_atom(r):
    return Atom(False, True, (1,), "sqrt(1 + x) - 1 is concave and increasing") if r is not None and r.lo >= -1 else None


@function_rule(sp.Max)
def _max_atom(*ranges):
    return Atom(True, False, (1,) * len(ranges), "Max is convex and increasing in each argument")


@function_rule(sp.Min)
def _min_atom(*ranges):
    return Atom(False, True, (1,) * len(ranges), "Min is concave and increasing in each argument")


def _s_shaped(name: str, convex_left: bool = True):
    """Increasing functions convex on one side of 0 and concave on the other: sigmoid, tanh and
    erf are convex left of 0; sinh is concave left of 0."""

    def atom_of(r):
        if r is not None and r.nonpos():
            kind = "convex" if convex_left else "concave"
            return Atom(convex_left, not convex_left, (1,), f"{name} is increasing and {kind} for a non-positive argument")
        if r is not None and r.nonneg():
            kind = "concave" if convex_left else "convex"
            return Atom(not convex_left, convex_left, (1,), f"{name} is increasing and {kind} for a non-negative argument")
        return None

    return atom_of


function_rule(sigmoid)(_s_shaped("sigmoid"))
function_rule(sp.tanh)(_s_shaped("tanh"))
function_rule(sp.erf)(_s_shaped("erf"))
function_rule(sp.sinh)(_s_shaped("sinh", convex_left=False))


@function_rule(sp.erfc)
def _erfc_atom(r):
    if r is not None and r.nonneg():
        return Atom(True, False, (-1,), "erfc is convex and decreasing for a non-negative argument")
    if r is not None and r.nonpos():
        return Atom(False, True, (-1,), "erfc is concave and decreasing for a non-positive argument")
    return None


@function_rule(sp.loggamma)
def _loggamma_atom(r):
    if r is None or not r.positive():
        return None
    # log Gamma is convex on x > 0, decreasing below its minimum at 1.46163... and increasing above.
    m = 1 if r.lo >= 1.4617 else (-1 if r.hi <= 1.4616 else 0)
    return Atom(True, False, (m,), "log Gamma is convex for a positive argument")


@function_rule(sp.sin)
def _sin_atom(r):
    if r is None:
        return None
    mono = 1 if r.within(-_HALF_PI_LO, _HALF_PI_LO) else (-1 if r.within(_HALF_PI_HI, _THREE_HALF_PI_LO) else 0)
    if r.within(0.0, _PI_LO):
        return Atom(False, True, (mono,), "sin is concave on [0, pi]")
    if r.within(-_PI_LO, 0.0):
        return Atom(True, False, (mono,), "sin is convex on [-pi, 0]")
    return None


@function_rule(sp.cos)
def _cos_atom(r):
    if r is None:
        return None
    mono = -1 if r.within(0.0, _PI_LO) else (1 if r.within(-_PI_LO, 0.0) else 0)
    if r.within(-_HALF_PI_LO, _HALF_PI_LO):
        return Atom(False, True, (mono,), "cos is concave on [-pi/2, pi/2]")
    if r.within(_HALF_PI_HI, _THREE_HALF_PI_LO):
        return Atom(True, False, (mono,), "cos is convex on [pi/2, 3*pi/2]")
    return None


@composition_rule(sp.Add)
def _add_rule(ctx: Composition, expr):
    parts = [ctx.curvature(a) for a in expr.args]
    result = (all(p[0] for p in parts), all(p[1] for p in parts))
    return result


@composition_rule(sp.Mul)
def _mul_rule(ctx: Composition, expr):
    constant = [f for f in expr.args if not ctx.has_var(f)]
    varying = [f for f in expr.args if ctx.has_var(f)]
    inner = ctx.curvature(varying[0]) if len(varying) == 1 else _product_rule(ctx, sp.Mul(*varying))
    if inner == AFFINE or not constant:
        return inner
    c = sp.Mul(*constant)
    s = ctx.sign(c)
    if inner == UNKNOWN or s == 0:
        return UNKNOWN
    result = inner if s > 0 else _flip(inner)
    return ctx.note(expr, result, f"{_CURVATURE_NAMES[inner]} times {text(c, 30)} {'>= 0' if s > 0 else '<= 0'}")


def _product_rule(ctx: Composition, product) -> tuple[bool, bool]:
    """Products of two varying factors with a known curvature: quad-over-lin u**2/v and the
    entropy forms u*log(u), u*log(u/v), u*log(v/u)."""
    factors = list(product.args)
    if len(factors) != 2:
        return UNKNOWN
    a, b = factors
    for square, inverse in ((a, b), (b, a)):
        if isinstance(square, sp.Pow) and square.exp == 2 and isinstance(inverse, sp.Pow) and inverse.exp == -1:
            u, v = square.base, inverse.base
            cu, cv = ctx.curvature(u), ctx.curvature(v)
            su, rv = ctx.sign(u), ctx.range(v)
            u_ok = cu == AFFINE or (cu[0] and su > 0) or (cu[1] and su < 0)
            if u_ok and cv[1] and rv is not None and rv.positive():
                return ctx.note(product, CONVEX, "quad-over-lin u**2/v is convex for v > 0, u affine and v concave")
    for u, logarithm in ((a, b), (b, a)):
        if not isinstance(logarithm, sp.log):
            continue
        w = logarithm.args[0]
        numerator, denominator = sp.fraction(sp.together(w))
        if ctx.curvature(u) != AFFINE or ctx.sign(u) <= 0:
            continue
        if is_zero(w - u):
            return ctx.note(product, CONVEX, "u*log(u) (negative entropy) is convex for u >= 0, u affine")
        rv = ctx.range(denominator)
        if is_zero(numerator - u) and ctx.curvature(denominator) == AFFINE and rv is not None and rv.positive():
            return ctx.note(product, CONVEX, "u*log(u/v) (relative entropy) is jointly convex for u >= 0, v > 0 affine")
        rn = ctx.range(numerator)
        if is_zero(denominator - u) and ctx.curvature(numerator) == AFFINE and rn is not None and rn.positive():
            return ctx.note(product, CONCAVE, "u*log(v/u) (minus relative entropy) is jointly concave for u >= 0, v > 0 affine")
    return UNKNOWN


def _is_norm(ctx: Composition, radicand) -> bool:
    """radicand = c + sum k_i*u_i**2 with c, k_i >= 0 constants and u_i affine: its square root
    is a Euclidean norm, hence convex."""
    terms = radicand.args if isinstance(radicand, sp.Add) else (radicand,)
    squares = 0
    for term in terms:
        if not ctx.has_var(term):
            if ctx.sign(term) <= 0 and term != 0:
                return False
            continue
        factors = term.args if isinstance(term, sp.Mul) else (term,)
        coefficient = sp.Mul(*(f for f in factors if not ctx.has_var(f)))
        varying = [f for f in factors if ctx.has_var(f)]
        if len(varying) != 1 or ctx.sign(coefficient) <= 0:
            return False
        f = varying[0]
        if not (isinstance(f, sp.Pow) and f.exp == 2 and ctx.curvature(f.base) == AFFINE):
            return False
        squares += 1
    return squares > 0


@composition_rule(sp.Pow)
def _pow_rule_dcp(ctx: Composition, expr):
    base, exponent = expr.args
    if ctx.has_var(exponent):
        if ctx.has_var(base):
            return UNKNOWN
        rb = ctx.range(base)
        if rb is None or not rb.positive():
            return UNKNOWN
        # b**e = exp(e*log(b)): convex when e*log(b) is convex.
        inner = ctx.curvature(exponent)
        scaled = inner if rb.lo >= 1 else (_flip(inner) if rb.hi <= 1 else (AFFINE if inner == AFFINE else UNKNOWN))
        if scaled[0]:
            return ctx.note(expr, CONVEX, "b**e = exp(e*log(b)), exp convex and increasing")
        return UNKNOWN
    if exponent == sp.Rational(1, 2) and _is_norm(ctx, base):
        return ctx.note(expr, CONVEX, "sqrt(c + sum of squares of affine terms) is a Euclidean norm")
    rb = ctx.range(base)
    if exponent.is_Integer:
        n = int(exponent)
        if n % 2 == 0 and n > 0:
            return ctx.compose(expr, Atom(True, False, (_mono_by_sign(rb), 0), f"x**{n} is convex, increasing for x >= 0"))
        if n > 0:
            if rb is not None and rb.nonneg():
                return ctx.compose(expr, Atom(True, False, (1, 0), f"x**{n} is convex and increasing for x >= 0"))
            if rb is not None and rb.nonpos():
                return ctx.compose(expr, Atom(False, True, (1, 0), f"x**{n} is concave and increasing for x <= 0"))
            return UNKNOWN
        if rb is not None and rb.positive():
            return ctx.compose(expr, Atom(True, False, (-1, 0), f"x**{n} is convex and decreasing for x > 0"))
        if rb is not None and rb.negative():
            if n % 2 == 0:
                return ctx.compose(expr, Atom(True, False, (1, 0), f"x**{n} is convex and increasing for x < 0"))
            return ctx.compose(expr, Atom(False, True, (-1, 0), f"x**{n} is concave and decreasing for x < 0"))
        return UNKNOWN
    re = ctx.range(exponent)
    if rb is None or re is None or rb.lo < 0:
        return UNKNOWN
    if re.lo >= 1:
        return ctx.compose(expr, Atom(True, False, (1, 0), "x**a is convex and increasing for x >= 0, a >= 1"))
    if re.lo >= 0 and re.hi <= 1:
        return ctx.compose(expr, Atom(False, True, (1, 0), "x**a is concave and increasing for x >= 0, 0 <= a <= 1"))
    if re.hi <= 0 and rb.positive():
        return ctx.compose(expr, Atom(True, False, (-1, 0), "x**a is convex and decreasing for x > 0, a <= 0"))
    return UNKNOWN


@composition_rule(sp.log)
def _log_rule_dcp(ctx: Composition, expr):
    arg = expr.args[0]
    # log(sum_i c_i*exp(u_i)) with c_i > 0 is log-sum-exp: convex and increasing in each u_i.
    terms = arg.args if isinstance(arg, sp.Add) else (arg,)
    exponents = []
    for term in terms:
        if not ctx.has_var(term):
            r = ctx.range(term)
            if r is None or not r.positive():
                break
            continue
        factors = term.args if isinstance(term, sp.Mul) else (term,)
        coefficient = sp.Mul(*(f for f in factors if not ctx.has_var(f)))
        varying = [f for f in factors if ctx.has_var(f)]
        rc = ctx.range(coefficient)
        if len(varying) != 1 or not isinstance(varying[0], sp.exp) or rc is None or not rc.positive():
            break
        exponents.append(varying[0].args[0])
    else:
        if exponents and all(ctx.curvature(u)[0] for u in exponents):
            return ctx.note(expr, CONVEX, "log of a positive sum of exponentials (log-sum-exp) is convex and increasing in each exponent")
    if isinstance(arg, sp.cosh):
        return _logcosh_atom_rule(ctx, logcosh(arg.args[0]))
    r = ctx.range(arg)
    if r is None or r.lo < 0:
        return UNKNOWN
    return ctx.compose(expr, Atom(False, True, (1,), "log is concave and increasing"))


def _logcosh_atom_rule(ctx, expr):
    return COMPOSITION_RULES[logcosh](ctx, expr)


@composition_rule(sp.Piecewise)
def _piecewise_rule_dcp(ctx: Composition, expr):
    pieces = [ctx.curvature(branch.expr) for branch in expr.args]
    convex, concave = all(p[0] for p in pieces), all(p[1] for p in pieces)
    if not any(ctx.has_var(branch.cond) for branch in expr.args):
        # The branch is chosen by the other inputs alone: for each of them, one piece applies.
        return ctx.note(expr, (convex, concave), "each branch, chosen by the other inputs, is") if (convex or concave) else UNKNOWN
    if len(expr.args) != 2 or not (convex or concave):
        return UNKNOWN
    (a, cond), (b, _) = expr.args
    if not isinstance(cond, (sp.Ge, sp.Gt, sp.Le, sp.Lt)):
        return UNKNOWN
    g = cond.lhs - cond.rhs if isinstance(cond, (sp.Ge, sp.Gt)) else cond.rhs - cond.lhs
    # Piecewise((a, g >= 0), (b, True)) equals Max(a, b) when a - b = q*g with q >= 0 free of
    # the wrt inputs (a >= b exactly where g >= 0), and Min(a, b) when q <= 0.
    try:
        q = sp.cancel(sp.together((a - b) / g))
    except Exception:  # noqa: BLE001
        return UNKNOWN
    if ctx.has_var(q):
        return UNKNOWN
    s = ctx.sign(q)
    if s > 0 and convex:
        return ctx.note(expr, CONVEX, f"equals Max of its convex branches, since they differ by {text(q, 20)}*({text(g, 30)})")
    if s < 0 and concave:
        return ctx.note(expr, CONCAVE, f"equals Min of its concave branches, since they differ by {text(q, 20)}*({text(g, 30)})")
    return UNKNOWN


def dcp_form(expr: sp.Expr) -> sp.Expr:
    """lossgen's scaling and cancelling helpers as the elementary forms the rules know."""
    rewrites = {
        xlogy: lambda x, z: sp.Mul(x, sp.log(z)),
        logratio: lambda a, b: sp.log(a / b),
        scaled_exp: lambda z, y: y * sp.exp(z),
        scaled_expm1: lambda z, y: y * sp.exp(z) - 1,
        exp_minus: lambda z, y: sp.exp(z) - y,
        sqrt1pm1: lambda x: sp.sqrt(1 + x) - 1,
    }
    return expr.replace(lambda e: type(e) in rewrites, lambda e: rewrites[type(e)](*e.args))


@dataclass(frozen=True)
class Proof:
    """A proof that the problem's sense holds: its method and a readable certificate."""

    method: str
    certificate: str


@dataclass(frozen=True)
class Refutation:
    """A point and a direction along which the midpoint inequality fails for the sense."""

    point: Mapping[str, float]
    direction: Mapping[str, float]
    value: float
    text: str

    def as_counterexample(self) -> dict[str, float]:
        return {**self.point, **{DIRECTION_PREFIX + k: v for k, v in self.direction.items()}}


def composition(problem: Problem) -> Proof | None:
    """Prove the sense by composition rules, on the formula as written or its stable form."""
    names = ", ".join(v.name for v in problem.variables)
    for form in dict.fromkeys((problem.expr, problem.stable)):
        e = dcp_form(form)
        ctx = Composition(e, problem.variables, problem.env)
        curvature = ctx.curvature(e)
        if not (curvature[0] if problem.sign > 0 else curvature[1]):
            continue
        lines = ctx.steps[-12:] or [f"{text(e)} is affine in {names}"]
        return Proof("composition", "\n".join([
            "by composition rules (curvature x monotonicity x sign):",
            *(f"  {line}" for line in lines),
            f"so the loss is {_CURVATURE_NAMES[curvature]} in {names}",
        ]))
    return None


# ============================================================================================
# Numeric evaluation: vectorized floats for searching, mpmath for rechecking
# ============================================================================================

class _vmax(sp.Function):
    """Max for numpy evaluation (lambdify's Max does not broadcast scalars with arrays)."""


class _vmin(sp.Function):
    """Min for numpy evaluation."""


def _np_sigmoid(x):
    x = np.asarray(x, dtype=float)
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1 / (1 + e), e / (1 + e))


def _np_softplus(x):
    x = np.asarray(x, dtype=float)
    return np.maximum(x, 0) + np.log1p(np.exp(-np.abs(x)))


def _np_logcosh(x):
    x = np.abs(np.asarray(x, dtype=float))
    return np.where(x < 20, np.log1p(2 * np.sinh(x / 2) ** 2), x - np.log(2) + np.log1p(np.exp(-2 * x)))


def _np_xlogy(x, z):
    x = np.asarray(x, dtype=float)
    return np.where(x == 0, 0.0, x * np.log(z))


NUMPY_FUNCTIONS = {
    "sigmoid": _np_sigmoid,
    "softplus": _np_softplus,
    "logsigmoid": lambda x: -_np_softplus(-np.asarray(x, dtype=float)),
    "logaddexp": np.logaddexp,
    "logcosh": _np_logcosh,
    "scaled_exp": lambda z, y: np.where(np.asarray(y) == 0, 0.0, np.exp(z + np.log(np.abs(y))) * np.sign(y)),
    "scaled_expm1": lambda z, y: y * np.exp(z) - 1,
    "exp_minus": lambda z, y: np.exp(z) - y,
    "sqrt1pm1": lambda x: x / (np.sqrt(1 + x) + 1),
    "xlogy": _np_xlogy,
    "logratio": lambda a, b: np.log(a / b),
    "expm1mx": lambda x: np.expm1(x) - x,
    "log1pmx": lambda x: np.log1p(x) - x,
    "erf": np.vectorize(math.erf, otypes=[float]),
    "erfc": np.vectorize(math.erfc, otypes=[float]),
    "loggamma": np.vectorize(lambda v: math.lgamma(v) if v > 0 else math.nan, otypes=[float]),
    "_vmax": lambda *a: functools.reduce(np.maximum, a),
    "_vmin": lambda *a: functools.reduce(np.minimum, a),
}


@functools.lru_cache(maxsize=512)
def numpy_function(expr: sp.Expr, symbols: tuple) -> Callable:
    """expr as a vectorized numpy function of `symbols` (NaN where undefined)."""
    e = expr.replace(lambda n: isinstance(n, sp.Max), lambda n: _vmax(*n.args))
    e = e.replace(lambda n: isinstance(n, sp.Min), lambda n: _vmin(*n.args))
    return sp.lambdify(symbols, e, modules=[NUMPY_FUNCTIONS, "numpy"])


def evaluate(fn: Callable, columns: list, size: int) -> np.ndarray:
    """Call a numpy_function on columns; always an array of `size` floats (NaN where undefined)."""
    with np.errstate(all="ignore"):
        try:
            out = fn(*columns)
        except (ValueError, TypeError, ZeroDivisionError, OverflowError):
            return np.full(size, np.nan)
    out = np.asarray(out)
    if np.iscomplexobj(out):
        out = np.where(np.abs(out.imag) == 0, out.real, np.nan)
    return np.broadcast_to(out.astype(float), (size,)).copy()


@functools.lru_cache(maxsize=512)
def mpmath_function(expr: sp.Expr, symbols: tuple) -> Callable:
    """expr in elementary form as an mpmath function (evaluated at the working precision)."""
    e = to_reference_form(expr)
    e = e.replace(
        lambda n: isinstance(n, sp.Heaviside),
        lambda n: sp.Piecewise((1, n.args[0] > 0), (n.args[1] if len(n.args) > 1 else sp.S.Half, sp.Eq(n.args[0], 0)), (0, True)),
    )
    return sp.lambdify(symbols, e, modules="mpmath")


AGREE_DIGITS = 20


def high_precision(fn: Callable, args, start: int = 30, limit: int = 1600):
    """fn(*args) in mpmath at a precision doubled until two evaluations agree to AGREE_DIGITS
    digits; None where it is undefined, not real, or does not settle."""
    previous = None
    digits = start
    while digits <= limit:
        with mpmath.workdps(digits):
            try:
                value = fn(*[mpmath.mpf(a) if isinstance(a, float) else a for a in args])
            except (ZeroDivisionError, ValueError, OverflowError, TypeError):
                return None
            if isinstance(value, mpmath.mpc):
                if value.imag != 0:
                    return None
                value = value.real
            value = mpmath.mpf(value)
        if not mpmath.isfinite(value):
            return None
        if previous is not None:
            if value == previous or abs(value - previous) <= mpmath.mpf(10) ** (-AGREE_DIGITS) * max(abs(value), abs(previous)):
                return value
        previous = value
        digits *= 2
    return None


def inside(interval: sp.Interval, value) -> bool:
    """Exact membership of a float (or exact rational) in an interval."""
    from fractions import Fraction

    v = Fraction(value) if not isinstance(value, Fraction) else value
    lo, hi = interval.start, interval.end
    if lo.is_finite:
        f = Fraction(int(lo.p), int(lo.q))
        if v < f or (v == f and interval.left_open):
            return False
    if hi.is_finite:
        f = Fraction(int(hi.p), int(hi.q))
        if v > f or (v == f and interval.right_open):
            return False
    return True


def special_values(interval: sp.Interval, dense: bool = False) -> list[float]:
    """Values a search should try: the ends, points near them, and a spread across the interval."""
    lo, hi = float(interval.start), float(interval.end)
    values: list[float] = []
    if math.isfinite(lo) and math.isfinite(hi):
        fractions = [1e-6, 1e-3, 0.01, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99, 0.999, 1 - 1e-6]
        if dense:
            fractions += list(np.linspace(0.02, 0.98, 49))
        values = [lo + (hi - lo) * f for f in fractions] + [lo, hi]
    else:
        offsets = [1e-6, 1e-3, 0.01, 0.1, 0.25, 0.5, 0.75, 1, 1.5, 2, 3, 4, 5, 7, 10, 20, 30, 50, 100, 300, 1000]
        if dense:
            offsets += list(np.linspace(0.05, 12, 60))
        if math.isfinite(lo):
            values = [lo] + [lo + o for o in offsets]
        elif math.isfinite(hi):
            values = [hi] + [hi - o for o in offsets]
        else:
            values = [0.0] + [s * o for o in offsets for s in (1, -1)]
    return sorted({v for v in values if math.isfinite(v) and inside(interval, v)})


def _random_values(interval: sp.Interval, count: int, rng: np.random.Generator) -> np.ndarray:
    """Random values inside an interval (candidates only: a counterexample is rechecked exactly)."""
    lo, hi = float(interval.start), float(interval.end)
    if math.isfinite(lo) and math.isfinite(hi):
        v = lo + (hi - lo) * rng.random(count)
    else:
        magnitude = np.where(rng.random(count) < 0.6, np.abs(rng.normal(0, 3, count)), 10 ** rng.uniform(-4, 3, count))
        if math.isfinite(lo):
            v = lo + magnitude
        elif math.isfinite(hi):
            v = hi - magnitude
        else:
            v = magnitude * rng.choice([-1.0, 1.0], count)
    keep = (v > lo) | ((v == lo) & (not interval.left_open))
    keep &= (v < hi) | ((v == hi) & (not interval.right_open))
    v = v[keep & np.isfinite(v)]
    return v if len(v) else np.array([_typical(interval)])


def sample_others(problem: Problem, count: int, rng: np.random.Generator) -> dict:
    """`count` combinations of values of the non-wrt symbols: defaults first, then ends, special
    values and random ones."""
    columns = {}
    for s in problem.others:
        interval = problem.domain[s]
        special = special_values(interval)
        random = _random_values(interval, count, rng)
        pick = rng.random(count) < 0.5
        column = np.where(pick, rng.choice(special, count), rng.choice(random, count)) if special else rng.choice(random, count)
        column[0] = problem.defaults.get(s, _typical(interval))
        if count > 1 and special:
            column[1] = special[0]
        if count > 2 and special:
            column[2] = special[-1]
        columns[s] = column.astype(float)
    return columns


# ============================================================================================
# 2. Refutation
# ============================================================================================

def _kink_roots(expr: sp.Expr, x: sp.Symbol) -> list[sp.Expr]:
    """Where in x the formula may have a kink or jump: roots of the arguments of Abs, sign and
    Heaviside, of differences of Max/Min arguments, and of Piecewise conditions (linear ones)."""
    gaps = []
    for node in sp.preorder_traversal(expr):
        if isinstance(node, (sp.Abs, sp.sign, sp.Heaviside)) and node.args[0].has(x):
            gaps.append(node.args[0])
        elif isinstance(node, (sp.Max, sp.Min)):
            gaps += [a - b for a, b in itertools.combinations(node.args, 2) if (a - b).has(x)]
        elif isinstance(node, Relational) and node.has(x):
            gaps.append(node.lhs - node.rhs)
    roots = []
    for g in gaps:
        g = g.replace(lambda n: isinstance(n, sp.Abs), lambda n: n.args[0])
        try:
            a = sp.expand(sp.diff(g, x))
            if a.has(x) or a == 0:
                continue
            r = sp.cancel(-(sp.expand(g) - a * x) / a)
        except Exception:  # noqa: BLE001
            continue
        if not r.has(x) and r not in roots:
            roots.append(r)
    # Abs(u) <= c and similar give two roots, u = c and u = -c.
    extra = []
    for node in sp.preorder_traversal(expr):
        if isinstance(node, Relational) and node.has(x):
            for ab in node.atoms(sp.Abs):
                if ab.has(x):
                    other = node.rhs if node.lhs == ab else (node.lhs if node.rhs == ab else None)
                    if other is not None:
                        for target in (other, -other):
                            g = ab.args[0] - target
                            a = sp.expand(sp.diff(g, x))
                            if a != 0 and not a.has(x):
                                extra.append(sp.cancel(-(sp.expand(g) - a * x) / a))
    return roots + [r for r in extra if r not in roots]


REFUTATION_SEED = 20240612


def _refutation_rows(problem: Problem, rng: np.random.Generator):
    """Sample points and directions: yields (columns {symbol: array}, direction [arrays])."""
    n_vars = len(problem.variables)
    smooth = not problem.expr.has(*NONSMOOTH)
    if n_vars == 1:
        x = problem.variables[0]
        interval = problem.domain[x]
        grid = np.array(special_values(interval, dense=True) + list(_random_values(interval, 40, rng)))
        others = sample_others(problem, 40, rng)
        n_theta = 40
        theta_names = list(others)
        roots = _kink_roots(problem.expr, x) if not smooth else []
        root_fns = [numpy_function(r, tuple(theta_names)) for r in roots]
        xs, thetas = [], []
        for t in range(n_theta):
            local = list(grid)
            for fn in root_fns:
                value = evaluate(fn, [np.array([others[s][t]]) for s in theta_names], 1)[0]
                if np.isfinite(value):
                    local += [value, value + 1e-3 * max(1.0, abs(value)), value - 1e-3 * max(1.0, abs(value))]
            xs += local
            thetas += [t] * len(local)
        xs = np.array(xs)
        thetas = np.array(thetas)
        lo, hi = float(interval.start), float(interval.end)
        room = np.minimum(xs - lo, hi - xs)
        steps = []
        for scale in (1e-3, 1e-2, 0.1, 0.5, 1.0, 2.0, 5.0):
            steps.append(np.minimum(scale * np.maximum(1.0, np.abs(xs)), 0.999 * room))
        for frac in (0.5, 0.9):
            steps.append(frac * np.where(np.isfinite(room), room, 10.0 * np.maximum(1.0, np.abs(xs))))
        d = np.concatenate(steps)
        xcol = np.tile(xs, len(steps))
        tcol = np.tile(thetas, len(steps))
        keep = d > 0
        columns = {s: others[s][tcol[keep]] for s in theta_names}
        columns[x] = xcol[keep]
        return columns, [d[keep]]
    # Several variables: random points, axis and random directions at several scales.
    count = 1500
    others = sample_others(problem, count, rng)
    columns = dict(others)
    for v in problem.variables:
        interval = problem.domain[v]
        special = special_values(interval)
        random = _random_values(interval, count, rng)
        columns[v] = np.where(rng.random(count) < 0.5, rng.choice(special, count), rng.choice(random, count)).astype(float)
    dirs = [np.eye(n_vars)[k] for k in range(n_vars)] + [rng.normal(size=n_vars) for _ in range(4)]
    all_columns = {s: [] for s in columns}
    all_dirs = [[] for _ in range(n_vars)]
    for u in dirs:
        u = u / np.linalg.norm(u)
        for scale in (1e-3, 1e-2, 0.1, 0.5, 1.0):
            room = np.full(count, np.inf)
            for k, v in enumerate(problem.variables):
                if u[k] == 0:
                    continue
                interval = problem.domain[v]
                lo, hi = float(interval.start), float(interval.end)
                room = np.minimum(room, np.minimum(columns[v] - lo, hi - columns[v]) / abs(u[k]))
            t = np.minimum(scale * np.maximum(1.0, np.max([np.abs(columns[v]) for v in problem.variables], axis=0)), 0.999 * room)
            for s in columns:
                all_columns[s].append(columns[s])
            for k in range(n_vars):
                all_dirs[k].append(t * u[k])
    columns = {s: np.concatenate(c) for s, c in all_columns.items()}
    direction = [np.concatenate(c) for c in all_dirs]
    keep = np.all([np.isfinite(d) for d in direction], axis=0) & (np.abs(np.sum([np.abs(d) for d in direction], axis=0)) > 0)
    return {s: c[keep] for s, c in columns.items()}, [d[keep] for d in direction]


def _curvature_rows(problem: Problem, rng: np.random.Generator):
    """Points where the (a.e.) Hessian has a direction of the wrong sign, with that direction at
    small steps: candidates a grid of second differences may step over."""
    variables = problem.variables
    symbols = tuple(problem.domain)
    try:
        hessian = [[sp.diff(problem.stable, a, b) for b in variables] for a in variables]
    except Exception:  # noqa: BLE001
        return None
    count = 3000
    columns = sample_others(problem, count, rng)
    for v in variables:
        interval = problem.domain[v]
        columns[v] = np.where(rng.random(count) < 0.5, rng.choice(special_values(interval, dense=True), count),
                              rng.choice(_random_values(interval, count, rng), count)).astype(float)
    args = [columns[s] for s in symbols]
    n = len(variables)
    h = np.zeros((count, n, n))
    for i in range(n):
        for j in range(n):
            h[:, i, j] = evaluate(numpy_function(hessian[i][j], symbols), args, count)
    ok = np.all(np.isfinite(h), axis=(1, 2))
    if not ok.any():
        return None
    h = h[ok] * problem.sign
    w, vecs = np.linalg.eigh(h)
    bad = w[:, 0] < -1e-12 * np.maximum(1.0, np.abs(w).max(axis=1))
    if not bad.any():
        return None
    order = np.argsort(w[bad, 0])[:200]
    picked = {s: columns[s][ok][bad][order] for s in columns}
    u = vecs[bad][order][:, :, 0]
    out_cols = {s: [] for s in picked}
    out_dirs = [[] for _ in range(n)]
    for scale in (1e-4, 1e-3, 1e-2, 1e-1):
        room = np.full(len(order), np.inf)
        for k, v in enumerate(variables):
            interval = problem.domain[v]
            lo, hi = float(interval.start), float(interval.end)
            with np.errstate(divide="ignore", invalid="ignore"):
                room = np.minimum(room, np.where(u[:, k] != 0, np.minimum(picked[v] - lo, hi - picked[v]) / np.abs(u[:, k]), np.inf))
        t = np.minimum(scale * np.maximum(1.0, np.max([np.abs(picked[v]) for v in variables], axis=0)), 0.5 * room)
        for s in picked:
            out_cols[s].append(picked[s])
        for k in range(n):
            out_dirs[k].append(t * u[:, k])
    return {s: np.concatenate(c) for s, c in out_cols.items()}, [np.concatenate(c) for c in out_dirs]


def _second_differences(problem: Problem, columns: dict, direction: list) -> np.ndarray:
    """sign * (L(x + d) + L(x - d) - 2 L(x)) relative to the size of the terms, NaN where undefined."""
    symbols = tuple(problem.domain)
    fn = numpy_function(problem.stable, symbols)
    size = len(direction[0])
    index = {v: k for k, v in enumerate(problem.variables)}

    def at(shift):
        args = [columns[s] + shift * direction[index[s]] if s in index else columns[s] for s in symbols]
        return evaluate(fn, args, size)

    f0, fp, fm = at(0.0), at(1.0), at(-1.0)
    with np.errstate(all="ignore"):
        g = problem.sign * (fp + fm - 2 * f0)
        scale = np.abs(fp) + np.abs(fm) + 2 * np.abs(f0)
        relative = g / (scale + 1e-300)
    relative[~np.isfinite(relative) | (g >= -1e-9 * scale)] = np.nan
    return relative


def confirm(problem: Problem, point: Mapping[sp.Symbol, float], direction: Mapping[sp.Symbol, float]):
    """The exact second difference sign*(L(x+d) + L(x-d) - 2L(x)) in high precision, with the
    three points checked to lie in the domain; None unless it is certainly negative."""
    for v, d in direction.items():
        for t in (point[v], point[v] + d, point[v] - d):
            if not (inside(problem.domain[v], t) if isinstance(t, float) else True):
                return None
        from fractions import Fraction

        for t in (Fraction(point[v]) + Fraction(d), Fraction(point[v]) - Fraction(d)):
            if not inside(problem.domain[v], t):
                return None
    for s, value in point.items():
        if not inside(problem.domain[s], value):
            return None
    symbols = tuple(problem.domain)
    f = mpmath_function(problem.expr, symbols)
    k = len(symbols)
    positions = [symbols.index(v) for v in direction]

    def second_difference(*values):
        base = list(values[:k])
        steps = values[k:]
        plus, minus = list(base), list(base)
        for i, step in zip(positions, steps):
            plus[i] = base[i] + step
            minus[i] = base[i] - step
        return problem.sign * (f(*plus) + f(*minus) - 2 * f(*base))

    value = high_precision(second_difference, [float(point[s]) for s in symbols] + [float(direction[v]) for v in direction])
    if value is None or value >= 0:
        return None
    return value


def negative_curvature(problem: Problem, point: Mapping[sp.Symbol, float], direction: Mapping[sp.Symbol, float]) -> bool:
    """Whether sign * d^T H d < 0 at the point (high precision), for a loss smooth there."""
    hessian = problem.hessian
    if hessian is None:
        return False
    symbols = tuple(problem.domain)
    d = [float(direction[v]) for v in problem.variables]
    form = sum(hessian[i, j] * sp.Float(d[i], 30) * sp.Float(d[j], 30)
               for i in range(len(d)) for j in range(len(d)) if d[i] and d[j])
    value = high_precision(mpmath_function(problem.sign * form, symbols), [float(point[s]) for s in symbols])
    return value is not None and value < 0


def _counterexample_point(problem: Problem, point: Mapping[sp.Symbol, float]) -> dict[str, float]:
    """Every input and param, by name: the point's values, fixed values, and for names the
    formula does not use, a value in their domain."""
    out = {}
    for name in problem.order:
        sym = next((s for s in problem.domain if s.name == name), None)
        if sym is not None and sym in point:
            out[name] = float(point[sym])
        elif name in problem.fixed:
            out[name] = float(problem.fixed[name])
        else:
            out[name] = float(next((v for s, v in problem.defaults.items() if s.name == name), _typical(problem.intervals[name])))
    return out


def refutation(problem: Problem) -> Refutation | None:
    """Search for a point and direction where the sense's midpoint inequality fails; every
    candidate is rechecked in high precision before it is reported."""
    if not depends(problem.expr, problem.variables):
        return None
    rng = np.random.default_rng(REFUTATION_SEED)
    batches = []
    if not problem.expr.has(*NONSMOOTH) or len(problem.variables) > 1:
        curved = _curvature_rows(problem, rng)
        if curved is not None:
            batches.append(curved)
    batches.append(_refutation_rows(problem, rng))
    symbols = tuple(problem.domain)
    fallback = None
    for columns, direction in batches:
        relative = _second_differences(problem, columns, direction)
        candidates = np.flatnonzero(np.isfinite(relative))
        if not len(candidates):
            continue
        # Prefer counterexamples that are easy to read: other values at their defaults, or at
        # the round values of special_values, before random ones; then the clearest violation.
        penalty = np.zeros(len(relative))
        for s in problem.others:
            special = special_values(problem.domain[s])
            penalty += np.where(columns[s] == problem.defaults.get(s, np.nan), 0, np.where(np.isin(columns[s], special), 1, 3))
        clear = candidates[relative[candidates] < -1e-6]
        order = np.concatenate([clear[np.lexsort((relative[clear], penalty[clear]))], candidates[np.argsort(relative[candidates])]])
        seen = set()
        tried = 0
        for i in order:
            point = {s: float(columns[s][i]) for s in symbols}
            step = {v: float(direction[k][i]) for k, v in enumerate(problem.variables)}
            key = tuple(round(p, 6) for p in point.values())
            if key in seen:
                continue
            seen.add(key)
            tried += 1
            if tried > 25:
                break
            value = confirm(problem, point, step)
            if value is None:
                continue
            if problem.hessian is not None and not negative_curvature(problem, point, step):
                # Valid, but a point where the Hessian itself is negative reads better: keep looking.
                fallback = fallback or (point, step, value)
                continue
            return _refutation(problem, point, step, value)
    if fallback is not None:
        return _refutation(problem, *fallback)
    return None


def _refutation(problem: Problem, point, step, value) -> Refutation:
    """The Refutation of a confirmed point and direction, with its text."""
    where = _counterexample_point(problem, point)
    moved = ", ".join(f"{v.name} +- {d:.6g}" for v, d in step.items())
    at = ", ".join(f"{k}={v:.6g}" for k, v in where.items())
    relation = "< 0" if problem.sign > 0 else "> 0"
    curvature = " and d^T H d has the same sign there" if problem.hessian is not None and negative_curvature(problem, point, step) else ""
    message = (f"L(x + d) + L(x - d) - 2 L(x) = {mpmath.nstr(problem.sign * value, 6)} {relation} at {at}, "
               f"moving {moved}{curvature} (rechecked in mpmath)")
    return Refutation(where, {v.name: d for v, d in step.items()}, float(problem.sign * value), message)


# ============================================================================================
# 3. Second-order proofs
# ============================================================================================

def smooth_in(expr: sp.Expr, variables) -> bool:
    """No kink or jump node (Abs, Max, Min, Piecewise, sign, Heaviside) depends on the variables."""
    return not any(isinstance(n, NONSMOOTH) and depends(n, variables) for n in sp.preorder_traversal(expr))


def _second_derivative_proof(problem: Problem) -> Proof | None:
    x = problem.variables[0]
    for form in dict.fromkeys((problem.expr, problem.stable)):
        if not smooth_in(form, problem.variables):
            continue
        d2 = sp.diff(form, x, 2)
        if is_zero(d2):
            return Proof("second_order", f"d2L/d{x}2 = 0 identically and L is smooth in {x}, so L is affine in {x}")
        reason = prove_nonnegative(problem.sign * d2, problem.env)
        if reason:
            relation = ">= 0" if problem.sign > 0 else "<= 0"
            return Proof("second_order", f"d2L/d{x}2 = {text(d2, 160)} {relation} on the whole domain:\n  {reason}")
    return None


def _hessian_minors_proof(problem: Problem) -> Proof | None:
    """Several wrt inputs: every principal minor of the (signed) Hessian is >= 0, so it is
    positive semidefinite on the domain."""
    variables = problem.variables
    n = len(variables)
    if n > 3:
        return None
    for form in dict.fromkeys((problem.expr, problem.stable)):
        if not smooth_in(form, variables):
            continue
        hessian = sp.Matrix(n, n, lambda i, j: sp.diff(form, variables[i], variables[j]))
        if all(is_zero(h) for h in hessian):
            return Proof("second_order", "the Hessian is identically 0 and L is smooth, so L is affine")
        signed = problem.sign * hessian
        lines = []
        for k in range(1, n + 1):
            for subset in itertools.combinations(range(n), k):
                minor = signed.extract(list(subset), list(subset)).det(method="berkowitz")
                reason = prove_nonnegative(minor, problem.env)
                if reason is None:
                    break
                names = ",".join(variables[i].name for i in subset)
                lines.append(f"  minor [{names}] = {text(minor, 100)} >= 0: {reason}")
            else:
                continue
            break
        else:
            which = "Hessian" if problem.sign > 0 else "negated Hessian"
            return Proof("second_order", "\n".join([f"every principal minor of the {which} is >= 0 on the domain, so it is positive semidefinite:", *lines]))
    return None


# --- losses with kinks in one variable: pieces, breakpoints, continuity, slopes ----------------

@dataclass(frozen=True)
class Segmentation:
    """A loss of one variable x, for one case of the other values, cut at breakpoints
    b_1 <= ... <= b_m into smooth pieces: pieces[i] applies on (b_i, b_{i+1}) (b_0 = -oo,
    b_{m+1} = oo), at_points[k] lists the values the loss may take at b_k, labels[k] the
    conditions that put a breakpoint there."""

    variable: sp.Symbol
    env: Mapping[sp.Symbol, Range]
    case: str
    breakpoints: tuple[sp.Expr, ...]
    strict: tuple[bool, ...]
    pieces: tuple[sp.Expr, ...]
    at_points: tuple[tuple[sp.Expr, ...], ...]
    labels: tuple[tuple[str, ...], ...]


def _gap_key(g: sp.Expr):
    e = sp.expand(g)
    return frozenset((e, sp.expand(-e)))


def _equation_text(g: sp.Expr, x: sp.Symbol) -> str:
    """g = 0 written with the terms in x on the left: "p*y = 1", "p = y + delta"."""
    terms = sp.Add.make_args(sp.expand(g))
    left = sp.Add(*(t for t in terms if t.has(x)))
    right = -sp.Add(*(t for t in terms if not t.has(x)))
    if left.could_extract_minus_sign():
        left, right = -left, -right
    return f"{text(left, 60)} = {text(right, 60)}"


def _atom_label(atom, x) -> str:
    if any(isinstance(n, NONSMOOTH) for n in sp.preorder_traversal(atom)):
        lhs, rhs = (atom.lhs, atom.rhs) if atom.lhs.has(x) else (atom.rhs, atom.lhs)
        return f"{text(lhs, 60)} = {text(rhs, 60)}"
    return _equation_text(atom.lhs - atom.rhs, x)


def _as_piecewise(node, x, labels) -> sp.Expr:
    """Abs, Max, Min, sign and Heaviside of something in x, as a Piecewise."""
    def cond(rel):
        labels.setdefault(_gap_key(rel.lhs - rel.rhs), _equation_text(rel.lhs - rel.rhs, x))
        return rel

    if isinstance(node, sp.Abs):
        u = node.args[0]
        return sp.Piecewise((u, cond(sp.Ge(u, 0))), (-u, True))
    if isinstance(node, sp.sign):
        u = node.args[0]
        return sp.Piecewise((1, cond(sp.Gt(u, 0))), (-1, cond(sp.Lt(u, 0))), (0, True))
    if isinstance(node, sp.Heaviside):
        u = node.args[0]
        h0 = node.args[1] if len(node.args) > 1 else sp.S.Half
        return sp.Piecewise((1, cond(sp.Gt(u, 0))), (h0, cond(sp.Eq(u, 0))), (0, True))
    args = list(node.args)
    relation = sp.Ge if isinstance(node, sp.Max) else sp.Le
    branches = []
    for i, a in enumerate(args[:-1]):
        branches.append((a, sp.And(*(cond(relation(a, b)) for b in args[i + 1:]))))
    branches.append((args[-1], True))
    return sp.Piecewise(*branches)


def _expand_condition(c, x, labels, label=None):
    """A condition with no Abs/Max/Min/Piecewise of x inside its comparisons (case analysis)."""
    if c in (sp.true, sp.false) or not c.has(x):
        return c
    if isinstance(c, (sp.And, sp.Or, sp.Not)):
        return type(c)(*(_expand_condition(a, x, labels) for a in c.args))
    if not isinstance(c, Relational):
        return c
    label = label or labels.get(_gap_key(c.lhs - c.rhs)) or _atom_label(c, x)
    inner = next((n for n in sp.preorder_traversal(c) if isinstance(n, NONSMOOTH) and n.has(x)), None)
    if inner is None:
        labels.setdefault(_gap_key(c.lhs - c.rhs), label)
        return c
    if not isinstance(inner, sp.Piecewise):
        inner_pw = _as_piecewise(inner, x, labels)
    else:
        inner_pw = inner
    options, previous = [], []
    for value, when in inner_pw.args:
        when = _expand_condition(when, x, labels)
        options.append(sp.And(when, *(sp.Not(p) for p in previous), _expand_condition(c.xreplace({inner: value}), x, labels, label)))
        previous.append(when)
    return sp.Or(*options)


def _unfold(expr: sp.Expr, x: sp.Symbol, labels: dict) -> sp.Expr | None:
    """One Piecewise in x whose conditions are comparisons of expressions free of kinks."""
    # Conditions first, so that a kink is named after the condition as written (|p - y| = delta).
    e = expr.replace(lambda n: isinstance(n, sp.Piecewise) and n.has(x),
                     lambda n: sp.Piecewise(*((v, _expand_condition(c, x, labels)) for v, c in n.args)))
    e = e.replace(lambda n: isinstance(n, NONSMOOTH) and not isinstance(n, sp.Piecewise) and n.has(x),
                  lambda n: _as_piecewise(n, x, labels))
    return sp.piecewise_fold(e)


_REL_TRUTH = {  # truth of "g op 0" given the sign of g (+1, -1, or 0 for g = 0)
    sp.Ge: lambda s: s >= 0, sp.Gt: lambda s: s > 0, sp.Le: lambda s: s <= 0, sp.Lt: lambda s: s < 0,
    sp.Eq: lambda s: s == 0, sp.Ne: lambda s: s != 0,
}


def _relation_kind(atom):
    for kind in _REL_TRUTH:
        if isinstance(atom, kind):
            return kind
    return None


def _split_symbol(a: sp.Expr, env) -> tuple[sp.Symbol, sp.Expr] | None:
    """A symbol to split the domain on so that `a` has one sign in each part: a linear in it."""
    symbols = [s for s in a.free_symbols if s in env]
    if len(symbols) != 1:
        return None
    s = symbols[0]
    try:
        roots = sp.solve(a, s)
    except Exception:  # noqa: BLE001
        return None
    if len(roots) != 1 or roots[0].free_symbols or not sp.diff(a, s).is_number:
        return None
    r = float(roots[0])
    box = env[s]
    if not (box.lo < r < box.hi) and not (box.lo == r or box.hi == r):
        return None
    return s, roots[0]


def _split_env(env, s, r):
    """The domain of s cut at r into (below, at, above); None for an empty part."""
    box = env[s]
    v = float(r)
    below = dict(env) if box.lo < v else None
    if below is not None:
        below[s] = Range(box.lo, v, box.lo_open, True)
    above = dict(env) if box.hi > v else None
    if above is not None:
        above[s] = Range(v, box.hi, True, box.hi_open)
    at = (box.lo < v < box.hi) or (box.lo == v and not box.lo_open) or (box.hi == v and not box.hi_open)
    return below, at, above


def segment(expr: sp.Expr, x: sp.Symbol, env: Mapping[sp.Symbol, Range], depth: int = 0, case: str = "") -> list[Segmentation] | None:
    """Cut a loss of one variable x into smooth pieces at breakpoints, for every case of the
    other values (the domain is split where a slope's sign changes, as for y in the hinge).
    None when a condition is not linear in x or the breakpoints cannot be ordered."""
    labels: dict = {}
    try:
        folded = _unfold(expr, x, labels)
    except Exception:  # noqa: BLE001 - an unexpected form: the analysis declines
        return None
    branches = list(folded.args) if isinstance(folded, sp.Piecewise) else [(folded, sp.true)]
    if any(not smooth_in(v, (x,)) for v, _ in branches):
        return None
    atoms = set()
    for _, c in branches:
        if isinstance(c, sp.Basic) and c not in (sp.true, sp.false):
            atoms |= {a for a in c.atoms(Relational)}
    truth: dict = {}
    linear = []
    for atom in atoms:
        kind = _relation_kind(atom)
        if kind is None:
            return None
        g = atom.lhs - atom.rhs
        if not g.has(x):
            r = bound(g, env)
            if r is None:
                return None
            sign = 1 if r.positive() else (-1 if r.negative() else (0 if r.lo == 0 == r.hi else None))
            if sign is None:
                return _split_case(expr, x, env, depth, case, g)
            truth[atom] = sp.true if _REL_TRUTH[kind](sign) else sp.false
            continue
        a = sp.expand(sp.diff(g, x))
        if a.has(x):
            return None
        b = sp.expand(g - a * x)
        if b.has(x):
            return None
        ra = bound(a, env)
        if ra is None:
            return None
        if not (ra.positive() or ra.negative()):
            return _split_case(expr, x, env, depth, case, a)
        root = sp.cancel(-b / a)
        linear.append((atom, kind, 1 if ra.positive() else -1, root, labels.get(_gap_key(g), _equation_text(g, x))))
    # Distinct roots, ordered for every value of the other symbols.
    roots: list[sp.Expr] = []
    for *_, root, _ in linear:
        if not any(is_zero(root - r) for r in roots):
            roots.append(root)
    m = len(roots)
    relation = {}
    for i, j in itertools.permutations(range(m), 2):
        r = bound(roots[i] - roots[j], env)
        if r is None:
            return None
        relation[i, j] = "<" if r.negative() else ("<=" if r.nonpos() else (">" if r.positive() else (">=" if r.nonneg() else None)))
        if relation[i, j] is None:
            return None
    order = sorted(range(m), key=functools.cmp_to_key(lambda i, j: -1 if relation[i, j] in ("<", "<=") else 1))
    for a_, b_ in itertools.combinations(order, 2):
        if relation[a_, b_] not in ("<", "<="):
            return None
    position = {i: order.index(i) for i in range(m)}
    sorted_roots = [roots[i] for i in order]
    strict = tuple(relation[order[k], order[k + 1]] == "<" for k in range(m - 1))
    atom_pos = []
    for atom, kind, sigma, root, label in linear:
        i = next(i for i, r in enumerate(roots) if is_zero(root - r))
        atom_pos.append((atom, kind, sigma, position[i], label))

    def active(assignment) -> int | None:
        mapping = dict(truth)
        mapping.update(assignment)
        for k, (_, c) in enumerate(branches):
            value = c.xreplace(mapping) if isinstance(c, sp.Basic) else c
            if value is sp.true or value is True:
                return k
            if value is not sp.false and value is not False:
                return None
        return None

    pieces = []
    for s in range(m + 1):
        assignment = {atom: (sp.true if _REL_TRUTH[kind](sigma * (1 if j < s else -1)) else sp.false) for atom, kind, sigma, j, _ in atom_pos}
        k = active(assignment)
        if k is None:
            return None
        pieces.append(branches[k][0])

    def may_coincide(j, k) -> bool:
        lo, hi = min(j, k), max(j, k)
        return all(not strict[t] for t in range(lo, hi))

    at_points, point_labels = [], []
    for k in range(m):
        options = []
        ambiguous = []
        for atom, kind, sigma, j, _ in atom_pos:
            side = sp.true if _REL_TRUTH[kind](sigma * (1 if j < k else -1)) else sp.false
            equal = sp.true if _REL_TRUTH[kind](0) else sp.false
            if j == k:
                options.append({atom: equal})
            elif may_coincide(j, k) and side != equal:
                ambiguous.append((atom, side, equal))
            else:
                options.append({atom: side})
        base = {}
        for o in options:
            base.update(o)
        if len(ambiguous) > 8:
            return None
        values = []
        for choice in itertools.product(*[(a[1], a[2]) for a in ambiguous]):
            assignment = dict(base)
            assignment.update({a[0]: v for a, v in zip(ambiguous, choice)})
            idx = active(assignment)
            if idx is None:
                return None
            if branches[idx][0] not in values:
                values.append(branches[idx][0])
        at_points.append(tuple(values))
        point_labels.append(tuple(dict.fromkeys(label for atom, kind, sigma, j, label in atom_pos if j == k)))
    # A breakpoint with the same piece on both sides and at it is no breakpoint at all.
    k = 0
    while k < len(sorted_roots):
        if pieces[k] == pieces[k + 1] and all(v == pieces[k] for v in at_points[k]):
            del sorted_roots[k], pieces[k + 1], at_points[k], point_labels[k]
            strict = _merge_strict(strict, k)
        else:
            k += 1
    return [Segmentation(x, types.MappingProxyType(dict(env)), case, tuple(sorted_roots), strict, tuple(pieces), tuple(at_points), tuple(point_labels))]


def _merge_strict(strict: tuple, k: int) -> tuple:
    """Strictness of consecutive breakpoints after breakpoint k is removed."""
    items = list(strict)
    if not items:
        return ()
    if k == 0:
        return tuple(items[1:])
    if k >= len(items):
        return tuple(items[:-1])
    return tuple(items[:k - 1] + [items[k - 1] and items[k]] + items[k + 1:])


def _split_case(expr, x, env, depth, case, a) -> list[Segmentation] | None:
    """Split the domain where `a` (free of x) changes sign, and segment each part."""
    if depth >= 2:
        return None
    split = _split_symbol(a, env)
    if split is None:
        return None
    s, r = split
    below, at, above = _split_env(env, s, r)
    out = []
    for part, sub, name in ((below, None, f"{s} < {r}"), (above, None, f"{s} > {r}")):
        if part is not None:
            found = segment(expr, x, part, depth + 1, ", ".join(filter(None, (case, name))))
            if found is None:
                return None
            out += found
    if at:
        rest = {k: v for k, v in env.items() if k != s}
        found = segment(expr.xreplace({s: r}), x, rest, depth + 1, ", ".join(filter(None, (case, f"{s} = {r}"))))
        if found is None:
            return None
        out += found
    return out


def _outside(b: sp.Expr, domain: Range, env) -> bool:
    """Whether a breakpoint lies outside (or on the edge of) x's domain for every other value."""
    r = bound(b, env)
    if r is None:
        return False
    return r.hi <= domain.lo or r.lo >= domain.hi


def prove_on_segment(expr: sp.Expr, seg: Segmentation, i: int, strict: bool = False) -> str | None:
    """expr >= 0 (> 0) on the open segment i of a segmentation: over x's whole domain, or from
    the segment's ends, writing x = b + s with s >= 0 (or x = b - s)."""
    x = seg.variable
    reason = prove_nonnegative(expr, seg.env, strict=strict)
    if reason:
        return reason
    s = sp.Dummy("s", nonnegative=True)
    left = seg.breakpoints[i - 1] if i > 0 else None
    right = seg.breakpoints[i] if i < len(seg.breakpoints) else None
    width = INF
    if left is not None and right is not None:
        r = bound(right - left, seg.env)
        width = r.hi if r is not None else INF
    env = dict(seg.env)
    env[s] = Range(0.0, width, False, True)
    for end, sign in ((left, 1), (right, -1)):
        if end is None:
            continue
        moved = expr.xreplace({x: end + sign * s})
        reason = prove_nonnegative(moved, env, strict=strict)
        if reason:
            return f"with {x} = {text(end, 40)} {'+' if sign > 0 else '-'} s, s >= 0: {reason}"
    return None


def _segment_outside(seg: Segmentation, i: int, domain: Range, others) -> bool:
    """Whether segment i (between breakpoints i-1 and i) misses x's domain for every other value."""
    if i > 0:
        start = bound(seg.breakpoints[i - 1], others)
        if start is not None and start.lo >= domain.hi:
            return True
    if i < len(seg.breakpoints):
        end = bound(seg.breakpoints[i], others)
        if end is not None and end.hi <= domain.lo:
            return True
    return False


def _segmented_proof(problem: Problem) -> Proof | None:
    """A loss with kinks in one variable is convex when every piece is convex on its segment,
    the loss is continuous at every breakpoint, and its slope does not decrease across it."""
    x = problem.variables[0]
    segmentations = segment(problem.expr, x, problem.env)
    if not segmentations:
        return None
    domain = problem.env[x]
    lines = []
    for seg in segmentations:
        others = {k: v for k, v in seg.env.items() if k != x}
        for i, piece in enumerate(seg.pieces):
            if _segment_outside(seg, i, domain, others):
                continue
            d2 = problem.sign * sp.diff(piece, x, 2)
            if prove_on_segment(d2, seg, i) is None:
                return None
        jumps = []
        for k, b in enumerate(seg.breakpoints):
            if _outside(b, domain, others):
                continue
            left, right = seg.pieces[k], seg.pieces[k + 1]
            value = left.xreplace({x: b})
            if not is_zero(value - right.xreplace({x: b})):
                return None
            if not all(is_zero(v.xreplace({x: b}) - value) for v in seg.at_points[k]):
                return None
            jump = sp.diff(right, x).xreplace({x: b}) - sp.diff(left, x).xreplace({x: b})
            if prove_nonnegative(problem.sign * jump, others) is None:
                return None
            jumps.append(text(sp.simplify(jump) if _ops(jump) < 60 else jump, 40))
        where = ", ".join(f"{x} = {text(b, 40)}" for b in seg.breakpoints) or "none"
        slopes = f"its slope jumps by {', '.join(jumps)} {'>= 0' if problem.sign > 0 else '<= 0'}" if jumps else "no breakpoint lies inside the domain"
        prefix = f"when {seg.case}: " if seg.case else ""
        lines.append(f"  {prefix}pieces {', '.join(text(p, 40) for p in seg.pieces)} split at {where}; each piece has "
                     f"d2L/d{x}2 {'>= 0' if problem.sign > 0 else '<= 0'}; L is continuous there and {slopes}")
    word = "convex" if problem.sign > 0 else "concave"
    return Proof("second_order", "\n".join([f"piecewise in {x}: {word} pieces, continuous, with {'non-decreasing' if problem.sign > 0 else 'non-increasing'} slope at each breakpoint", *lines]))


def second_order(problem: Problem) -> Proof | None:
    """Prove the sense from second derivatives (see the module docstring)."""
    if len(problem.variables) == 1:
        if smooth_in(problem.expr, problem.variables) or smooth_in(problem.stable, problem.variables):
            return _second_derivative_proof(problem)
        return _segmented_proof(problem)
    return _hessian_minors_proof(problem)


# ============================================================================================
# The registry and the verdict
# ============================================================================================

@dataclass(frozen=True)
class Analysis:
    """One registered analysis: kind "proof" (answers a Proof) or "refutation" (a Refutation)."""

    name: str
    kind: str
    run: Callable[[Problem], object]


# Time allowed to one analysis of one sense before it counts as "cannot decide".
ANALYSIS_SECONDS = 6.0

# Cheapest first; the first answer decides a sense.
ANALYSES: list[Analysis] = [
    Analysis("composition", "proof", composition),
    Analysis("refutation", "refutation", refutation),
    Analysis("second_order", "proof", second_order),
]


def decide(problem: Problem, kinds: tuple[str, ...] = ("proof", "refutation")):
    """The first answer of the registered analyses of the given kinds for the problem's sense:
    (analysis name, Proof | Refutation), or None. An analysis that fails unexpectedly counts as
    "cannot decide" (set LOSSGEN_DEBUG=1 to see the error instead)."""
    for analysis in ANALYSES:
        if analysis.kind not in kinds:
            continue
        try:
            with time_limit(ANALYSIS_SECONDS):
                answer = analysis.run(problem)
        except Exception:  # noqa: BLE001 - an analysis may decline (or run out of time), never crash the verdict
            if os.environ.get("LOSSGEN_DEBUG"):
                raise
            answer = None
        if answer is not None:
            return analysis.name, answer
    return None


def _verdict(problem: Problem) -> Convexity:
    convex = decide(problem)
    concave_problem = problem.negated()
    if convex is not None and isinstance(convex[1], Proof):
        # Convex; affine too if concave (a refutation of concavity, usually cheap, settles it).
        concave = decide(concave_problem)
        if concave is not None and isinstance(concave[1], Proof):
            method = convex[0] if convex[0] == concave[0] else f"{convex[0]}+{concave[0]}"
            return Convexity("affine", method, f"convex:\n{_indent(convex[1].certificate)}\nconcave:\n{_indent(concave[1].certificate)}")
        return Convexity("convex", convex[0], convex[1].certificate)
    if convex is not None:
        refuted = convex[1]
        concave = decide(concave_problem)
        if concave is None:
            return Convexity("unknown", "refutation", f"not convex: {refuted.text}; concavity neither proved nor refuted",
                             refuted.as_counterexample())
        if isinstance(concave[1], Proof):
            return Convexity("concave", concave[0], concave[1].certificate, refuted.as_counterexample())
        return Convexity("neither", "refutation", f"not convex: {refuted.text}\nnot concave: {concave[1].text}",
                         refuted.as_counterexample(), concave[1].as_counterexample())
    concave = decide(concave_problem, ("proof",))
    if concave is not None:
        return Convexity("concave", concave[0], concave[1].certificate)
    return Convexity("unknown", "none", "no analysis could prove or refute convexity")


def _indent(block: str) -> str:
    return "\n".join("  " + line for line in block.splitlines())


@functools.lru_cache(maxsize=512)
def _cached_verdict(loss, fixed: tuple) -> Convexity:
    if getattr(loss.spec, "rowwise", False):
        return _rowwise_verdict(loss, dict(fixed))
    node = unknown_node(loss.expr)
    if node is not None:
        return Convexity("unknown", "none", f"no convexity rule for {node}")
    problem = make_problem(loss, dict(fixed))
    if not depends(problem.expr, problem.variables):
        names = ", ".join(v.name for v in problem.variables)
        return Convexity("affine", "composition", f"with these values the loss does not depend on {names}")
    return _verdict(problem)


def analyze_convexity(loss, fixed: Mapping[str, float]) -> Convexity:
    """Convexity of `loss` in its wrt inputs jointly, for all values of the other inputs and
    params in their domains, or at the values in `fixed` (cached per loss and fixed values)."""
    fixed = dict(fixed)
    make_problem_check(loss, fixed)
    return _cached_verdict(loss, tuple(sorted((k, float(v)) for k, v in fixed.items())))


def make_problem_check(loss, fixed: Mapping[str, float]) -> None:
    """Raise SpecError for a fixed value that is not an input or param, a wrt input, not a
    finite number, or outside its domain (before anything is cached)."""
    from .errors import SpecError

    for name, value in fixed.items():
        if name not in loss.spec.symbols:
            raise SpecError(f"convexity: {name!r} is not an input or param of {loss.name!r}")
        if name in loss.wrt:
            raise SpecError(f"convexity: {name!r} is a wrt input; fix only other inputs and params")
        if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)) or not math.isfinite(value):
            raise SpecError(f"convexity: {name}={value!r} is not a finite number")
        if not loss.domain[name].contains(exact_number(value)):
            raise SpecError(f"convexity: {name}={value} lies outside its domain {loss.domain[name]}")


# --- row-wise aggregates ------------------------------------------------------------------
# Inside an aggregate the wrt symbol stands for one class element, a linear function of the
# whole row, so the usual composition rules hold with the row as the variable: a sum, mean or
# take of convex bodies is convex (non-negative linear maps), logsumexp and max are convex
# and increasing in every element, and min is concave and increasing.

from . import rowwise as _rowwise  # noqa: E402

RANGE_RULES.update({
    _rowwise.RowSum: lambda node, a: Range(0.0, INF) if a.lo >= 0 else (Range(-INF, 0.0) if a.hi <= 0 else FULL),
    _rowwise.RowMean: lambda node, a: a,
    _rowwise.RowMax: lambda node, a: a,
    _rowwise.RowMin: lambda node, a: a,
    _rowwise.Take: lambda node, a, y: a,
    _rowwise.RowLogSumExp: lambda node, a: Range(a.lo, INF),
    _rowwise.OneHot: lambda node, y: Range(0.0, 1.0),
})


@function_rule(_rowwise.RowSum, _rowwise.RowMean)
def _row_sum_atom(r):
    return Atom(True, True, (1,), "a sum over the classes keeps the curvature of its terms")


@function_rule(_rowwise.Take)
def _take_atom(r, label):
    return Atom(True, True, (1, 0), "take selects one class: linear in the row")


@function_rule(_rowwise.RowLogSumExp)
def _row_logsumexp_atom(r):
    return Atom(True, False, (1,), "logsumexp of a row is convex and increasing in every element")


@function_rule(_rowwise.RowMax)
def _row_max_atom(r):
    return Atom(True, False, (1,), "max over the classes is convex and increasing")


@function_rule(_rowwise.RowMin)
def _row_min_atom(r):
    return Atom(False, True, (1,), "min over the classes is concave and increasing")


def _rowwise_verdict(loss, fixed: dict) -> Convexity:
    """Row-wise losses: the composition rules can prove convexity (softmax cross-entropy is
    logsumexp minus a linear take); refuting it over rows is not implemented, so anything
    else is "unknown"."""
    def prove(problem):
        try:
            with time_limit(ANALYSIS_SECONDS):
                return composition(problem)
        except Exception:  # noqa: BLE001 - declining is "unknown", never a crash
            if os.environ.get("LOSSGEN_DEBUG"):
                raise
            return None

    try:
        problem = make_problem(loss, fixed)
    except Exception:  # noqa: BLE001
        if os.environ.get("LOSSGEN_DEBUG"):
            raise
        return Convexity("unknown", "none", "row-wise loss: no analysis applies")
    convex, concave = prove(problem), prove(problem.negated())
    if isinstance(convex, Proof) and isinstance(concave, Proof):
        return Convexity("affine", "composition", f"convex:\n{_indent(convex.certificate)}\nconcave:\n{_indent(concave.certificate)}")
    if isinstance(convex, Proof):
        return Convexity("convex", "composition", convex.certificate)
    if isinstance(concave, Proof):
        return Convexity("concave", "composition", concave.certificate)
    refuted = _refute_on_explicit_rows(loss, fixed)
    if refuted is not None:
        return refuted
    return Convexity("unknown", "none", "row-wise loss: the composition rules do not prove convexity, and no counterexample was found on an explicit 3-class row")


# Classes in the explicit row used to refute convexity: a counterexample there is one for the
# loss (rows of 3 classes are rows it accepts); a proof there would not cover other counts.
REFUTATION_CLASSES = 3


def _refute_on_explicit_rows(loss, fixed: dict) -> Convexity | None:
    """Write one row out over REFUTATION_CLASSES classes (labels at class 0) and run the
    elementwise analyses on it; only "neither" and "concave" verdicts carry over."""
    from .rowwise import expand_row
    from .spec import Loss

    C = REFUTATION_CLASSES
    spec = loss.spec
    row_like = [n for n in spec.inputs if spec.roles[n] == "row"] + list(spec.class_params)
    elements = {spec.symbol(n): [sp.Symbol(f"{n}_{j}", real=True) for j in range(C)] for n in row_like}
    labels = {spec.symbol(n): 0 for n in spec.inputs if spec.roles[n] == "label"}
    try:
        explicit = expand_row(spec.expr, elements, labels, C)
        inputs = [e.name for n in row_like if n not in spec.class_params for e in elements[spec.symbol(n)]]
        inputs += [n for n in spec.inputs if spec.roles[n] == "sample"]
        params = {n: v for n, v in spec.params.items() if n not in spec.class_params and n not in labels}
        params.update({e.name: spec.params[n] for n in spec.class_params for e in elements[spec.symbol(n)]})
        domain = {e.name: _interval_text(spec.domain[n]) for n in row_like for e in elements[spec.symbol(n)]}
        domain.update({n: _interval_text(spec.domain[n]) for n in list(inputs) + list(params) if n in spec.domain})
        explicit = explicit.xreplace({spec.symbol(n): sp.Symbol(n, real=True) for n in spec.symbols})
        wrt = [e.name for w in spec.wrt for e in elements[spec.symbol(w)]]
        row = Loss(f"{loss.name}_row{C}", explicit, inputs=inputs, wrt=wrt, params=params or None, domain=domain)
        verdict = row.convexity(**{k: v for k, v in fixed.items() if k in params or k in inputs})
    except Exception:  # noqa: BLE001 - declining is "unknown", never a crash
        if os.environ.get("LOSSGEN_DEBUG"):
            raise
        return None
    if verdict.verdict not in ("neither", "concave"):
        return None
    note = f"on an explicit row of {C} classes (labels at class 0), written {text(explicit, 80)}:\n{_indent(verdict.certificate or '')}"
    return Convexity(verdict.verdict, f"{verdict.method} (explicit row)", note, verdict.counterexample)


def _interval_text(interval) -> str:
    from .domain import interval_text

    return interval_text(interval)
