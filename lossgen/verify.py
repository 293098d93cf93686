"""Verify: check generated kernels against finite differences and a high-precision reference.

Two independent checks, on random inputs and on hard ones (domain edges, huge and tiny values):

* accuracy: the kernel's loss, gradient and Hessian diagonal against mpmath evaluations of the
  loss *as written* and of its derivatives taken afresh from that form (so a wrong stabilizing
  rewrite is caught). The precision starts high enough for the inputs' magnitude and doubles
  until two evaluations agree;
* consistency: the kernel's gradient against central differences of its own loss, and its
  Hessian against central differences of its own gradient, away from kinks.

Relative errors are measured against the true value, except where the true value is a
cancellation of larger terms: there the error is measured against those terms' size (a result
that cancels to 1e-20 from terms of size 1 cannot be known better than the terms' rounding).
Below the dtype's smallest normal number an absolute error of that size is not a fault.
"""

from __future__ import annotations

import functools
import itertools
import math
from dataclasses import dataclass, field

import mpmath
import numpy as np
import sympy as sp

from . import derive
from .errors import VerificationError
from .functions import to_reference_form

# Per dtype: relative tolerance, ulps of cancellation allowed, finite-difference tolerance.
TOLERANCES = {
    "float64": {"rtol": 1e-10, "cancel_ulps": 64.0, "fd_rtol": 1e-5},
    "float32": {"rtol": 1e-4, "cancel_ulps": 64.0, "fd_rtol": 2e-2},
}

# Hard magnitudes per dtype for inputs on an unbounded side of their domain.
HARD_MAGNITUDES = {
    "float64": (0.0, 1e-300, 1e-12, 1e-6, 0.5, 1.0, 2.0, 30.0, 100.0, 700.0, 1000.0),
    "float32": (0.0, 1e-30, 1e-6, 0.5, 1.0, 2.0, 30.0, 88.0, 100.0),
}
EDGE_OFFSETS = {"float64": (1e-300, 1e-15, 1e-8), "float32": (1e-30, 1e-7, 1e-4)}
AGREE_DIGITS = 25
MAX_DIGITS = 4000


@dataclass(frozen=True)
class OutputCheck:
    """Worst case of one checked output ("loss", "grad_p", "fd_hess_p", ...)."""

    output: str
    max_rel_err: float
    tolerance: float
    worst_input: dict
    kernel_value: float
    reference_value: float
    checked: int

    @property
    def ok(self) -> bool:
        return self.max_rel_err <= self.tolerance

    def message(self) -> str:
        point = ", ".join(f"{k}={v!r}" for k, v in self.worst_input.items())
        return (
            f"{self.output}: relative error {self.max_rel_err:.3g} > tolerance {self.tolerance:.3g} at {point}: "
            f"kernel {self.kernel_value!r}, reference {self.reference_value!r}"
        )


@dataclass(frozen=True)
class VerificationReport:
    """Outcome of lg.verify: .ok, .max_rel_err per output, .worst input per output, .failures."""

    loss: str
    dtype: str
    samples: int
    checks: tuple[OutputCheck, ...]
    max_rel_err: dict = field(default_factory=dict)
    worst: dict = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks)

    @property
    def failures(self) -> tuple[str, ...]:
        return tuple(c.message() for c in self.checks if not c.ok)

    def raise_if_failed(self) -> None:
        """Raise VerificationError naming every failing output."""
        if not self.ok:
            raise VerificationError(f"{self.loss} ({self.dtype}): " + "; ".join(self.failures))

    def summary(self) -> str:
        """One line: loss, dtype, verdict and the worst error of every output."""
        parts = ", ".join(f"{c.output} {c.max_rel_err:.1e}" for c in self.checks)
        return f"{self.loss:<26} {self.dtype:<8} {'ok  ' if self.ok else 'FAIL'} n={self.samples}  {parts}"


# --- inputs -------------------------------------------------------------------------------

