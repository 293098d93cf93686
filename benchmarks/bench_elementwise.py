"""Elementwise losses: lossgen's fused kernel against NumPy, PyTorch autograd, JAX and the memory floor.

For each loss and dtype, in one process and on the same arrays, this times (median of --repeat rounds,
each round calling every method once in a shuffled order, after a warm-up that also compiles):

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

Times are reported as ratios to the stream kernel (stream = 1.00x), whose time per dtype is pooled
over the rounds of every loss. Before timing, each peer's loss and gradient are checked against
lossgen's; a peer that disagrees is reported and not timed.

A shared machine distorts the parallel methods most, so rounds during which other processes used more
than --noise-limit of a core (Linux /proc accounting) are set aside and rerun, and --wait-quiet makes
each round first wait for the rest of the machine to go quiet.

    LOSSGEN_CACHE_DIR=/tmp/lossgen-bench python benchmarks/bench_elementwise.py [--wait-quiet 120] [--json out.json]
"""

from __future__ import annotations

import argparse
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

CLASSIFICATION = {"bce_with_logits", "focal"}
METHODS = ("lossgen", "numpy", "torch", "jax", "stream")
TOLERANCE = {"float64": 1e-6, "float32": 1e-3}


# --------------------------------------------------------------------------------------------------
# Inputs


def make_inputs(name: str, n: int, dtype: str, seed: int = 0) -> tuple[np.ndarray, ...]:
    """The loss's arrays in input order.

    The compared losses: {0,1} targets and N(0, 3) logits for classification, N(0, 1) targets and
    predictions for regression. Any other catalog loss (timed against the floor only) draws each
    input from its domain: the two ends of a closed interval (labels), uniform inside another
    bounded one, low end + lognormal on a half line, N(0, 1) on the real line.
    """
    rng = np.random.default_rng(seed)
    if name in CLASSIFICATION:
        y = (rng.random(n) < 0.5).astype(dtype)
        p = rng.normal(0.0, 3.0, n).astype(dtype)
        return y, p
    if name in NUMPY:
        return rng.normal(0.0, 1.0, n).astype(dtype), rng.normal(0.0, 1.0, n).astype(dtype)
    loss = lg.get(name)
    arrays = []
    for input_name in loss.inputs:
        interval = loss.domain[input_name]
        lo, hi = float(interval.start), float(interval.end)
        if math.isfinite(lo) and math.isfinite(hi):
            if not interval.left_open and not interval.right_open:
                x = np.where(rng.random(n) < 0.5, lo, hi)
            else:
                x = lo + (hi - lo) * rng.uniform(0.01, 0.99, n)
        elif math.isfinite(lo):
            x = lo + np.exp(rng.normal(0.0, 1.0, n))
        elif math.isfinite(hi):
            x = hi - np.exp(rng.normal(0.0, 1.0, n))
        else:
            x = rng.normal(0.0, 1.0, n)
        arrays.append(x.astype(dtype))
    return tuple(arrays)


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
# NumPy: closed-form loss, gradient and Hessian diagonal of the mean loss


def _sigmoid(x):
    # 0.5 * (1 + tanh(x / 2)) never overflows, unlike 1 / (1 + exp(-x)).
    return 0.5 * (1.0 + np.tanh(0.5 * x))


def np_huber(y, p, delta=1.0):
    r = p - y
    a = np.abs(r)
    inside = a <= delta
    loss = np.where(inside, 0.5 * r * r, delta * (a - 0.5 * delta))
    grad = np.clip(r, -delta, delta)
    hess = inside.astype(p.dtype)
    return loss, grad, hess


def np_log_cosh(y, p):
    r = p - y
    a = np.abs(r)
    # log(cosh(r)) = |r| + log1p(exp(-2|r|)) - log 2, finite for every r.
    loss = a + np.log1p(np.exp(-2.0 * a)) - math.log(2.0)
    grad = np.tanh(r)
    hess = 1.0 - grad * grad
    return loss, grad, hess


def np_bce_with_logits(y, p):
    loss = np.logaddexp(0.0, p) - y * p  # softplus(p) - y p = y softplus(-p) + (1 - y) softplus(p)
    s = _sigmoid(p)
    return loss, s - y, s * (1.0 - s)


def np_focal(y, p, alpha=0.25, gamma=2.0):
    s = _sigmoid(p)
    ds = s * (1.0 - s)
    ce = np.logaddexp(0.0, p) - y * p
    ce1 = s - y
    q = y + s * (1.0 - 2.0 * y)  # 1 - p_t
    q1 = ds * (1.0 - 2.0 * y)
    q2 = q1 * (1.0 - 2.0 * s)
    at = alpha * y + (1.0 - alpha) * (1.0 - y)
    qg = q**gamma
    qg1 = gamma * q ** (gamma - 1.0)
    qg2 = gamma * (gamma - 1.0) * q ** (gamma - 2.0)
    loss = at * ce * qg
    grad = at * (ce1 * qg + ce * qg1 * q1)
    hess = at * (ds * qg + 2.0 * ce1 * qg1 * q1 + ce * (qg2 * q1 * q1 + qg1 * q2))
    return loss, grad, hess


