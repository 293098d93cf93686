"""Properties: the facts people choose a loss by, each proved or reported unknown.

Smoothness (with the kinks), the sign of the Hessian and whether it is constant, a bound on the
gradient (robustness to outliers), and whether the loss is bounded below (with its minimizer).
They reuse the machinery of :mod:`lossgen.convexity`: rigorous interval bounds, the cut of a
loss with kinks into smooth pieces, and high-precision rechecks of every numeric witness.
"""

from __future__ import annotations

import functools
import math
import types
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import sympy as sp
from sympy.codegen.cfunctions import log1p

from .budget import limited
from .convexity import (
    NONSMOOTH, Convexity, Problem, Range, RangeProgram, bound, candidate_forms, depends, evaluate, finite_form,
    high_precision, is_zero, make_problem, make_problem_check, mpmath_function, numpy_function,
    prove_nonnegative, prove_on_segment, sample_others, segment, smooth_in, special_values, text, unknown_node,
)
from .functions import log1pmx, logratio, sqrt1pm1, to_elementary, xlogy

SMOOTHNESS = ("discontinuous", "C0", "C1", "C2", "Cinf", "unknown")
HESSIAN_SIGNS = ("positive", "nonnegative", "indefinite", "zero_ae", "unknown")


@dataclass(frozen=True)
class LossProperties:
    """Proved properties of a loss in its wrt inputs; "unknown"/None where not proved.

    convexity: the Convexity verdict (over every param value in its domain).
    smoothness: "discontinuous", "C0", "C1", "C2" (at least twice continuously differentiable),
      "Cinf" or "unknown", as a function of the wrt inputs, for every value of the others;
      kinks: the conditions where it is less smooth, such as "|p - y| = delta".
    hessian_sign: sign of the almost-everywhere Hessian (Loss.hess, what Newton steps and
      gradient boosting use) on the domain: "positive" (definite), "nonnegative" (semidefinite),
      "indefinite" (negative somewhere: a point is known), "zero_ae", or "unknown".
    hessian_constant: whether that Hessian is the same at every input (params may enter).
    grad_bound: an upper bound on |dL/dwrt| over the inputs' domain at the default param values
      (grad_bound_params); math.inf when unbounded (proved), None when unknown.
    bounded_below: whether, for every value of the other inputs and params, the loss is bounded
      below in the wrt inputs; minimizer: {wrt name: expression} where one is known.
    reasons: one line of proof per property.
    """

    convexity: Convexity
    smoothness: str = "unknown"
    kinks: tuple[str, ...] = ()
    hessian_sign: str = "unknown"
    hessian_constant: bool | None = None
    grad_bound: float | None = None
    bounded_below: bool | None = None
    minimizer: Mapping[str, sp.Expr] | None = None
    grad_bound_params: Mapping[str, float] = field(default_factory=dict)
    reasons: Mapping[str, str] = field(default_factory=dict)

    @property
    def robust(self) -> bool:
        """A finite gradient bound: one outlier moves the fit by a bounded amount."""
        return self.grad_bound is not None and math.isfinite(self.grad_bound)

    @property
    def smooth(self) -> bool:
        """A continuous gradient (C1 or smoother)."""
        return self.smoothness in ("C1", "C2", "Cinf")


def analyze_properties(loss, **fixed) -> LossProperties:
    """Properties of `loss` (cached per loss and fixed values); `fixed` as for Loss.convexity."""
    key = _key(loss, fixed)
    convexity = loss.convexity(**fixed)
    context = _context(loss, key)
    if context is None:
        return LossProperties(convexity=convexity, reasons=types.MappingProxyType({"all": "no rules for this loss's node types"}))
    smoothness, kinks, why_smooth = _smoothness(loss, key)
    sign, why_sign = _hessian_sign(loss, key)
    constant, why_constant = _guarded(lambda: hessian_constant_of(context.problem, context.hessian), (None, "not analyzed"))
    grad_bound, why_grad = _grad_bound(loss, key)
    below, minimizer, why_below = _guarded(lambda: bounded_below_of(context.problem, convexity), (None, None, "not analyzed"))
    reasons = {"smoothness": why_smooth, "hessian_sign": why_sign, "hessian_constant": why_constant,
               "grad_bound": why_grad, "bounded_below": why_below}
    return LossProperties(
        convexity=convexity, smoothness=smoothness, kinks=tuple(kinks), hessian_sign=sign, hessian_constant=constant,
        grad_bound=grad_bound, bounded_below=below,
        minimizer=None if minimizer is None else types.MappingProxyType(minimizer),
        grad_bound_params=types.MappingProxyType(context.defaults_used), reasons=types.MappingProxyType(reasons),
    )


def grad_bound(loss, **fixed) -> float | None:
    """Only LossProperties.grad_bound (cheaper than all properties; `lossgen list --robust`)."""
    return _grad_bound(loss, _key(loss, fixed))[0] if _context(loss, _key(loss, fixed)) else None


def smoothness(loss, **fixed) -> str:
    """Only LossProperties.smoothness (`lossgen list --smooth`)."""
    return _smoothness(loss, _key(loss, fixed))[0] if _context(loss, _key(loss, fixed)) else "unknown"


