"""Calling a compiled kernel: binding, params, checks on arrays, shapes, weights, reductions, dtypes.

All tests use the catalog huber (inputs y, p; wrt p; delta=1.0 in (0, oo)). Kernels are compiled
once for the module; keep the set of (dtype, reduction) pairs below small, each costs a compile.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import lossgen as lg

COMBOS = [
    ("float64", "none"),
    ("float64", "sum"),
    ("float64", "mean"),
    ("float64", "weighted_mean"),
    ("float32", "none"),
    ("float32", "sum"),
    ("float32", "mean"),
]


@pytest.fixture(scope="module")
def kernels():
    huber = lg.get("huber")
    return {combo: huber.compile(dtype=combo[0], reduction=combo[1]) for combo in COMBOS}


@pytest.fixture(scope="module")
def data():
    """Targets, predictions and weights; residuals fall on both sides of delta = 1 and 2."""
    rng = np.random.default_rng(20240601)
    n = 257
    y = rng.normal(0.0, 2.0, n)
    p = y + rng.normal(0.0, 1.5, n)
    w = rng.uniform(0.1, 3.0, n)
    return y, p, w


def huber_reference(y, p, delta=1.0):
    """Per-sample Huber loss, d/dp and d2/dp2 in NumPy (torch.nn.HuberLoss's definition)."""
    r = p - y
    inside = np.abs(r) <= delta
    loss = np.where(inside, 0.5 * r**2, delta * (np.abs(r) - 0.5 * delta))
    grad = np.where(inside, r, delta * np.sign(r))
    hess = np.where(inside, 1.0, 0.0)
    return loss, grad, hess


def input_error(call) -> str:
    with pytest.raises(lg.InputError) as info:
        call()
    message = str(info.value)
    assert "\n" not in message
    return message


# --- binding arrays and params ----------------------------------------------------------------


def test_per_sample_kernel_matches_the_huber_formula(kernels, data):
    y, p, _ = data
    result = kernels["float64", "none"](y, p)
    loss, grad, hess = huber_reference(y, p)
    np.testing.assert_allclose(result.loss, loss, rtol=1e-14, atol=1e-15)
    np.testing.assert_allclose(result.grad, grad, rtol=1e-14, atol=1e-15)
    np.testing.assert_array_equal(result.hess, hess)


def test_arrays_by_position_and_by_name_give_the_same_result(kernels, data):
    y, p, _ = data
    kernel = kernels["float64", "none"]
    positional = kernel(y, p)
    for result in (kernel(y=y, p=p), kernel(p=p, y=y), kernel(y, p=p)):
        np.testing.assert_array_equal(result.loss, positional.loss)
        np.testing.assert_array_equal(result.grad, positional.grad)
        np.testing.assert_array_equal(result.hess, positional.hess)


def test_array_given_by_position_and_by_name_is_refused(kernels, data):
    y, p, _ = data
    assert "'p'" in input_error(lambda: kernels["float64", "none"](y, p, p=p))


def test_param_default_is_used_when_not_given(kernels, data):
    y, p, _ = data
    kernel = kernels["float64", "none"]
    np.testing.assert_array_equal(kernel(y, p).loss, kernel(y, p, delta=1.0).loss)


def test_param_overrides_the_default(kernels, data):
    y, p, _ = data
    kernel = kernels["float64", "none"]
    default, wide = kernel(y, p), kernel(y, p, delta=2.0)
    assert not np.array_equal(default.loss, wide.loss)
    loss, grad, hess = huber_reference(y, p, delta=2.0)
    np.testing.assert_allclose(wide.loss, loss, rtol=1e-14, atol=1e-15)
    np.testing.assert_allclose(wide.grad, grad, rtol=1e-14, atol=1e-15)
    np.testing.assert_array_equal(wide.hess, hess)


def test_param_may_be_a_numpy_scalar(kernels, data):
    y, p, _ = data
    kernel = kernels["float64", "none"]
    np.testing.assert_array_equal(kernel(y, p, delta=np.float32(2.0)).loss, kernel(y, p, delta=2.0).loss)


@pytest.mark.parametrize("delta", [-1.0, 0.0, float("nan"), float("inf")])
def test_param_outside_its_domain_is_refused_naming_it(kernels, data, delta):
    y, p, _ = data
    message = input_error(lambda: kernels["float64", "none"](y, p, delta=delta))
    assert "'delta'" in message
    assert "domain" in message


@pytest.mark.parametrize("delta", ["1.0", None, True, np.ones(3)], ids=["str", "None", "bool", "array"])
def test_param_that_is_not_a_real_number_is_refused_naming_it(kernels, data, delta):
    y, p, _ = data
    assert "'delta'" in input_error(lambda: kernels["float64", "none"](y, p, delta=delta))


def test_unknown_keyword_is_refused_naming_it(kernels, data):
    y, p, _ = data
    message = input_error(lambda: kernels["float64", "none"](y, p, beta=1.0))
    assert "'beta'" in message


def test_missing_array_is_refused_naming_it(kernels, data):
    y, p, _ = data
    kernel = kernels["float64", "none"]
    assert "'p'" in input_error(lambda: kernel(y))
    assert "'y'" in input_error(lambda: kernel(p=p))


def test_too_many_arrays_are_refused(kernels, data):
    y, p, _ = data
    message = input_error(lambda: kernels["float64", "none"](y, p, p))
    assert "takes 2 arrays" in message


# --- checks on arrays ---------------------------------------------------------------------------


def test_shape_mismatch_names_the_array_and_both_shapes(kernels, data):
    y, p, _ = data
    message = input_error(lambda: kernels["float64", "none"](y[:10], p[:12]))
    assert "'y'" in message
    assert "(10,)" in message and "(12,)" in message


def test_weight_shape_mismatch_names_weight_and_both_shapes(kernels, data):
    y, p, w = data
    message = input_error(lambda: kernels["float64", "sum"](y[:10], p[:10], weight=w[:9]))
    assert "'weight'" in message
    assert "(9,)" in message and "(10,)" in message


@pytest.mark.parametrize(
    "dtype, kernel_dtype",
    [(np.float32, "float64"), (np.int64, "float64"), (np.float64, "float32")],
)
def test_wrt_array_of_another_dtype_is_refused_naming_it(kernels, data, dtype, kernel_dtype):
    y, p, _ = data
    message = input_error(lambda: kernels[kernel_dtype, "none"](y, p.astype(dtype)))
    assert "'p'" in message
    assert np.dtype(dtype).name in message


@pytest.mark.parametrize("dtype", [np.complex128, object, np.str_], ids=["complex", "object", "str"])
def test_target_array_that_is_not_real_numbers_is_refused_naming_it(kernels, data, dtype):
    y, p, _ = data
    assert "'y'" in input_error(lambda: kernels["float64", "none"](y.astype(dtype), p))


def test_complex_weight_is_refused(kernels, data):
    y, p, w = data
    assert "'weight'" in input_error(lambda: kernels["float64", "sum"](y, p, weight=w.astype(np.complex128)))


def test_ragged_input_is_refused_naming_it(kernels):
    assert "'y'" in input_error(lambda: kernels["float64", "none"]([[1.0], [1.0, 2.0]], np.zeros(2)))


@pytest.mark.parametrize("dtype", [np.int64, np.int32, np.uint8, np.float32])
def test_target_of_another_real_dtype_is_converted(kernels, data, dtype):
    y, p, _ = data
    y_converted = np.abs(np.round(y)).astype(dtype)  # small non-negative whole numbers fit every dtype
    kernel = kernels["float64", "none"]
    expected = kernel(y_converted.astype(np.float64), p)
    result = kernel(y_converted, p)
    np.testing.assert_array_equal(result.loss, expected.loss)
    np.testing.assert_array_equal(result.grad, expected.grad)


def test_target_may_be_a_list(kernels, data):
    y, p, _ = data
    kernel = kernels["float64", "none"]
    np.testing.assert_array_equal(kernel(list(y), p).loss, kernel(y, p).loss)


@pytest.mark.parametrize("reduction", ["none", "mean"])
def test_non_contiguous_prediction_gives_exactly_the_contiguous_result(kernels, data, reduction):
    y, p, _ = data
    storage = np.zeros((p.size, 3))
    storage[:, 1] = p
    strided = storage[:, 1]
    assert not strided.flags.c_contiguous
    kernel = kernels["float64", reduction]
    contiguous, result = kernel(y, p), kernel(y, strided)
    np.testing.assert_array_equal(result.loss, contiguous.loss)
    np.testing.assert_array_equal(result.grad, contiguous.grad)
    np.testing.assert_array_equal(result.hess, contiguous.hess)


def test_reversed_view_gives_exactly_the_forward_result_reversed(kernels, data):
    y, p, _ = data
    kernel = kernels["float64", "none"]
    forward, backward = kernel(y, p), kernel(y[::-1], p[::-1])
    np.testing.assert_array_equal(backward.loss, forward.loss[::-1])
    np.testing.assert_array_equal(backward.grad, forward.grad[::-1])


def test_kernel_does_not_modify_its_inputs(kernels, data):
    y, p, w = data
    y_copy, p_copy, w_copy = y.copy(), p.copy(), w.copy()
    kernels["float64", "weighted_mean"](y, p, weight=w)
    kernels["float64", "none"](y, p, weight=w)
    np.testing.assert_array_equal(y, y_copy)
    np.testing.assert_array_equal(p, p_copy)
    np.testing.assert_array_equal(w, w_copy)


def test_two_dimensional_inputs_give_two_dimensional_outputs(kernels, data):
    y, p, _ = data
    y2, p2 = y[:256].reshape(16, 16), p[:256].reshape(16, 16)
    flat = kernels["float64", "none"](y[:256], p[:256])
    result = kernels["float64", "none"](y2, p2)
    for field in ("loss", "grad", "hess"):
        value = getattr(result, field)
        assert value.shape == (16, 16), field
        np.testing.assert_array_equal(value, getattr(flat, field).reshape(16, 16))


def test_fortran_ordered_inputs_give_the_c_ordered_result(kernels, data):
    y, p, _ = data
    y2, p2 = y[:256].reshape(16, 16), p[:256].reshape(16, 16)
    c_order = kernels["float64", "none"](y2, p2)
    f_order = kernels["float64", "none"](np.asfortranarray(y2), np.asfortranarray(p2))
    np.testing.assert_array_equal(f_order.loss, c_order.loss)
    np.testing.assert_array_equal(f_order.grad, c_order.grad)


def test_grad_of_a_reduced_2d_input_has_its_shape(kernels, data):
    y, p, _ = data
    result = kernels["float64", "mean"](y[:256].reshape(16, 16), p[:256].reshape(16, 16))
    assert isinstance(result.loss, float)
    assert result.grad.shape == (16, 16) and result.hess.shape == (16, 16)


def test_zero_dimensional_inputs_give_zero_dimensional_outputs(kernels):
    result = kernels["float64", "none"](np.float64(0.0), np.float64(0.5))
    assert result.loss.shape == ()
    assert result.grad.shape == ()


# --- reductions and weights ---------------------------------------------------------------------


def test_sum_is_the_sum_of_per_sample_values(kernels, data):
    y, p, _ = data
    each = kernels["float64", "none"](y, p)
    total = kernels["float64", "sum"](y, p)
    assert total.loss == pytest.approx(np.sum(each.loss), rel=1e-13)
    np.testing.assert_allclose(total.grad, each.grad, rtol=1e-15)
    np.testing.assert_allclose(total.hess, each.hess, rtol=1e-15)


def test_mean_divides_loss_grad_and_hess_by_the_sample_count(kernels, data):
    y, p, _ = data
    n = y.size
    each = kernels["float64", "none"](y, p)
    mean = kernels["float64", "mean"](y, p)
    assert mean.loss == pytest.approx(np.sum(each.loss) / n, rel=1e-13)
    np.testing.assert_allclose(mean.grad, each.grad / n, rtol=1e-14, atol=1e-300)
    np.testing.assert_allclose(mean.hess, each.hess / n, rtol=1e-14, atol=1e-300)


def test_per_sample_values_are_scaled_by_weight(kernels, data):
    y, p, w = data
    plain = kernels["float64", "none"](y, p)
    weighted = kernels["float64", "none"](y, p, weight=w)
    np.testing.assert_allclose(weighted.loss, w * plain.loss, rtol=1e-14)
    np.testing.assert_allclose(weighted.grad, w * plain.grad, rtol=1e-14)
    np.testing.assert_allclose(weighted.hess, w * plain.hess, rtol=1e-14)


@pytest.mark.parametrize("reduction", ["sum", "mean", "weighted_mean"])
def test_weighted_reduction_matches_numpy_on_per_sample_values(kernels, data, reduction):
    y, p, w = data
    each = kernels["float64", "none"](y, p)
    divisor = {"sum": 1.0, "mean": float(y.size), "weighted_mean": float(np.sum(w))}[reduction]
    result = kernels["float64", reduction](y, p, weight=w)
    assert result.loss == pytest.approx(np.sum(w * each.loss) / divisor, rel=1e-13)
    np.testing.assert_allclose(result.grad, w * each.grad / divisor, rtol=1e-13, atol=1e-300)
    np.testing.assert_allclose(result.hess, w * each.hess / divisor, rtol=1e-13, atol=1e-300)


def test_weighted_mean_differs_from_mean_when_weights_do_not_sum_to_n(kernels, data):
    y, p, w = data
    assert kernels["float64", "weighted_mean"](y, p, weight=w).loss != pytest.approx(
        kernels["float64", "mean"](y, p, weight=w).loss, rel=1e-6
    )


def test_weighted_mean_without_weights_is_the_mean(kernels, data):
    y, p, _ = data
    mean = kernels["float64", "mean"](y, p)
    weighted = kernels["float64", "weighted_mean"](y, p)
    assert weighted.loss == pytest.approx(mean.loss, rel=1e-15)
    np.testing.assert_allclose(weighted.grad, mean.grad, rtol=1e-15)


def test_integer_weights_are_accepted(kernels, data):
    y, p, _ = data
    ints = np.arange(y.size) % 4
    as_int = kernels["float64", "sum"](y, p, weight=ints)
    as_float = kernels["float64", "sum"](y, p, weight=ints.astype(np.float64))
    assert as_int.loss == as_float.loss
    np.testing.assert_array_equal(as_int.grad, as_float.grad)


def test_reduced_loss_is_a_python_float(kernels, data):
    y, p, _ = data
    for reduction in ("sum", "mean", "weighted_mean"):
        assert type(kernels["float64", reduction](y, p).loss) is float


# --- empty inputs -------------------------------------------------------------------------------


def test_sum_of_empty_arrays_is_zero(kernels):
    empty = np.array([], dtype=np.float64)
    result = kernels["float64", "sum"](empty, empty)
    assert result.loss == 0.0 and type(result.loss) is float
    assert result.grad.shape == (0,) and result.hess.shape == (0,)


def test_mean_of_empty_arrays_is_nan(kernels):
    empty = np.array([], dtype=np.float64)
    result = kernels["float64", "mean"](empty, empty)
    assert np.isnan(result.loss)
    assert result.grad.shape == (0,)


def test_per_sample_of_empty_arrays_is_empty(kernels):
    empty = np.array([], dtype=np.float64)
    result = kernels["float64", "none"](empty, empty)
    assert result.loss.shape == result.grad.shape == result.hess.shape == (0,)


def test_weighted_mean_of_empty_arrays_is_nan(kernels):
    empty = np.array([], dtype=np.float64)
    result = kernels["float64", "weighted_mean"](empty, empty, weight=empty)
    assert np.isnan(result.loss)


def test_weighted_mean_with_zero_total_weight_is_nan_or_an_input_error(kernels, data):
    y, p, _ = data
    try:
        result = kernels["float64", "weighted_mean"](y, p, weight=np.zeros_like(y))
    except lg.InputError as exc:
        assert "weight" in str(exc)
    else:
        assert np.isnan(result.loss)


# --- dtypes -------------------------------------------------------------------------------------


def test_float32_kernel_returns_float32_arrays_and_a_python_float_loss(kernels, data):
    y, p, _ = data
    result = kernels["float32", "mean"](y, p.astype(np.float32))
    assert type(result.loss) is float
    assert result.grad.dtype == np.float32 and result.hess.dtype == np.float32
    each = kernels["float32", "none"](y, p.astype(np.float32))
    assert each.loss.dtype == each.grad.dtype == each.hess.dtype == np.float32


def test_float64_kernel_returns_float64_arrays(kernels, data):
    y, p, _ = data
    result = kernels["float64", "none"](y.astype(np.float32), p)
    assert result.loss.dtype == result.grad.dtype == result.hess.dtype == np.float64


def test_float32_kernel_agrees_with_float64_kernel(kernels, data):
    y, p, _ = data
    y32, p32 = y.astype(np.float32), p.astype(np.float32)
    single = kernels["float32", "none"](y32, p32)
    double = kernels["float64", "none"](y32.astype(np.float64), p32.astype(np.float64))
    np.testing.assert_allclose(single.loss, double.loss, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(single.grad, double.grad, rtol=1e-6, atol=1e-6)


# --- against torch.nn.HuberLoss -----------------------------------------------------------------


def torch_huber(y, p, reduction, delta):
    prediction = torch.tensor(p, requires_grad=True)
    loss = torch.nn.HuberLoss(reduction=reduction, delta=delta)(prediction, torch.tensor(y))
    loss.backward()
    return loss.item(), prediction.grad.numpy()


@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("delta", [1.0, 0.5, 2.0])
def test_float64_matches_torch_huber_loss(kernels, data, reduction, delta):
    y, p, _ = data
    expected_loss, expected_grad = torch_huber(y, p, reduction, delta)
    result = kernels["float64", reduction](y, p, delta=delta)
    assert result.loss == pytest.approx(expected_loss, rel=1e-12)
    np.testing.assert_allclose(result.grad, expected_grad, rtol=1e-12, atol=1e-15 * np.abs(expected_grad).max())


@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("delta", [1.0, 0.5])
def test_float32_matches_torch_huber_loss(kernels, data, reduction, delta):
    y, p, _ = data
    y32, p32 = y.astype(np.float32), p.astype(np.float32)
    expected_loss, expected_grad = torch_huber(y32, p32, reduction, delta)
    result = kernels["float32", reduction](y32, p32, delta=delta)
    assert result.loss == pytest.approx(expected_loss, rel=1e-5)
    np.testing.assert_allclose(result.grad, expected_grad, rtol=1e-5, atol=1e-6 * np.abs(expected_grad).max())


# --- layouts, read-only memory, unusual dtypes and non-finite values --------------------------


def test_read_only_inputs_give_exactly_the_writable_result(kernels, data):
    y, p, w = data
    frozen = [a.copy() for a in (y, p, w)]
    for a in frozen:
        a.flags.writeable = False
    for combo in [("float64", "none"), ("float64", "weighted_mean")]:
        expected, result = kernels[combo](y, p, weight=w), kernels[combo](frozen[0], frozen[1], weight=frozen[2])
        np.testing.assert_array_equal(result.loss, expected.loss)
        np.testing.assert_array_equal(result.grad, expected.grad)


def test_memory_mapped_read_only_input_works(kernels, data, tmp_path):
    y, p, _ = data
    path = tmp_path / "p.npy"
    np.save(path, p)
    mapped = np.load(path, mmap_mode="r")
    np.testing.assert_array_equal(kernels["float64", "none"](y, mapped).grad, kernels["float64", "none"](y, p).grad)


@pytest.mark.parametrize("dtype", [np.float16, np.complex64, object, np.int32, np.bool_, np.longdouble])
def test_prediction_array_of_an_unsupported_dtype_is_refused_naming_it_and_the_fix(kernels, data, dtype):
    y, p, _ = data
    message = input_error(lambda: kernels["float32", "none"](y, p.astype(dtype)))
    assert "'p'" in message and np.dtype(dtype).name in message and "float32" in message


@pytest.mark.parametrize("dtype", [np.float16, np.bool_])
def test_small_real_targets_are_converted_exactly(kernels, data, dtype):
    y, p, _ = data
    y_small = np.round(y).astype(dtype)
    kernel = kernels["float32", "none"]
    np.testing.assert_array_equal(kernel(y_small, p.astype(np.float32)).grad, kernel(y_small.astype(np.float32), p.astype(np.float32)).grad)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_nan_and_inf_propagate_per_sample_and_never_poison_other_samples(kernels, data, dtype):
    y, p, _ = data
    y, p = y.astype(dtype), p.astype(dtype)
    bad_p, bad_y = p.copy(), y.copy()
    bad_p[[3, 100]] = [np.nan, np.inf]
    bad_y[[7, 200]] = [-np.inf, np.nan]
    bad = np.zeros(p.size, bool)
    bad[[3, 100, 7, 200]] = True
    kernel = kernels[dtype, "none"]
    clean, dirty = kernel(y, p), kernel(bad_y, bad_p)
    for field in ("loss", "grad", "hess"):
        np.testing.assert_array_equal(getattr(dirty, field)[~bad], getattr(clean, field)[~bad])
    # The non-finite samples follow IEEE arithmetic: what NumPy's Huber formula gives for them.
    with np.errstate(invalid="ignore"):
        ref_loss, ref_grad, _ = huber_reference(bad_y[bad].astype(np.float64), bad_p[bad].astype(np.float64))
    np.testing.assert_array_equal(np.isnan(dirty.loss[bad]), np.isnan(ref_loss))
    np.testing.assert_array_equal(dirty.loss[bad][~np.isnan(ref_loss)], ref_loss[~np.isnan(ref_loss)])
    np.testing.assert_array_equal(np.isnan(dirty.grad[bad]), np.isnan(ref_grad))


def test_nan_in_a_reduced_input_makes_the_loss_nan_and_leaves_other_gradients_alone(kernels, data):
    y, p, _ = data
    bad_p = p.copy()
    bad_p[10] = np.nan
    clean, dirty = kernels["float64", "sum"](y, p), kernels["float64", "sum"](y, bad_p)
    assert np.isnan(dirty.loss)
    keep = np.arange(p.size) != 10
    np.testing.assert_array_equal(dirty.grad[keep], clean.grad[keep])
    assert np.isnan(dirty.grad[10])


def test_nan_weight_affects_only_its_sample(kernels, data):
    y, p, w = data
    bad_w = w.copy()
    bad_w[5] = np.nan
    clean, dirty = kernels["float64", "none"](y, p, weight=w), kernels["float64", "none"](y, p, weight=bad_w)
    keep = np.arange(p.size) != 5
    np.testing.assert_array_equal(dirty.grad[keep], clean.grad[keep])
    assert np.isnan(dirty.loss[5])


@pytest.mark.parametrize("value", [np.inf, -np.inf, np.nan])
def test_non_finite_param_is_refused_naming_it(kernels, data, value):
    y, p, _ = data
    assert "'delta'" in input_error(lambda: kernels["float64", "none"](y, p, delta=value))


@pytest.mark.parametrize("n", [1, 2, 4095, 4096, 4097, 3 * 4096 + 5])
def test_every_length_around_the_block_size_sums_like_numpy(kernels, n):
    rng = np.random.default_rng(n)
    y, p = rng.normal(size=(2, n))
    ref_loss, ref_grad, _ = huber_reference(y, p)
    result = kernels["float64", "sum"](y, p)
    assert result.loss == pytest.approx(float(np.sum(ref_loss)), rel=1e-12)
    np.testing.assert_allclose(result.grad, ref_grad, rtol=1e-15)


def test_numba_refusing_the_generated_code_is_a_one_line_codegen_error(monkeypatch):
    from numba.core.errors import TypingError

    kernel = lg.get("squared_error").compile(reduction="mean")

    def refuse(*args):
        raise TypingError("Failed in nopython mode pipeline (step: nopython frontend)\nNo implementation of function "
                          "setitem found for signature:\n >>> setitem(array(float64, 1d, C), int64, complex128)")

    monkeypatch.setattr(kernel, "_entries", {key: refuse for key in kernel._entries})
    with pytest.raises(lg.CodegenError) as info:
        kernel(np.zeros(3), np.ones(3))
    message = str(info.value)
    assert "\n" not in message and "squared_error" in message and "numba could not compile" in message
    assert "No implementation of function setitem" in message


@pytest.mark.parametrize("given, expected", [
    ("float32", "float32"), (np.float32, "float32"), (np.dtype("f4"), "float32"),
    ("float64", "float64"), (np.float64, "float64"), (np.dtype("<f8"), "float64"), (float, "float64"),
])
def test_compile_takes_a_dtype_as_numpy_names_it(given, expected):
    from lossgen.runtime import dtype_name

    assert dtype_name(given) == expected
    assert str(lg.get("squared_error").compile(dtype=given).dtype) == expected


def test_compile_takes_a_torch_dtype():
    from lossgen.runtime import dtype_name

    assert (dtype_name(torch.float32), dtype_name(torch.float64)) == ("float32", "float64")


@pytest.mark.parametrize("given", [np.float16, "float16", np.int32, "f", "bogus", None, 3])
def test_compile_refuses_other_dtypes_in_one_line(given):
    from lossgen.runtime import dtype_name

    if given == "f":  # NumPy's code for float32 is taken, like any NumPy dtype name
        assert dtype_name(given) == "float32"
        return
    with pytest.raises(lg.CodegenError, match="dtype must be 'float32' or 'float64'"):
        lg.get("squared_error").compile(dtype=given)
