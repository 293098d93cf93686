"""Elementwise losses: lossgen's fused kernel against NumPy, PyTorch autograd, JAX and the memory floor.

For each elementwise catalog loss (default parameters), dtype and size n, in one process and on the
same arrays, this times (median of --repeat rounds, each round timing every method once in a shuffled
order, after a warm-up that also compiles):

  lossgen  lg.get(name).compile(dtype, reduction="mean")(y, p): mean loss, gradient and Hessian
           diagonal in one fused, parallel pass (numba).
  numpy    the same three outputs from hand-written closed forms with NumPy array ops (one thread).
  torch    forward of the mean loss plus backward: loss and gradient only, no Hessian.
  jax      jax.jit(jax.value_and_grad(mean_loss)): loss and gradient only, no Hessian.
  stream   a numba parallel kernel that reads y and p and writes two preallocated arrays
           (g = p - y, h = p + y): the same memory traffic as lossgen's kernel with trivial
           arithmetic, the floor any fused kernel can reach.
  stream+alloc  the same kernel allocating its two outputs per call, as every method above does:
           the gap to stream is the cost of fresh pages (page faults), which the OS makes erratic
           (2 MiB transparent huge pages when it finds them, 4 KiB pages otherwise).

The peer formulas and the inputs of each loss (drawn from its domain) are in benchmarks/_peers.py.
At small n one call takes microseconds, so each method is called in a batch lasting at least
--min-time (20 ms) per round and the time per call is reported; at n = 10^3 that is per-call
overhead (argument checks, allocation, thread start-up, autograd and dispatch).

Times are reported as ratios to the stream kernel (stream = 1.00x), whose time per dtype and n is
pooled over the rounds of every loss. Before timing, each peer's loss and gradient (and NumPy's
Hessian) are checked against lossgen's; a peer that disagrees is reported and not timed. Each loss is
classed "arithmetic" (its generated kernel calls no exp, log, pow or other transcendental function;
sqrt, abs, min, max and sign count as arithmetic) or "transcendental", read from its lowered kernel code.

A shared machine distorts the parallel methods most, so rounds during which other processes used more
than --noise-limit of a core (Linux /proc accounting) are set aside and rerun, and --wait-quiet makes
each round first wait for the rest of the machine to go quiet.

    LOSSGEN_CACHE_DIR=/tmp/lossgen-bench python benchmarks/bench_elementwise.py [--wait-quiet 120] \\
        [--sizes 1000,100000,10000000] [--json out.json] [--plot out.png]
"""

from __future__ import annotations

import argparse
import ast
import functools
import importlib.util
import json
import math
import os
import platform
import random
import statistics
import sys
import time
import warnings

import numpy as np
from numba import njit, prange

import lossgen as lg
from lossgen.progress import progress, write

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # _peers, also under runpy (lossgen bench)
from _peers import NUMPY, elementwise_names, is_elementwise, jax_losses, make_inputs, torch_losses  # noqa: E402

METHODS = ("lossgen", "numpy", "torch", "jax", "stream")
PEERS = ("numpy", "torch", "jax")
TOLERANCE = {"float64": 1e-6, "float32": 1e-3}
DEFAULT_SIZES = (1_000, 100_000, 10_000_000)
# Targets for lossgen's time / stream time, by class and dtype, at memory-bound sizes (n >= TARGET_MIN_N);
# lossgen should also beat JAX everywhere.
TARGETS = {
    ("arithmetic", "float64"): 1.2,
    ("arithmetic", "float32"): 1.2,
    ("transcendental", "float64"): 2.5,
    ("transcendental", "float32"): 5.0,
}
TARGET_MIN_N = 1_000_000


# --------------------------------------------------------------------------------------------------
# Classes: arithmetic/piecewise or transcendental, from the lowered kernel code


# Calls that are not transcendental: one instruction or a compare/select (sqrt is a correctly rounded
# IEEE operation with a vector instruction), casts, and kernel scaffolding (allocation of the block sums,
# loops, the decorator, the block reduction). Names are compared without leading underscores and without
# a _f64/_f32 suffix (so a math library's _fma or _copysign_f64 counts as arithmetic). Any other call,
# e.g. math.exp, math.log1p, a math library's exp_f64, or a ** with a non-integer exponent (pow), makes
# the loss transcendental.
ARITHMETIC_CALLS = frozenset({
    "abs", "fabs", "min", "max", "minimum", "maximum", "clip", "sign", "copysign", "sqrt", "floor", "ceil",
    "trunc", "fma", "select", "where", "isinf", "isnan", "isfinite", "float32", "float64", "int64",
    "empty", "zeros", "range", "prange", "njit", "block_sum",
})