def _key(loss, fixed) -> tuple:
    make_problem_check(loss, fixed)
    return tuple(sorted((k, float(v)) for k, v in fixed.items()))


@dataclass(frozen=True, eq=False)
class _Context:
    """What every property analysis starts from: the problem, the a.e. Hessian and gradient."""

    problem: Problem
    hessian: sp.Matrix
    grads: tuple
    defaults: Mapping
    defaults_used: Mapping[str, float]


@functools.lru_cache(maxsize=256)
def _context(loss, key: tuple) -> _Context | None:
    if getattr(loss.spec, "rowwise", False) or unknown_node(loss.expr) is not None:
        return None
    fixed = dict(key)
    problem = make_problem(loss, fixed)
    subs = {loss.symbol(k): sp.Rational(repr(float(v))) for k, v in fixed.items()}
    hessian = loss.hess.xreplace(subs)
    grads = [g.xreplace(subs) for g in loss.grad]
    if not all(finite_form(h) for h in hessian) or not all(finite_form(g) for g in grads):
        # Fixing an end of a domain can break the stable forms; derive from the formula instead.
        from . import derive

        grads = list(derive.gradient(problem.expr, problem.variables))
        hessian = derive.hessian(grads, problem.variables)
    at = {k: float(v) for k, v in loss.params.items() if k not in fixed}
    defaults = {loss.symbol(k): sp.Rational(repr(v)) for k, v in at.items()}
    return _Context(problem, hessian, tuple(grads), defaults, at)


@functools.lru_cache(maxsize=256)
def _smoothness(loss, key: tuple):
    return _guarded(lambda: smoothness_of(_context(loss, key).problem), ("unknown", (), "not analyzed"))


@functools.lru_cache(maxsize=256)
def _hessian_sign(loss, key: tuple):
    context = _context(loss, key)
    convexity = loss.convexity(**dict(key))
    return _guarded(lambda: hessian_sign_of(context.problem, context.hessian, convexity), ("unknown", "not analyzed"))


@functools.lru_cache(maxsize=256)
def _grad_bound(loss, key: tuple):
    context = _context(loss, key)
    grads = [g.xreplace(context.defaults) for g in context.grads]
    sign = lambda: _hessian_sign(loss, key)[0]  # noqa: E731 - computed only if it is needed
    return _guarded(lambda: grad_bound_of(context.problem, grads, context.defaults, context.hessian, sign), (None, "not analyzed"))


PROPERTY_SECONDS = 6.0  # time allowed to one property before it counts as unknown


def _guarded(run, fallback):
    """Run one analysis under a time limit; running out or an unexpected failure means "unknown",
    never a crash (LOSSGEN_DEBUG=1 re-raises failures)."""
    import os

    from .budget import TimeLimit, time_limit

    try:
        with time_limit(PROPERTY_SECONDS):
            return run()
    except TimeLimit:
        return fallback
    except Exception:  # noqa: BLE001
        if os.environ.get("LOSSGEN_DEBUG"):
            raise
        return fallback


# --- helpers ------------------------------------------------------------------------------------

def _sample_env(env: Mapping[sp.Symbol, Range], problem: Problem, count: int = 12) -> list[dict]:
    """A few points of a box of the non-wrt symbols: defaults first, then spread values."""
    rng = np.random.default_rng(7)
    points = []
    for k in range(count):
        point = {}
        for s, r in env.items():
            if s in problem.variables:
                continue
            default = problem.defaults.get(s)
            if k == 0 and default is not None and _in_range(r, default):
                point[s] = default
            else:
                point[s] = _pick(r, rng)
        points.append(point)
    return points


def _in_range(r: Range, v: float) -> bool:
    return (v > r.lo or (v == r.lo and not r.lo_open)) and (v < r.hi or (v == r.hi and not r.hi_open))


def _pick(r: Range, rng) -> float:
    if r.lo == r.hi:
        return r.lo
    lo, hi = r.lo, r.hi
    if math.isinf(lo) and math.isinf(hi):
        return float(rng.choice([0.5, -0.5, 1.5, -2.0, 3.0]))
    if math.isinf(hi):
        return lo + float(rng.choice([0.5, 1.0, 2.0, 0.25]))
    if math.isinf(lo):
        return hi - float(rng.choice([0.5, 1.0, 2.0, 0.25]))
    return lo + (hi - lo) * float(rng.choice([0.5, 0.25, 0.75, 0.3, 0.6]))


def _nonzero_somewhere(expr: sp.Expr, points: list[dict], where: sp.Expr | None = None, domain: Range | None = None) -> bool:
    """Whether expr is certainly nonzero at one of the points (in high precision); with `where`,
    only at points where that expression (a breakpoint) lies inside `domain`."""
    if expr.is_number:
        return bool(expr != 0) and expr.is_finite is not False
    for point in points:
        if where is not None and domain is not None:
            b = where.xreplace({s: sp.Rational(repr(v)) for s, v in point.items()})
            try:
                value = float(b)
            except TypeError:
                continue
            if not (domain.lo < value < domain.hi):
                continue
        symbols = tuple(point)
        value = high_precision(mpmath_function(expr, symbols), [float(point[s]) for s in symbols])
        if value is not None and value != 0:
            return True
    return False