def _random_values(interval: sp.Interval, count: int, rng: np.random.Generator, dtype: str) -> np.ndarray:
    lo, hi = float(interval.start), float(interval.end)
    top = 3.0 if dtype == "float64" else 2.0
    if math.isinf(lo) and math.isinf(hi):
        magnitude = np.where(rng.random(count) < 0.7, np.abs(rng.normal(0, 2, count)), 10 ** rng.uniform(-8, top, count))
        return magnitude * rng.choice([-1.0, 1.0], count)
    if math.isinf(hi):
        return lo + np.where(rng.random(count) < 0.7, np.abs(rng.normal(0, 2, count)), 10 ** rng.uniform(-8, top, count))
    if math.isinf(lo):
        return hi - np.where(rng.random(count) < 0.7, np.abs(rng.normal(0, 2, count)), 10 ** rng.uniform(-8, top, count))
    return lo + (hi - lo) * rng.random(count)


def _hard_values(interval: sp.Interval, dtype: str) -> list[float]:
    lo, hi = float(interval.start), float(interval.end)
    values = set()
    for m in HARD_MAGNITUDES[dtype]:
        for v in (m, -m, lo + m, hi - m):
            values.add(v)
    for offset in EDGE_OFFSETS[dtype]:
        values.update((lo + offset, hi - offset, lo + offset * max(1.0, abs(lo)), hi - offset * max(1.0, abs(hi))))
    if not math.isinf(lo) and not interval.left_open:
        values.add(lo)
    if not math.isinf(hi) and not interval.right_open:
        values.add(hi)
    if not (math.isinf(lo) or math.isinf(hi)):
        values.add((lo + hi) / 2)
    cast = np.array(sorted(v for v in values if math.isfinite(v)), dtype=dtype).astype(np.float64)
    return [float(v) for v in cast if interval.contains(sp.Float(v, 30)) and math.isfinite(v)]


def sample_inputs(loss, n: int, seed: int, dtype: str) -> dict[str, np.ndarray]:
    """Random and hard input values from each input's domain, as arrays of `dtype`."""
    rng = np.random.default_rng(seed)
    names = list(loss.inputs)
    columns = {name: list(_random_values(loss.domain[name], n, rng, dtype)) for name in names}
    hard = {name: _hard_values(loss.domain[name], dtype) for name in names}
    # Every hard value of each input beside random values of the others ...
    for name in names:
        for value in hard[name]:
            for other in names:
                columns[other].append(value if other == name else float(_random_values(loss.domain[other], 1, rng, dtype)[0]))
    # ... and, for two inputs, every pair of hard values (where the hardest cases live).
    if len(names) == 2:
        a, b = names
        for va in hard[a]:
            for vb in hard[b]:
                columns[a].append(va)
                columns[b].append(vb)
    arrays = {name: np.asarray(col, dtype=dtype) for name, col in columns.items()}
    inside = np.ones(len(arrays[names[0]]), dtype=bool)
    for name in names:
        interval = loss.domain[name]
        values = arrays[name].astype(np.float64)
        lo, hi = float(interval.start), float(interval.end)
        inside &= (values > lo) | ((values == lo) & (not interval.left_open))
        inside &= (values < hi) | ((values == hi) & (not interval.right_open))
    return {name: array[inside] for name, array in arrays.items()}


# --- the high-precision reference ---------------------------------------------------------

