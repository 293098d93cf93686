"""Device code of the CUDA target: what generated CUDA kernels call, and the small kernels the
CUDA runtime launches itself (dtype conversion, label checks, a transform's chain rule).

The block sum is a tree in shared memory, in a fixed order, so a reduction gives the same bits
on every run of one launch shape. Imported only by CUDA kernel modules and lossgen.cuda_runtime,
once numba-cuda is known to be installed (rendering kernels never imports it).
"""

from __future__ import annotations

import numpy as np
from numba import cuda, float64

from .cuda_runtime import MAX_BLOCK_THREADS


@cuda.jit(device=True)
def block_sum(value, partial):
    """Add `value` (float64) over the threads of the block as a tree in shared memory and store the
    block's total in partial[blockIdx.x].

    Every thread of the block must call it (it synchronizes the block); blockDim.x must be a power
    of two no larger than MAX_BLOCK_THREADS, as lossgen.cuda_runtime.launch_config makes it.
    """
    buffer = cuda.shared.array(MAX_BLOCK_THREADS, float64)
    t = cuda.threadIdx.x
    buffer[t] = value
    cuda.syncthreads()
    half = cuda.blockDim.x // 2
    while half > 0:
        if t < half:
            buffer[t] += buffer[t + half]
        cuda.syncthreads()
        half //= 2
    if t == 0:
        partial[cuda.blockIdx.x] = buffer[0]


# np.sign as numba's CPU target computes it (+-1, and x itself for +-0 and NaN), which its CUDA
# target lacks; one per dtype so that a float32 kernel never widens to float64.
@cuda.jit(device=True)
def sign_f32(x):
    """np.sign of a float32."""
    if x > 0:
        return np.float32(1.0)
    if x < 0:
        return np.float32(-1.0)
    return x


@cuda.jit(device=True)
def sign_f64(x):
    """np.sign of a float64."""
    if x > 0:
        return 1.0
    if x < 0:
        return -1.0
    return x


@cuda.jit
def block_sums(values, partial):
    """Per-block float64 sums of a 1-D array into partial (one entry per block): a sum of weights."""
    total = 0.0
    for i in range(cuda.grid(1), values.shape[0], cuda.gridsize(1)):
        total += np.float64(values[i])
    block_sum(total, partial)


@cuda.jit
def convert(source, target):
    """target[i] = source[i] for 1-D arrays of the same length: a dtype conversion on the device."""
    for i in range(cuda.grid(1), target.shape[0], cuda.gridsize(1)):
        target[i] = source[i]


@cuda.jit
def first_bad_label(labels, classes, ignore, use_ignore, first):
    """first[0] = min(first[0], the index of each label outside 0..classes-1 that is not `ignore`
    (when use_ignore)). Start first[0] at len(labels): it stays there when every label is good."""
    for i in range(cuda.grid(1), labels.shape[0], cuda.gridsize(1)):
        label = labels[i]
        if (label < 0 or label >= classes) and not (use_ignore and label == ignore):
            cuda.atomic.min(first, 0, i)


@cuda.jit
def chain_rule(grad, hess, first, second):
    """The derivatives of T(L) from those of L, as lossgen.transforms.apply_transform computes
    them on the CPU: hess = hess*T'(L) + T''(L)*grad**2, then grad = grad*T'(L)."""
    for i in range(cuda.grid(1), grad.shape[0], cuda.gridsize(1)):
        g = grad[i]
        hess[i] = hess[i] * first + second * g * g
        grad[i] = g * first