def _analytic(expr: sp.Expr, variables, env) -> bool:
    """Every node that depends on the variables is analytic on the domain (no kink, no pole, no
    branch point): logs of positive values, powers of positive bases, and so on."""
    for node in sp.preorder_traversal(expr):
        if not isinstance(node, sp.Expr) or not depends(node, variables):
            continue
        if isinstance(node, NONSMOOTH):
            return False
        if isinstance(node, sp.Pow):
            e = node.exp
            if e.is_Integer and e >= 0:
                continue
            r = bound(node.base, env)
            if r is None:
                return False
            if e.is_Integer and (r.positive() or r.negative()):
                continue
            if not r.positive():
                return False
        elif isinstance(node, (sp.log, sp.loggamma)):
            r = bound(node.args[0], env)
            if r is None or not r.positive():
                return False
        elif isinstance(node, (xlogy,)):
            r = bound(node.args[1], env)
            if r is None or not r.positive():
                return False
        elif isinstance(node, logratio):
            for a in node.args:
                r = bound(a, env)
                if r is None or not r.positive():
                    return False
        elif isinstance(node, (sqrt1pm1, log1pmx, log1p)):
            r = bound(node.args[0] + 1, env)
            if r is None or not r.positive():
                return False
    # Everything else the analyses know (exp, sigmoid, softplus, sums, products...) is entire.
    return True


# --- smoothness ---------------------------------------------------------------------------------

_CLASSES = {0: "discontinuous", 1: "C0", 2: "C1", 3: "C2"}


def smoothness_of(problem: Problem) -> tuple[str, tuple[str, ...], str]:
    """(class, kinks, reason): the smoothness of the loss in its wrt inputs."""
    variables = problem.variables
    for form in dict.fromkeys((problem.expr, problem.stable)):
        if smooth_in(form, variables) and _analytic(form, variables, problem.env):
            return "Cinf", (), "every function of the wrt inputs is analytic on the domain"
    if len(variables) != 1:
        return "unknown", (), "kinks in several variables are not analyzed"
    x = variables[0]
    segmentations = segment(problem.expr, x, problem.env)
    if not segmentations:
        return "unknown", (), "could not cut the loss into smooth pieces"
    domain = problem.env[x]
    worst = None
    kinks: list[str] = []
    for seg in segmentations:
        others = {k: v for k, v in seg.env.items() if k != x}
        if not all(_analytic(p, variables, seg.env) for p in seg.pieces):
            return "unknown", (), "a piece is not analytic on the domain"
        points = _sample_env(others, problem)
        for k, b in enumerate(seg.breakpoints):
            r = bound(b, others)
            if r is not None and (r.hi <= domain.lo or r.lo >= domain.hi):
                continue
            left, right = seg.pieces[k], seg.pieces[k + 1]
            order = None
            value = left.xreplace({x: b})
            jumps = [right.xreplace({x: b}) - value] + [v.xreplace({x: b}) - value for v in seg.at_points[k]]
            for n in range(4):
                if n > 0:
                    jumps = [sp.diff(right, x, n).xreplace({x: b}) - sp.diff(left, x, n).xreplace({x: b})]
                if all(is_zero(j) for j in jumps):
                    continue
                if any(_nonzero_somewhere(j, points, b, domain) for j in jumps):
                    order = n
                    break
                return "unknown", (), f"cannot tell whether L is smooth at {x} = {text(b)}"
            if order is None:
                continue
            kinks.extend(label for label in seg.labels[k] if label not in kinks)
            worst = order if worst is None else min(worst, order)
    if worst is None:
        if all(len(seg.breakpoints) == 0 for seg in segmentations):
            return "Cinf", (), "smooth pieces with no breakpoint inside the domain"
        return "C2", (), "value and first three derivatives continuous at every breakpoint"
    reason = {0: "the value jumps", 1: "the slope jumps", 2: "the second derivative jumps", 3: "the third derivative jumps"}[worst]
    return _CLASSES[worst], tuple(kinks), f"{reason} at {', '.join(kinks)} (checked in high precision); lower derivatives are continuous"


# --- Hessian ------------------------------------------------------------------------------------

def _negative_quadratic_form(problem: Problem, hessian: sp.Matrix) -> dict | None:
    """A point and direction where d^T H d < 0, found by sampling and rechecked in mpmath."""
    rng = np.random.default_rng(11)
    variables = problem.variables
    symbols = tuple(problem.domain)
    count = 4000
    columns = sample_others(problem, count, rng)
    for v in variables:
        values = special_values(problem.domain[v], dense=True)
        columns[v] = rng.choice(values, count).astype(float)
    args = [columns[s] for s in symbols]
    n = len(variables)
    h = np.zeros((count, n, n))
    for i in range(n):
        for j in range(n):
            h[:, i, j] = evaluate(numpy_function(hessian[i, j], symbols), args, count)
    ok = np.flatnonzero(np.all(np.isfinite(h), axis=(1, 2)))
    if not len(ok):
        return None
    w, vecs = np.linalg.eigh(h[ok])
    # Witnesses at the default values of the other symbols first: easier to read.
    penalty = np.zeros(len(ok))
    for s in problem.others:
        penalty += columns[s][ok] != problem.defaults.get(s, np.nan)
    negative = np.flatnonzero(w[:, 0] < 0)
    order = negative[np.lexsort((w[negative, 0], penalty[negative]))]
    for idx in order[:10]:
        i = ok[idx]
        d = vecs[idx][:, 0]
        form = sum(hessian[a, b] * float(d[a]) * float(d[b]) for a in range(n) for b in range(n))
        value = high_precision(mpmath_function(form, symbols), [float(columns[s][i]) for s in symbols])
        if value is not None and value < 0:
            point = {s.name: float(columns[s][i]) for s in symbols}
            return {"point": point, "direction": {v.name: float(d[k]) for k, v in enumerate(variables)}, "value": float(value)}
    return None


