"""Render: lay lowered kernel code out into a Python module with a Jinja2 template per target.

Templates only arrange code; every formula arrives already printed by the lower stage.
KERNEL_LAYOUTS maps each target to its template, so a new target is a new entry and a template.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import jinja2

from .errors import CodegenError
from .lower import LoweredLoss, LoweredRows
from .prebuilt import TEMPLATE_DIR


@dataclass(frozen=True)
class KernelLayout:
    """How one target lays out a kernel module: its template and its code-generation knobs."""

    target: str
    template: str
    rowwise_template: str
    block: int = 4096
    # Never nnan/ninf: they let LLVM assume NaN and inf away, which breaks IEEE propagation.
    # Never reassoc either: it would let LLVM reorder the stable formulas and the block sums.
    fastmath: frozenset = frozenset({"contract", "nsz"})
    # Where the math functions come from: "kmath" (lossgen's vectorizable ones) or None (math.*).
    math_library: str | None = None
    # Functions the target cannot spell as the printer does by default, which the kernel module
    # imports as <name>_f32 / <name>_f64 instead (numba's CUDA target has no np.sign).
    device_functions: tuple[str, ...] = ()

    def math_functions(self, dtype: str) -> dict[str, str]:
        """Function name -> the name the printer calls for it, in this layout's math library."""
        functions = {}
        if self.math_library is not None:
            from . import kmath

            functions = {name: function for (name, kind), function in kmath.KERNEL_MATH.items() if kind == dtype}
        suffix = "f32" if dtype == "float32" else "f64"
        functions.update({name: f"{name}_{suffix}" for name in self.device_functions})
        return functions


KERNEL_LAYOUTS: dict[str, KernelLayout] = {
    "cpu": KernelLayout("cpu", "cpu_elementwise.py.jinja", "cpu_rowwise.py.jinja", math_library="kmath"),
    # One thread per sample (row), CUDA's own math.* (libdevice), block sums in shared memory.
    "cuda": KernelLayout("cuda", "cuda_elementwise.py.jinja", "cuda_rowwise.py.jinja", device_functions=("sign",)),
}


@functools.lru_cache(maxsize=1)
def template_environment() -> jinja2.Environment:
    """The Jinja2 environment: strict about undefined names, tidy about whitespace."""
    if not TEMPLATE_DIR.is_dir():
        raise CodegenError(f"kernel templates not found at {TEMPLATE_DIR}; reinstall lossgen from its source tree")
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATE_DIR)),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        autoescape=False,
    )


def layout_for(target: str) -> KernelLayout:
    """The KernelLayout of a target, or CodegenError naming the targets that exist."""
    try:
        return KERNEL_LAYOUTS[target]
    except KeyError:
        raise CodegenError(f"unknown target {target!r}; available: {', '.join(KERNEL_LAYOUTS)}") from None


def render_kernel(lowered: LoweredLoss | LoweredRows, target: str, name: str, doc: str = "", *, facts: str) -> str:
    """Source code of the kernel module for one (loss, target, dtype); `facts` is the JSON the
    runtime reads to call it (runtime.KernelFacts)."""
    layout = layout_for(target)
    rowwise = isinstance(lowered, LoweredRows)
    template_name = layout.rowwise_template if rowwise else layout.template
    template = template_environment().get_template(template_name)
    fastmath = "{" + ", ".join(repr(f) for f in sorted(layout.fastmath)) + "}"
    extra = {}
    if rowwise:
        extra["row_inputs"] = [n for n in lowered.inputs if lowered.roles[n] == "row"]
        extra["per_row_inputs"] = [n for n in lowered.inputs if lowered.roles[n] != "row"]
    return template.render(
        lowered=lowered, name=name, doc=doc, template_name=template_name, block=layout.block, fastmath=fastmath,
        real=f"np.{lowered.dtype}", facts=repr(facts), **extra,
    )