def _magnitude(expr: sp.Expr) -> sp.Expr:
    """A first-order bound on how large a rounding error evaluating `expr` can make, per unit
    of relative error: sums add their terms' sizes, and a function adds its argument's size
    times its slope (log near 1 magnifies the error of its argument; so does exp of a big one).
    """
    if isinstance(expr, sp.Add):
        return sp.Add(*(_magnitude(a) for a in expr.args))
    if isinstance(expr, sp.Mul):
        return sp.Mul(*(_magnitude(a) for a in expr.args))
    if isinstance(expr, sp.Pow):
        base, exponent = expr.args
        if exponent.is_Integer and exponent > 0:
            return _magnitude(base) ** exponent
        slope = sp.Abs(exponent * base ** (exponent - 1)) * _magnitude(base)
        if not exponent.is_number:
            slope += sp.Abs(expr * sp.log(sp.Abs(base))) * _magnitude(exponent)
        return sp.Abs(expr) + slope
    if isinstance(expr, sp.Piecewise):
        return sp.Piecewise(*((_magnitude(e), c) for e, c in expr.args))
    if isinstance(expr, (sp.Max, sp.Min, sp.Abs, sp.sign)):
        return sp.Abs(expr) + sp.Add(*(_magnitude(a) for a in expr.args))
    if isinstance(expr, sp.Function) and expr.args:
        size = sp.Abs(expr)
        for index, arg in enumerate(expr.args, start=1):
            if not arg.is_number:
                size += sp.Abs(expr.fdiff(index)) * _magnitude(arg)
        return size
    return sp.Abs(expr)


@dataclass(frozen=True)
class Reference:
    """mpmath functions for the loss as written and its derivatives, with their magnitudes."""

    names: tuple[str, ...]
    outputs: tuple[str, ...]
    values: object
    magnitudes: object


@functools.lru_cache(maxsize=128)
def reference_for(loss) -> Reference:
    """Build (once per loss) mpmath evaluators of loss, gradient and Hessian diagonal."""
    symbols = [loss.symbol(n) for n in (*loss.inputs, *loss.params)]
    variables = [loss.symbol(w) for w in loss.wrt]
    written = loss.expr
    grad = derive.gradient(written, variables)
    hess = [derive.differentiate(g, v) for g, v in zip(grad, variables)]
    exprs = [to_reference_form(e) for e in (written, *grad, *hess)]
    outputs = ("loss", *(f"grad_{w}" for w in loss.wrt), *(f"hess_{w}" for w in loss.wrt))
    values = sp.lambdify(symbols, exprs, modules="mpmath")
    magnitudes = sp.lambdify(symbols, [_magnitude(e) for e in exprs], modules="mpmath")
    return Reference(tuple(str(s) for s in symbols), outputs, values, magnitudes)


def _agree(a, b) -> bool:
    if a == b:
        return True
    if not (mpmath.isfinite(a) and mpmath.isfinite(b)):
        return False
    return abs(a - b) <= mpmath.mpf(10) ** (-AGREE_DIGITS) * max(abs(a), abs(b))


def evaluate_reference(reference: Reference, point: list[float]) -> tuple[list, list]:
    """Values and magnitudes at one point, at a precision doubled until two evaluations agree.

    The first precision grows with the inputs' size: exp(-x) beside 1 needs about 0.44*x digits.
    Exact zeros are rechecked at higher precision, since cancellation also produces zeros.
    """
    biggest = max((abs(v) for v in point), default=0.0)
    digits = 30 + int(0.9 * min(biggest, 2000.0))
    previous = None
    while True:
        with mpmath.workdps(digits):
            args = [mpmath.mpf(v) for v in point]
            current = _real_values(reference.values, args, len(reference.outputs))
        if previous is not None and all(_agree(a, b) for a, b in zip(previous, current)):
            if all(v != 0 for v in current) or digits >= MAX_DIGITS:
                break
        if digits >= MAX_DIGITS:
            break
        previous = current
        digits *= 2
    with mpmath.workdps(30):
        args = [mpmath.mpf(v) for v in point]
        sizes = [abs(v) for v in _real_values(reference.magnitudes, args, len(reference.outputs))]
    return current, sizes


def _real_values(function, args, count: int) -> list:
    """Evaluate; outside the formula's real domain (log of a negative, 0/0) the values are nan."""
    try:
        values = function(*args)
    except (ZeroDivisionError, ValueError, OverflowError, TypeError):
        return [mpmath.nan] * count
    return [v if isinstance(v, mpmath.mpf) else (mpmath.mpf(v) if not isinstance(v, mpmath.mpc) else mpmath.nan) for v in values]


# --- comparison ---------------------------------------------------------------------------

