"""lossgen: loss functions written as formulas, turned into verified, fused Numba kernels.

Importing lossgen derives and compiles nothing; work starts when a Loss is used.
"""

__version__ = "0.1.0"

from .errors import CodegenError, InputError, LossgenError, SpecError, VerificationError  # noqa: E402
from .spec import Loss, LossSpec  # noqa: E402
from .specfile import load  # noqa: E402
from .catalog import catalog, get  # noqa: E402
from .verify import verify  # noqa: E402


def __getattr__(name):
    # numba and the convexity analyses load on first use so that `import lossgen` stays fast.
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