def hessian_sign_of(problem: Problem, hessian: sp.Matrix, convexity: Convexity | None = None) -> tuple[str, str]:
    """("positive" | "nonnegative" | "indefinite" | "zero_ae" | "unknown", reason) for the a.e. Hessian."""
    variables = problem.variables
    n = len(variables)
    env = problem.env
    if all(_zero_ae(h) for h in hessian):
        return "zero_ae", "the Hessian is 0 wherever the loss is twice differentiable"
    if convexity is not None and not convexity.is_convex:
        # Not convex: a negative value is likely, and much cheaper to find than a proof.
        witness = _negative_quadratic_form(problem, hessian)
        if witness:
            return "indefinite", _witness_text(witness)
    if n == 1:
        h = hessian[0, 0]
        reason = prove_nonnegative(h, env, strict=True)
        if reason:
            return "positive", f"d2L/d{variables[0]}2 > 0: {reason}"
        reason = prove_nonnegative(h, env) or _nonnegative_by_pieces(h, variables[0], env)
        if reason:
            return "nonnegative", f"d2L/d{variables[0]}2 >= 0: {reason}"
    else:
        minors_pd = True
        for k in range(1, n + 1):
            leading = hessian.extract(list(range(k)), list(range(k))).det(method="berkowitz")
            if not prove_nonnegative(leading, env, strict=True):
                minors_pd = False
                break
        if minors_pd:
            return "positive", "every leading principal minor is > 0 on the domain (Sylvester)"
        import itertools

        if all(prove_nonnegative(hessian.extract(list(s), list(s)).det(method="berkowitz"), env)
               for k in range(1, n + 1) for s in itertools.combinations(range(n), k)):
            return "nonnegative", "every principal minor is >= 0 on the domain"
    witness = _negative_quadratic_form(problem, hessian)
    if witness:
        return "indefinite", _witness_text(witness)
    return "unknown", "neither a sign nor a negative value could be established"


def _witness_text(witness: dict) -> str:
    at = ", ".join(f"{k}={v:.6g}" for k, v in witness["point"].items())
    return f"negative at {at} (d^T H d = {witness['value']:.3g}, rechecked in mpmath)"


def _zero_ae(h: sp.Expr) -> bool:
    if is_zero(h):
        return True
    if isinstance(h, sp.Piecewise):
        # Branches on sets of measure zero (an equality) do not count.
        return all(is_zero(value) or isinstance(cond, sp.Eq) for value, cond in h.args)
    return False


def _nonnegative_by_pieces(h: sp.Expr, x, env) -> str | None:
    segmentations = segment(h, x, env)
    if not segmentations:
        return None
    for seg in segmentations:
        for i, piece in enumerate(seg.pieces):
            if prove_on_segment(piece, seg, i) is None:
                return None
    return "on every piece between its breakpoints"


def hessian_constant_of(problem: Problem, hessian: sp.Matrix) -> tuple[bool | None, str]:
    """Whether the a.e. Hessian is the same for every input value (params may enter)."""
    inputs = {s for s in problem.domain if not problem.is_param(s)}
    entries = []
    for h in hessian:
        if (h.free_symbols & inputs) and not _zero_ae(h) and sp.count_ops(h) < 200:
            h = limited(lambda: sp.simplify(h), 1.0, h)
        entries.append(h)
    if all(not (h.free_symbols & inputs) or _zero_ae(h) for h in entries):
        return True, "the Hessian does not depend on the inputs"
    # Two points with different values prove it is not constant.
    symbols = tuple(problem.domain)
    rng = np.random.default_rng(5)
    count = 200
    columns = sample_others(problem, count, rng)
    for v in problem.variables:
        columns[v] = rng.choice(special_values(problem.domain[v], dense=True), count).astype(float)
    for s in symbols:
        if problem.is_param(s):
            columns[s] = np.full(count, problem.defaults.get(s, columns[s][0]))
    for h in entries:
        if not (h.free_symbols & inputs):
            continue
        values = evaluate(numpy_function(h, symbols), [columns[s] for s in symbols], count)
        finite = np.flatnonzero(np.isfinite(values))
        if len(finite) < 2:
            continue
        ranked = finite[np.argsort(values[finite])]
        picks = [ranked[int(q * (len(ranked) - 1))] for q in (0.0, 1.0, 0.1, 0.9, 0.25, 0.75, 0.5)]
        fn = mpmath_function(h, symbols)
        seen = []
        for i in dict.fromkeys(picks):
            v = high_precision(fn, [float(columns[s][i]) for s in symbols])
            if v is None:
                continue
            other = next((u for u in seen if u != v), None)
            if other is not None:
                return False, f"{text(h, 60)} takes the values {float(other):.6g} and {float(v):.6g}"
            seen.append(v)
    return None, "could not decide whether the Hessian depends on the inputs"