def _is_integer(node) -> bool:
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        node = node.operand
    return isinstance(node, ast.Constant) and isinstance(node.value, int) and not isinstance(node.value, bool)


def _call_stem(name: str) -> str:
    name = name.lstrip("_")
    for suffix in ("_f64", "_f32"):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def kernel_functions(source: str) -> set[str]:
    """Names of the non-arithmetic functions called in the function named reduced of `source` (or in
    all of it if there is none), "pow" for a ** with a non-integer exponent."""
    tree = ast.parse(source)
    scopes = [node for node in tree.body if isinstance(node, ast.FunctionDef) and node.name == "reduced"] or [tree]
    found = set()
    for scope in scopes:
        for node in ast.walk(scope):
            if isinstance(node, ast.Call):
                func = node.func
                name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", type(func).__name__)
                if _call_stem(name) not in ARITHMETIC_CALLS:
                    found.add(name)
            elif isinstance(node, ast.BinOp) and isinstance(node.op, ast.Pow) and not _is_integer(node.right):
                found.add("pow")
    return found


def lowered_code(loss, dtype: str) -> str:
    """The loss's lowered scalar code (temporaries, loss, gradient, Hessian diagonal) as the body of a
    function named reduced; the whole generated module where lossgen.lower offers no such listing."""
    try:
        from lossgen.lower import lower

        low = lower(loss, dtype)
        lines = [f"{name} = {value}" for name, value in low.temporaries]
        lines += [f"_loss = {low.loss}"] + [f"_grad = {g}" for g in low.grad] + [f"_hess = {h}" for h in low.hess]
    except (ImportError, AttributeError, TypeError):
        from lossgen.runtime import kernel_source

        return kernel_source(loss, "cpu", dtype)
    return "def reduced():\n" + "".join(f"    {line}\n" for line in lines)


def kernel_class(name: str) -> tuple[str, list[str]]:
    """("arithmetic" | "transcendental", the transcendental functions its float64 or float32 kernel calls)."""
    loss = lg.get(name)
    found = set()
    for dtype in ("float64", "float32"):
        found |= kernel_functions(lowered_code(loss, dtype))
    return ("transcendental" if found else "arithmetic"), sorted(found)


# --------------------------------------------------------------------------------------------------
# The memory floor


@njit(parallel=True, cache=False)
def _stream_kernel(y, p, g, h):
    for i in prange(p.shape[0]):
        g[i] = p[i] - y[i]
        h[i] = p[i] + y[i]


def stream(y: np.ndarray, p: np.ndarray, g: np.ndarray, h: np.ndarray):
    """The floor: read y and p, write g and h (allocated once, so no page faults)."""
    _stream_kernel(y, p, g, h)


def stream_alloc(y: np.ndarray, p: np.ndarray):
    """The same traffic into outputs allocated per call, as every timed method allocates its own."""
    g = np.empty_like(p)
    h = np.empty_like(p)
    _stream_kernel(y, p, g, h)
    return g, h


# --------------------------------------------------------------------------------------------------
# Peers as timed methods: prepare(y, p) -> args once, run(*args) -> (loss, grad[, hess]) per call


def numpy_method(name: str, params: dict):
    fn = NUMPY[name]

    def run(y, p):
        loss, grad, hess = fn(y, p, **params)
        n = p.shape[0]
        return float(np.mean(loss, dtype=np.float64)), grad / p.dtype.type(n), hess / p.dtype.type(n)

    return (lambda y, p: (y, p)), run


def torch_method(torch, name: str, params: dict):
    fn = torch_losses(torch)[name]

    def prepare(y, p):
        return torch.from_numpy(y), torch.from_numpy(p.copy()).requires_grad_(True)

    def run(yt, pt):
        pt.grad = None
        loss = fn(yt, pt, **params)
        loss.backward()
        return loss.detach(), pt.grad

    return prepare, run


