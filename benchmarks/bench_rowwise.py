"""Cross-entropy side by side in one process: lossgen's catalog kernel (loss + gradient +
Hessian diagonal, one fused pass), the same loss written by a user
("logsumexp(p) - take(p, y)"), torch.nn.CrossEntropyLoss forward + backward, and JAX
jit(value_and_grad) of the same loss (loss + gradient only). Prints times as ratios to lossgen.

    python benchmarks/bench_rowwise.py --shapes 1000000x10,10000x1000
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

import lossgen as lg


def median_time(fn, repeat):
    fn()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def peers(logits, labels, dtype):
    """name -> (callable, loss value) for the peers that are installed."""
    found = {}
    try:
        import torch

        torch.set_num_threads(max(1, torch.get_num_threads()))
        x = torch.tensor(logits)
        t = torch.tensor(labels)
        criterion = torch.nn.CrossEntropyLoss()

        def torch_step():
            xx = x.detach().requires_grad_(True)
            loss = criterion(xx, t)
            loss.backward()
            return loss.item()

        found["torch fwd+bwd"] = torch_step
    except ImportError:
        pass
    try:
        import jax
        import jax.numpy as jnp

        jax.config.update("jax_enable_x64", dtype == "float64")
        xj, tj = jnp.asarray(logits), jnp.asarray(labels)

        def ce(z):
            return jnp.mean(jax.nn.logsumexp(z, axis=1) - jnp.take_along_axis(z, tj[:, None], axis=1)[:, 0])

        step = jax.jit(jax.value_and_grad(ce))

        def jax_step():
            value, grad = step(xj)
            grad.block_until_ready()
            return float(value)

        found["jax value_and_grad"] = jax_step
    except ImportError:
        pass
    return found


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shapes", default="1000000x10,10000x1000")
    parser.add_argument("--dtypes", default="float64,float32")
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args(argv)
    catalog_ce = lg.get("cross_entropy")
    user_ce = lg.Loss("user_ce", "logsumexp(p) - take(p, y)", inputs=["y", "p"], wrt="p")
    rng = np.random.default_rng(0)
    print("time of each method / time of lossgen's catalog cross_entropy (lower is faster); lossgen also returns the Hessian diagonal")
    for shape in args.shapes.split(","):
        rows, classes = (int(v) for v in shape.split("x"))
        for dtype in args.dtypes.split(","):
            logits = rng.normal(0, 3, (rows, classes)).astype(dtype)
            labels = rng.integers(0, classes, rows)
            kernel = catalog_ce.compile(dtype=dtype, reduction="mean")
            user = user_ce.compile(dtype=dtype, reduction="mean")
            reference = kernel(labels, logits).loss
            base = median_time(lambda: kernel(labels, logits), args.repeat)
            cells = {"lossgen user-written": median_time(lambda: user(labels, logits), args.repeat) / base}
            for name, step in peers(logits, labels, dtype).items():
                value = step()
                if not np.isclose(value, reference, rtol=1e-3):
                    print(f"  warning: {name} loss {value} differs from lossgen's {reference}")
                cells[name] = median_time(step, args.repeat) / base
            # Bandwidth floor: read the logits once and write gradient and Hessian.
            print(f"{rows}x{classes} {dtype}: lossgen catalog 1.00x (~{logits.nbytes * 3 / base / 1e9:.1f} GB/s moved)  "
                  + "  ".join(f"{k} {v:.2f}x" for k, v in cells.items()))


if __name__ == "__main__":
    main()