def _relative_errors(kernel: np.ndarray, truth: list, sizes: list, dtype: str) -> np.ndarray:
    info = np.finfo(dtype)
    tol = TOLERANCES[dtype]
    biggest = float(info.max)
    errors = np.zeros(len(kernel))
    for i, (k, t, m) in enumerate(zip(kernel, truth, sizes)):
        if not mpmath.isfinite(t) or abs(t) > biggest:
            errors[i] = 0.0 if (not math.isfinite(k) or abs(k) >= biggest / 2) or not mpmath.isfinite(t) else np.inf
            continue
        if not math.isfinite(k):
            errors[i] = np.inf
            continue
        t = float(t)
        m = float(min(m, mpmath.mpf(biggest))) if mpmath.isfinite(m) else biggest
        scale = max(abs(t), tol["cancel_ulps"] * float(info.eps) * m / tol["rtol"], float(info.tiny) / tol["rtol"])
        errors[i] = abs(float(k) - t) / scale
    return errors


def _nearby_error(reference, point, param_values, j, kernel_value, error, dtype) -> float:
    """Smallest error of the kernel value against the truth at inputs a few ulps away.

    Where an output is discontinuous (a Piecewise boundary) the rounding of the inputs can pick
    the other branch; a kernel that is exact for inputs within 4 ulps is not at fault.
    """
    eps = float(np.finfo(dtype).eps)
    best = error
    for factors in itertools.product((1.0, 1.0 - 4 * eps, 1.0 + 4 * eps), repeat=len(point)):
        if all(f == 1.0 for f in factors):
            continue
        moved = [v * f for v, f in zip(point, factors)]
        values, magnitudes = evaluate_reference(reference, moved + param_values)
        moved_error = _relative_errors(np.array([kernel_value]), [values[j]], [magnitudes[j]], dtype)[0]
        best = min(best, moved_error)
    return best


def _fd_errors(fun, derivative, columns, name, domain, dtype: str, magnitude=None, length_scale=None):
    """Central differences of `fun` in input `name` against `derivative`; NaN where not checkable.

    Richardson extrapolation of steps h and h/2 cancels the h**2 truncation term, so the step
    can scale with |x| without the check failing on curvature far from the origin.
    """
    info = np.finfo(dtype)
    x = columns[name].astype(np.float64)
    h = np.cbrt(info.eps) * np.maximum(np.abs(x), 1.0)
    lo, hi = float(domain.start), float(domain.end)
    # Near an open domain edge the function may be singular: stay far inside it.
    h = np.minimum(h, 0.01 * np.minimum(x - lo, hi - x))
    if length_scale is not None:
        # |g/H| is how far the slope changes by its own size (the distance to a pole, say);
        # the stencil stays well inside it, shrinking the step by at most 1000x.
        with np.errstate(all="ignore"):
            limit = np.where(np.isfinite(length_scale) & (length_scale > 0), 0.01 * length_scale, np.inf)
        h = np.minimum(h, np.maximum(limit, 1e-3 * h))

    def shifted(step):
        moved = dict(columns)
        moved[name] = (x + step).astype(dtype)
        return fun(moved).astype(np.float64), moved[name].astype(np.float64) - x

    f0 = fun(columns).astype(np.float64)
    fp, hp = shifted(h)
    fm, hm = shifted(-h)
    fp2, hp2 = shifted(h / 2)
    fm2, hm2 = shifted(-h / 2)
    with np.errstate(all="ignore"):
        forward = (fp - f0) / hp
        backward = (f0 - fm) / -hm
        wide = (fp - fm) / (hp - hm)
        narrow = (fp2 - fm2) / (hp2 - hm2)
        central = (4 * narrow - wide) / 3
        size = np.maximum.reduce([np.abs(f0), np.abs(fp), np.abs(fm)])
        if magnitude is not None:
            # A value that cancels carries the rounding error of its terms, not of itself.
            size = np.maximum(size, magnitude)
        noise = 8 * info.eps * size / np.minimum(hp2, -hm2)
        exact = derivative.astype(np.float64)
        # A kink inside the stencil shows as one-sided slopes that disagree far beyond curvature.
        kink = np.abs(forward - backward) > 1e-2 * np.maximum(np.abs(forward), np.abs(backward)) + 100 * noise
        # A jump inside the stencil makes the slope grow as the step shrinks (1/h).
        kink |= np.abs(narrow - wide) > 1e-2 * np.maximum(np.abs(narrow), np.abs(wide)) + 100 * noise
        usable = np.isfinite(central) & np.isfinite(exact) & (hp2 > 0) & (hm2 < 0) & ~kink
        # Below the smallest normal number a difference quotient has no precision to speak of.
        scale = np.maximum(np.abs(exact), np.abs(central)) + (100 * noise + info.tiny) / TOLERANCES[dtype]["fd_rtol"]
        errors = np.where(usable, np.abs(central - exact) / np.where(scale > 0, scale, 1.0), np.nan)
    return errors, central


