"""What stability costs: each formula's stabilized kernel against the same formula compiled as
written (Loss(..., stabilize=False)), side by side in one process, reduction "mean", on inputs
where both are finite. Prints the ratio stable/naive per formula and dtype.

    python benchmarks/bench_stability_cost.py --n 10000000
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

import lossgen as lg

# (name, formula as papers print it, domain, how to draw y, how to draw z)
FORMULAS = [
    ("log_cosh", "log(cosh(z - y))", {}, "normal", "normal"),
    ("bce_logits", "-(y*log(1/(1 + exp(-z))) + (1 - y)*log(1 - 1/(1 + exp(-z))))", {"y": "[0, 1]"}, "label", "logit"),
    ("logistic", "log(1 + exp(-y*z))", {"y": "[-1, 1]"}, "sign", "logit"),
    ("focal_g2", "-(y*(1 - 1/(1+exp(-z)))**2*log(1/(1+exp(-z))) + (1-y)*(1/(1+exp(-z)))**2*log(1 - 1/(1+exp(-z))))", {"y": "[0, 1]"}, "label", "logit"),
    ("pseudo_huber", "sqrt(1 + (z - y)**2) - 1", {}, "normal", "normal"),
    ("gamma_log_link", "z + y*exp(-z)", {"y": "(0, oo)"}, "positive", "normal"),
    ("linex", "exp(z - y) - (z - y) - 1", {}, "normal", "normal"),
]


def draw(kind, n, rng, dtype):
    values = {
        "normal": lambda: rng.normal(size=n),
        "logit": lambda: rng.normal(0, 3, size=n),
        "label": lambda: rng.integers(0, 2, size=n).astype(float),
        "sign": lambda: rng.choice([-1.0, 1.0], size=n),
        "positive": lambda: rng.gamma(2.0, 1.0, size=n),
    }[kind]()
    return values.astype(dtype)


def median_time(fn, repeat):
    fn()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10_000_000)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--dtypes", default="float64,float32")
    args = parser.parse_args(argv)
    rng = np.random.default_rng(0)
    print(f"n = {args.n:,}; time of the stabilized kernel / the naive kernel (reduction mean, loss + grad + Hessian)")
    print(f"{'formula':<16}" + "".join(f"{d:>10}" for d in args.dtypes.split(",")) + "   rewrites")
    for name, formula, domain, y_kind, z_kind in FORMULAS:
        stable = lg.Loss(name, formula, inputs=["y", "z"], wrt="z", domain=domain)
        naive = lg.Loss(name, formula, inputs=["y", "z"], wrt="z", domain=domain, stabilize=False)
        cells = []
        for dtype in args.dtypes.split(","):
            y, z = draw(y_kind, args.n, rng, dtype), draw(z_kind, args.n, rng, dtype)
            fast, slow = stable.compile(dtype=dtype), naive.compile(dtype=dtype)
            a, b = fast(y, z), slow(y, z)
            if not np.isclose(a.loss, b.loss, rtol=1e-3):
                print(f"  warning: {name} {dtype}: stable {a.loss} vs naive {b.loss}")
            ratio = median_time(lambda: fast(y, z), args.repeat) / median_time(lambda: slow(y, z), args.repeat)
            cells.append(f"{ratio:>9.2f}x")
        print(f"{name:<16}" + "".join(cells) + "   " + ", ".join(stable.rewrites))


if __name__ == "__main__":
    main()
