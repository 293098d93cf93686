"""Shared test setup: one on-disk kernel cache for the whole run, shared compiled kernels."""

import os
import tempfile

# Set before lossgen compiles anything: every test process shares compiled kernels on disk.
os.environ.setdefault("LOSSGEN_CACHE_DIR", os.path.join(tempfile.gettempdir(), "lossgen-test-cache"))
# The CUDA tests run on numba's CUDA simulator, which numba.cuda picks when it is first imported
# (so: here, before any test module). NUMBA_ENABLE_CUDASIM=0 runs them on a real GPU instead.
os.environ.setdefault("NUMBA_ENABLE_CUDASIM", "1")

import pytest  # noqa: E402

import lossgen as lg  # noqa: E402


@pytest.fixture(scope="session")
def compiled():
    """compiled(name_or_loss, dtype, reduction) -> Kernel, compiled once per session."""
    cache = {}

    def get(loss, dtype="float64", reduction="none"):
        if isinstance(loss, str):
            loss = lg.get(loss)
        key = (loss, dtype, reduction)
        if key not in cache:
            cache[key] = loss.compile(dtype=dtype, reduction=reduction)
        return cache[key]

    return get


@pytest.fixture(scope="session")
def host_has_avx2() -> bool:
    """Whether this CPU has AVX2, whose vector widths the vectorization tests expect."""
    from llvmlite import binding

    return bool(binding.get_host_cpu_features().get("avx2"))
