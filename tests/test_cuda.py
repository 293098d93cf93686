"""The CUDA target: every catalog loss against its CPU kernel, device arrays in and out, the
launch configuration, and the errors, on numba's CUDA simulator (conftest.py sets
NUMBA_ENABLE_CUDASIM=1 before numba.cuda is first imported; NUMBA_ENABLE_CUDASIM=0 runs the same
tests on a GPU).

The simulator runs every CUDA thread as a Python thread, so inputs are small (37 and 300 samples,
not multiples of a block) and launches use its small stand-in properties (2 blocks of 16 threads).
It also evaluates the kernels as Python: math.exp raises where CUDA returns inf, and float32 sums
stay float32 where numba types them float64. So inputs here are moderate values inside each
domain, float32 results are compared with a floor at 1e-5 of the output's largest magnitude, and
the kernels' code is checked separately: it is the CPU kernels' printed code (test below), and it
compiles to PTX with NVIDIA's NVVM where that is installed.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import lossgen as lg
from lossgen import cuda_runtime
from lossgen.cuda_runtime import LaunchConfig, launch_config

pytest.importorskip("numba_cuda", reason="the CUDA target needs numba-cuda: pip install -e '.[cuda]'")
from numba import cuda  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
CATALOG = list(lg.catalog())
DTYPES = ("float32", "float64")
# Tolerances against the CPU kernel, relative, with a floor at that fraction of the output's
# largest magnitude (values near zero from cancellation; float32 rounding in the simulator).
RTOL = {"float64": 1e-12, "float32": 1e-5}
CLASSES = 5


@pytest.fixture(scope="module")
def kernels():
    """kernels(loss_name, target, dtype, reduction) -> Kernel, compiled once for the module."""
    cache = {}

    def get(name, target, dtype, reduction):
        key = (name, target, dtype, reduction)
        if key not in cache:
            cache[key] = lg.get(name).compile(target=target, dtype=dtype, reduction=reduction)
        return cache[key]

    return get


def sample_inputs(loss, n: int, dtype: str, seed: int = 0) -> list[np.ndarray]:
    """Moderate values inside each input's domain, in `inputs` order: n samples, or n rows of
    CLASSES classes with integer labels for a row-wise loss."""
    rng = np.random.default_rng(seed)
    arrays = []
    for name in loss.inputs:
        role = loss.roles.get(name) if loss.rowwise else None
        if role == "label":
            arrays.append(rng.integers(0, CLASSES, n))
            continue
        shape = (n, CLASSES) if role == "row" else (n,)
        interval = loss.domain[name]
        lo, hi = float(interval.start), float(interval.end)
        if math.isinf(lo) and math.isinf(hi):
            values = rng.normal(0.0, 2.0, shape)
        elif math.isinf(hi):
            values = lo + 0.01 + np.abs(rng.normal(0.0, 2.0, shape))
        elif math.isinf(lo):
            values = hi - 0.01 - np.abs(rng.normal(0.0, 2.0, shape))
        else:
            values = lo + (hi - lo) * rng.uniform(0.02, 0.98, shape)
        arrays.append(values.astype(dtype))
    return arrays


def host(value) -> np.ndarray:
    """A NumPy copy of a kernel output (a device array is copied back)."""
    if getattr(value, "__cuda_ndarray__", False):
        return value.copy_to_host()
    return np.asarray(value)


def assert_matches(cuda_result, cpu_result, dtype: str) -> None:
    """loss, grad and hess of the CUDA kernel equal the CPU kernel's within RTOL[dtype]."""
    rtol = RTOL[dtype]
    for field in ("loss", "grad", "hess"):
        actual = host(getattr(cuda_result, field)).astype(np.float64)
        expected = np.asarray(getattr(cpu_result, field), dtype=np.float64)
        assert actual.shape == expected.shape, field
        scale = float(np.max(np.abs(expected), initial=0.0)) if expected.size else 0.0
        np.testing.assert_allclose(actual, expected, rtol=rtol, atol=rtol * scale, err_msg=field)