def jax_method(jax, jnp, name: str, params: dict):
    fn = jax_losses(jax, jnp)[name]
    compiled = jax.jit(jax.value_and_grad(lambda p, y: fn(p, y, **params)))

    def prepare(y, p):
        return jax.device_put(y).block_until_ready(), jax.device_put(p).block_until_ready()

    def run(yj, pj):
        loss, grad = compiled(pj, yj)
        grad.block_until_ready()
        return loss, grad

    return prepare, run


def peer_methods(name: str, params: dict, peers: dict) -> dict:
    """method -> (prepare, run) for the peers that exist for this loss and are installed."""
    candidates = {}
    if name in NUMPY:
        candidates["numpy"] = numpy_method(name, params)
    if "torch" in peers and name in NUMPY:
        candidates["torch"] = torch_method(peers["torch"], name, params)
    if "jax" in peers and name in NUMPY:
        candidates["jax"] = jax_method(*peers["jax"], name, params)
    return candidates


def load_peers(threads: int | None = None) -> tuple[dict, dict]:
    """({"torch": torch, "jax": (jax, jax.numpy)} for those installed, their versions). Turns on
    jax_enable_x64 (float64 arrays stay float64, float32 stay float32); sets torch's threads if given."""
    peers, versions = {}, {}
    try:
        import torch

        if threads:
            torch.set_num_threads(threads)
        peers["torch"] = torch
        versions["torch"] = torch.__version__
    except ImportError:
        pass
    try:
        import jax

        jax.config.update("jax_enable_x64", True)
        import jax.numpy as jnp

        peers["jax"] = (jax, jnp)
        versions["jax"] = jax.__version__
    except ImportError:
        pass
    return peers, versions


# --------------------------------------------------------------------------------------------------
# Checks


def disagreement(ref_loss: float, ref_grad: np.ndarray, loss: float, grad: np.ndarray) -> tuple[float, float]:
    """Relative error of the mean loss, and max |grad error| relative to max |grad|."""
    loss_err = abs(float(loss) - ref_loss) / max(abs(ref_loss), np.finfo(np.float64).tiny)
    ref64 = ref_grad.astype(np.float64)
    grad_err = float(np.max(np.abs(np.asarray(grad, dtype=np.float64) - ref64)) / max(np.max(np.abs(ref64)), 1e-300))
    return loss_err, grad_err


def check_peers(name: str, dtype: str, arrays: tuple, ref, peers: dict, params: dict | None = None) -> tuple[dict, dict]:
    """Each peer's mean loss and gradient (and NumPy's Hessian) against lossgen's result `ref` on `arrays`.

    Returns ({method: check record with "ok"}, {method: (run, args)} for the peers that agree).
    """
    loss_def = lg.get(name)
    params = dict(loss_def.params) if params is None else params
    y, p = arrays[0], arrays[loss_def.inputs.index(loss_def.wrt[0])]
    tol = TOLERANCE[dtype]
    checks, runs = {}, {}
    for method, (prepare, run) in peer_methods(name, params, peers).items():
        args = prepare(y, p)
        out = run(*args)
        loss_err, grad_err = disagreement(ref.loss, ref.grad, out[0], np.asarray(out[1]))
        hess_err = None
        if method == "numpy":
            hess64 = ref.hess.astype(np.float64)
            hess_err = float(np.max(np.abs(out[2].astype(np.float64) - hess64)) / max(np.max(np.abs(hess64)), 1e-300))
        ok = bool(loss_err <= tol and grad_err <= tol and (hess_err is None or hess_err <= tol))
        checks[method] = {
            "loss": float(out[0]),
            "lossgen_loss": float(ref.loss),
            "loss_rel_err": loss_err,
            "grad_rel_err": grad_err,
            "hess_rel_err": hess_err,
            "tolerance": tol,
            "ok": ok,
        }
        if ok:
            runs[method] = (run, args)
    return checks, runs


def describe_check(method: str, name: str, dtype: str, check: dict) -> str:
    hess = f", hess rel err {check['hess_rel_err']:.2e}" if check["hess_rel_err"] is not None else ""
    return (
        f"{method} disagrees with lossgen on {name} ({dtype}): loss {check['loss']!r} vs {check['lossgen_loss']!r} "
        f"(rel err {check['loss_rel_err']:.2e}), grad rel err {check['grad_rel_err']:.2e}{hess} > {check['tolerance']:g}"
    )


# --------------------------------------------------------------------------------------------------
# Machine and noise