def verify(loss, n: int = 1000, seed: int = 0, dtype: str = "float64") -> VerificationReport:
    """Check a loss's generated kernel (one target: CPU) for `dtype`.

    Returns a VerificationReport: .ok, .max_rel_err {output: worst relative error},
    .worst {output: input values of the worst case}, .failures (one message per failing output).
    """
    if loss.rowwise:
        return verify_rows(loss, n, seed, dtype)
    kernel = loss.compile(target="cpu", dtype=dtype, reduction="none")
    columns = sample_inputs(loss, n, seed, dtype)
    params = {k: float(np.asarray(v, dtype=dtype)) for k, v in loss.params.items()}
    result = kernel(**columns, **params)
    grads = result.grad if len(loss.wrt) > 1 else (result.grad,)
    hesses = result.hess if len(loss.wrt) > 1 else (result.hess,)
    kernel_outputs = [result.loss, *grads, *hesses]
    reference = reference_for(loss)
    count = len(result.loss)
    truths = [[None] * count for _ in reference.outputs]
    sizes = [[None] * count for _ in reference.outputs]
    param_values = [params[k] for k in loss.params]
    for i in range(count):
        point = [float(columns[name][i]) for name in loss.inputs] + param_values
        values, magnitudes = evaluate_reference(reference, point)
        for j in range(len(reference.outputs)):
            truths[j][i] = values[j]
            sizes[j][i] = magnitudes[j]
    checks = []
    tol = TOLERANCES[dtype]
    # Where the loss itself is undefined (log of a negative: outside the formula's real domain)
    # nothing is checked; derivative formulas may still evaluate there, meaninglessly.
    defined = np.array([not mpmath.isnan(t) for t in truths[0]])
    columns = {name: column[defined] for name, column in columns.items()}
    kernel_outputs = [output[defined] for output in kernel_outputs]
    grads, hesses = kernel_outputs[1:1 + len(loss.wrt)], kernel_outputs[1 + len(loss.wrt):]
    truths = [[t for t, keep in zip(row, defined) if keep] for row in truths]
    sizes = [[m for m, keep in zip(row, defined) if keep] for row in sizes]
    for j, output in enumerate(reference.outputs):
        errors = _relative_errors(kernel_outputs[j], truths[j], sizes[j], dtype)
        for i in np.flatnonzero(errors > tol["rtol"]):
            point = [float(columns[name][i]) for name in loss.inputs]
            errors[i] = _nearby_error(reference, point, param_values, j, kernel_outputs[j][i], errors[i], dtype)
        checks.append(_worst(output, errors, tol["rtol"], columns, kernel_outputs[j], [float(t) for t in truths[j]]))
    for k, w in enumerate(loss.wrt):
        def loss_of(cols):
            return kernel(**cols, **params).loss

        def grad_of(cols, k=k):
            g = kernel(**cols, **params).grad
            return g[k] if len(loss.wrt) > 1 else g

        loss_size = _as_floats(sizes[0])
        grad_size = _as_floats(sizes[1 + k])
        for output, fun, derivative, size in (
            (f"fd_grad_{w}", loss_of, grads[k], loss_size),
            (f"fd_hess_{w}", grad_of, hesses[k], grad_size),
        ):
            with np.errstate(all="ignore"):
                scale = np.abs(grads[k].astype(np.float64) / hesses[k].astype(np.float64))
            errors, central = _fd_errors(fun, derivative, columns, w, loss.domain[w], dtype, size, scale)
            checks.append(_worst(output, np.nan_to_num(errors, nan=0.0), tol["fd_rtol"], columns, derivative, central))
    return VerificationReport(
        loss=loss.name,
        dtype=dtype,
        samples=int(defined.sum()),
        checks=tuple(checks),
        max_rel_err={c.output: c.max_rel_err for c in checks},
        worst={c.output: c.worst_input for c in checks},
    )


