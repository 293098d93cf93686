"""Accuracy on hard inputs: lossgen against JAX and PyTorch autograd on losses written naively.

Every case is a loss formula written the way papers print it (`log(1 + exp(-y*z))`, not
`softplus(-y*z)`). The same text is

  lossgen  compiled by `lg.Loss(...).compile(dtype, reduction="none")`: the kernel returns the
           per-sample loss, gradient and Hessian diagonal after lossgen's stabilizing rewrites;
  jax      evaluated with jax.numpy as written; the gradient is jax.grad of the per-sample
           function and the Hessian diagonal jax.grad of that gradient, both vmapped and jitted
           (float64 with jax_enable_x64);
  torch    evaluated with torch as written; the gradient is torch.autograd.grad of the summed
           loss with create_graph=True and the Hessian diagonal a second torch.autograd.grad of
           the summed gradient (elementwise losses, so that is the per-sample second derivative).

All three run on the same inputs per dtype: ordinary random values plus hard ones (logits up to
+-1000 in float64 and +-100 in float32, probabilities within 1e-15 (float64) / 1e-7 (float32) of 0
and 1, residuals log-uniform over 1e-12..1e3 with both signs, domain edges). Each output is scored
per sample against lossgen.verify's mpmath reference of the formula as written, whose precision
rises until two evaluations agree. The reference is computed once per (case, dtype), in worker
processes, kept in memory and shared by the three libraries.

Scoring (per sample, per output):
  * the truth is not finite, or too large for the dtype: the sample is skipped;
  * the output is not finite where the truth is finite: a non-finite fault;
  * |x - ref| <= the dtype's smallest normal number: exact (underflow is not a fault);
  * otherwise the relative error |x - ref| / |ref|.
An output passes when it has no non-finite fault and >= 99.9% of the scored samples are within
1e-10 (float64) or 1e-4 (float32). A case passes for a library when all three outputs pass.

    LOSSGEN_CACHE_DIR=/tmp/lgc-acc python benchmarks/accuracy.py [--n 2000] [--dtypes float64,float32]
        [--cases bce_naive,log_cosh] [--markdown docs/accuracy.md] [--jobs 2] [--seed 0]

With --markdown, the tables replace the text between `<!-- accuracy:begin -->` and
`<!-- accuracy:end -->` when the file has those markers, else the file is written anew.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import math
import multiprocessing
import os
import platform
import sys
import time
from dataclasses import dataclass, field

import numpy as np

LIBRARIES = ("lossgen", "jax", "torch")
LIBRARY_TITLES = {"lossgen": "lossgen", "jax": "JAX", "torch": "PyTorch"}
OUTPUTS = ("loss", "grad", "hess")
RTOL = {"float64": 1e-10, "float32": 1e-4}
PASS_FRACTION = 0.999
# Hard ranges per dtype: largest logit magnitude, closest approach of a probability to 0 and 1.
LOGIT_MAX = {"float64": 1000.0, "float32": 100.0}
PROB_EDGE = {"float64": 1e-15, "float32": 1e-7}
RESIDUAL_DECADES = (-12.0, 3.0)
HARD_FRACTION = 0.6
BEGIN, END = "<!-- accuracy:begin -->", "<!-- accuracy:end -->"


# --------------------------------------------------------------------------------------------------
# Samplers: each returns `n` float64 values (cast to the dtype later), the first few fixed edge values.


def _log_uniform(rng, n, lo_decade, hi_decade):
    return 10.0 ** rng.uniform(lo_decade, hi_decade, n)


def _signs(rng, n):
    return rng.choice([-1.0, 1.0], n)


def _mix(rng, n, ordinary, hard, edges=(), hard_fraction=HARD_FRACTION):
    """`edges` first, then a random mix of ordinary and hard values."""
    values = np.where(rng.random(n) < hard_fraction, hard(n), ordinary(n))
    edges = np.asarray(edges, dtype=np.float64)[:n]
    values[: len(edges)] = edges
    return values


def logit(rng, n, dtype):
    """Logits / linear predictors: N(0, 3), and +-10**U(-12, log10(max)) up to +-1000 (f64), +-100 (f32)."""
    top = LOGIT_MAX[dtype]
    edges = (0.0, top, -top, 1e-12, -1e-12, 30.0, -30.0, 40.0, -40.0, 88.0, -88.0, 100.0, -100.0, 710.0, -710.0)
    return _mix(rng, n, lambda k: rng.normal(0.0, 3.0, k),
                lambda k: _signs(rng, k) * _log_uniform(rng, k, -12.0, math.log10(top)),
                [e for e in edges if abs(e) <= top])


def residual(rng, n, dtype):
    """Residuals: N(0, 1), and +-10**U(-12, 3)."""
    edges = (0.0, 1e-12, -1e-12, 1e-6, -1e-6, 1e3, -1e3, 30.0, -30.0, 88.0, -88.0)
    return _mix(rng, n, lambda k: rng.normal(0.0, 1.0, k),
                lambda k: _signs(rng, k) * _log_uniform(rng, k, *RESIDUAL_DECADES), edges)


def probability(rng, n, dtype):
    """Probabilities in (0, 1): U(0, 1), and 10**U(log10(edge), -1) away from 0 or from 1."""
    edge = PROB_EDGE[dtype]

    def hard(k):
        offset = _log_uniform(rng, k, math.log10(edge), -1.0)
        return np.where(rng.random(k) < 0.5, offset, 1.0 - offset)

    return _mix(rng, n, lambda k: rng.uniform(0.0, 1.0, k), hard, (edge, 1.0 - edge, 0.5, 2 * edge, 1.0 - 2 * edge))


def probability_or_one(rng, n, dtype):
    """Probabilities in (0, 1]: as `probability`, a fifth of them exactly 1."""
    values = probability(rng, n, dtype)
    chosen = np.flatnonzero(rng.random(n) < 0.2)
    values[chosen[chosen >= 5]] = 1.0  # keep the edge values
    return values


def label01(rng, n, dtype):
    """Binary targets in [0, 1]: 70% exactly 0 or 1, 30% soft labels U(0, 1)."""
    hard = lambda k: rng.integers(0, 2, k).astype(np.float64)  # noqa: E731
    return _mix(rng, n, lambda k: rng.uniform(0.0, 1.0, k), hard, (0.0, 1.0), hard_fraction=0.7)


def label_pm1(rng, n, dtype):
    """Signed targets in [-1, 1]: 70% exactly -1 or 1, 30% U(-1, 1)."""
    return _mix(rng, n, lambda k: rng.uniform(-1.0, 1.0, k), lambda k: _signs(rng, k), (1.0, -1.0), hard_fraction=0.7)


def positive(rng, n, dtype):
    """Positive targets: Exp(1), and 10**U(-12, 3)."""
    return _mix(rng, n, lambda k: rng.exponential(1.0, k), lambda k: _log_uniform(rng, k, -12.0, 3.0), (1e-12, 1e3, 1.0))


def nonnegative(rng, n, dtype):
    """Nonnegative targets: as `positive`, a fifth of them exactly 0."""
    values = positive(rng, n, dtype)
    chosen = np.flatnonzero(rng.random(n) < 0.2)
    values[chosen[chosen >= 3]] = 0.0  # keep the edge values
    return values


def count(rng, n, dtype):
    """Poisson targets: 25% zero, 25% Poisson(3) counts, 50% 10**U(-12, 3)."""
    u = rng.random(n)
    values = np.where(u < 0.25, 0.0, np.where(u < 0.5, rng.poisson(3.0, n).astype(np.float64), _log_uniform(rng, n, -12.0, 3.0)))
    values[:3] = (0.0, 1e-12, 1e3)
    return values


def nonzero_target(rng, n, dtype):
    """Targets away from 0 (MAPE): N(0, 10) and +-10**U(-3, 3)."""
    return _mix(rng, n, lambda k: rng.normal(0.0, 10.0, k) + 1e-3, lambda k: _signs(rng, k) * _log_uniform(rng, k, -3.0, 3.0), (1.0, -1.0))


def above_minus_one(rng, n, dtype):
    """r > -1: U(-1, 3), and -1 + 10**U(log10(edge), 0), +-10**U(-12, -1), 10**U(0, 3)."""
    edge = PROB_EDGE[dtype]

    def hard(k):
        u = rng.random(k)
        near = -1.0 + _log_uniform(rng, k, math.log10(edge), 0.0)
        tiny = _signs(rng, k) * _log_uniform(rng, k, -12.0, -1.0)
        large = _log_uniform(rng, k, 0.0, 3.0)
        return np.where(u < 1 / 3, near, np.where(u < 2 / 3, tiny, large))

    return _mix(rng, n, lambda k: rng.uniform(-1.0, 3.0, k), hard, (-1.0 + edge, 1e-12, -1e-12, 0.0, 1e3))


# --------------------------------------------------------------------------------------------------
# Cases


@dataclass(frozen=True)
class Case:
    name: str
    expr: str                       # lossgen formula text, as a paper prints it
    inputs: tuple[str, ...]
    wrt: str
    samplers: dict                  # input name -> sampler
    domain: dict = field(default_factory=dict)
    params: dict = field(default_factory=dict)
    array_expr: str | None = None   # the same formula for jax/torch where lossgen's text is not Python (Piecewise)
    note: str = ""


SIGMOID = "1/(1 + exp(-z))"
CASES = [
    Case("bce_naive", f"-(y*log({SIGMOID}) + (1 - y)*log(1 - {SIGMOID}))", ("y", "z"), "z",
         {"y": label01, "z": logit}, {"y": "[0, 1]"}, note="binary cross-entropy on a logit, by hand"),
    Case("logistic", "log(1 + exp(-y*z))", ("y", "z"), "z", {"y": label_pm1, "z": logit}, {"y": "[-1, 1]"},
         note="logistic loss, y in [-1, 1]"),
    Case("logistic_nll", "log(1 + exp(z)) - y*z", ("y", "z"), "z", {"y": label01, "z": logit}, {"y": "[0, 1]"},
         note="logistic-regression negative log-likelihood, textbook form"),
    Case("focal_naive", f"-(y*(1 - {SIGMOID})**2*log({SIGMOID}) + (1 - y)*({SIGMOID})**2*log(1 - {SIGMOID}))",
         ("y", "z"), "z", {"y": label01, "z": logit}, {"y": "[0, 1]"}, note="focal loss, gamma = 2, by hand"),
    Case("smooth_hinge", "Piecewise((1/2 - y*z, y*z <= 0), ((1 - y*z)**2/2, y*z < 1), (0, True))", ("y", "z"), "z",
         {"y": label_pm1, "z": logit}, {"y": "[-1, 1]"},
         array_expr="where(y*z <= 0, 0.5 - y*z, where(y*z < 1, (1 - y*z)**2/2, 0*z))",
         note="Rennie-Srebro smooth hinge"),
    Case("poisson", "exp(z) - y*z", ("y", "z"), "z", {"y": count, "z": logit}, {"y": "[0, oo)"},
         note="Poisson deviance, log link"),
    Case("gamma", "z + y*exp(-z)", ("y", "z"), "z", {"y": positive, "z": logit}, {"y": "(0, oo)"},
         note="gamma deviance, log link"),
    Case("tweedie", "-y*exp(-0.5*z)/(-0.5) + exp(0.5*z)/0.5", ("y", "z"), "z", {"y": nonnegative, "z": logit},
         {"y": "[0, oo)"}, note="Tweedie deviance, log link, power 1.5"),
    Case("kl", "y*log(y/p)", ("y", "p"), "p", {"y": probability_or_one, "p": probability},
         {"y": "(0, 1]", "p": "(0, 1)"}, note="KL / xlogy term"),
    Case("entropy", "p*log(p)", ("p",), "p", {"p": probability}, {"p": "(0, 1)"}, note="negative entropy term"),
    Case("log_cosh", "log(cosh(r))", ("r",), "r", {"r": residual}),
    Case("log_cosh_exp", "log((exp(r) + exp(-r))/2)", ("r",), "r", {"r": residual}, note="log-cosh written with exp"),
    Case("pseudo_huber", "sqrt(1 + r**2) - 1", ("r",), "r", {"r": residual}),
    Case("charbonnier", "sqrt(r**2 + eps**2) - eps", ("r",), "r", {"r": residual}, {"eps": "(0, oo)"},
         {"eps": 1e-3}, note="eps = 1e-3"),
    Case("cauchy", "log(1 + r**2)", ("r",), "r", {"r": residual}),
    Case("welsch", "1 - exp(-r**2/2)", ("r",), "r", {"r": residual}, note="Welsch / Leclerc"),
    Case("linex", "exp(a*r) - a*r - 1", ("r",), "r", {"r": residual}, {}, {"a": 1.0}, note="a = 1"),
    Case("softplus_reg", "log(1 + exp(r))", ("r",), "r", {"r": residual}),
    Case("log1p_minus_x", "log(1 + r) - r", ("r",), "r", {"r": above_minus_one}, {"r": "(-1, oo)"}),
    Case("mape", "Abs(r)/Abs(y)", ("y", "r"), "r", {"y": nonzero_target, "r": residual},
         note="absolute percentage error, r = p - y"),
]
CASES_BY_NAME = {c.name: c for c in CASES}


def build_loss(case: Case):
    import lossgen as lg

    return lg.Loss(case.name, case.expr, inputs=list(case.inputs), wrt=case.wrt, params=dict(case.params) or None,
                   domain=dict(case.domain) or None, doc=case.note)


def _domain_bounds(loss, name):
    interval = loss.domain[name]
    return float(interval.start), float(interval.end), bool(interval.left_open), bool(interval.right_open)


def make_inputs(case: Case, loss, n: int, dtype: str, seed: int) -> dict[str, np.ndarray]:
    """n samples per input (random pairing) plus, for two inputs, the grid of their first edge values."""
    rng = np.random.default_rng([seed, sum(map(ord, case.name)), 32 if dtype == "float32" else 64])
    columns = {name: case.samplers[name](rng, n, dtype) for name in case.inputs}
    if len(case.inputs) == 2:
        a, b = case.inputs
        ea, eb = columns[a][:8].copy(), columns[b][:12].copy()
        grid_a, grid_b = np.meshgrid(ea, eb, indexing="ij")
        columns[a] = np.concatenate([columns[a], grid_a.ravel()])
        columns[b] = np.concatenate([columns[b], grid_b.ravel()])
    arrays = {name: col.astype(dtype) for name, col in columns.items()}
    keep = np.ones(len(arrays[case.inputs[0]]), dtype=bool)
    for name, array in arrays.items():
        lo, hi, lo_open, hi_open = _domain_bounds(loss, name)
        v = array.astype(np.float64)
        keep &= np.isfinite(v)
        keep &= (v > lo) | ((v == lo) & (not lo_open))
        keep &= (v < hi) | ((v == hi) & (not hi_open))
    return {name: np.ascontiguousarray(array[keep]) for name, array in arrays.items()}


def param_values(case: Case, dtype: str) -> dict[str, float]:
    """Params rounded to the dtype, as every library sees them."""
    return {k: float(np.asarray(v, dtype=dtype)) for k, v in case.params.items()}


# --------------------------------------------------------------------------------------------------
# The mpmath reference (worker processes)


def _to_float(value) -> float:
    import mpmath

    if not mpmath.isfinite(value):
        return math.nan
    try:
        return float(value)
    except OverflowError:
        return math.copysign(math.inf, float(mpmath.sign(value)))


def _reference_chunk(case_name: str, points: list[list[float]]) -> list[tuple[float, float, float]]:
    """Reference loss, gradient and Hessian diagonal at each point (inputs then params), as float64.

    The value is nan where the truth is not finite and +-inf where it overflows float64.
    """
    from lossgen.verify import evaluate_reference, reference_for

    reference = reference_for(build_loss(CASES_BY_NAME[case_name]))
    return [tuple(_to_float(v) for v in evaluate_reference(reference, point)[0]) for point in points]


_REFERENCE_CACHE: dict[tuple[str, str], np.ndarray] = {}


def reference_values(case: Case, dtype: str, columns: dict, pool, chunk: int = 64) -> np.ndarray:
    """(3, n) array of reference loss, grad, hess; computed once per (case, dtype), kept in memory."""
    key = (case.name, dtype)
    if key not in _REFERENCE_CACHE:
        params = list(param_values(case, dtype).values())
        n = len(columns[case.inputs[0]])
        points = [[float(columns[name][i]) for name in case.inputs] + params for i in range(n)]
        chunks = [points[i:i + chunk] for i in range(0, n, chunk)]
        if pool is None:
            results = [_reference_chunk(case.name, c) for c in chunks]
        else:
            results = list(pool.map(_reference_chunk, [case.name] * len(chunks), chunks))
        _REFERENCE_CACHE[key] = np.array([row for part in results for row in part], dtype=np.float64).T.reshape(3, n)
    return _REFERENCE_CACHE[key]


# --------------------------------------------------------------------------------------------------
# The three libraries


def run_lossgen(case: Case, loss, columns: dict, dtype: str):
    kernel = loss.compile(target="cpu", dtype=dtype, reduction="none")
    result = kernel(*(columns[name] for name in case.inputs), **param_values(case, dtype))
    return np.asarray(result.loss), np.asarray(result.grad), np.asarray(result.hess)


def _array_namespace(module, where):
    return {"exp": module.exp, "log": module.log, "sqrt": module.sqrt, "cosh": module.cosh, "sinh": module.sinh,
            "tanh": module.tanh, "Abs": module.abs, "abs": module.abs, "where": where, "__builtins__": {}}


def run_jax(case: Case, columns: dict, dtype: str):
    import jax

    jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp

    code = compile(case.array_expr or case.expr, f"<{case.name}>", "eval")
    namespace = _array_namespace(jnp, jnp.where)
    params = param_values(case, dtype)
    k = case.inputs.index(case.wrt)

    def per_sample(*values):
        return eval(code, namespace, {**dict(zip(case.inputs, values)), **params})  # noqa: S307 - our own formula text

    grad = jax.grad(per_sample, argnums=k)
    hess = jax.grad(grad, argnums=k)
    args = [jnp.asarray(columns[name]) for name in case.inputs]
    outputs = [jax.jit(jax.vmap(f))(*args) for f in (per_sample, grad, hess)]
    return tuple(_same_dtype(np.asarray(o), dtype, "jax") for o in outputs)


def run_torch(case: Case, columns: dict, dtype: str):
    import torch

    code = compile(case.array_expr or case.expr, f"<{case.name}>", "eval")
    namespace = _array_namespace(torch, torch.where)
    params = param_values(case, dtype)
    tensors = {name: torch.from_numpy(columns[name].copy()) for name in case.inputs}
    x = tensors[case.wrt].requires_grad_(True)
    loss = eval(code, namespace, {**tensors, **params})  # noqa: S307 - our own formula text
    (grad,) = torch.autograd.grad(loss.sum(), x, create_graph=True)
    if grad.requires_grad:
        (hess,) = torch.autograd.grad(grad.sum(), x, allow_unused=True)
        if hess is None or hess._is_zerotensor():  # a structural zero (|r|'' = 0) cannot go to NumPy
            hess = torch.zeros_like(x)
    else:
        hess = torch.zeros_like(x)
    return tuple(_same_dtype(t.detach().numpy(), dtype, "torch") for t in (loss, grad, hess))


def _same_dtype(array: np.ndarray, dtype: str, library: str) -> np.ndarray:
    # A silent upcast to float64 would score float32 runs at float64 accuracy.
    if array.dtype != np.dtype(dtype):
        raise TypeError(f"{library} returned {array.dtype} for {dtype} inputs")
    return array


# --------------------------------------------------------------------------------------------------
# Scoring


@dataclass
class Score:
    scored: int
    within: int
    nonfinite: int
    median: float
    examples: tuple = ()       # sample indices reported for a failure
    error: str | None = None   # the library raised

    @property
    def fraction(self) -> float:
        return self.within / self.scored if self.scored else 1.0

    @property
    def passed(self) -> bool:
        return self.error is None and self.nonfinite == 0 and self.fraction >= PASS_FRACTION


def relative_errors(values: np.ndarray, truth: np.ndarray, dtype: str):
    """(errors, scored mask, non-finite-fault mask) per the module docstring's rule."""
    info = np.finfo(dtype)
    x = values.astype(np.float64)
    scored = np.isfinite(truth) & (np.abs(truth) <= float(info.max))
    with np.errstate(all="ignore"):
        diff = np.abs(x - truth)
        errors = np.where(diff <= float(info.tiny), 0.0, diff / np.abs(truth))
    nonfinite = scored & ~np.isfinite(x)
    errors = np.where(nonfinite, np.inf, errors)
    errors = np.where(np.isnan(errors), np.inf, errors)
    return errors, scored, nonfinite