NUMPY = {"huber": np_huber, "log_cosh": np_log_cosh, "bce_with_logits": np_bce_with_logits, "focal": np_focal}


def numpy_method(name: str, params: dict):
    fn = NUMPY[name]

    def run(y, p):
        loss, grad, hess = fn(y, p, **params)
        n = p.shape[0]
        return float(np.mean(loss, dtype=np.float64)), grad / p.dtype.type(n), hess / p.dtype.type(n)

    return run


# --------------------------------------------------------------------------------------------------
# PyTorch autograd: loss and gradient


def torch_losses(torch):
    F = torch.nn.functional

    def huber(y, p, delta=1.0):
        return F.huber_loss(p, y, reduction="mean", delta=delta)

    def log_cosh(y, p):
        r = p - y
        return (r + F.softplus(-2.0 * r) - math.log(2.0)).mean()

    def bce_with_logits(y, p):
        return F.binary_cross_entropy_with_logits(p, y, reduction="mean")

    def focal(y, p, alpha=0.25, gamma=2.0):
        # torchvision.ops.sigmoid_focal_loss, reduction="mean"
        prob = torch.sigmoid(p)
        ce = F.binary_cross_entropy_with_logits(p, y, reduction="none")
        p_t = prob * y + (1 - prob) * (1 - y)
        loss = ce * ((1 - p_t) ** gamma)
        alpha_t = alpha * y + (1 - alpha) * (1 - y)
        return (alpha_t * loss).mean()

    return {"huber": huber, "log_cosh": log_cosh, "bce_with_logits": bce_with_logits, "focal": focal}


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


# --------------------------------------------------------------------------------------------------
# JAX: jit(value_and_grad(mean_loss))


def jax_losses(jax, jnp):
    def huber(p, y, delta=1.0):
        r = p - y
        a = jnp.abs(r)
        return jnp.mean(jnp.where(a <= delta, 0.5 * r * r, delta * (a - 0.5 * delta)))

    def log_cosh(p, y):
        r = p - y
        return jnp.mean(r + jax.nn.softplus(-2.0 * r) - math.log(2.0))

    def bce_with_logits(p, y):
        # optax.sigmoid_binary_cross_entropy
        return jnp.mean(-y * jax.nn.log_sigmoid(p) - (1.0 - y) * jax.nn.log_sigmoid(-p))

    def focal(p, y, alpha=0.25, gamma=2.0):
        # optax.sigmoid_focal_loss
        prob = jax.nn.sigmoid(p)
        ce = -y * jax.nn.log_sigmoid(p) - (1.0 - y) * jax.nn.log_sigmoid(-p)
        p_t = prob * y + (1.0 - prob) * (1.0 - y)
        loss = ce * ((1.0 - p_t) ** gamma)
        alpha_t = alpha * y + (1.0 - alpha) * (1.0 - y)
        return jnp.mean(alpha_t * loss)

    return {"huber": huber, "log_cosh": log_cosh, "bce_with_logits": bce_with_logits, "focal": focal}


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


# --------------------------------------------------------------------------------------------------
# Timing and checks


def disagreement(ref_loss: float, ref_grad: np.ndarray, loss: float, grad: np.ndarray) -> tuple[float, float]:
    """Relative error of the mean loss, and max |grad error| relative to max |grad|."""
    loss_err = abs(float(loss) - ref_loss) / max(abs(ref_loss), np.finfo(np.float64).tiny)
    ref64 = ref_grad.astype(np.float64)
    grad_err = float(np.max(np.abs(np.asarray(grad, dtype=np.float64) - ref64)) / max(np.max(np.abs(ref64)), 1e-300))
    return loss_err, grad_err


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