def machine() -> dict:
    model = platform.processor() or "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {"cpu": model, "cores": os.cpu_count(), "python": sys.version.split()[0], "platform": platform.platform()}


class OtherLoad:
    """CPU time spent by every other process on the machine, from /proc (Linux); None elsewhere.

    The machine's busy time (/proc/stat) minus this process's own (/proc/self/stat), in seconds.
    """

    def __init__(self):
        self.tick = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100

    def sample(self) -> float | None:
        try:
            with open("/proc/stat") as f:
                fields = [int(v) for v in f.readline().split()[1:]]
            with open("/proc/self/stat") as f:
                own = f.read().rsplit(")", 1)[1].split()
        except (OSError, ValueError, IndexError):
            return None
        user, nice, system, _idle, _iowait, irq, softirq, steal = (fields + [0] * 8)[:8]
        busy = user + nice + system + irq + softirq + steal
        return (busy - int(own[11]) - int(own[12])) / self.tick  # utime, stime: fields 14, 15


def wait_until_quiet(load: OtherLoad, limit: float, budget: float) -> float:
    """Sleep in 1 s steps until other processes use at most `limit` of a core, or `budget` s pass; returns the wait."""
    waited = 0.0
    while waited < budget:
        before = load.sample()
        if before is None:
            break
        time.sleep(1.0)
        waited += 1.0
        if load.sample() - before <= limit:
            break
    return waited


# --------------------------------------------------------------------------------------------------
# Timing


def time_batch(fn, args, min_time: float) -> tuple[float, int]:
    """Call fn(*args) back to back until min_time has passed (at least once); (seconds per call, calls).

    The clock is read after every call (tens of ns, against microseconds for the fastest call), so a
    batch ends on time even when the calls slow down a thousandfold, as parallel kernels do on
    oversubscribed cores.
    """
    clock = time.perf_counter
    calls = 0
    start = clock()
    while True:
        fn(*args)
        calls += 1
        elapsed = clock() - start
        if elapsed >= min_time:
            return elapsed / calls, calls


def bench_one(
    name: str, dtype: str, n: int, repeat: int, peers: dict, noise_limit: float = 0.1, wait_quiet: float = 0.0,
    min_time: float = 0.02, loss_class: tuple[str, list[str]] | None = None,
) -> dict:
    loss_def = lg.get(name)
    params = dict(loss_def.params)
    arrays = make_inputs(name, n, dtype)
    wrt = arrays[loss_def.inputs.index(loss_def.wrt[0])]
    kernel = loss_def.compile(dtype=dtype, reduction="mean")
    ref = kernel(*arrays)
    cls, functions = loss_class or kernel_class(name)
    row = {
        "loss": name, "class": cls, "functions": functions, "dtype": dtype, "n": n, "params": params,
        "lossgen_loss": ref.loss, "times": {}, "check": {},
    }

    # method -> (run, args); every method is warmed up (compiled) before any is timed. The floor
    # streams two input arrays and two outputs (the gradient and Hessian of one wrt array).
    y, p = arrays[0], wrt
    runs = {
        "stream": (stream, (y, p, np.empty_like(p), np.empty_like(p))),
        "stream_alloc": (stream_alloc, (y, p)),
        "lossgen": (kernel, arrays),
        # As a training loop calls it: outputs preallocated once and passed as out= (no allocation
        # per call). This is the figure to hold against the stream kernel, which allocates nothing.
        "lossgen_out": (functools.partial(kernel, out=kernel.allocate(wrt.shape)), arrays),
    }
    row["check"], agreed = check_peers(name, dtype, arrays, ref, peers, params)
    for method, check in row["check"].items():
        if not check["ok"]:
            warnings.warn(describe_check(method, name, dtype, check) + "; not timed", stacklevel=1)
    runs.update(agreed)
    del ref

    for fn, args in runs.values():
        for _ in range(2):
            fn(*args)
        time_batch(fn, args, min_time)  # warm caches, allocator and thread pool at this size
    # Rounds: one timed batch of each method per round, in a shuffled order, so drift and noise from
    # the rest of the machine fall on all methods alike. A round in which other processes used more
    # than noise_limit of a core is set aside and another is run, up to 4 * repeat rounds in all;
    # if too few rounds were quiet, the quietest ones are kept.
    load = OtherLoad()
    shuffle = random.Random(0)
    rounds = []  # (others' CPU share, {method: seconds per call}, {method: calls in the batch})
    row["waited_s"] = 0.0
    while len(rounds) < 4 * repeat:
        if wait_quiet > 0:
            row["waited_s"] += wait_until_quiet(load, noise_limit, wait_quiet)
        before, wall = load.sample(), time.perf_counter()
        times, calls = {}, {}
        order = list(runs)
        shuffle.shuffle(order)  # no method always follows the same one (allocator and cache state)
        for method in order:
            times[method], calls[method] = time_batch(*runs[method], min_time)
        after, wall = load.sample(), time.perf_counter() - wall
        share = (after - before) / wall if before is not None and after is not None else 0.0
        rounds.append((share, times, calls))
        if sum(1 for r in rounds if r[0] <= noise_limit) >= repeat:
            break
    row["rounds"] = len(rounds)
    row["other_cpu_share"] = [r[0] for r in rounds]
    kept = sorted(rounds, key=lambda r: r[0])[:repeat]
    row["kept_other_cpu_share_max"] = max(r[0] for r in kept)
    if row["kept_other_cpu_share_max"] > noise_limit:
        print(
            f"warning: {name} {dtype} n={n}: other processes used up to {row['kept_other_cpu_share_max']:.0%} of a core "
            f"during the kept rounds (limit {noise_limit:.0%})",
            file=sys.stderr,
        )
    row["times"] = {method: [r[1][method] for r in kept] for method in runs}  # seconds per call
    row["calls"] = {method: [r[2][method] for r in kept] for method in runs}  # calls per batch
    row["median"] = {m: statistics.median(t) for m, t in row["times"].items()}
    row["min"] = {m: min(t) for m, t in row["times"].items()}
    return row