# --- gradient bound -----------------------------------------------------------------------------

def _magnitude_bound(g: sp.Expr, x, env) -> float:
    """A rigorous bound of |g| over the box: the best of several equal forms and, for a gradient
    with kinks in one variable, of its pieces on their segments."""
    best = math.inf
    for form in candidate_forms(g, max_ops=200):
        r = bound(form, env)
        if r is not None:
            best = min(best, r.magnitude)
        if math.isfinite(best):
            break
    if math.isfinite(best) or x is None or smooth_in(g, (x,)):
        return best
    segmentations = segment(g, x, env)
    if not segmentations:
        return best
    total = 0.0
    s = sp.Dummy("s", nonnegative=True)
    for seg in segmentations:
        others = {k: v for k, v in seg.env.items() if k != x}
        for i, piece in enumerate(seg.pieces):
            enclosures = [bound(piece, seg.env)]
            left = seg.breakpoints[i - 1] if i > 0 else None
            right = seg.breakpoints[i] if i < len(seg.breakpoints) else None
            width = math.inf
            if left is not None and right is not None:
                r = bound(right - left, others)
                width = r.hi if r is not None else math.inf
            box = dict(seg.env)
            box[s] = Range(0.0, width)
            for end, sign in ((left, 1), (right, -1)):
                if end is not None:
                    enclosures.append(bound(piece.xreplace({x: end + sign * s}), box))
            sizes = [e.magnitude for e in enclosures if e is not None]
            total = max(total, min(sizes) if sizes else math.inf)
        for k, values in enumerate(seg.at_points):
            for v in values:
                r = bound(v.xreplace({x: seg.breakpoints[k]}), others)
                total = max(total, r.magnitude if r is not None else math.inf)
    return min(best, total)


def _limit_unbounded(g: sp.Expr, problem: Problem, defaults) -> str | None:
    """Proof that |g| is unbounded: its limit is infinite as one input approaches an end of its
    domain, the others held at a typical value (SymPy's limit)."""
    inputs = [s for s in problem.domain if s not in defaults]
    if sp.count_ops(g) > 120:
        return None
    for s in inputs:
        for typical in _typical_values(problem, [o for o in inputs if o != s]):
            reason = _limit_at_ends(g, s, problem.domain[s], typical)
            if reason:
                return reason
    return None


def _typical_values(problem: Problem, symbols) -> list[dict]:
    """The typical value of every symbol, then each symbol moved to the ends of its domain."""
    base = {o: sp.Rational(repr(problem.defaults.get(o, 0.5))) for o in symbols}
    out = [base]
    for o in symbols:
        interval = problem.domain[o]
        for end, closed in ((interval.start, not interval.left_open), (interval.end, not interval.right_open)):
            if end.is_finite and closed and end != base[o]:
                out.append({**base, o: end})
    return out[:8]


def _limit_at_ends(g, s, interval, typical) -> str | None:
    """Why |g| is unbounded as s approaches an open end of its domain (SymPy's limit), or None."""
    from .functions import to_reference_form

    e = to_reference_form(g.xreplace(typical))
    ends = []
    if interval.end is sp.oo or interval.right_open:
        ends.append((interval.end, "-"))
    if interval.start is -sp.oo or interval.left_open:
        ends.append((interval.start, "+"))
    for end, direction in ends:
        value = one_sided_limit(e, s, end, direction, interval)
        if value in (sp.oo, -sp.oo, sp.zoo):
            where = ", ".join(f"{k}={v}" for k, v in typical.items())
            return f"the gradient tends to {value} as {s} -> {end}" + (f" ({where})" if where else "")
    return None


def one_sided_limit(e: sp.Expr, s: sp.Symbol, end, direction: str, interval: sp.Interval):
    """SymPy's limit of e (a function of s alone) as s -> end from inside the interval. With
    kinks, the limit of the smooth piece next to that end (its breakpoints are numbers here)."""
    if smooth_in(e, (s,)):
        return limited(lambda: sp.limit(e, s, end, direction), 1.0)
    segmentations = segment(e, s, {s: Range.of(interval)})
    if not segmentations or len(segmentations) != 1:
        return None
    seg = segmentations[0]
    try:
        points = [float(b) for b in seg.breakpoints]
    except TypeError:
        return None
    target = float(end)
    if direction == "-":  # approaching from below: the piece whose segment ends at or after end
        index = next((i for i, b in enumerate(points) if b >= target), len(points))
    else:
        index = next((i for i, b in enumerate(points) if b > target), len(points))
    piece = seg.pieces[index]
    return limited(lambda: sp.limit(piece, s, end, direction), 1.0)


