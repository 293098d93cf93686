"""The paths that make kernels fast must not change a single bit: serial vs parallel kernels,
any thread count, and preallocated outputs (out=)."""

from __future__ import annotations

import numba
import numpy as np
import pytest

import lossgen as lg
from lossgen import runtime


@pytest.fixture(scope="module")
def inputs():
    rng = np.random.default_rng(7)
    n = 3 * 4096 + 123  # several reduction blocks and a partial one
    y = rng.normal(size=n)
    p = y + rng.normal(scale=2.0, size=n)
    w = rng.uniform(0.5, 2.0, size=n)
    return y, p, w


def assert_same_bits(a, b):
    assert a.loss == b.loss if np.isscalar(a.loss) else np.array_equal(a.loss, b.loss, equal_nan=True)
    np.testing.assert_array_equal(a.grad, b.grad)
    np.testing.assert_array_equal(a.hess, b.hess)


@pytest.mark.parametrize("reduction", ["none", "sum", "weighted_mean"])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_serial_kernel_gives_the_parallel_kernels_bits(compiled, inputs, monkeypatch, reduction, dtype):
    kernel = compiled("log_cosh", dtype, reduction)
    y, p, w = (a.astype(dtype) for a in inputs)
    monkeypatch.setattr(runtime, "SERIAL_BELOW", 0)
    parallel = kernel(y, p, weight=w)
    monkeypatch.setattr(runtime, "SERIAL_BELOW", 10**12)
    serial = kernel(y, p, weight=w)
    assert_same_bits(parallel, serial)


@pytest.mark.skipif(numba.config.NUMBA_NUM_THREADS < 2, reason="needs two threads")
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_results_do_not_depend_on_the_thread_count(compiled, inputs, monkeypatch, dtype):
    kernel = compiled("log_cosh", dtype, "sum")
    y, p, _ = (a.astype(dtype) for a in inputs)
    monkeypatch.setattr(runtime, "SERIAL_BELOW", 0)
    before = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        one = kernel(y, p)
        numba.set_num_threads(2)
        two = kernel(y, p)
    finally:
        numba.set_num_threads(before)
    assert_same_bits(one, two)


def test_block_sum_is_exact_on_integers_and_matches_a_fixed_order():
    from lossgen.kreduce import LANES, block_sum

    values = np.arange(1, 4100, dtype=np.float64)
    for count in (0, 1, 7, LANES - 1, LANES, LANES + 1, 4099):
        assert block_sum(values, count) == float(np.sum(values[:count]))
    rng = np.random.default_rng(1)
    values = rng.normal(size=4096) * 10.0 ** rng.integers(-8, 8, size=4096)
    for count in (4096, 4000):
        rows = count // LANES
        # The documented order: lane l adds values l, l + LANES, ... of the whole rows in turn,
        # then the lanes are added in index order, then the tail one value at a time.
        lanes = [0.0] * LANES
        for row in range(rows):
            for lane in range(LANES):
                lanes[lane] += float(values[row * LANES + lane])
        expected = 0.0
        for lane in lanes:
            expected += lane
        for value in values[rows * LANES:count].tolist():
            expected += value
        assert block_sum(values, count) == expected


def test_block_sum_widens_float32_values_exactly():
    from lossgen.kreduce import block_sum

    values = (np.random.default_rng(2).normal(size=4096) * 1e6).astype(np.float32)
    assert block_sum(values, 4096) == block_sum(values.astype(np.float64), 4096)


@pytest.mark.parametrize("reduction", ["none", "mean"])
def test_out_reuses_the_given_arrays_and_gives_the_same_bits(compiled, inputs, reduction):
    kernel = compiled("log_cosh", "float64", reduction)
    y, p, _ = inputs
    fresh = kernel(y, p)
    out = kernel.allocate(p.shape)
    reused = kernel(y, p, out=out)
    assert reused.grad is out.grad and reused.hess is out.hess
    if reduction == "none":
        assert reused.loss is out.loss
    else:
        assert out.loss is None and isinstance(reused.loss, float)
    assert_same_bits(fresh, reused)
    # a second step with other inputs overwrites them in place
    again = kernel(y, p * 0.5, out=reused)
    assert again.grad is out.grad
    assert_same_bits(again, kernel(y, p * 0.5))


def test_out_may_be_a_tuple_and_works_for_two_dimensional_inputs(compiled, inputs):
    kernel = compiled("log_cosh", "float64", "none")
    y, p, _ = (a[:4000].reshape(40, 100) for a in inputs)
    out = (np.empty((40, 100)), np.empty((40, 100)), np.empty((40, 100)))
    result = kernel(y, p, out=out)
    assert result.loss is out[0] and result.grad is out[1] and result.hess is out[2]
    assert_same_bits(result, kernel(y, p))


def bad_out_message(kernel, y, p, out):
    with pytest.raises(lg.InputError) as info:
        kernel(y, p, out=out)
    assert "\n" not in str(info.value)
    return str(info.value)