def _as_floats(values) -> np.ndarray:
    with np.errstate(over="ignore"):
        return np.array([float(v) if mpmath.isfinite(v) else np.inf for v in values])


def _worst(output, errors, tolerance, columns, kernel_values, reference_values) -> OutputCheck:
    errors = np.where(np.isnan(errors), np.inf, errors)
    i = int(np.argmax(errors)) if len(errors) else 0
    worst_input = {name: float(col[i]) for name, col in columns.items()} if len(errors) else {}
    return OutputCheck(
        output=output,
        max_rel_err=float(errors[i]) if len(errors) else 0.0,
        tolerance=tolerance,
        worst_input=worst_input,
        kernel_value=float(kernel_values[i]) if len(errors) else 0.0,
        reference_value=float(reference_values[i]) if len(errors) else 0.0,
        checked=len(errors),
    )


# --- row-wise losses ----------------------------------------------------------------------

REFERENCE_CLASSES = 4


@functools.lru_cache(maxsize=256)
def _row_reference(loss, labels: tuple) -> Reference:
    """mpmath evaluators for one row with concrete labels: aggregates written out over
    REFERENCE_CLASSES classes and differentiated element by element, independently of the
    aggregate derivative rules the kernel was generated with."""
    from .rowwise import expand_row

    C = REFERENCE_CLASSES
    row_names = [n for n in loss.inputs if loss.roles[n] == "row"] + list(loss.spec.class_params)
    elements = {loss.symbol(n): [sp.Symbol(f"{n}_{j}", real=True) for j in range(C)] for n in row_names}
    label_values = {loss.symbol(n): v for n, v in zip([n for n in loss.inputs if loss.roles[n] == "label"], labels)}
    written = expand_row(loss.expr, elements, label_values, C)
    wrt = [elements[loss.symbol(w)] for w in loss.wrt]
    exprs = [written]
    for variables in wrt:
        grads = [derive.differentiate(written, v) for v in variables]
        exprs += grads
        exprs += [derive.differentiate(g, v) for g, v in zip(grads, variables)]
    exprs = [to_reference_form(e) for e in exprs]
    per_row = [loss.symbol(n) for n in loss.inputs if loss.roles[n] != "row"]
    scalars = [loss.symbol(n) for n in loss.params if n not in loss.spec.class_params]
    symbols = [s for n in row_names for s in elements[loss.symbol(n)]] + per_row + scalars
    outputs = ("loss", *(f"{kind}_{w}[{j}]" for w in loss.wrt for kind in ("grad", "hess") for j in range(C)))
    values = sp.lambdify(symbols, exprs, modules="mpmath")
    magnitudes = sp.lambdify(symbols, [_magnitude(e) for e in exprs], modules="mpmath")
    return Reference(tuple(str(s) for s in symbols), outputs, values, magnitudes)


def _sample_rows(loss, rows: int, seed: int, dtype: str) -> dict:
    """Rows of random values from each input's domain, with hard values planted in some rows."""
    rng = np.random.default_rng(seed)
    C = REFERENCE_CLASSES
    data = {}
    for name in loss.inputs:
        role, interval = loss.roles[name], loss.domain[name]
        if role == "row":
            values = _random_values(interval, rows * C, rng, dtype).reshape(rows, C)
            hard = _hard_values(interval, dtype)
            for i in range(0, rows, 3):
                values[i, rng.integers(0, C)] = hard[rng.integers(0, len(hard))]
            data[name] = values.astype(dtype)
        elif role == "label":
            data[name] = rng.integers(0, C, rows)
        else:
            data[name] = _random_values(interval, rows, rng, dtype).astype(dtype)
    return data


