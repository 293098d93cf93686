"""lossgen: loss functions written as formulas, turned into verified, fused Numba kernels.

Importing lossgen derives and compiles nothing; work starts when a Loss is used.
"""

import sys
import types

__version__ = "0.1.0"

from .errors import CodegenError, InputError, LossgenError, SpecError, VerificationError  # noqa: E402
from .spec import Loss, LossSpec  # noqa: E402
from .specfile import load  # noqa: E402
from .catalog import catalog, get  # noqa: E402


def verify(loss, n: int = 1000, seed: int = 0, dtype: str = "float64"):
    """Check a loss's generated CPU kernel for `dtype` against finite differences and an mpmath
    reference on n sampled inputs, hard ones included; returns a VerificationReport (.ok,
    .max_rel_err, .worst, .failures). See lossgen.verify.verify."""
    # The verifier (SymPy, mpmath) loads on first use: `import lossgen` stays fast.
    from .verify import verify as run_verify

    return run_verify(loss, n=n, seed=seed, dtype=dtype)


class _Package(types.ModuleType):
    """lossgen's module type. Python sets a package's attribute to each submodule it imports:
    importing lossgen.verify (lazily, on the first verify call) must not replace the function."""

    def __setattr__(self, name, value):
        if name == "verify" and isinstance(value, types.ModuleType):
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package


def __getattr__(name):
    # numba and the analyses load on first use, so that `import lossgen` stays fast and a
    # cached catalog kernel is called without SymPy.
    if name in ("Kernel", "Result"):
        from . import runtime

        return getattr(runtime, name)
    if name == "Convexity":
        from .convexity import Convexity

        return Convexity
    if name == "LossProperties":
        from .properties import LossProperties

        return LossProperties
    raise AttributeError(f"module 'lossgen' has no attribute {name!r}")


__all__ = [
    "Loss", "LossSpec", "load", "catalog", "get", "verify", "Kernel", "Result", "Convexity", "LossProperties",
    "LossgenError", "SpecError", "CodegenError", "InputError", "VerificationError",
]