def bench_one(
    name: str, dtype: str, n: int, repeat: int, peers: dict, noise_limit: float = 0.1, wait_quiet: float = 0.0
) -> dict:
    loss_def = lg.get(name)
    params = dict(loss_def.params)
    arrays = make_inputs(name, n, dtype)
    wrt = arrays[loss_def.inputs.index(loss_def.wrt[0])]
    kernel = loss_def.compile(dtype=dtype, reduction="mean")
    ref = kernel(*arrays)
    tol = TOLERANCE[dtype]
    row = {"loss": name, "dtype": dtype, "n": n, "lossgen_loss": ref.loss, "times": {}, "check": {}}

    # method -> (run, args); every method is warmed up (compiled) before any is timed. The floor
    # streams two input arrays and two outputs (the gradient and Hessian of one wrt array).
    y, p = arrays[0], wrt
    runs = {
        "stream": (stream, (y, p, np.empty_like(p), np.empty_like(p))),
        "stream_alloc": (stream_alloc, (y, p)),
        "lossgen": (kernel, arrays),
    }
    candidates = {}
    if name in NUMPY:  # peers exist for the compared losses only
        candidates["numpy"] = (lambda a, b: (a, b), numpy_method(name, params))
        if "torch" in peers:
            candidates["torch"] = torch_method(peers["torch"], name, params)
        if "jax" in peers:
            candidates["jax"] = jax_method(*peers["jax"], name, params)

    for method, (prepare, run) in candidates.items():
        args = prepare(y, p)
        out = run(*args)
        loss_err, grad_err = disagreement(ref.loss, ref.grad, out[0], np.asarray(out[1]))
        hess_err = None
        if method == "numpy":
            hess64 = ref.hess.astype(np.float64)
            hess_err = float(np.max(np.abs(out[2].astype(np.float64) - hess64)) / max(np.max(np.abs(hess64)), 1e-300))
        ok = loss_err <= tol and grad_err <= tol and (hess_err is None or hess_err <= tol)
        row["check"][method] = {
            "loss": float(out[0]),
            "loss_rel_err": loss_err,
            "grad_rel_err": grad_err,
            "hess_rel_err": hess_err,
            "ok": ok,
        }
        del out
        if not ok:
            warnings.warn(
                f"{method} disagrees with lossgen on {name} ({dtype}): loss {row['check'][method]['loss']!r} vs "
                f"{ref.loss!r} (rel err {loss_err:.2e}), grad rel err {grad_err:.2e}"
                + (f", hess rel err {hess_err:.2e}" if hess_err is not None else "")
                + f" > {tol:g}; not timed",
                stacklevel=1,
            )
            continue
        runs[method] = (run, args)
    del ref

    for fn, args in runs.values():
        for _ in range(2):
            fn(*args)
    # Rounds: one timed call of each method per round, in a shuffled order, so drift and noise from
    # the rest of the machine fall on all methods alike. A round in which other processes used more
    # than noise_limit of a core is set aside and another is run, up to 4 * repeat rounds in all;
    # if too few rounds were quiet, the quietest ones are kept.
    load = OtherLoad()
    shuffle = random.Random(0)
    rounds = []  # (others' CPU share, {method: seconds})
    row["waited_s"] = 0.0
    while len(rounds) < 4 * repeat:
        if wait_quiet > 0:
            row["waited_s"] += wait_until_quiet(load, noise_limit, wait_quiet)
        before, wall = load.sample(), time.perf_counter()
        times = {}
        order = list(runs)
        shuffle.shuffle(order)  # no method always follows the same one (allocator and cache state)
        for method in order:
            fn, args = runs[method]
            start = time.perf_counter()
            fn(*args)
            times[method] = time.perf_counter() - start
        after, wall = load.sample(), time.perf_counter() - wall
        share = (after - before) / wall if before is not None and after is not None else 0.0
        rounds.append((share, times))
        if sum(1 for sh, _ in rounds if sh <= noise_limit) >= repeat:
            break
    row["rounds"] = len(rounds)
    row["other_cpu_share"] = [sh for sh, _ in rounds]
    kept = sorted(rounds, key=lambda r: r[0])[:repeat]
    row["kept_other_cpu_share_max"] = max(sh for sh, _ in kept)
    if row["kept_other_cpu_share_max"] > noise_limit:
        print(
            f"warning: {name} {dtype}: other processes used up to {row['kept_other_cpu_share_max']:.0%} of a core "
            f"during the kept rounds (limit {noise_limit:.0%})",
            file=sys.stderr,
        )
    row["times"] = {method: [t[method] for _, t in kept] for method in runs}
    row["median"] = {m: statistics.median(t) for m, t in row["times"].items()}
    row["min"] = {m: min(t) for m, t in row["times"].items()}
    return row


def floor(rows: list[dict], method: str, stat: str) -> float:
    """The stream kernel's time for one dtype, pooled over every loss's rounds (it does the same work for each)."""
    samples = [t for r in rows for t in r["times"][method]]
    return statistics.median(samples) if stat == "median" else min(samples)