def grad_bound_of(problem: Problem, grads: list[sp.Expr], defaults, hessian=None, hessian_sign=lambda: "unknown") -> tuple[float | None, str]:
    """(bound, reason): sup |dL/dwrt| over the inputs' domain at the default params.
    hessian_sign() gives the proved sign of the Hessian, asked for only when needed."""
    env = {s: r for s, r in problem.env.items() if s not in defaults}
    x = problem.variables[0] if len(problem.variables) == 1 else None
    worst = 0.0
    for g in grads:
        worst = max(worst, _magnitude_bound(g, x, env))
    if math.isfinite(worst) and x is None:
        return worst, "interval arithmetic over the domain"
    if x is not None:
        refined = _residual_sup(grads[0], x, env)
        if refined is not None and refined[0] <= worst:
            return refined
    if math.isfinite(worst):
        return worst, "interval arithmetic over the domain (pieces on their segments where the gradient has kinks)"
    if x is not None and hessian is not None and hessian_sign() in ("positive", "nonnegative", "zero_ae"):
        found = _monotone_gradient_bound(grads[0], hessian[0, 0].xreplace(defaults), x, env)
        if found is not None:
            return found
    for g in grads:
        reason = _limit_unbounded(g, problem, defaults)
        if reason:
            return math.inf, reason
    return None, "no finite bound found, and unboundedness not proved"


def _residual_sup(g: sp.Expr, x, env) -> tuple[float, str] | None:
    """sup |g| by branch and bound in one variable: g itself, or g as a function of the residual
    r = x - y when it depends on x and an input y only through x - y (most regression losses)."""
    r = sp.Dummy("r", real=True)
    variable, box, shown = x, dict(env), str(x)
    for y in [s for s in env if s != x]:
        moved = g.xreplace({x: r + y})
        if y not in moved.free_symbols:
            span = bound(x - y, env)
            if span is None:
                return None
            variable, box, shown = r, {s: v for s, v in env.items() if s not in (x, y)}, f"{x} - {y}"
            box[r] = span
            g = moved
            break
    if g.free_symbols - {variable}:
        return None  # other inputs still enter: the one-variable search does not apply
    if smooth_in(g, (variable,)):
        found = sup_abs(g, variable, box[variable])
        if found is None:
            return None
        return found, f"branch and bound over {shown}, with monotone tails closed by the limits of the gradient"
    segmentations = segment(g, variable, box)
    if not segmentations or len(segmentations) != 1:
        return None
    seg = segmentations[0]
    try:
        ends = [float(b) for b in seg.breakpoints]
    except TypeError:
        return None
    edges = [box[variable].lo] + ends + [box[variable].hi]
    worst = 0.0
    for i, piece in enumerate(seg.pieces):
        lo, hi = max(edges[i], box[variable].lo), min(edges[i + 1], box[variable].hi)
        if lo > hi:
            continue
        found = sup_abs(piece, variable, Range(lo, hi))
        if found is None:
            return None
        worst = max(worst, found)
    for k, values in enumerate(seg.at_points):
        for v in values:
            rv = bound(v.xreplace({variable: seg.breakpoints[k]}), {})
            if rv is None:
                return None
            worst = max(worst, rv.magnitude)
    return worst, f"branch and bound over {shown} on each smooth piece of the gradient"


def sup_abs(g: sp.Expr, x: sp.Symbol, span: Range, boxes: int = 4000, seconds: float = 1.5, rtol: float = 1e-9) -> float | None:
    """A rigorous upper bound of sup |g(x)| for x in span, tight to about rtol: branch and bound
    on x; an unbounded end is closed where g is monotone there (g' of one sign), so g lies
    between its value at the cut and its limit at infinity (SymPy's limit)."""
    import heapq
    import time as _time

    if g.free_symbols - {x}:
        return None
    program = RangeProgram(g)
    derivative = sp.diff(g, x)
    # The factored slope shows its sign on a tail where the expanded one cancels.
    slope = RangeProgram(limited(lambda: sp.factor(sp.together(derivative)), 1.0, derivative))
    point = numpy_function(g, (x,))
    elementary = to_elementary(g)
    limits = {}
    for end, direction in ((math.inf, "-"), (-math.inf, "+")):
        if (span.hi if end > 0 else span.lo) == end:
            value = limited(lambda: sp.limit(elementary, x, sp.oo if end > 0 else -sp.oo, direction), 1.0)
            limits[end] = float(abs(value)) if value is not None and value.is_number and value.is_finite else None

    def enclosure(r: Range) -> float:
        best = program({x: r})
        size = best.magnitude if best is not None else math.inf
        if r.finite() and r.lo < r.hi:
            # Mean-value form |g(m)| + max|g'| * w/2: tight near a smooth maximum.
            m = _midpoint(r)
            at, d = program({x: Range.point(m)}), slope({x: r})
            if at is not None and d is not None and d.finite():
                def up(v):
                    return math.nextafter(v, math.inf)

                half = up(max(m - r.lo, r.hi - m))
                size = min(size, up(at.magnitude + up(d.magnitude * half)))
        tail = r.hi if math.isinf(r.hi) else (r.lo if math.isinf(r.lo) else None)
        if tail is not None and math.isfinite(size) is False and limits.get(tail) is not None:
            cut = r.lo if tail > 0 else r.hi
            if math.isfinite(cut):
                d = slope({x: r})
                if d is not None and (d.nonneg() or d.nonpos()):
                    at = program({x: Range.point(cut)})
                    if at is not None:
                        size = min(size, max(at.magnitude, limits[tail]))
        return size

    def sample(r: Range) -> float:
        m = _midpoint(r)
        value = evaluate(point, [np.array([m])], 1)[0]
        return abs(value) if np.isfinite(value) else 0.0

    deadline = _time.perf_counter() + seconds
    lower = max([sample(span)] + [v for v in limits.values() if v is not None and math.isfinite(v)] + [0.0])
    heap = [(-enclosure(span), 0, span)]
    count = 1
    while heap:
        top, _, r = heap[0]
        upper = -top
        if not math.isfinite(upper) and count > boxes:
            return None
        if upper <= lower * (1 + rtol) + 1e-300 or count > boxes or _time.perf_counter() > deadline:
            return upper if math.isfinite(upper) else None
        heapq.heappop(heap)
        cut = _midpoint(r)
        if not (r.lo < cut < r.hi):
            heapq.heappush(heap, (top, count, r))  # cannot split further: this bound stands
            return upper if math.isfinite(upper) else None
        for part in (Range(r.lo, cut, r.lo_open, False), Range(cut, r.hi, False, r.hi_open)):
            lower = max(lower, sample(part))
            count += 1
            heapq.heappush(heap, (-enclosure(part), count, part))
    return None


