"""Accuracy and speed of lossgen.kmath, the vectorizable exp/expm1/log/log1p/tanh/sinh (and the
accuracy of scaled_exp, scaled_expm1 and exp_minus, exp combined with a data value).

Accuracy: for every function and dtype, --points inputs (default 10^6) from the same generator
the tests use (tests/test_kmath.py: magnitudes log-uniform over the whole domain, both signs,
plus dense points around every overflow/underflow threshold, reduction boundary and 0), plus the
special values of the tests. Each result comes from kmath's vectorized loop (parallel,
fastmath={'contract', 'nsz'}, like a lossgen kernel) and is compared with mpmath at 160 bits:

  max ulp   |result - exact| / ulp(exact), ulp taken in the exact value's binade (subnormal
            spacing below the normal range); 0.5 means correctly rounded;
  cr miss   share of results that are not the correctly rounded value; their distance in
            representable numbers is at most `max dist`.

With --exhaustive-float32, every one of the 2^32 float32 inputs is also compared with the float64
libm result rounded to float32 (itself within a hair of correctly rounded): the largest distance
in representable numbers, the share that differ, and where the largest occurs.

Speed: a numba prange loop out[i] = f(x[i]) over n = 10^7 elements (both cores), kmath against
the same loop calling math.* (numba lowers those to libm calls), and a copy loop (the memory
floor); then one thread on 4096 elements in cache, where only arithmetic counts. Each variant
is timed --rounds times, interleaved; the minimum is kept (a shared machine only adds time).

    LOSSGEN_CACHE_DIR=/tmp/lgc-kmath python benchmarks/kmath_accuracy.py [--points 1000000]
        [--exhaustive-float32] [--rounds 15] [--workers 2] [--binary-only --skip-speed]
"""

from __future__ import annotations

import argparse
import importlib.util
import math
import multiprocessing
import time
from pathlib import Path

import numpy as np
from numba import njit, prange

from lossgen import kmath

TESTS = Path(__file__).resolve().parent.parent / "tests" / "test_kmath.py"
_spec = importlib.util.spec_from_file_location("kmath_reference", TESTS)
reference = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(reference)

FUNCTIONS = reference.FUNCTIONS
DTYPES = reference.DTYPES

# Timing inputs: the ranges losses feed these functions.
TIMING_INPUTS = {
    "exp": lambda rng, n: rng.uniform(-30.0, 30.0, n),
    "expm1": lambda rng, n: rng.uniform(-5.0, 5.0, n),
    "log": lambda rng, n: np.exp(rng.uniform(-30.0, 30.0, n)),
    "log1p": lambda rng, n: np.exp(rng.uniform(-20.0, 5.0, n)) - 0.5,
    "tanh": lambda rng, n: rng.uniform(-5.0, 5.0, n),
    "sinh": lambda rng, n: rng.uniform(-10.0, 10.0, n),
}


# ---------------------------------------------------------------------------------------------
# Accuracy


def _chunk_errors(task):
    """(max ulp error, its index, results not correctly rounded, max distance) of one chunk."""
    name, dtype, x, got, offset = task
    errors, distances = reference.measure(name, dtype, x, got)
    worst = int(np.argmax(errors))
    return float(errors[worst]), offset + worst, int(np.count_nonzero(distances)), float(distances.max())


def accuracy(name: str, dtype: str, points: int, pool) -> dict:
    # Duplicates are dropped (float32 has few values in narrow ranges): ask for more until enough.
    wanted = points
    while True:
        x = reference.accuracy_points(name, dtype, n_spread=int(wanted * 0.8), n_dense=int(wanted * 0.2), seed=7)
        if x.size >= points:
            break
        wanted = int(wanted * points / x.size * 1.02) + 1
    specials = np.array([v for v, _ in reference.SPECIAL[dtype][name]], dtype=dtype)
    x = np.concatenate([x, specials])
    got = reference.evaluate(name, dtype, x)
    chunk = 5000
    tasks = [(name, dtype, x[i : i + chunk], got[i : i + chunk], i) for i in range(0, x.size, chunk)]
    results = pool.map(_chunk_errors, tasks)
    worst_error, worst_index, _, _ = max(results, key=lambda r: r[0])
    return {
        "points": x.size,
        "max_ulp": worst_error,
        "argument": float(x[worst_index]),
        "cr_miss": sum(r[2] for r in results) / x.size,
        "max_distance": max(r[3] for r in results),
    }


