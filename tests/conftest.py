"""Shared test setup: one on-disk kernel cache for the whole run, shared compiled kernels."""

import os
import tempfile

# Set before lossgen compiles anything: every test process shares compiled kernels on disk.
os.environ.setdefault("LOSSGEN_CACHE_DIR", os.path.join(tempfile.gettempdir(), "lossgen-test-cache"))

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
