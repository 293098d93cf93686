"""Deterministic block sums for generated kernels.

A reduction kernel writes each block's per-sample losses to a buffer and sums it here. Eight
independent accumulators in a fixed order make the sum the same on every run and thread count
(no fastmath reassociation, which would let the compiler pick the order), while their adds are
independent, so LLVM's SLP vectorizer packs them into SIMD registers.
"""

from __future__ import annotations

from numba import njit


@njit(cache=True, error_model="numpy")
def block_sum(values, count):
    """Sum of values[:count] in float64, in a fixed eight-lane order."""
    a0 = a1 = a2 = a3 = a4 = a5 = a6 = a7 = 0.0
    whole = count - count % 8
    for j in range(0, whole, 8):
        a0 += values[j]
        a1 += values[j + 1]
        a2 += values[j + 2]
        a3 += values[j + 3]
        a4 += values[j + 4]
        a5 += values[j + 5]
        a6 += values[j + 6]
        a7 += values[j + 7]
    tail = 0.0
    for j in range(whole, count):
        tail += values[j]
    return ((a0 + a1) + (a2 + a3)) + ((a4 + a5) + (a6 + a7)) + tail
