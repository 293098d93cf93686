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

from .convexity import (
    NONSMOOTH, Convexity, Problem, Range, bound, depends, high_precision, is_zero, make_problem, make_problem_check,
    mpmath_function, numpy_function, evaluate, prove_nonnegative, prove_on_segment, sample_others, segment,
    smooth_in, special_values, text, unknown_node,
)
from .functions import logratio, log1pmx, sqrt1pm1, xlogy

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
    make_problem_check(loss, fixed)
    return _cached(loss, tuple(sorted((k, float(v)) for k, v in fixed.items())))


@functools.lru_cache(maxsize=256)
def _cached(loss, fixed: tuple) -> LossProperties:
    fixed = dict(fixed)
    convexity = loss.convexity(**fixed)
    if getattr(loss.spec, "rowwise", False) or unknown_node(loss.expr) is not None:
        return LossProperties(convexity=convexity, reasons=types.MappingProxyType({"all": "no rules for this loss's node types"}))
    problem = make_problem(loss, fixed)
    reasons: dict[str, str] = {}
    smoothness, kinks, why = _guarded(lambda: smoothness_of(problem), ("unknown", (), "not analyzed"))
    reasons["smoothness"] = why
    subs = {loss.symbol(k): sp.Rational(repr(float(v))) for k, v in fixed.items()}
    hessian = loss.hess.xreplace(subs)
    sign, why = _guarded(lambda: hessian_sign_of(problem, hessian), ("unknown", "not analyzed"))
    reasons["hessian_sign"] = why
    constant, why = _guarded(lambda: hessian_constant_of(problem, hessian), (None, "not analyzed"))
    reasons["hessian_constant"] = why
    at = {k: float(v) for k, v in loss.params.items() if k not in fixed}
    defaults = {loss.symbol(k): sp.Rational(repr(v)) for k, v in at.items()}
    grads = [g.xreplace(subs).xreplace(defaults) for g in loss.grad]
    grad_bound, why = _guarded(lambda: grad_bound_of(problem, grads, defaults), (None, "not analyzed"))
    reasons["grad_bound"] = why
    below, minimizer, why = _guarded(lambda: bounded_below_of(problem, convexity), (None, None, "not analyzed"))
    reasons["bounded_below"] = why
    return LossProperties(
        convexity=convexity, smoothness=smoothness, kinks=tuple(kinks), hessian_sign=sign, hessian_constant=constant,
        grad_bound=grad_bound, bounded_below=below,
        minimizer=None if minimizer is None else types.MappingProxyType(minimizer),
        grad_bound_params=types.MappingProxyType(at), reasons=types.MappingProxyType(reasons),
    )


def _guarded(run, fallback):
    """Run one analysis; an unexpected failure means "unknown", never a crash (LOSSGEN_DEBUG=1 re-raises)."""
    import os

    try:
        return run()
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
        elif isinstance(node, (sqrt1pm1, log1pmx)) or type(node).__name__ == "log1p":
            r = bound(node.args[0] + 1, env)
            if r is None or not r.positive():
                return False
        elif isinstance(node, (sp.Symbol, sp.Number, sp.Add, sp.Mul)) or isinstance(node, sp.Function):
            continue
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
    order = np.argsort(w[:, 0])
    for idx in order[:10]:
        if w[idx, 0] >= 0:
            break
        i = ok[idx]
        d = vecs[idx][:, 0]
        form = sum(hessian[a, b] * float(d[a]) * float(d[b]) for a in range(n) for b in range(n))
        value = high_precision(mpmath_function(form, symbols), [float(columns[s][i]) for s in symbols])
        if value is not None and value < 0:
            point = {s.name: float(columns[s][i]) for s in symbols}
            return {"point": point, "direction": {v.name: float(d[k]) for k, v in enumerate(variables)}, "value": float(value)}
    return None


def hessian_sign_of(problem: Problem, hessian: sp.Matrix) -> tuple[str, str]:
    """("positive" | "nonnegative" | "indefinite" | "zero_ae" | "unknown", reason) for the a.e. Hessian."""
    variables = problem.variables
    n = len(variables)
    env = problem.env
    if all(_zero_ae(h) for h in hessian):
        return "zero_ae", "the Hessian is 0 wherever the loss is twice differentiable"
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
        at = ", ".join(f"{k}={v:.6g}" for k, v in witness["point"].items())
        return "indefinite", f"negative at {at} (d^T H d = {witness['value']:.3g}, rechecked in mpmath)"
    return "unknown", "neither a sign nor a negative value could be established"


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
            h = sp.simplify(h)
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
        a, b = finite[np.argmin(values[finite])], finite[np.argmax(values[finite])]
        fn = mpmath_function(h, symbols)
        va = high_precision(fn, [float(columns[s][a]) for s in symbols])
        vb = high_precision(fn, [float(columns[s][b]) for s in symbols])
        if va is not None and vb is not None and va != vb:
            return False, f"{text(h, 60)} takes the values {float(va):.6g} and {float(vb):.6g}"
    return None, "could not decide whether the Hessian depends on the inputs"