def _midpoint(r: Range) -> float:
    if math.isinf(r.lo) and math.isinf(r.hi):
        return 0.0
    if math.isinf(r.hi):
        return r.lo + max(1.0, abs(r.lo))
    if math.isinf(r.lo):
        return r.hi - max(1.0, abs(r.hi))
    return (r.lo + r.hi) / 2


def _monotone_gradient_bound(g: sp.Expr, h: sp.Expr, x, env) -> tuple[float, str] | None:
    """Where the Hessian is >= 0, the gradient is monotone in x, so its values lie between
    its limits at the ends of x's domain: bound those limits over the other inputs."""
    if not smooth_in(g, (x,)):
        return None
    # The caller has proved the Hessian >= 0 over every param value; at the defaults it holds too.
    interval_x = env[x]
    e = to_elementary(g)
    others = {k: v for k, v in env.items() if k != x}
    ends = []
    for end, direction in ((interval_x.lo, "+"), (interval_x.hi, "-")):
        target = sp.oo if end == math.inf else (-sp.oo if end == -math.inf else sp.Rational(end))
        limit = limited(lambda: sp.limit(e, x, target, direction), 2.0)
        if limit is None or limit.has(sp.Limit, sp.AccumBounds, sp.nan, sp.zoo) or limit.has(x):
            return None
        r = bound(limit, others)
        if r is None:
            return None
        ends.append((limit, r.magnitude))
    size = max(m for _, m in ends)
    if not math.isfinite(size):
        return None
    shown = " and ".join(text(limit, 30) for limit, _ in ends)
    return size, f"the Hessian has one sign, so the gradient is monotone in {x}, between its limits {shown} at the ends of the domain"


# --- bounded below, minimizer -------------------------------------------------------------------

def _defined(expr: sp.Expr, env) -> bool:
    """The expression is real and finite everywhere on the box (no log of 0, no pole)."""
    # Infinite ends of a range are bounds, not values; a log of 0 or a pole shows in _analytic.
    return bound(expr, env) is not None and _analytic(expr, tuple(expr.free_symbols), env)


def _open_closed_ends(env, exclude) -> tuple[dict, list]:
    """The box with every closed finite end opened, and the (symbol, value) ends removed."""
    opened, removed = dict(env), []
    for s, r in env.items():
        if s in exclude:
            continue
        lo_open, hi_open = r.lo_open, r.hi_open
        if not r.lo_open and math.isfinite(r.lo) and r.lo != r.hi:
            removed.append((s, r.lo))
            lo_open = True
        if not r.hi_open and math.isfinite(r.hi) and r.lo != r.hi:
            removed.append((s, r.hi))
            hi_open = True
        opened[s] = Range(r.lo, r.hi, lo_open, hi_open)
    return opened, removed


def _candidates(problem: Problem) -> list[tuple[str, sp.Expr, sp.Expr, sp.Expr]]:
    """Candidate minimizers of a one-variable loss: (kind, x*, left piece, right piece)."""
    x = problem.variables[0]
    out = []
    if smooth_in(problem.expr, problem.variables):
        g = to_elementary(sp.diff(problem.expr, x))
        if sp.count_ops(g) <= 80:
            for c in limited(lambda: sp.solve(g, x), 1.0, []):
                if c.is_real is not False and not c.has(sp.I):
                    out.append(("stationary", c, problem.expr, problem.expr))
        return out
    segmentations = segment(problem.expr, x, problem.env)
    if not segmentations or len(segmentations) != 1:
        return out
    seg = segmentations[0]
    for i, piece in enumerate(seg.pieces):
        g = sp.diff(piece, x)
        if is_zero(g):
            if 0 < i < len(seg.breakpoints):
                out.append(("flat", (seg.breakpoints[i - 1] + seg.breakpoints[i]) / 2, piece, piece))
            continue
        solutions = limited(lambda: sp.solve(g, x), 1.0, []) if sp.count_ops(g) <= 80 else []
        for c in solutions:
            if c.is_real is not False and not c.has(sp.I):
                lo = seg.breakpoints[i - 1] if i > 0 else None
                hi = seg.breakpoints[i] if i < len(seg.breakpoints) else None
                others = {k: v for k, v in seg.env.items() if k != x}
                inside = all(prove_nonnegative(e, others, strict=True) for e in ((c - lo) if lo is not None else sp.S.One, (hi - c) if hi is not None else sp.S.One))
                if inside:
                    out.append(("stationary", c, piece, piece))
    for k, b in enumerate(seg.breakpoints):
        out.append(("kink", b, seg.pieces[k], seg.pieces[k + 1]))
    return out