def score(values: np.ndarray, truth: np.ndarray, dtype: str, size: np.ndarray) -> Score:
    """Score one output; for a failure, keep the mildest input (smallest `size`) that gives a
    non-finite value and the finite sample with the largest relative error."""
    errors, scored, nonfinite = relative_errors(values, truth, dtype)
    e = errors[scored]
    within = int(np.sum(e <= RTOL[dtype]))
    examples = []
    nf = np.flatnonzero(nonfinite)
    if len(nf):
        examples.append(int(nf[np.argmin(size[nf])]))
    finite_bad = np.flatnonzero(scored & ~nonfinite & (errors > RTOL[dtype]))
    if len(finite_bad):
        examples.append(int(finite_bad[np.argmax(errors[finite_bad])]))
    median = float(np.median(e)) if len(e) else 0.0
    return Score(int(scored.sum()), within, int(nonfinite.sum()), median, tuple(examples))


# --------------------------------------------------------------------------------------------------
# Driver


@dataclass
class CaseResult:
    case: Case
    dtype: str
    columns: dict       # input name -> array of the dtype
    truth: np.ndarray   # (3, n) reference loss, grad, hess (float64; nan where not finite)
    outputs: dict       # library -> (loss, grad, hess) arrays, absent where the library raised
    scores: dict        # (library, output) -> Score
    rewrites: tuple = ()

    @property
    def samples(self) -> int:
        return len(self.truth[0])

    def passed(self, library: str) -> bool:
        return all(self.scores[library, o].passed for o in OUTPUTS)

    def examples(self, library: str, output: str):
        """(inputs, {library: value}, reference, relative error) for the samples kept by the score."""
        j = OUTPUTS.index(output)
        for i in self.scores[library, output].examples:
            point = {name: self.columns[name][i] for name in self.case.inputs}
            values = {lib: out[j][i] for lib, out in self.outputs.items()}
            ref = float(self.truth[j][i])
            err = relative_errors(np.array([values[library]]), np.array([ref]), self.dtype)[0][0]
            yield point, values, ref, float(err)