def one_line(error) -> str:
    message = str(error)
    assert "\n" not in message, message
    return message


# --- every catalog loss against the CPU kernel --------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", CATALOG)
def test_every_catalog_loss_gives_the_cpu_kernels_per_sample_values(kernels, name, dtype):
    loss = lg.get(name)
    arrays = sample_inputs(loss, 37 if loss.rowwise else 300, dtype)
    assert_matches(kernels(name, "cuda", dtype, "none")(*arrays), kernels(name, "cpu", dtype, "none")(*arrays), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", CATALOG)
def test_every_catalog_loss_gives_the_cpu_kernels_weighted_mean(kernels, name, dtype):
    loss = lg.get(name)
    arrays = sample_inputs(loss, 37, dtype, seed=1)
    weight = np.random.default_rng(2).uniform(0.1, 2.0, 37)
    cuda_result = kernels(name, "cuda", dtype, "weighted_mean")(*arrays, weight=weight)
    cpu_result = kernels(name, "cpu", dtype, "weighted_mean")(*arrays, weight=weight)
    assert isinstance(cuda_result.loss, float)
    assert_matches(cuda_result, cpu_result, dtype)


REDUCTION_LOSSES = ["huber", "bce_with_logits", "rmse", "cross_entropy", "dice"]


@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
@pytest.mark.parametrize("reduction", ["none", "sum", "mean", "weighted_mean"])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", REDUCTION_LOSSES)
def test_every_reduction_with_and_without_weights_gives_the_cpu_result(kernels, name, dtype, reduction, weighted):
    # huber: a param; rmse: a transform after the mean; cross_entropy: labels, a per-class param
    # and a normalizer; dice: two row inputs.
    loss = lg.get(name)
    arrays = sample_inputs(loss, 37, dtype, seed=3)
    weight = np.random.default_rng(4).uniform(0.1, 2.0, 37) if weighted else None
    params = {"class_weight": np.linspace(0.5, 1.5, CLASSES), "label_smoothing": 0.1} if name == "cross_entropy" else {}
    cuda_result = kernels(name, "cuda", dtype, reduction)(*arrays, weight=weight, **params)
    cpu_result = kernels(name, "cpu", dtype, reduction)(*arrays, weight=weight, **params)
    assert_matches(cuda_result, cpu_result, dtype)


def test_ignored_rows_and_params_reach_the_device_as_on_the_cpu(kernels):
    y, p = sample_inputs(lg.get("cross_entropy"), 37, "float64", seed=5)
    y[::4] = -1
    for reduction in ("none", "mean"):
        arguments = dict(ignore_index=-1, class_weight=np.arange(1.0, CLASSES + 1.0), label_smoothing=0.2)
        cuda_result = kernels("cross_entropy", "cuda", "float64", reduction)(y, p, **arguments)
        assert_matches(cuda_result, kernels("cross_entropy", "cpu", "float64", reduction)(y, p, **arguments), "float64")
    assert np.all(host(cuda_result.grad)[::4] == 0.0)


def test_an_empty_input_gives_zero_sum_and_nan_mean_as_on_the_cpu(kernels):
    empty = np.empty(0)
    assert kernels("huber", "cuda", "float64", "sum")(empty, empty).loss == 0.0
    result = kernels("huber", "cuda", "float64", "mean")(empty, empty)
    assert math.isnan(result.loss) and result.grad.shape == (0,)
    rows = kernels("cross_entropy", "cuda", "float64", "mean")(np.empty(0, np.int64), np.empty((0, CLASSES)))
    assert math.isnan(rows.loss) and rows.grad.shape == (0, CLASSES)


def test_multidimensional_inputs_keep_their_shape(kernels):
    y, p = (a.reshape(3, 4, 25) for a in sample_inputs(lg.get("huber"), 300, "float64"))
    result = kernels("huber", "cuda", "float64", "none")(y, p)
    assert result.loss.shape == result.grad.shape == result.hess.shape == (3, 4, 25)
    assert_matches(result, kernels("huber", "cpu", "float64", "none")(y, p), "float64")


# --- one printer, two layouts -------------------------------------------------------------------


def _normalized(lowered, names: dict[str, str]):
    """The lowered code with each target's own function names written as one spelling."""
    text = repr(dict(vars(lowered), math_imports=()))
    for name, spelling in names.items():
        text = text.replace(f"{name}(", f"{spelling}(")
    return text


@pytest.mark.parametrize("dtype", DTYPES)
def test_cuda_kernels_are_printed_from_the_same_lowered_expressions_as_the_cpu_kernels(dtype):
    from lossgen import kmath
    from lossgen.lower import lower, lower_rows
    from lossgen.render import layout_for
    from lossgen.stabilize import LIBRARY_FUNCTIONS

    cpu_math, cuda_math = layout_for("cpu").math_functions(dtype), layout_for("cuda").math_functions(dtype)
    assert not any(name in cuda_math for name, _ in kmath.KERNEL_MATH), "CUDA keeps CUDA's own math.*"
    # The same expressions, except that kmath computes lossgen's scaled_exp, scaled_expm1 and
    # exp_minus itself where CUDA gets their primitive forms: compare with those left out.
    library_only = {f.__name__ for f in LIBRARY_FUNCTIONS}
    assert library_only <= set(cpu_math)
    cpu_math = {name: function for name, function in cpu_math.items() if name not in library_only}
    cpu_names = {function: f"math.{name}" for name, function in cpu_math.items()}
    cuda_names = {function: ("np.sign" if name == "sign" else f"math.{name}") for name, function in cuda_math.items()}
    for loss in lg.catalog().values():
        lowering = lower_rows if loss.rowwise else lower
        cpu_code = _normalized(lowering(loss, dtype, cpu_math), cpu_names)
        cuda_code = _normalized(lowering(loss, dtype, cuda_math), cuda_names)
        assert cuda_code == cpu_code, loss.name


def test_the_cuda_layout_is_registered_and_renders_grid_stride_kernels():
    from lossgen.render import KERNEL_LAYOUTS
    from lossgen.runtime import kernel_source

    assert KERNEL_LAYOUTS["cuda"].math_library is None
    source = kernel_source(lg.get("huber"), "cuda", "float32")
    assert "@cuda.jit" in source and "cuda.gridsize(1)" in source and "block_sum(_sum, _partial)" in source
    assert "np.sign" not in source and "sign_f32(" in source
    rows = kernel_source(lg.get("cross_entropy"), "cuda", "float64")
    assert "def normalizers(" in rows and "def reduced_rows_weighted(" in rows


# --- device arrays ------------------------------------------------------------------------------


def _on_device(value) -> bool:
    return bool(getattr(value, "__cuda_ndarray__", False)) and not isinstance(value, np.ndarray)


@pytest.mark.parametrize("reduction", ["none", "mean"])
def test_device_inputs_are_used_in_place_and_outputs_stay_on_the_device(kernels, reduction):
    y, p = sample_inputs(lg.get("huber"), 37, "float64")
    kernel = kernels("huber", "cuda", "float64", reduction)
    result = kernel(cuda.to_device(y), cuda.to_device(p), delta=0.7)
    assert _on_device(result.grad) and _on_device(result.hess)
    assert _on_device(result.loss) if reduction == "none" else isinstance(result.loss, float)
    assert_matches(result, kernels("huber", "cpu", "float64", reduction)(y, p, delta=0.7), "float64")


def test_outputs_follow_the_prediction_and_other_arrays_move_to_it(kernels):
    y, p = sample_inputs(lg.get("huber"), 37, "float64")
    kernel = kernels("huber", "cuda", "float64", "none")
    expected = kernels("huber", "cpu", "float64", "none")(y, p)
    on_device = kernel(y, cuda.to_device(p))
    on_host = kernel(cuda.to_device(y), p)
    assert _on_device(on_device.grad) and isinstance(on_host.grad, np.ndarray)
    assert_matches(on_device, expected, "float64")
    assert_matches(on_host, expected, "float64")


def test_device_targets_and_weights_of_another_dtype_are_converted_on_the_device(kernels):
    y = np.random.default_rng(6).integers(-3, 4, 37)
    p = np.random.default_rng(7).normal(size=37)
    weight = np.random.default_rng(8).integers(1, 4, 37).astype(np.int32)
    kernel = kernels("huber", "cuda", "float64", "weighted_mean")
    result = kernel(cuda.to_device(y), cuda.to_device(p), weight=cuda.to_device(weight))
    assert_matches(result, kernels("huber", "cpu", "float64", "weighted_mean")(y, p, weight=weight), "float64")


def test_row_wise_losses_take_device_labels_logits_and_class_weights(kernels):
    y, p = sample_inputs(lg.get("cross_entropy"), 37, "float32", seed=9)
    class_weight = np.linspace(0.5, 2.0, CLASSES)
    kernel = kernels("cross_entropy", "cuda", "float32", "mean")
    result = kernel(cuda.to_device(y.astype(np.int32)), cuda.to_device(p), class_weight=cuda.to_device(class_weight))
    assert _on_device(result.grad)
    assert_matches(result, kernels("cross_entropy", "cpu", "float32", "mean")(y, p, class_weight=class_weight), "float32")


def test_arrays_with_the_cuda_array_interface_are_viewed_not_copied(kernels, monkeypatch):
    # CuPy arrays and torch CUDA tensors reach the kernel through __cuda_array_interface__ and
    # numba's as_cuda_array (a view); the simulator has neither, so a stand-in plays both parts.
    class Foreign:
        def __init__(self, array):
            self.device_array = cuda.to_device(array)

        @property
        def __cuda_array_interface__(self):
            return {"shape": self.device_array.shape, "typestr": self.device_array.dtype.str, "data": (0, False), "version": 3}

    viewed = []

    def as_cuda_array(obj, sync=True):
        viewed.append(obj)
        return obj.device_array

    monkeypatch.setattr(cuda, "as_cuda_array", as_cuda_array, raising=False)
    y, p = sample_inputs(lg.get("huber"), 37, "float64")
    foreign_y, foreign_p = Foreign(y), Foreign(p)
    result = kernels("huber", "cuda", "float64", "sum")(foreign_y, foreign_p)
    assert viewed == [foreign_y, foreign_p]
    assert _on_device(result.grad)
    assert_matches(result, kernels("huber", "cpu", "float64", "sum")(y, p), "float64")


def test_out_reuses_device_outputs_in_place(kernels):
    y, p = sample_inputs(lg.get("huber"), 37, "float32")
    kernel = kernels("huber", "cuda", "float32", "none")
    out = kernel.allocate(p.shape)
    assert _on_device(out.grad) and _on_device(out.loss)
    d_y, d_p = cuda.to_device(y), cuda.to_device(p)
    for _ in range(2):
        result = kernel(d_y, d_p, out=out)
    assert result.grad is out.grad and result.hess is out.hess and result.loss is out.loss
    assert_matches(result, kernels("huber", "cpu", "float32", "none")(y, p), "float32")


def test_out_reuses_host_outputs_for_numpy_inputs(kernels):
    y, p = sample_inputs(lg.get("rmse"), 37, "float64")
    kernel = kernels("rmse", "cuda", "float64", "mean")
    out = kernel.allocate(p.shape, on_device=False)
    result = kernel(y, p, out=out)
    assert result.grad is out.grad and isinstance(out.grad, np.ndarray)
    assert_matches(result, kernels("rmse", "cpu", "float64", "mean")(y, p), "float64")


def test_a_transform_is_applied_on_the_device_for_device_inputs(kernels):
    y, p = sample_inputs(lg.get("rmse"), 37, "float64")
    result = kernels("rmse", "cuda", "float64", "mean")(cuda.to_device(y), cuda.to_device(p))
    assert _on_device(result.grad)
    assert_matches(result, kernels("rmse", "cpu", "float64", "mean")(y, p), "float64")


# --- launch configuration -----------------------------------------------------------------------


def test_launch_config_is_sized_from_the_device_properties():
    class Device:  # what numba's Device answers for an H100 (132 SMs)
        MULTIPROCESSOR_COUNT = 132
        MAX_THREADS_PER_BLOCK = 1024
        MAX_THREADS_PER_MULTI_PROCESSOR = 2048

    properties = cuda_runtime._read_properties(Device())
    assert properties == {"MULTIPROCESSOR_COUNT": 132, "MAX_THREADS_PER_BLOCK": 1024, "MAX_THREADS_PER_MULTI_PROCESSOR": 2048}
    assert launch_config(properties, 10_000_000) == LaunchConfig(blocks=132 * 8, threads=256)
    assert launch_config(properties, 300) == LaunchConfig(blocks=2, threads=256)
    assert launch_config(properties, 0) == LaunchConfig(blocks=1, threads=256)
    small = {"MULTIPROCESSOR_COUNT": 3, "MAX_THREADS_PER_BLOCK": 96, "MAX_THREADS_PER_MULTI_PROCESSOR": 128}
    assert launch_config(small, 10_000) == LaunchConfig(blocks=6, threads=64)  # a power of two: the tree halves it


def test_the_simulator_launches_with_its_stand_in_properties():
    assert cuda_runtime.simulated(cuda) == bool(int(os.environ.get("NUMBA_ENABLE_CUDASIM", "0")))
    if cuda_runtime.simulated(cuda):
        assert cuda_runtime.device_properties(cuda) == cuda_runtime.SIMULATOR_PROPERTIES


def test_kernels_launch_with_the_configuration_of_the_current_device(kernels, monkeypatch):
    # Another device shape (3 blocks of 8 threads) gives the same results: the grid-stride loop
    # covers any grid, and the block sums add up whatever the block count.
    odd = {"MULTIPROCESSOR_COUNT": 3, "MAX_THREADS_PER_BLOCK": 8, "MAX_THREADS_PER_MULTI_PROCESSOR": 8}
    monkeypatch.setattr(cuda_runtime, "device_properties", lambda _cuda: dict(odd))
    launched = []
    real_launch_config = cuda_runtime.launch_config
    monkeypatch.setattr(cuda_runtime, "launch_config", lambda properties, work: launched.append(real_launch_config(properties, work)) or launched[-1])
    y, p = sample_inputs(lg.get("huber"), 37, "float64")
    weight = np.linspace(0.5, 1.5, 37)
    result = kernels("huber", "cuda", "float64", "weighted_mean")(y, p, weight=weight)
    assert launched and all(config == LaunchConfig(blocks=3, threads=8) for config in launched)
    assert_matches(result, kernels("huber", "cpu", "float64", "weighted_mean")(y, p, weight=weight), "float64")


# --- errors -------------------------------------------------------------------------------------


def test_bad_inputs_get_the_cpu_kernels_one_line_errors(kernels):
    y, p = sample_inputs(lg.get("huber"), 37, "float64")
    gpu, cpu = kernels("huber", "cuda", "float64", "mean"), kernels("huber", "cpu", "float64", "mean")
    for call in (
        lambda k: k(y, p.astype(np.float32)),
        lambda k: k(y, p[:-1]),
        lambda k: k(y, p, weight=np.ones(3)),
        lambda k: k(y, p, delta=-1.0),
        lambda k: k(y, p, gamma=1.0),
        lambda k: k(y),
        lambda k: k(y.astype(np.complex128), p),
    ):
        with pytest.raises(lg.InputError) as on_cpu:
            call(cpu)
        with pytest.raises(lg.InputError) as on_gpu:
            call(gpu)
        assert one_line(on_gpu.value) == one_line(on_cpu.value)


def test_bad_device_arrays_get_one_line_errors_naming_the_array(kernels):
    y, p = sample_inputs(lg.get("huber"), 40, "float64")
    kernel = kernels("huber", "cuda", "float64", "none")
    with pytest.raises(lg.InputError, match=r"array 'p' has dtype float32, but this kernel is float64") as info:
        kernel(cuda.to_device(y), cuda.to_device(p.astype(np.float32)))
    one_line(info.value)
    strided = cuda.to_device(p.reshape(20, 2))[:, 0]
    with pytest.raises(lg.InputError, match=r"array 'p' is a non-contiguous device array") as info:
        kernel(cuda.to_device(y[:20]), strided)
    one_line(info.value)
    with pytest.raises(lg.InputError, match=r"array 'y' has shape \(39,\), expected \(40,\)") as info:
        kernel(cuda.to_device(y[:39]), cuda.to_device(p))
    one_line(info.value)


def test_device_labels_out_of_range_get_the_cpu_kernels_error(kernels):
    y, p = sample_inputs(lg.get("cross_entropy"), 37, "float64")
    y[11] = CLASSES
    with pytest.raises(lg.InputError) as on_cpu:
        kernels("cross_entropy", "cpu", "float64", "mean")(y, p)
    with pytest.raises(lg.InputError) as on_gpu:
        kernels("cross_entropy", "cuda", "float64", "mean")(cuda.to_device(y), cuda.to_device(p))
    assert one_line(on_gpu.value) == one_line(on_cpu.value)
    assert f"label {CLASSES} outside 0..{CLASSES - 1}" in str(on_gpu.value)


def test_out_must_live_where_the_inputs_live_and_not_overlap(kernels):
    y, p = sample_inputs(lg.get("huber"), 37, "float64")
    kernel = kernels("huber", "cuda", "float64", "none")
    with pytest.raises(lg.InputError, match="out holds device arrays, but the inputs are NumPy arrays") as info:
        kernel(y, p, out=kernel.allocate(p.shape))
    one_line(info.value)
    with pytest.raises(lg.InputError, match="out.grad must be a device array like the inputs") as info:
        kernel(cuda.to_device(y), cuda.to_device(p), out=kernel.allocate(p.shape, on_device=False))
    one_line(info.value)
    shared = cuda.device_array(37)
    with pytest.raises(lg.InputError, match="the output arrays overlap") as info:
        kernel(cuda.to_device(y), cuda.to_device(p), out=(cuda.device_array(37), shared, shared))
    one_line(info.value)


def test_without_numba_cuda_compile_names_the_extra_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "numba_cuda", None)  # as if it were not installed
    with pytest.raises(lg.CodegenError) as info:
        lg.get("huber").compile(target="cuda")
    assert "pip install 'lossgen[cuda]'" in one_line(info.value)


