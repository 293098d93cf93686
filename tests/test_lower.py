"""Lowering and printing: one CSE over all outputs, typed constants, and a strict printer."""

import sympy as sp
import pytest

import lossgen as lg
from lossgen.lower import KernelPrinter, lower


def test_float32_constants_are_typed_so_nothing_is_promoted():
    lowered = lower(lg.get("huber"), "float32")
    code = "\n".join([lowered.loss, *lowered.grad, *lowered.hess, *(c for _, c in lowered.temporaries)])
    assert "np.float32(0.5)" in code
    assert "0.5*" not in code.replace("np.float32(0.5)", "")


def test_loss_and_derivatives_share_temporaries():
    # softplus in the loss and sigmoid in the derivatives both need exp(-|p|): computed once.
    lowered = lower(lg.get("bce_with_logits"), "float64")
    code = "\n".join([lowered.loss, *lowered.grad, *lowered.hess, *(c for _, c in lowered.temporaries)])
    assert code.count("math.exp(-abs(p))") == 1


def test_unsupported_function_is_a_codegen_error():
    x = sp.Symbol("x", real=True)
    with pytest.raises(lg.CodegenError, match="besselj"):
        KernelPrinter("float64").doprint(sp.besselj(0, x))


def test_sympy_expression_with_unsupported_function_is_refused_at_spec_time():
    p, y = sp.symbols("p y")
    with pytest.raises(lg.SpecError, match="gamma"):
        lg.Loss("bad", sp.gamma(p) - y, inputs=["y", "p"], wrt="p")


def test_division_by_a_square_never_forms_the_square():
    lowered = lower(lg.get("bce"), "float64")
    assert "/p/p" in lowered.hess[0]


def test_generated_kernel_has_no_dirac_or_heaviside():
    for loss in lg.catalog().values():
        for dtype in ("float64",):
            source = loss.compile(dtype=dtype).source
            assert "Heaviside" not in source and "DiracDelta" not in source