def run_case(case: Case, dtype: str, n: int, seed: int, pool) -> CaseResult:
    loss = build_loss(case)
    columns = make_inputs(case, loss, n, dtype, seed)
    truth = reference_values(case, dtype, columns, pool)
    runners = {"lossgen": lambda: run_lossgen(case, loss, columns, dtype),
               "jax": lambda: run_jax(case, columns, dtype),
               "torch": lambda: run_torch(case, columns, dtype)}
    size = np.max([np.abs(columns[name].astype(np.float64)) for name in case.inputs], axis=0)
    scores, outputs = {}, {}
    for library, runner in runners.items():
        try:
            outputs[library] = tuple(np.asarray(o).reshape(-1) for o in runner())
        except Exception as exc:  # noqa: BLE001 - a library that cannot run the formula fails the case
            message = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"[:200]
            for output in OUTPUTS:
                scores[library, output] = Score(0, 0, 0, math.nan, (), message)
            continue
        for j, output in enumerate(OUTPUTS):
            scores[library, output] = score(outputs[library][j], truth[j], dtype, size)
    try:
        rewrites = tuple(loss.rewrites)
    except Exception:  # noqa: BLE001
        rewrites = ()
    return CaseResult(case, dtype, columns, truth, outputs, scores, rewrites)