def test_without_numba_cuda_the_torch_adapter_asks_for_cpu_tensors(monkeypatch):
    pytest.importorskip("torch")
    from lossgen import torch_adapter

    entry = torch_adapter._REGISTRY[lg.get("squared_error").to_torch()._key]
    monkeypatch.setitem(sys.modules, "numba_cuda", None)
    with pytest.raises(lg.InputError, match=r"CUDA.*lossgen\[cuda\].*\.cpu\(\)") as info:
        entry.kernel("cuda", "float64", "mean")
    one_line(info.value)


def _run(script: str, **env) -> subprocess.CompletedProcess:
    environment = dict(os.environ, **env)
    return subprocess.run([sys.executable, "-c", textwrap.dedent(script)], capture_output=True, text=True,
                          env=environment, cwd=REPO, timeout=300)


def test_without_a_gpu_or_the_simulator_compile_says_how_to_run_without_one():
    result = _run("""
        import lossgen as lg
        try:
            lg.get("huber").compile(target="cuda")
        except lg.CodegenError as exc:
            print("ERROR", exc)
        else:
            print("COMPILED")
    """, NUMBA_ENABLE_CUDASIM="0")
    assert result.returncode == 0, result.stderr
    if "COMPILED" in result.stdout:
        pytest.skip("this machine has a CUDA GPU")
    assert result.stdout.count("\n") == 1 and "no CUDA GPU is available" in result.stdout
    assert "NUMBA_ENABLE_CUDASIM=1" in result.stdout