# --------------------------------------------------------------------------------------------------
# Reports


def geomean(values) -> float:
    values = list(values)
    return math.exp(sum(math.log(v) for v in values) / len(values)) if values else float("nan")


def fmt_time(seconds: float) -> str:
    if seconds < 1e-3:
        return f"{seconds * 1e6:.1f} us"
    if seconds < 1.0:
        return f"{seconds * 1e3:.2f} ms"
    return f"{seconds:.2f} s"


def floor(rows: list[dict], method: str, stat: str) -> float:
    """The stream kernel's time for one dtype and n, pooled over every loss's rounds (it does the same work for each)."""
    samples = [t for r in rows for t in r["times"][method]]
    return statistics.median(samples) if stat == "median" else min(samples)


def table(rows: list[dict], dtype: str, stat: str = "median", n: int | None = None) -> str:
    """Markdown table of one dtype and size: ratios to stream, lossgen's speed-ups, class summaries."""
    rows = [r for r in rows if r["dtype"] == dtype and (n is None or r["n"] == n)]
    n = rows[0]["n"]
    base = floor(rows, "stream", stat)
    head = [
        "loss", "class", "lossgen / call", "stream", "stream+alloc", "lossgen", "lossgen out=", "numpy", "torch",
        "jax", "lossgen vs jax", "lossgen vs torch",
    ]
    lines = [
        "| " + " | ".join(head) + " |",
        "| " + " | ".join(["---", "---"] + ["---:"] * (len(head) - 2)) + " |",
    ]
    for r in rows:
        cells = [r["loss"], "arith" if r["class"] == "arithmetic" else "transc", fmt_time(r[stat]["lossgen"]), "1.00x"]
        for method in ("stream_alloc", "lossgen", "lossgen_out", "numpy", "torch", "jax"):
            if method in r[stat]:
                cells.append(f"{r[stat][method] / base:.2f}x")
            else:
                check = r["check"].get(method)
                cells.append("wrong" if check and not check["ok"] else "n/a")
        for peer in ("jax", "torch"):
            cells.append(f"{r[stat][peer] / r[stat]['lossgen']:.2f}x" if peer in r[stat] else "n/a")
        lines.append("| " + " | ".join(cells) + " |")
    nbytes = 4 * n * np.dtype(dtype).itemsize
    lines.append("")
    lines.append(
        f"stream kernel ({stat} of {sum(len(r['times']['stream']) for r in rows)} batches over all losses): "
        f"{fmt_time(base)} per call, {base / n * 1e9:.3f} ns per element, "
        f"{nbytes / base / 1e9:.1f} GB/s counting 2 arrays read + 2 written; "
        f"{nbytes / floor(rows, 'stream_alloc', stat) / 1e9:.1f} GB/s when it allocates its outputs per call"
    )
    for cls in ("arithmetic", "transcendental"):
        group = [r for r in rows if r["class"] == cls]
        if not group:
            continue
        ratios = [r[stat]["lossgen"] / base for r in group]
        text = f"{cls} ({len(group)} losses): lossgen {geomean(ratios):.2f}x stream (geometric mean)"
        if all("lossgen_out" in r[stat] for r in group):
            # The targets compare like with like: lossgen with out= against the stream kernel, neither allocating.
            ratios = [r[stat]["lossgen_out"] / base for r in group]
            text += f", with out= {geomean(ratios):.2f}x"
        if n >= TARGET_MIN_N:
            target = TARGETS[(cls, dtype)]
            text += f", within the {target:g}x target on {sum(x <= target for x in ratios)}/{len(group)}"
        for peer in ("jax", "torch"):
            speedups = [r[stat][peer] / r[stat]["lossgen"] for r in group if peer in r[stat]]
            if speedups:
                text += (
                    f"; vs {peer} {geomean(speedups):.2f}x (geometric mean), faster on "
                    f"{sum(s > 1 for s in speedups)}/{len(speedups)}"
                )
        lines.append(text)
    return "\n".join(lines)