def case_verdict(result: CaseResult, library: str) -> str:
    scores = [result.scores[library, o] for o in OUTPUTS]
    if scores[0].error:
        return f"ERROR ({scores[0].error})"
    failing = [(o, s) for o, s in zip(OUTPUTS, scores) if not s.passed]
    if not failing:
        return "pass"
    parts = []
    for o, s in failing:
        text = f"{o} {100 * s.fraction:.1f}%"
        if s.nonfinite:
            text += f", {s.nonfinite} non-finite"
        parts.append(text)
    return "**FAIL** (" + "; ".join(parts) + ")"


def _cell(s: Score) -> str:
    if s.error:
        return "error"
    mark = "pass" if s.passed else "**FAIL**"
    return f"{mark} {100 * s.fraction:.2f}% · {s.nonfinite} · {s.median:.1e}"


def _formula(case: Case) -> str:
    return "`" + case.expr.replace("|", "\\|") + "`"


def _number(x, dtype: str = "float64") -> str:
    """Shortest text that reads back as the same value of `dtype`."""
    return str(np.dtype(dtype).type(x))


def render_markdown(results: list[CaseResult], args, elapsed: float) -> str:
    lines = []
    dtypes = list(dict.fromkeys(r.dtype for r in results))
    lines.append(f"Generated by `benchmarks/accuracy.py --n {args.n} --dtypes {','.join(dtypes)}` "
                 f"(seed {args.seed}) in {elapsed:.0f} s on {platform.machine()} / Python {platform.python_version()}; "
                 f"{_versions()}.")
    lines.append("")
    lines.append("### Summary: cases passed")
    lines.append("")
    lines.append("| dtype | " + " | ".join(LIBRARY_TITLES[lib] for lib in LIBRARIES) + " |")
    lines.append("| --- |" + " --- |" * len(LIBRARIES))
    for dtype in dtypes:
        rs = [r for r in results if r.dtype == dtype]
        counts = [sum(r.passed(lib) for r in rs) for lib in LIBRARIES]
        lines.append(f"| {dtype} | " + " | ".join(f"{c} / {len(rs)}" for c in counts) + " |")
    for dtype in dtypes:
        rs = [r for r in results if r.dtype == dtype]
        lines += ["", f"### {dtype}: per case (rtol {RTOL[dtype]:g})", ""]
        lines.append("| case | formula | samples | " + " | ".join(LIBRARY_TITLES[lib] for lib in LIBRARIES) + " |")
        lines.append("| --- | --- | ---: |" + " --- |" * len(LIBRARIES))
        for r in rs:
            lines.append(f"| {r.case.name} | {_formula(r.case)} | {r.samples} | "
                         + " | ".join(case_verdict(r, lib) for lib in LIBRARIES) + " |")
    for dtype in dtypes:
        rs = [r for r in results if r.dtype == dtype]
        lines += ["", f"### {dtype}: per output", "",
                  "Each cell: verdict, fraction of scored samples within tolerance, count of non-finite outputs "
                  "where the truth is finite, median relative error.", ""]
        lines.append("| case | output | " + " | ".join(LIBRARY_TITLES[lib] for lib in LIBRARIES) + " |")
        lines.append("| --- | --- |" + " --- |" * len(LIBRARIES))
        for r in rs:
            for o in OUTPUTS:
                lines.append(f"| {r.case.name} | {o} | " + " | ".join(_cell(r.scores[lib, o]) for lib in LIBRARIES) + " |")
    failures = [(r, o) for r in results for o in OUTPUTS if not r.scores["lossgen", o].passed]
    lines += ["", "### lossgen failures", ""]
    if not failures:
        lines.append("None.")
    else:
        lines.append("Per failing output: the mildest input (smallest magnitude) where lossgen's value is not finite, "
                     "and the finite sample with lossgen's largest relative error; JAX's and PyTorch's values "
                     "at the same input beside it.")
        lines.append("")
        lines.append("| case | dtype | output | input | lossgen | reference | rel. error | JAX | PyTorch | rewrites applied |")
        lines.append("| --- | --- | --- | --- | --- | --- | ---: | --- | --- | --- |")
        for r, o in failures:
            s = r.scores["lossgen", o]
            if s.error:
                lines.append(f"| {r.case.name} | {r.dtype} | {o} | - | {s.error} | - | - | - | - | - |")
                continue
            for point, values, ref, err in r.examples("lossgen", o):
                where = ", ".join(f"{k}={_number(v, r.dtype)}" for k, v in point.items())
                peers = " | ".join(_number(values[lib], r.dtype) if lib in values else "error" for lib in ("jax", "torch"))
                lines.append(f"| {r.case.name} | {r.dtype} | {o} | {where} | {_number(values['lossgen'], r.dtype)} | "
                             f"{_number(ref)} | {err:.1e} | {peers} | {', '.join(r.rewrites) or '-'} |")
    return "\n".join(lines) + "\n"