def test_rendering_cuda_sources_does_not_need_numba_cuda(tmp_path):
    result = _run(f"""
        import sys
        sys.modules["numba_cuda"] = None
        sys.modules["numba.cuda"] = None
        from lossgen.cli import main
        sys.exit(main(["build", "huber", "cross_entropy", "--target", "cuda", "-o", {str(tmp_path)!r}]))
    """)
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in (tmp_path / "cuda").glob("*.py")) == [
        "cross_entropy_float32.py", "cross_entropy_float64.py", "huber_float32.py", "huber_float64.py"]


PTX_SCRIPT = """
    import importlib.util, sys, tempfile
    from pathlib import Path
    from types import SimpleNamespace
    from numba import cuda, types
    import numba.cuda.dispatcher as dispatcher
    import lossgen as lg
    from lossgen.runtime import kernel_source

    # Device functions (block_sum, sign_f32) ask the current device for its compute capability,
    # and there may be no GPU: answer for one.
    if not hasattr(dispatcher, "get_current_device"):
        print("SKIP numba-cuda moved get_current_device"); sys.exit(0)
    dispatcher.get_current_device = lambda: SimpleNamespace(compute_capability=(8, 0))
    try:
        cuda.compile_ptx(lambda x: None, (types.float64,), cc=(8, 0))
    except Exception as exc:
        print("SKIP NVVM is not available:", type(exc).__name__); sys.exit(0)
    directory = Path(tempfile.mkdtemp())
    for loss in lg.catalog().values():
        for dtype in ("float32", "float64"):
            real = getattr(types, dtype)
            vector, matrix, partial = types.Array(real, 1, "C"), types.Array(real, 2, "C"), types.Array(types.float64, 1, "C")
            path = directory / f"{loss.name}_{dtype}.py"
            path.write_text(kernel_source(loss, "cuda", dtype))
            spec = importlib.util.spec_from_file_location(path.stem, path)
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
            if loss.rowwise:
                roles = loss.roles
                args = [matrix if roles[n] == "row" else types.Array(types.int64, 1, "C") if roles[n] == "label" else vector
                        for n in loss.inputs]
                args += [real] * (len(loss.params) - len(loss.spec.class_params)) + [vector] * len(loss.spec.class_params)
                kernels = {"reduced_rows_weighted": args + [vector, real, partial] + [matrix, matrix] * len(loss.wrt)}
                if hasattr(module, "normalizers_weighted"):
                    kernels["normalizers_weighted"] = args + [vector, partial]
            else:
                args = [vector] * len(loss.inputs) + [real] * len(loss.params)
                kernels = {"reduced_weighted": args + [vector, real, partial] + [vector, vector] * len(loss.wrt)}
            for name, signature in kernels.items():
                cuda.compile_ptx(getattr(module, name).py_func, tuple(signature), cc=(8, 0))
    print("OK")
"""


def test_every_catalog_kernel_compiles_to_ptx_where_nvvm_is_installed():
    # The simulator runs kernels as Python and accepts what numba's CUDA target refuses (np.sign
    # did): NVIDIA's NVVM compiler is the real check. It comes with numba-cuda[cu12] / [cu13].
    result = _run(PTX_SCRIPT, NUMBA_ENABLE_CUDASIM="0")
    assert result.returncode == 0, result.stderr[-3000:]
    if result.stdout.startswith("SKIP"):
        pytest.skip(result.stdout.strip())
    assert result.stdout.strip() == "OK"
