"""The floating-point dtypes kernels are generated for, and reading a dtype however it is given.

A module of its own so that the runtime can check a dtype without importing the lowering stage
(and SymPy with it).
"""

from __future__ import annotations

import numpy as np

from .errors import CodegenError

DTYPES = ("float32", "float64")


def dtype_name(dtype) -> str:
    """'float32' or 'float64' for a dtype given as NumPy would take it ("float32", np.float32,
    np.dtype("f4")) or as a torch dtype (torch.float32); a CodegenError for anything else."""
    name = str(dtype).removeprefix("torch.")
    if name not in DTYPES and dtype is not None:  # NumPy reads None as float64: refused here
        try:
            name = np.dtype(dtype).name
        except TypeError:
            pass
    if name not in DTYPES:
        raise CodegenError(f"dtype must be 'float32' or 'float64', got {dtype!r}")
    return name