def speedup_table(rows: list[dict], dtype: str, stat: str = "median") -> str:
    """lossgen's speed-up over JAX and torch (their time / lossgen's) for every size, one line a loss."""
    rows = [r for r in rows if r["dtype"] == dtype]
    sizes = sorted({r["n"] for r in rows})
    names = list(dict.fromkeys(r["loss"] for r in rows))
    by_key = {(r["loss"], r["n"]): r for r in rows}
    rows_by_name = {r["loss"]: r for r in rows}
    head = ["loss", "class"] + [f"vs {peer} n={n:.0e}".replace("e+0", "e") for peer in ("jax", "torch") for n in sizes]
    lines = ["| " + " | ".join(head) + " |", "| " + " | ".join(["---", "---"] + ["---:"] * (len(head) - 2)) + " |"]
    for name in names:
        cells = [name, ("arith" if rows_by_name[name]["class"] == "arithmetic" else "transc")]
        for peer in ("jax", "torch"):
            for n in sizes:
                r = by_key.get((name, n))
                cells.append(f"{r[stat][peer] / r[stat]['lossgen']:.2f}x" if r and peer in r[stat] else "n/a")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


PLOT_STYLES = {
    "lossgen": {"color": "C3", "marker": "o", "linewidth": 2.0},
    "numpy": {"color": "C0", "marker": "s"},
    "torch": {"color": "C1", "marker": "^"},
    "jax": {"color": "C2", "marker": "v"},
    "stream": {"color": "k", "marker": ".", "linestyle": ":"},
}