def verify_rows(loss, n: int, seed: int, dtype: str) -> VerificationReport:
    """verify() for a row-wise loss: rows of REFERENCE_CLASSES classes, element by element."""
    C = REFERENCE_CLASSES
    rows = max(8, n // 10)
    data = _sample_rows(loss, rows, seed, dtype)
    kernel = loss.compile(target="cpu", dtype=dtype, reduction="none")
    params = {k: float(np.asarray(v, dtype=dtype)) for k, v in loss.params.items()}
    result = kernel(**data, **params)
    grads = result.grad if len(loss.wrt) > 1 else (result.grad,)
    hesses = result.hess if len(loss.wrt) > 1 else (result.hess,)
    row_names = [n for n in loss.inputs if loss.roles[n] == "row"]
    label_names = [n for n in loss.inputs if loss.roles[n] == "label"]
    per_row = [n for n in loss.inputs if loss.roles[n] != "row"]
    scalars = [params[k] for k in loss.params if k not in loss.spec.class_params]
    truths, sizes = [], []
    for i in range(rows):
        reference = _row_reference(loss, tuple(int(data[n][i]) for n in label_names))
        point = [float(v) for n in row_names for v in data[n][i]]
        point += [float(params[c]) for c in loss.spec.class_params for _ in range(C)]
        point += [float(data[n][i]) for n in per_row] + scalars
        values, magnitudes = evaluate_reference(reference, point)
        truths.append(values)
        sizes.append(magnitudes)
    tol = TOLERANCES[dtype]
    columns = {name: data[name] for name in loss.inputs}
    checks = []

    def check(output, kernel_values, index):
        truth = [t[index] for t in truths]
        size = [m[index] for m in sizes]
        errors = _relative_errors(kernel_values, truth, size, dtype)
        flat = {k: (v if v.ndim == 1 else v[:, 0]) for k, v in columns.items()}
        return _worst(output, errors, tol["rtol"], flat, kernel_values, [float(t) for t in truth])

    checks.append(check("loss", result.loss, 0))
    for k, w in enumerate(loss.wrt):
        base = 1 + k * 2 * C
        worst_grad = max((check(f"grad_{w}", grads[k][:, j], base + j) for j in range(C)), key=lambda c: c.max_rel_err)
        worst_hess = max((check(f"hess_{w}", hesses[k][:, j], base + C + j) for j in range(C)), key=lambda c: c.max_rel_err)
        checks += [worst_grad, worst_hess]
        for output, derivative, take in ((f"fd_grad_{w}", grads[k], "loss"), (f"fd_hess_{w}", hesses[k], "grad")):
            worst = None
            for j in range(C):
                index = 0 if take == "loss" else base + j
                magnitude = _as_floats([m[index] for m in sizes])
                def fun(cols, j=j):
                    moved = dict(data)
                    array = data[w].copy()
                    array[:, j] = cols[w]
                    moved[w] = array
                    out = kernel(**moved, **params)
                    return out.loss if take == "loss" else (out.grad if len(loss.wrt) == 1 else out.grad[k])[:, j]
                errors, central = _fd_errors(fun, derivative[:, j], {w: data[w][:, j]}, w, loss.domain[w], dtype, magnitude)
                candidate = _worst(output, np.nan_to_num(errors, nan=0.0), tol["fd_rtol"], {w: data[w][:, j]}, derivative[:, j], central)
                worst = candidate if worst is None or candidate.max_rel_err > worst.max_rel_err else worst
            checks.append(worst)
    return VerificationReport(
        loss=loss.name,
        dtype=dtype,
        samples=rows,
        checks=tuple(checks),
        max_rel_err={c.output: c.max_rel_err for c in checks},
        worst={c.output: c.worst_input for c in checks},
    )