# --- gradient bound -----------------------------------------------------------------------------

def _magnitude_bound(g: sp.Expr, x, env) -> float:
    """A rigorous bound of |g| over the box: the best of several equal forms and, for a gradient
    with kinks in one variable, of its pieces on their segments."""
    from .convexity import candidate_forms

    best = math.inf
    for form in candidate_forms(g, max_ops=200):
        r = bound(form, env)
        if r is not None:
            best = min(best, r.magnitude)
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
    from .functions import to_reference_form

    inputs = [s for s in problem.domain if s not in defaults]
    if sp.count_ops(g) > 120:
        return None
    for s in inputs:
        interval = problem.domain[s]
        typical = {o: sp.Rational(repr(problem.defaults.get(o, 0.5))) for o in inputs if o != s}
        e = to_reference_form(g.xreplace(typical))
        ends = []
        if interval.end is sp.oo:
            ends.append((sp.oo, "-"))
        elif interval.right_open:
            ends.append((interval.end, "-"))
        if interval.start is -sp.oo:
            ends.append((-sp.oo, "+"))
        elif interval.left_open:
            ends.append((interval.start, "+"))
        for end, direction in ends:
            try:
                value = sp.limit(e, s, end, direction)
            except Exception:  # noqa: BLE001 - SymPy could not take the limit
                continue
            if value in (sp.oo, -sp.oo, sp.zoo):
                where = ", ".join(f"{k}={v}" for k, v in typical.items())
                return f"the gradient tends to {value} as {s} -> {end}" + (f" ({where})" if where else "")
    return None


def grad_bound_of(problem: Problem, grads: list[sp.Expr], defaults) -> tuple[float | None, str]:
    """(bound, reason): sup |dL/dwrt| over the inputs' domain at the default params."""
    env = {s: r for s, r in problem.env.items() if s not in defaults}
    x = problem.variables[0] if len(problem.variables) == 1 else None
    worst = 0.0
    for g in grads:
        worst = max(worst, _magnitude_bound(g, x, env))
    if math.isfinite(worst):
        return worst, "interval arithmetic over the domain (pieces on their segments where the gradient has kinks)"
    for g in grads:
        reason = _limit_unbounded(g, problem, defaults)
        if reason:
            return math.inf, reason
    return None, "no finite bound found, and unboundedness not proved"


# --- bounded below, minimizer -------------------------------------------------------------------

def _defined(expr: sp.Expr, env) -> bool:
    """The expression is real and finite everywhere on the box (no log of 0, no pole)."""
    r = bound(expr, env)
    return r is not None and r.finite() and _analytic(expr, tuple(expr.free_symbols), env)


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
        g = sp.diff(problem.expr, x)
        if sp.count_ops(g) <= 80:
            try:
                solutions = sp.solve(g, x)
            except Exception:  # noqa: BLE001 - SymPy cannot solve it
                solutions = []
            for c in solutions:
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
        try:
            solutions = sp.solve(g, x) if sp.count_ops(g) <= 80 else []
        except Exception:  # noqa: BLE001
            solutions = []
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
        c = sp.simplify(c) if sp.count_ops(c) < 60 else c
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
            slope_left = sp.diff(left, x).xreplace({x: c})
            slope_right = sp.diff(right, x).xreplace({x: c})
            if not (prove_nonnegative(-slope_left, box) and prove_nonnegative(slope_right, box)):
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
    if not _defined(c, env):
        return False
    r = bound(c, env)
    return r is not None and (r.lo > domain.lo or (r.lo == domain.lo and not domain.lo_open) or (math.isinf(domain.lo))) and \
        (r.hi < domain.hi or (r.hi == domain.hi and not domain.hi_open) or math.isinf(domain.hi))


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
            try:
                value = sp.limit(e, v, end, direction)
            except Exception:  # noqa: BLE001
                continue
            if value == -sp.oo:
                return f"L -> -oo as {v} -> {end}"
    return None