def bounded_below_of(problem: Problem, convexity: Convexity) -> tuple[bool | None, dict | None, str]:
    """(bounded below?, minimizer, reason)."""
    env = problem.env
    lower = None
    for form in dict.fromkeys((problem.expr, problem.stable)):
        r = bound(form, env)
        if r is not None and math.isfinite(r.lo):
            lower = r.lo if lower is None else max(lower, r.lo)
    minimizer, why_min = (None, "")
    if len(problem.variables) == 1:
        minimizer, why_min = _verified_minimizer(problem, convexity, lower)
    if lower is not None:
        reason = f"L >= {lower:.6g} on the whole domain (interval arithmetic)"
        return True, minimizer, reason + (f"; {why_min}" if why_min else "")
    if minimizer is not None:
        return True, minimizer, why_min
    reason = _unbounded_below(problem)
    if reason:
        return False, None, reason
    return None, None, "no lower bound found, and unboundedness not proved"


def _verified_minimizer(problem: Problem, convexity: Convexity, lower) -> tuple[dict | None, str]:
    x = problem.variables[0]
    others = {k: v for k, v in problem.env.items() if k != x}
    domain = problem.env[x]
    try:
        candidates = _candidates(problem)
    except Exception:  # noqa: BLE001
        candidates = []
    for kind, c, left, right in candidates:
        c = limited(lambda: sp.simplify(c), 0.5, c) if sp.count_ops(c) < 60 else c
        if c.has(x):
            continue
        # x* must be a value of the domain for every other value (apart from closed ends, each
        # checked separately below).
        box, removed = others, []
        if not _inside_domain(c, domain, box):
            box, removed = _open_closed_ends(others, ())
            if not _inside_domain(c, domain, box):
                continue
        if convexity.verdict in ("convex", "affine"):
            slope_left = to_elementary(sp.diff(left, x).xreplace({x: c}))
            slope_right = to_elementary(sp.diff(right, x).xreplace({x: c}))
            if not ((is_zero(slope_left) or prove_nonnegative(-slope_left, box))
                    and (is_zero(slope_right) or prove_nonnegative(slope_right, box))):
                continue
            why = f"convex with 0 in its subdifferential at {x} = {text(c)}"
        elif lower is not None and lower == 0 and is_zero(problem.expr.xreplace({x: c})):
            why = f"L >= 0 and L = 0 at {x} = {text(c)}"
        else:
            continue
        # At the ends removed from the box, the loss must still be bounded below.
        for s, v in removed:
            rest = {k: r for k, r in problem.env.items() if k != s}
            r = bound(problem.expr.xreplace({s: sp.Rational(repr(v))}), rest)
            if r is None or not math.isfinite(r.lo):
                break
        else:
            if removed:
                why += "; at " + ", ".join(f"{s} = {v:g}" for s, v in removed) + " bounded below by interval arithmetic"
            return {x.name: c}, why
    return None, ""


def _inside_domain(c: sp.Expr, domain: Range, env) -> bool:
    """x* = c lies in x's domain for every value of the other symbols in env."""
    if not _defined(c, env):
        return False
    r = bound(c, env)
    if r is None:
        return False
    low_ok = r.lo > domain.lo or (r.lo == domain.lo and (r.lo_open or not domain.lo_open))
    high_ok = r.hi < domain.hi or (r.hi == domain.hi and (r.hi_open or not domain.hi_open))
    return low_ok and high_ok


def _unbounded_below(problem: Problem) -> str | None:
    """A limit of -oo as one wrt input approaches an end of its domain, others typical."""
    from .functions import to_reference_form

    if sp.count_ops(problem.expr) > 120:
        return None
    typical = {s: sp.Rational(repr(problem.defaults.get(s, 0.5))) for s in problem.domain if s not in problem.variables}
    for v in problem.variables:
        rest = {w: sp.Rational(repr(problem.defaults.get(w, 0.5))) for w in problem.variables if w != v}
        e = to_reference_form(problem.expr.xreplace(typical).xreplace(rest))
        interval = problem.domain[v]
        ends = []
        if interval.end is sp.oo or interval.right_open:
            ends.append((interval.end, "-"))
        if interval.start is -sp.oo or interval.left_open:
            ends.append((interval.start, "+"))
        for end, direction in ends:
            value = one_sided_limit(e, v, end, direction, interval)
            if value == -sp.oo:
                return f"L -> -oo as {v} -> {end}"
    return None
