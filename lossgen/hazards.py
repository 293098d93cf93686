"""Hazards: where evaluating a formula in floating point can overflow, divide by zero, take
the log of zero, or cancel, found by interval reasoning over the expression tree and the domains.

The analysis runs on the formula as written and on its stabilized form: what the rewrites
removed, and what remains (reported by `lossgen inspect` as warnings). lossgen's own functions
(softplus, sigmoid, logcosh, ...) are evaluated by stable code, so they carry no hazard of their
own; only their arguments are analyzed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import sympy as sp


@dataclass(frozen=True)
class Hazard:
    """One place a float evaluation can go wrong: kind, the subexpression, and when."""

    kind: str
    expression: str
    detail: str

    def __str__(self):
        return f"{self.kind}: {self.expression} ({self.detail})"


@dataclass(frozen=True)
class Bounds:
    """A closed interval of real values, ends possibly infinite."""

    lo: float
    hi: float

    @staticmethod
    def of(interval: sp.Interval) -> "Bounds":
        # An open end is never reached: its nearest float inside is.
        lo, hi = float(interval.start), float(interval.end)
        if interval.left_open and math.isfinite(lo):
            lo = float(np.nextafter(lo, math.inf))
        if interval.right_open and math.isfinite(hi):
            hi = float(np.nextafter(hi, -math.inf))
        return Bounds(lo, hi)

    def contains(self, value: float) -> bool:
        return self.lo <= value <= self.hi

    @property
    def magnitude(self) -> float:
        return max(abs(self.lo), abs(self.hi))


EVERYTHING = Bounds(-math.inf, math.inf)


def _product(a: float, b: float) -> float:
    # In interval arithmetic an exact 0 times an unbounded end is 0.
    return 0.0 if a == 0 or b == 0 else a * b


def _mul(a: Bounds, b: Bounds) -> Bounds:
    corners = [_product(x, y) for x in (a.lo, a.hi) for y in (b.lo, b.hi)]
    return Bounds(min(corners), max(corners))


def _apply(function, value: float, overflow: float) -> float:
    try:
        return float(function(value))
    except OverflowError:
        return overflow
    except (ValueError, ZeroDivisionError):
        return math.nan


def _monotone(function, bounds: Bounds, increasing: bool = True) -> Bounds:
    lo = _apply(function, bounds.lo, -math.inf if increasing else math.inf)
    hi = _apply(function, bounds.hi, math.inf if increasing else -math.inf)
    lo, hi = (lo, hi) if increasing else (hi, lo)
    return Bounds(-math.inf if math.isnan(lo) else lo, math.inf if math.isnan(hi) else hi)


def _is_log_probability(expr) -> bool:
    """take(f, y) - logsumexp(f): a log-softmax at the label, never above 0."""
    from .rowwise import RowLogSumExp, Take

    if len(expr.args) != 2:
        return False
    a, b = expr.args
    for take, lse in ((a, -b), (b, -a)):
        if isinstance(take, Take) and isinstance(lse, RowLogSumExp) and take.args[0] == lse.args[0]:
            return True
    return False


class _Analysis:
    def __init__(self, bounds_of_symbols: dict, dtype: str):
        self.symbols = bounds_of_symbols
        self.log_max = float(np.log(np.finfo(dtype).max))
        self.hazards: list[Hazard] = []

    def note(self, kind: str, expr, detail: str):
        hazard = Hazard(kind, sp.sstr(expr), detail)
        if hazard not in self.hazards:
            self.hazards.append(hazard)

    def bounds(self, expr) -> Bounds:
        if expr.is_Number:
            value = float(expr)
            return Bounds(value, value)
        if isinstance(expr, sp.Symbol):
            return self.symbols.get(expr, EVERYTHING)
        if expr.is_NumberSymbol:
            return Bounds(float(expr), float(expr))
        method = getattr(self, "bounds_" + type(expr).__name__, None)
        if method is None:
            for arg in expr.args:
                if isinstance(arg, sp.Expr):
                    self.bounds(arg)
            return EVERYTHING
        return method(expr)

    def bounds_Add(self, expr):
        parts = [self.bounds(a) for a in expr.args]
        if _is_log_probability(expr):
            return Bounds(-math.inf, 0.0)
        if (sp.S.NegativeOne in expr.args and isinstance(expr + 1, sp.exp)) or (sp.S.One in expr.args and isinstance(1 - expr, sp.exp)):
            self.note("cancellation", expr, "exp(x) - 1 loses digits for small x")
        with np.errstate(all="ignore"):
            lo = sum(p.lo for p in parts)
            hi = sum(p.hi for p in parts)
        return Bounds(-math.inf if math.isnan(lo) else lo, math.inf if math.isnan(hi) else hi)

    def bounds_Mul(self, expr):
        result = Bounds(1.0, 1.0)
        for arg in expr.args:
            result = _mul(result, self.bounds(arg))
        return result

    def bounds_Pow(self, expr):
        base, exponent = expr.args
        b = self.bounds(base)
        if exponent.is_Integer:
            n = int(exponent)
            if n < 0 and b.contains(0.0):
                self.note("division by zero", expr, f"{sp.sstr(base)} can be 0")
            if n % 2 == 0:
                low = 0.0 if b.contains(0.0) else min(abs(b.lo), abs(b.hi))
                return _monotone(lambda v: v**n, Bounds(low, b.magnitude)) if n > 0 else Bounds(0.0, math.inf)
            if n > 0:
                return _monotone(lambda v: v**n, b)
            return EVERYTHING if b.contains(0.0) else _monotone(lambda v: v**n, b, increasing=False)
        e = self.bounds(exponent)
        if b.lo < 0:
            self.note("invalid", expr, f"{sp.sstr(base)} can be negative under a non-integer power")
        if b.contains(0.0) and e.lo < 0:
            self.note("division by zero", expr, f"0**negative where {sp.sstr(base)} is 0")
        return Bounds(0.0, math.inf)

    def _exp_like(self, expr, arg_bounds: Bounds, margin: float = 0.0):
        if arg_bounds.hi > self.log_max + margin:
            self.note("overflow", expr, f"for argument above {self.log_max + margin:.1f}")

    def bounds_exp(self, expr):
        a = self.bounds(expr.args[0])
        self._exp_like(expr, a)
        return _monotone(math.exp, Bounds(max(a.lo, -800.0), min(a.hi, 800.0)))

    bounds_exp_shared = bounds_exp  # the print-only exp of the code forms

    def bounds_Quotient(self, expr):
        # a / b**n, the lower stage's protected division
        numerator, base, count = expr.args
        return _mul(self.bounds(numerator), self.bounds_Pow(sp.Pow(base, -count, evaluate=False)))

    def bounds_cosh(self, expr):
        a = self.bounds(expr.args[0])
        if a.magnitude > self.log_max + math.log(2):
            self.note("overflow", expr, f"for |argument| above {self.log_max + math.log(2):.1f}")
        return Bounds(1.0, math.inf)

    def bounds_sinh(self, expr):
        a = self.bounds(expr.args[0])
        if a.magnitude > self.log_max + math.log(2):
            self.note("overflow", expr, f"for |argument| above {self.log_max + math.log(2):.1f}")
        return _monotone(lambda v: math.sinh(max(min(v, 800), -800)), a)

    def bounds_log(self, expr):
        a = self.bounds(expr.args[0])
        if a.lo < 0:
            self.note("invalid", expr, f"log of {sp.sstr(expr.args[0])}, which can be negative")
        elif a.lo == 0:
            self.note("log of zero", expr, f"{sp.sstr(expr.args[0])} can be 0")
        if isinstance(expr.args[0], sp.Add) and sp.S.One in expr.args[0].args:
            self.note("cancellation", expr, "log(1 + x) loses digits for small x")
        return _monotone(lambda v: math.log(v) if v > 0 else -math.inf, a)

    def bounds_log1p(self, expr):
        a = self.bounds(expr.args[0])
        if a.lo < -1:
            self.note("invalid", expr, "log1p of a value below -1")
        elif a.lo == -1:
            self.note("log of zero", expr, f"{sp.sstr(expr.args[0])} can be -1")
        return _monotone(lambda v: math.log1p(v) if v > -1 else -math.inf, a)

    def bounds_expm1(self, expr):
        a = self.bounds(expr.args[0])
        self._exp_like(expr, a)
        return _monotone(lambda v: math.expm1(min(v, 800.0)), a)

    def bounds_Abs(self, expr):
        a = self.bounds(expr.args[0])
        return Bounds(0.0 if a.contains(0.0) else min(abs(a.lo), abs(a.hi)), a.magnitude)

    def bounds_Piecewise(self, expr):
        branches = [self.bounds(e) for e, _ in expr.args]
        return Bounds(min(b.lo for b in branches), max(b.hi for b in branches))

    def bounds_Max(self, expr):
        parts = [self.bounds(a) for a in expr.args]
        return Bounds(max(p.lo for p in parts), max(p.hi for p in parts))

    def bounds_Min(self, expr):
        parts = [self.bounds(a) for a in expr.args]
        return Bounds(min(p.lo for p in parts), min(p.hi for p in parts))

    # Row aggregates over C >= 1 classes.
    def bounds_RowSum(self, expr):
        f = self.bounds(expr.args[0])
        return Bounds(f.lo if f.lo >= 0 else -math.inf, f.hi if f.hi <= 0 else math.inf)

    def bounds_RowMean(self, expr):
        return self.bounds(expr.args[0])

    bounds_RowMax = bounds_RowMin = bounds_RowMean

    def bounds_Take(self, expr):
        return self.bounds(expr.args[0])

    def bounds_RowLogSumExp(self, expr):
        f = self.bounds(expr.args[0])
        return Bounds(f.lo, math.inf)

    def bounded(lo, hi):
        def method(self, expr):
            for arg in expr.args:
                self.bounds(arg)
            return Bounds(lo, hi)

        return method

    # Functions whose values are bounded whatever their argument.
    bounds_sin = bounds_cos = bounded(-1.0, 1.0)
    bounds_tanh = bounds_erf = bounded(-1.0, 1.0)
    bounds_sign = bounded(-1.0, 1.0)
    bounds_sigmoid = bounds_OneHot = bounded(0.0, 1.0)
    bounds_sech = bounded(0.0, 1.0)
    bounds_erfc = bounded(0.0, 2.0)
    # lossgen's own functions: stable code, unbounded values.
    bounds_softplus = bounds_logcosh = bounds_expm1mx = bounds_sqrt1pm1 = bounded(0.0, math.inf)
    bounds_logsigmoid = bounded(-math.inf, 0.0)
    bounds_logaddexp = bounds_log1pmx = bounds_xlogy = bounds_scaled_expm1 = bounded(-math.inf, math.inf)
    bounds_scaled_exp = bounded(0.0, math.inf)
    bounds_loggamma = bounds_tan = bounded(-math.inf, math.inf)


def find_hazards(expr: sp.Expr, domain: dict, dtype: str = "float64") -> list[Hazard]:
    """Hazards of evaluating `expr` in `dtype`, with symbols ranging over `domain` ({Symbol: Interval}).

    An overflow where the value of `expr` itself may be unbounded is marked as such: there the
    float result inf may be the true value's nearest float, not an error.
    """
    analysis = _Analysis({symbol: Bounds.of(interval) for symbol, interval in domain.items()}, dtype)
    value = analysis.bounds(expr)
    if math.isinf(value.lo) or math.isinf(value.hi):
        return [
            Hazard(h.kind, h.expression, h.detail + "; the value itself may be unbounded there") if h.kind == "overflow" else h
            for h in analysis.hazards
        ]
    return analysis.hazards


def value_bounds(expr: sp.Expr, bounds_of_symbols: dict, dtype: str = "float64") -> Bounds:
    """An interval holding every value of `expr` with its symbols within `bounds_of_symbols`
    ({Symbol: Bounds}; a symbol not named is unbounded). Sound, not tight."""
    return _Analysis(bounds_of_symbols, dtype).bounds(expr)


@dataclass(frozen=True)
class HazardReport:
    """Hazards of the formula as written, and those its stabilized form still has."""

    written: tuple[Hazard, ...]
    remaining: tuple[Hazard, ...]

    @property
    def removed(self) -> tuple[Hazard, ...]:
        kinds_left = {(h.kind, h.expression) for h in self.remaining}
        return tuple(h for h in self.written if (h.kind, h.expression) not in kinds_left)

    @property
    def warnings(self) -> tuple[Hazard, ...]:
        """Remaining hazards other than overflows of values that are themselves unbounded."""
        return tuple(h for h in self.remaining if "value itself may be unbounded" not in h.detail)


def hazard_report(loss, dtype: str = "float64") -> HazardReport:
    """Analyze a Loss: its loss, gradient and Hessian, as written and as stabilized."""
    from . import derive

    from .rowwise import N_CLASSES

    domain = {loss.symbol(n): loss.domain[n] for n in loss.spec.symbols}
    domain[N_CLASSES] = sp.Interval(1, sp.oo)
    variables = [loss.symbol(w) for w in loss.wrt]
    written_grad = derive.gradient(loss.expr, variables)
    written = [loss.expr, *written_grad, *(derive.differentiate(g, v) for g, v in zip(written_grad, variables))]
    stable = [loss.stable_expr, *loss.grad, *(loss.hess[k, k] for k in range(len(variables)))]

    def collect(exprs):
        found = []
        for e in exprs:
            for h in find_hazards(e, domain, dtype):
                if h not in found:
                    found.append(h)
        return tuple(found)

    return HazardReport(collect(written), collect(stable))