def table(rows: list[dict], dtype: str, stat: str = "median") -> str:
    rows = [r for r in rows if r["dtype"] == dtype]
    base = floor(rows, "stream", stat)
    head = ["loss", "stream", "stream+alloc", "lossgen", "numpy", "torch", "jax", "lossgen vs jax", "lossgen vs torch"]
    lines = [
        "| " + " | ".join(head) + " |",
        "| " + " | ".join(["---"] + ["---:"] * (len(head) - 1)) + " |",
    ]
    for r in rows:
        cells = [r["loss"], "1.00x"]
        for method in ("stream_alloc", "lossgen", "numpy", "torch", "jax"):
            if method in r[stat]:
                cells.append(f"{r[stat][method] / base:.2f}x")
            else:
                check = r["check"].get(method)
                cells.append("wrong" if check and not check["ok"] else "n/a")
        for peer in ("jax", "torch"):
            cells.append(f"{r[stat][peer] / r[stat]['lossgen']:.2f}x" if peer in r[stat] else "n/a")
        lines.append("| " + " | ".join(cells) + " |")
    nbytes = 4 * rows[0]["n"] * np.dtype(dtype).itemsize
    lines.append("")
    lines.append(
        f"stream kernel ({stat} of {sum(len(r['times']['stream']) for r in rows)} calls over all losses): "
        f"{nbytes / base / 1e9:.1f} GB/s counting 2 arrays read + 2 written; "
        f"{nbytes / floor(rows, 'stream_alloc', stat) / 1e9:.1f} GB/s when it allocates its outputs per call"
    )
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=10_000_000, help="samples per array (default 10_000_000)")
    ap.add_argument("--losses", default="huber,log_cosh,bce_with_logits,focal", help="comma-separated catalog names")
    ap.add_argument("--dtypes", default="float64,float32", help="comma-separated: float64, float32")
    ap.add_argument("--repeat", type=int, default=7, help="timed runs per method; the median is reported")
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
    args = ap.parse_args(argv)

    losses = [s.strip() for s in args.losses.split(",") if s.strip()]
    dtypes = [s.strip() for s in args.dtypes.split(",") if s.strip()]
    catalog = lg.catalog()
    unknown = [name for name in losses if name not in catalog]
    if unknown:
        ap.error(f"unknown loss {unknown[0]!r}; choose catalog names (peers exist for {', '.join(NUMPY)})")
    if any(len(catalog[name].wrt) != 1 for name in losses):
        ap.error("only losses with one wrt input are benchmarked")
    bad = [d for d in dtypes if d not in TOLERANCE]
    if bad:
        ap.error(f"unknown dtype {bad[0]!r}; choose float64 or float32")

    threads = os.cpu_count() or 1
    peers = {}
    versions = {"lossgen": lg.__version__, "numpy": np.__version__}
    import numba

    versions["numba"] = numba.__version__
    try:
        import torch

        torch.set_num_threads(threads)
        peers["torch"] = torch
        versions["torch"] = torch.__version__
    except ImportError:
        print("torch not installed: torch column skipped", file=sys.stderr)
    try:
        import jax

        jax.config.update("jax_enable_x64", True)  # float64 arrays stay float64; float32 stays float32
        import jax.numpy as jnp

        peers["jax"] = (jax, jnp)
        versions["jax"] = jax.__version__
    except ImportError:
        print("jax not installed: jax column skipped", file=sys.stderr)

    info = machine()
    info["loadavg_start"] = os.getloadavg()[0]
    if info["loadavg_start"] > 0.5 and args.wait_quiet <= 0:
        print(
            f"warning: 1-minute load average is {info['loadavg_start']:.2f} before starting; other processes "
            "share the cores and will distort the parallel methods most (see --wait-quiet)",
            file=sys.stderr,
        )
    print(f"# {info['cpu']}, {info['cores']} cores; n = {args.n:,}; {args.stat} of {args.repeat} rounds after warm-up")
    print("# " + ", ".join(f"{k} {v}" for k, v in versions.items()))
    torch_threads = peers["torch"].get_num_threads() if "torch" in peers else "-"
    print(f"# numba threads {numba.get_num_threads()}, torch threads {torch_threads}")
    print("# ratios: time / time of the stream kernel (lower is better); speed-up: peer time / lossgen time")
    print("# lossgen and numpy compute loss + gradient + Hessian diagonal; torch and jax loss + gradient only")

    rows = []
    for dtype in dtypes:
        for name in losses:
            rows.append(bench_one(name, dtype, args.n, args.repeat, peers, args.noise_limit, args.wait_quiet))
            row = rows[-1]
            print(
                f"  done {name} {dtype}: {row['rounds']} rounds, kept {args.repeat} with others' CPU share "
                f"<= {row['kept_other_cpu_share_max']:.0%}, waited {row['waited_s']:.0f} s for quiet",
                file=sys.stderr, flush=True,
            )
        print(f"\n## {dtype}\n")
        print(table(rows, dtype, args.stat), flush=True)

    info["loadavg_end"] = os.getloadavg()[0]
    print(f"\n# 1-minute load average: {info['loadavg_start']:.2f} at start, {info['loadavg_end']:.2f} at end")
    if args.json:
        with open(args.json, "w") as f:
            record = {"machine": info, "versions": versions, "n": args.n, "repeat": args.repeat, "rows": rows}
            json.dump(record, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