def _binary_chunk(task):
    """(max error, its index) of one chunk of a two-argument function (see reference.binary_errors)."""
    name, dtype, z, y, got, offset = task
    errors = reference.binary_errors(name, dtype, z, y, got)
    worst = int(np.argmax(errors))
    return float(errors[worst]), offset + worst


def binary_accuracy(name: str, dtype: str, points: int, pool) -> dict:
    """Worst error of scaled_exp/scaled_expm1/exp_minus over about `points` inputs, in units of
    1 ulp of the result plus 2^-55 of the larger term (the tests' bound is 1)."""
    # Finite inputs only: the special values are checked bit for bit by the tests.
    z, y = reference.binary_points(name, dtype, max(1, points // 4), seed=7)
    got = reference.evaluate_binary(name, dtype, z, y)
    chunk = 5000
    tasks = [(name, dtype, z[i : i + chunk], y[i : i + chunk], got[i : i + chunk], i) for i in range(0, z.size, chunk)]
    worst, index = max(pool.map(_binary_chunk, tasks), key=lambda r: r[0])
    return {"points": z.size, "max_error": worst, "z": float(z[index]), "y": float(y[index])}


def _exhaustive_kernel(name: str):
    """A parallel loop over all 2^32 float32 bit patterns in blocks: per block, the largest
    distance (in floats) between kmath and float32(libm in float64), where it is, and how many
    results differ at all."""
    ours = getattr(kmath, f"{name}_f32")
    libm = getattr(math, name)

    @njit(parallel=True, error_model="numpy")
    def scan(blocks, block_size, worst_distance, worst_bits, differ):
        for b in prange(blocks):
            bits = np.empty(block_size, np.uint32)
            for j in range(block_size):
                bits[j] = np.uint32(b * block_size + j)
            x = bits.view(np.float32)
            got = np.empty(block_size, np.float32)
            want = np.empty(block_size, np.float32)
            for j in range(block_size):
                got[j] = ours(x[j])
                want[j] = np.float32(libm(np.float64(x[j])))
            got_bits = got.view(np.int32)
            want_bits = want.view(np.int32)
            best, best_bits, count = 0, np.uint32(0), 0
            for j in range(block_size):
                if np.isnan(got[j]) and np.isnan(want[j]):
                    continue
                g = np.int64(got_bits[j])
                w = np.int64(want_bits[j])
                # Order bit patterns like the numbers, -0 = +0 = 0; NaN against a number is far.
                g = -(g & 0x7FFFFFFF) if g < 0 else g
                w = -(w & 0x7FFFFFFF) if w < 0 else w
                d = abs(g - w) if not (np.isnan(got[j]) or np.isnan(want[j])) else np.int64(1) << 40
                if d > 0:
                    count += 1
                if d > best:
                    best, best_bits = d, bits[j]
            worst_distance[b], worst_bits[b], differ[b] = best, best_bits, count

    return scan


def exhaustive_float32(name: str) -> dict:
    block_size = 1 << 16
    blocks = (1 << 32) // block_size
    worst_distance = np.zeros(blocks, np.int64)
    worst_bits = np.zeros(blocks, np.uint32)
    differ = np.zeros(blocks, np.int64)
    start = time.perf_counter()
    _exhaustive_kernel(name)(blocks, block_size, worst_distance, worst_bits, differ)
    b = int(np.argmax(worst_distance))
    return {
        "max_distance": int(worst_distance[b]),
        "argument": float(np.array([worst_bits[b]], np.uint32).view(np.float32)[0]),
        "differ": float(differ.sum()) / 2**32,
        "seconds": time.perf_counter() - start,
    }


# ---------------------------------------------------------------------------------------------
# Speed


def _loop(function, parallel: bool):
    if parallel:

        @njit(parallel=True, fastmath={"contract", "nsz"}, error_model="numpy")
        def apply(x, out):
            for i in prange(x.shape[0]):
                out[i] = function(x[i])

        return apply

    @njit(fastmath={"contract", "nsz"}, error_model="numpy")
    def apply_serial(x, out, repeats):
        for _ in range(repeats):
            for i in range(x.shape[0]):
                out[i] = function(x[i])

    return apply_serial


@njit(parallel=True, error_model="numpy")
def _copy(x, out):
    for i in prange(x.shape[0]):
        out[i] = x[i]


def speed(name: str, dtype: str, rounds: int, n: int = 10_000_000) -> dict:
    rng = np.random.default_rng(3)
    x = TIMING_INPUTS[name](rng, n).astype(dtype)
    out = np.empty_like(x)
    ours = getattr(kmath, kmath.KERNEL_MATH[(name, dtype)])
    libm = getattr(math, name)
    variants = {"kmath": _loop(ours, True), "libm": _loop(libm, True), "copy": _copy}
    in_cache = x[:4096].copy()
    out_cache = np.empty_like(in_cache)
    serial = {"kmath": _loop(ours, False), "libm": _loop(libm, False)}
    repeats = 100
    for f in variants.values():
        f(x, out)
    for f in serial.values():
        f(in_cache, out_cache, 1)
    best = {key: math.inf for key in ("kmath", "libm", "copy", "kmath_cache", "libm_cache")}
    for _ in range(rounds):
        for key, f in variants.items():
            start = time.perf_counter()
            f(x, out)
            best[key] = min(best[key], time.perf_counter() - start)
        for key, f in serial.items():
            start = time.perf_counter()
            f(in_cache, out_cache, repeats)
            best[f"{key}_cache"] = min(best[f"{key}_cache"], (time.perf_counter() - start) / repeats / in_cache.size)
    return best


# ---------------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=1_000_000, help="accuracy points per function and dtype")
    parser.add_argument("--rounds", type=int, default=15, help="timing rounds (minimum kept)")
    parser.add_argument("--workers", type=int, default=2, help="processes for the mpmath reference")
    parser.add_argument("--exhaustive-float32", action="store_true", help="also check all 2^32 float32 inputs")
    parser.add_argument("--skip-accuracy", action="store_true")
    parser.add_argument("--skip-speed", action="store_true")
    parser.add_argument("--binary-only", action="store_true", help="accuracy of the two-argument functions only")
    args = parser.parse_args()

    if not args.skip_accuracy:
        print(f"## Accuracy against mpmath (160 bits), {args.points:,} points per row plus the special values\n")
        print("| function | dtype | points | max ulp | at x = | cr miss | max dist |")
        print("| --- | --- | ---: | ---: | --- | ---: | ---: |")
        with multiprocessing.get_context("fork").Pool(args.workers) as pool:
            for name in [] if args.binary_only else FUNCTIONS:
                for dtype in DTYPES:
                    r = accuracy(name, dtype, args.points, pool)
                    print(
                        f"| {name} | {dtype} | {r['points']:,} | {r['max_ulp']:.3f} | {r['argument']!r} | "
                        f"{100 * r['cr_miss']:.3f}% | {r['max_distance']:.0f} |",
                        flush=True,
                    )
            print("\n## Two-argument functions: error / (1 ulp of the result + 2^-55 of the larger term)\n")
            print("| function | dtype | points | max error | at (z, y) = |")
            print("| --- | --- | ---: | ---: | --- |")
            for name in reference.BINARY_FUNCTIONS:
                for dtype in DTYPES:
                    r = binary_accuracy(name, dtype, args.points, pool)
                    print(f"| {name} | {dtype} | {r['points']:,} | {r['max_error']:.3f} | ({r['z']!r}, {r['y']!r}) |", flush=True)
        print()

    if args.exhaustive_float32:
        print("## Every float32 input against float32(float64 libm)\n")
        print("| function | max dist | at x = | differ | seconds |")
        print("| --- | ---: | --- | ---: | ---: |")
        for name in FUNCTIONS:
            r = exhaustive_float32(name)
            print(
                f"| {name} | {r['max_distance']} | {r['argument']!r} | {100 * r['differ']:.4f}% | {r['seconds']:.0f} |",
                flush=True,
            )
        print()

    if not args.skip_speed:
        print(f"## Speed (minimum of {args.rounds} interleaved rounds)\n")
        print("| function | dtype | kmath n=1e7 ms | libm n=1e7 ms | copy ms | speed-up n=1e7 | kmath ns/elem in cache | libm ns/elem in cache | speed-up in cache |")
        print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
        for name in FUNCTIONS:
            for dtype in DTYPES:
                b = speed(name, dtype, args.rounds)
                print(
                    f"| {name} | {dtype} | {1e3 * b['kmath']:.1f} | {1e3 * b['libm']:.1f} | {1e3 * b['copy']:.1f} | "
                    f"{b['libm'] / b['kmath']:.1f}x | {1e9 * b['kmath_cache']:.2f} | {1e9 * b['libm_cache']:.2f} | "
                    f"{b['libm_cache'] / b['kmath_cache']:.1f}x |",
                    flush=True,
                )


if __name__ == "__main__":
    main()