def test_out_with_a_wrong_dtype_shape_layout_or_overlap_is_refused_naming_it(compiled, inputs):
    kernel = compiled("log_cosh", "float64", "mean")
    y, p, _ = inputs
    n = p.size
    good = np.empty(n)
    assert "out.grad" in bad_out_message(kernel, y, p, (None, np.empty(n, np.float32), good))
    assert "out.hess" in bad_out_message(kernel, y, p, (None, good, np.empty(n + 1)))
    assert "C-contiguous" in bad_out_message(kernel, y, p, (None, np.empty(2 * n)[::2], good))
    frozen = np.empty(n)
    frozen.flags.writeable = False
    assert "writeable" in bad_out_message(kernel, y, p, (None, frozen, good))
    assert "overlap" in bad_out_message(kernel, y, p, (None, good, good))
    assert "Result" in bad_out_message(kernel, y, p, [good, good])


def test_out_for_a_row_wise_loss(compiled):
    kernel = compiled("cross_entropy", "float64", "none")
    rng = np.random.default_rng(3)
    logits = rng.normal(size=(50, 4))
    labels = rng.integers(0, 4, size=50)
    out = kernel.allocate(logits.shape)
    assert out.loss.shape == (50,)
    result = kernel(y=labels, p=logits, out=out)
    fresh = kernel(y=labels, p=logits)
    assert result.grad is out.grad
    assert_same_bits(result, fresh)


@pytest.mark.parametrize("reduction", ["none", "mean"])
def test_row_wise_serial_kernel_gives_the_parallel_kernels_bits(compiled, monkeypatch, reduction):
    kernel = compiled("cross_entropy", "float64", reduction)
    rng = np.random.default_rng(5)
    logits = rng.normal(size=(300, 5))
    labels = rng.integers(0, 5, size=300)
    weights = rng.uniform(0.5, 2.0, size=5)
    monkeypatch.setattr(runtime, "SERIAL_BELOW", 0)
    parallel = kernel(y=labels, p=logits, class_weight=weights, label_smoothing=0.1)
    monkeypatch.setattr(runtime, "SERIAL_BELOW", 10**12)
    serial = kernel(y=labels, p=logits, class_weight=weights, label_smoothing=0.1)
    assert_same_bits(parallel, serial)


@pytest.mark.parametrize("weight_each", [1e-41, 1e36], ids=["total-below-tiny", "total-above-1/tiny"])
def test_a_total_weight_whose_reciprocal_is_not_normal_is_divided_by(compiled, weight_each):
    """Reduced kernels multiply by 1/scale. Where that reciprocal would overflow (a float32 total
    weight below the smallest normal) or be subnormal (a total above 1/tiny), the runtime divides
    instead: the bits of (weight * gradient) / total, as reduction "none" and NumPy give them."""
    kernel = compiled("huber", "float32", "weighted_mean")
    per_sample = compiled("huber", "float32", "none")
    rng = np.random.default_rng(3)
    n = 100
    y, p = rng.normal(size=(2, n)).astype(np.float32)
    w = np.full(n, weight_each, np.float32)
    total = np.float32(np.sum(w, dtype=np.float64))
    assert not (np.finfo(np.float32).tiny <= total <= 1 / np.finfo(np.float32).tiny)
    reduced, none = kernel(y, p, weight=w), per_sample(y, p, weight=w)
    assert np.isfinite(reduced.grad).all() and np.isfinite(reduced.hess).all()
    np.testing.assert_array_equal(reduced.grad, none.grad / total)
    np.testing.assert_array_equal(reduced.hess, none.hess / total)


def test_a_normal_scale_multiplies_by_its_reciprocal(compiled, inputs):
    """The ordinary path: gradient times (1/n) in the kernel's dtype, which is within one rounding
    of the quotient (exact for a power of two)."""
    y, p, _ = (a.astype(np.float32) for a in inputs)
    none = compiled("huber", "float32", "none")(y, p)
    mean = compiled("huber", "float32", "mean")(y, p)
    np.testing.assert_array_equal(mean.grad, none.grad * (np.float32(1) / np.float32(len(y))))
    np.testing.assert_allclose(mean.grad, none.grad / np.float32(len(y)), rtol=2 * np.finfo(np.float32).eps, atol=0)


@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
def test_reduced_kernels_load_their_inputs_as_whole_vectors(host_has_avx2, weighted):
    """The reduced kernels' sample loop loads y, p (and the weight) 8 floats at a time. With a
    signed index counting from the block's start, numba's negative-index wraparound put a select
    on every access and LLVM assembled the vectors one lane at a time (no vector load at all):
    5 to 10x slower in cache. Checked on the optimized LLVM IR of a float32 hinge kernel
    compiled in memory, without numba's cache (numba cannot inspect cached code)."""
    import re

    from lossgen.cache import _import_in_memory

    if not host_has_avx2:
        pytest.skip("the expected vector width (8 floats) is AVX2's")
    module = _import_in_memory("hinge_float32_uncached", runtime.kernel_source(lg.get("hinge"), "cpu", "float32"))
    kernel = module.reduced_weighted_serial if weighted else module.reduced_serial
    y = np.ones(10, np.float32)
    arrays = (y, y, y) if weighted else (y, y)
    kernel(*arrays, np.float32(10), np.empty_like(y), np.empty_like(y))
    llvm = "\n".join(kernel.inspect_llvm().values())
    # The block sum widens float32 losses to double: it loads <4 x float>, never <8 x float>.
    assert len(re.findall(r"= load <8 x float>", llvm)) >= len(arrays)