def _versions() -> str:
    parts = []
    for module in ("lossgen", "jax", "torch", "numba", "sympy", "mpmath"):
        try:
            parts.append(f"{module} {__import__(module).__version__}")
        except Exception:  # noqa: BLE001
            pass
    return ", ".join(parts)


def write_markdown(path: str, text: str) -> None:
    block = f"{BEGIN}\n{text}{END}\n"
    if os.path.exists(path):
        with open(path, encoding="utf-8") as fh:
            current = fh.read()
        if BEGIN in current and END in current:
            head, rest = current.split(BEGIN, 1)
            tail = rest.split(END, 1)[1].lstrip("\n")
            block = head + block + tail
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(block)


def print_result(r: CaseResult) -> None:
    out = sys.stdout
    print(f"{r.case.name:<15} {r.dtype:<8} n={r.samples:<5} "
          + "  ".join(f"{lib}: {case_verdict(r, lib).replace('**', '')}" for lib in LIBRARIES), file=out)
    for lib in LIBRARIES:
        for o in OUTPUTS:
            if r.scores[lib, o].passed:
                continue
            for point, values, ref, err in r.examples(lib, o):
                where = ", ".join(f"{k}={_number(v, r.dtype)}" for k, v in point.items())
                print(f"    {lib:<7} {o:<4} at {where}: {_number(values[lib], r.dtype)} vs reference {_number(ref)}"
                      f" (rel. error {err:.1e})", file=out)
    out.flush()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=2000, help="samples per case and dtype (default 2000)")
    parser.add_argument("--dtypes", default="float64,float32")
    parser.add_argument("--cases", default="", help="comma-separated case names (default: all)")
    parser.add_argument("--markdown", default="", help="write the tables to this Markdown file")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="processes for the mpmath reference")
    parser.add_argument("--list", action="store_true", help="list the cases and exit")
    args = parser.parse_args(argv)
    if args.list:
        for c in CASES:
            print(f"{c.name:<15} {c.expr}")
        return 0
    dtypes = [d.strip() for d in args.dtypes.split(",") if d.strip()]
    for d in dtypes:
        if d not in RTOL:
            parser.error(f"--dtypes: unknown dtype {d!r} (float64, float32)")
    names = [c.strip() for c in args.cases.split(",") if c.strip()] or [c.name for c in CASES]
    unknown = [c for c in names if c not in CASES_BY_NAME]
    if unknown:
        parser.error(f"--cases: unknown case {unknown[0]!r}; known: {', '.join(CASES_BY_NAME)}")
    if args.n < 1:
        parser.error("--n must be positive")

    start = time.perf_counter()
    pool = None
    if args.jobs > 1:
        # spawn, not fork: the parent loads JAX, PyTorch and numba, which do not survive a fork.
        pool = concurrent.futures.ProcessPoolExecutor(args.jobs, mp_context=multiprocessing.get_context("spawn"))
    results = []
    try:
        for dtype in dtypes:
            for name in names:
                t0 = time.perf_counter()
                result = run_case(CASES_BY_NAME[name], dtype, args.n, args.seed, pool)
                results.append(result)
                print_result(result)
                print(f"    ({time.perf_counter() - t0:.1f} s)", file=sys.stderr, flush=True)
    finally:
        if pool is not None:
            pool.shutdown()
    elapsed = time.perf_counter() - start
    print()
    for dtype in dtypes:
        rs = [r for r in results if r.dtype == dtype]
        counts = ", ".join(f"{lib} {sum(r.passed(lib) for r in rs)}/{len(rs)}" for lib in LIBRARIES)
        print(f"{dtype}: cases passed: {counts}")
    print(f"total {elapsed:.0f} s")
    if args.markdown:
        write_markdown(args.markdown, render_markdown(results, args, elapsed))
    return 0


if __name__ == "__main__":
    sys.exit(main())