def plot(rows: list[dict], path: str, stat: str = "median") -> None:
    """Time per element against n (log-log), one panel per dtype, geometric mean over the losses; lossgen's
    arithmetic and transcendental losses also apart (dashed). A png small enough to commit."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    dtypes = list(dict.fromkeys(r["dtype"] for r in rows))
    width = 4.4 * len(dtypes) + 2.0  # inches: the panels plus a column for the legend
    fig, axes = plt.subplots(1, len(dtypes), figsize=(width, 3.6), sharey=True, squeeze=False)
    for ax, dtype in zip(axes[0], dtypes):
        sel = [r for r in rows if r["dtype"] == dtype]
        sizes = sorted({r["n"] for r in sel})
        total = len({r["loss"] for r in sel})

        def series(method, keep=lambda r: True):
            xs, ys, counts = [], [], []
            for n in sizes:
                values = [r[stat][method] / n for r in sel if r["n"] == n and method in r[stat] and keep(r)]
                if values:
                    xs.append(n)
                    ys.append(geomean(values) * 1e9)
                    counts.append(len(values))
            return xs, ys, counts

        for method, style in PLOT_STYLES.items():
            xs, ys, counts = series(method)
            if xs:
                label = method if min(counts) == total else f"{method} ({min(counts)} of {total} losses)"
                ax.plot(xs, ys, label=label, **style)
        for cls, marker in (("arithmetic", "x"), ("transcendental", "+")):
            xs, ys, counts = series("lossgen", lambda r, c=cls: r["class"] == c)
            if xs:
                ax.plot(xs, ys, color="C3", linestyle="--", linewidth=1.0, marker=marker,
                        label=f"lossgen, {cls} ({max(counts)})")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_title(f"{dtype}: geometric mean over {total} losses", fontsize=9)
        ax.set_xlabel("n (samples per call)")
        ax.grid(True, which="major", alpha=0.3)
        ax.tick_params(labelsize=8)
    axes[0][0].set_ylabel(f"time per element (ns, {stat})")
    handles, labels = axes[0][-1].get_legend_handles_labels()
    fig.legend(handles, labels, loc="center right", fontsize=7, frameon=False)
    fig.tight_layout(rect=(0, 0, 1 - 2.0 / width, 1))
    fig.savefig(path, dpi=80)
    plt.close(fig)


# --------------------------------------------------------------------------------------------------
# Command line


def parse_sizes(text: str) -> list[int]:
    sizes = []
    for item in text.split(","):
        item = item.strip()
        if not item:
            continue
        try:
            value = int(item)
        except ValueError:
            value = float(item)
            if not value.is_integer():
                raise argparse.ArgumentTypeError(f"size {item!r} is not an integer") from None
            value = int(value)
        if value < 1:
            raise argparse.ArgumentTypeError(f"size {item!r} must be at least 1")
        sizes.append(value)
    if not sizes:
        raise argparse.ArgumentTypeError("no sizes given")
    return sizes


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--sizes", type=parse_sizes, default=list(DEFAULT_SIZES), metavar="N,N,...",
        help="comma-separated sample counts (default 1000,100000,10000000; 1e5 style accepted)",
    )
    ap.add_argument("--n", type=int, help="one sample count; replaces --sizes (as `lossgen bench NAME --n N` passes)")
    ap.add_argument("--losses", help="comma-separated catalog names (default: every elementwise catalog loss)")
    ap.add_argument("--dtypes", default="float64,float32", help="comma-separated: float64, float32")
    ap.add_argument("--repeat", type=int, default=7, help="timed rounds per method; the median is reported")
    ap.add_argument(
        "--min-time", type=float, default=0.02, metavar="SECONDS",
        help="each method is called in batches lasting at least this long per round (default 0.02); "
        "times are per call",
    )
    ap.add_argument(
        "--noise-limit", type=float, default=0.1, metavar="SHARE",
        help="set aside rounds in which other processes used more than this share of one core (default 0.1)",
    )
    ap.add_argument(
        "--wait-quiet", type=float, default=0.0, metavar="SECONDS",
        help="before each round, wait up to SECONDS for other processes to go below --noise-limit (default 0: no wait)",
    )
    ap.add_argument(
        "--stat", choices=("median", "min"), default="median", help="statistic of the timed runs (default median)"
    )
    ap.add_argument("--json", metavar="PATH", help="write raw timings and checks to PATH")
    ap.add_argument("--plot", metavar="PATH", help="write a png of time per element against n to PATH (needs matplotlib)")
    args = ap.parse_args(argv)

    sizes = [args.n] if args.n is not None else args.sizes
    if any(n < 1 for n in sizes):
        ap.error("--n must be at least 1")
    catalog = lg.catalog()
    losses = [s.strip() for s in args.losses.split(",") if s.strip()] if args.losses else elementwise_names()
    dtypes = [s.strip() for s in args.dtypes.split(",") if s.strip()]
    unknown = [name for name in losses if name not in catalog]
    if unknown:
        ap.error(f"unknown loss {unknown[0]!r}; choose elementwise catalog names: {', '.join(elementwise_names())}")
    not_elementwise = [name for name in losses if not is_elementwise(catalog[name])]
    if not_elementwise:
        ap.error(
            f"{not_elementwise[0]!r} is not an elementwise loss (row-wise, or transformed after the reduction); "
            "see benchmarks/bench_rowwise.py"
        )
    bad = [d for d in dtypes if d not in TOLERANCE]
    if bad:
        ap.error(f"unknown dtype {bad[0]!r}; choose float64 or float32")
    if args.plot and importlib.util.find_spec("matplotlib") is None:
        ap.error("--plot needs matplotlib, which is not installed: pip install matplotlib (or pip install -e '.[bench]')")

    threads = os.cpu_count() or 1
    import numba

    versions = {"lossgen": lg.__version__, "numpy": np.__version__, "numba": numba.__version__}
    peers, peer_versions = load_peers(threads)
    versions.update(peer_versions)
    for peer in ("torch", "jax"):
        if peer not in peers:
            print(f"{peer} not installed: {peer} column skipped", file=sys.stderr)

    info = machine()
    info["loadavg_start"] = os.getloadavg()[0]
    if info["loadavg_start"] > 0.5 and args.wait_quiet <= 0:
        print(
            f"warning: 1-minute load average is {info['loadavg_start']:.2f} before starting; other processes "
            "share the cores and will distort the parallel methods most (see --wait-quiet)",
            file=sys.stderr,
        )
    classes = {name: kernel_class(name) for name in losses}
    print(
        f"# {info['cpu']}, {info['cores']} cores; n = {', '.join(f'{n:,}' for n in sizes)}; {args.stat} of "
        f"{args.repeat} rounds after warm-up; batches of >= {args.min_time * 1e3:g} ms per method per round"
    )
    print("# " + ", ".join(f"{k} {v}" for k, v in versions.items()))
    torch_threads = peers["torch"].get_num_threads() if "torch" in peers else "-"
    print(f"# numba threads {numba.get_num_threads()}, torch threads {torch_threads}")
    print("# ratios: time per call / time per call of the stream kernel (lower is better); speed-up: peer time / lossgen time")
    print("# lossgen and numpy compute loss + gradient + Hessian diagonal; torch and jax loss + gradient only")
    print("# classes, from the calls in each loss's lowered kernel code:")
    for cls in ("arithmetic", "transcendental"):
        members = [
            name + (f" ({', '.join(fns)})" if fns else "") for name, (c, fns) in classes.items() if c == cls
        ]
        if members:
            print(f"#   {cls}: {', '.join(members)}")

    rows = []
    disagreements = []
    jobs = iter(progress([(d, n, name) for d in dtypes for n in sizes for name in losses], desc="bench", unit="case"))
    for dtype in dtypes:
        for n in sizes:
            for name in losses:
                next(jobs)  # advances the bar, if one is drawn
                with warnings.catch_warnings(record=True) as caught:
                    warnings.simplefilter("always")
                    row = bench_one(
                        name, dtype, n, args.repeat, peers, args.noise_limit, args.wait_quiet, args.min_time,
                        classes[name],
                    )
                for w in caught:
                    write(f"warning: {w.message}")
                rows.append(row)
                disagreements += [
                    describe_check(method, name, f"{dtype}, n={n}", check)
                    for method, check in row["check"].items() if not check["ok"]
                ]
                write(
                    f"  done {name} {dtype} n={n:,}: {row['rounds']} rounds, kept {args.repeat} with others' CPU "
                    f"share <= {row['kept_other_cpu_share_max']:.0%}, waited {row['waited_s']:.0f} s for quiet"
                )
            write(f"\n## {dtype}, n = {n:,}\n\n" + table(rows, dtype, args.stat, n), file=sys.stdout)
        if len(sizes) > 1:
            write(f"\n## {dtype}: lossgen's speed-up (peer time / lossgen time; above 1: lossgen faster)\n", file=sys.stdout)
            write(speedup_table(rows, dtype, args.stat), file=sys.stdout)
    next(jobs, None)  # closes the bar

    if disagreements:
        print("\n## Peers that disagree with lossgen (not timed)\n")
        for line in disagreements:
            print(f"- {line}")
    info["loadavg_end"] = os.getloadavg()[0]
    print(f"\n# 1-minute load average: {info['loadavg_start']:.2f} at start, {info['loadavg_end']:.2f} at end")
    if args.json:
        with open(args.json, "w") as f:
            record = {
                "machine": info, "versions": versions, "sizes": sizes, "dtypes": dtypes, "repeat": args.repeat,
                "min_time": args.min_time, "stat": args.stat, "noise_limit": args.noise_limit,
                "classes": {name: {"class": c, "functions": fns} for name, (c, fns) in classes.items()},
                "rows": rows,
            }
            json.dump(record, f, indent=1)
    if args.plot:
        plot(rows, args.plot, args.stat)
        print(f"# plot: {args.plot} ({os.path.getsize(args.plot) / 1024:.0f} KiB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
