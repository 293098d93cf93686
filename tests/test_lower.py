"""Lowering and printing: one CSE over all outputs, typed constants, and a strict printer."""

import math
import re

import numpy as np
import sympy as sp
import pytest

import lossgen as lg
from sympy.codegen.cfunctions import log1p

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


def test_small_integer_powers_print_as_multiplications_and_large_ones_as_powers():
    x, y = sp.symbols("x y", real=True)
    printer = KernelPrinter("float64")
    assert printer.doprint(x**3) == "(x*x*x)"
    assert printer.doprint((x + y) ** 2) == "((x + y)*(x + y))"
    assert printer.doprint(x**-2) == "1.0/(x*x)"
    assert printer.doprint(x**20) == "x**20"


def test_math_library_functions_replace_math_module_calls_and_are_recorded():
    x = sp.symbols("x", real=True)
    printer = KernelPrinter("float32", {"exp": "exp_f32", "log1p": "log1p_f32"})
    code = printer.doprint(sp.exp(x) + log1p(x) + sp.log(x))
    assert "exp_f32(x)" in code and "log1p_f32(x)" in code and "math.log(x)" in code
    assert "math.exp" not in code and "math.log1p" not in code
    assert sorted(printer.used_math) == ["exp_f32", "log1p_f32"]


def test_half_integer_powers_print_as_sqrt_times_multiplications():
    x = sp.symbols("x", positive=True)
    printer = KernelPrinter("float64")
    assert printer.doprint(x ** sp.Rational(3, 2)) == "(x*math.sqrt(x))"
    assert printer.doprint(x ** sp.Rational(-3, 2)) == "1.0/(x*math.sqrt(x))"
    assert printer.doprint(x ** sp.Rational(5, 2)) == "((x*x)*math.sqrt(x))"
    assert "**" in printer.doprint(x ** sp.Rational(1, 3))


@pytest.mark.parametrize(
    "text, y, p, expected",
    [
        # A division inside a power's exponent or base is parenthesized: 2**(0.5/p) once printed
        # as 2.0**(0.5)/p (found by the long fuzz profile).
        ("2 ** (0.5 / p)", 3.0, 2.0, 2.0 ** 0.25),
        ("p ** (1 / (2*p))", 3.0, 2.0, 2.0 ** 0.25),
        ("(y / p**2) ** (p / y)", 3.0, 2.0, 0.75 ** (2 / 3)),
        ("(1/p) ** y", 3.0, 2.0, 0.125),
    ],
)
def test_divisions_inside_powers_keep_their_meaning(text, y, p, expected):
    import numpy as np

    loss = lg.Loss("power_of_quotient", text, inputs=["y", "p"], wrt="p")
    got = loss.compile(reduction="none")(np.array([y]), np.array([p])).loss[0]
    assert got == pytest.approx(expected, rel=1e-15)


@pytest.mark.parametrize("text", ["Max(y, 2/pi) + p", "p/pi + Min(p, 3/E)*y", "Piecewise((p, p < 2/pi), (p**2/(3*pi), True))"])
def test_constant_quotients_stay_numbers_inside_max_and_conditions(text):
    # 2/pi used to become a Quotient node inside Max, and SymPy raised "not comparable" while
    # lowering (found by the long fuzz profile).
    import numpy as np

    loss = lg.Loss("constant_quotient", text, inputs=["y", "p"], wrt="p")
    y, p = np.array([0.1, 3.0]), np.array([0.5, 2.0])
    got = loss.compile(reduction="none")(y, p).loss
    exact = [float(loss.expr.subs({loss.symbol("y"): a, loss.symbol("p"): b})) for a, b in zip(y, p)]
    np.testing.assert_allclose(got, exact, rtol=1e-15)


def _code(lowered) -> str:
    return "\n".join([lowered.loss, *lowered.grad, *lowered.hess, *(c for _, c in lowered.temporaries)])


def _cpu_library(dtype="float64"):
    from lossgen.render import layout_for

    return layout_for("cpu").math_functions(dtype)


@pytest.mark.parametrize(
    "name, called, absent",
    [
        # exp(p) - y near its zero needed y*expm1(p - log y) in a select: three calls per sample.
        ("poisson", {"exp_f64(p)", "exp_minus_f64(p, y)"}, {"log_f64", "expm1_f64"}),
        ("gamma", {"scaled_exp_f64(", "scaled_expm1_f64("}, {"log_f64", "expm1_f64", "exp_f64("}),
        ("tweedie", {"scaled_exp_f64("}, {"log_f64"}),
    ],
)
def test_the_cpu_library_computes_exp_with_a_data_value_in_one_call(name, called, absent):
    code = _code(lower(lg.get(name), "float64", _cpu_library()))
    for text in called:
        assert text in code, (text, code)
    for text in absent:
        assert not re.search(rf"\b{re.escape(text)}", code), (text, code)
    # Without the library (the CUDA target), the stable primitive forms are printed instead.
    plain = _code(lower(lg.get(name), "float64"))
    assert "scaled_exp" not in plain and "exp_minus" not in plain and "math.log(y)" in plain


def test_log_cosh_shares_one_exp_and_one_expm1_between_loss_gradient_and_hessian():
    code = _code(lower(lg.get("log_cosh"), "float64", _cpu_library()))
    assert [len(re.findall(rf"\b{f}\(", code)) for f in ("exp_f64", "expm1_f64", "log1p_f64")] == [1, 1, 1], code
    assert "tanh" not in code and "sinh" not in code and "log_f64" not in code, code


def test_tanh_without_a_logcosh_stays_one_library_call():
    loss = lg.Loss("t", "tanh(p - y)**2", inputs=["y", "p"], wrt="p")
    code = _code(lower(loss, "float64", _cpu_library()))
    assert "tanh_f64(" in code and not re.search(r"\bexpm1_f64", code)


def test_math_functions_of_constants_are_printed_as_their_values():
    loss = lg.Loss("c", "(p - y)**2 + log(2)*p + exp(-1)*p", inputs=["y", "p"], wrt="p")
    code = _code(lower(loss, "float64", _cpu_library()))
    assert not re.search(r"\b(log|exp)_f64", code)
    assert "0.6931471805599453" in code and "0.36787944117144233" in code


def test_a_constant_beyond_float64_is_a_codegen_error_not_the_name_inf():
    # Found by the long fuzz profile: exp(logaddexp(0, 710)) printed as `inf`, an undefined name.
    loss = lg.Loss("t", "exp(logaddexp(0, 710.0)) + p", inputs=["y", "p"], wrt="p")
    with pytest.raises(lg.CodegenError, match="beyond the range of float64"):
        lower(loss, "float64", _cpu_library())


@pytest.mark.parametrize("text, stabilize", [("log(-logaddexp(100, E)) + p", True), ("(-1)**logaddexp(1, 2.5)*p", False)])
def test_a_complex_constant_that_appears_only_when_lowering_is_a_codegen_error(text, stabilize):
    # Found by the long fuzz profile: logaddexp(100, E) is a number only once expanded, and SymPy
    # then writes log(-c) as log(c) + I*pi, or keeps (-1)**c: the kernel computed complex numbers.
    loss = lg.Loss("t", text, inputs=["y", "p"], wrt="p", stabilize=stabilize)
    with pytest.raises(lg.CodegenError, match="not a finite real number") as info:
        loss.compile()
    assert "\n" not in str(info.value)


def test_constant_forms_of_logcosh_stay_comparable_inside_max():
    # Found by the long fuzz profile: logaddexp(0, exp(logcosh(7))) builds Max(0, <logcosh's code
    # form>), and SymPy could not compare the print-only exp inside it.
    loss = lg.Loss("t", "logaddexp(0, exp(logcosh(7))) + p", inputs=["y", "p"], wrt="p")
    result = loss.compile(reduction="none")(np.zeros(2), np.array([0.0, 1.0]))
    expected = math.cosh(7.0) + math.log1p(math.exp(-math.cosh(7.0)))  # log(1 + exp(cosh 7))
    assert result.loss == pytest.approx([expected, expected + 1.0], rel=1e-15)


def test_a_bounded_denominator_is_inverted_once_and_multiplied():
    # bce_with_logits divides by 1 + exp(-|p|), which lies in [1, 2], in every derivative term.
    lowered = lower(lg.get("bce_with_logits"), "float64", _cpu_library())
    reciprocals = [(name, value) for name, value in lowered.temporaries if name.startswith("_r")]
    assert len(reciprocals) == 1 and reciprocals[0][1].startswith("1.0/"), lowered.temporaries
    outputs = " ".join((*lowered.grad, *lowered.hess))
    assert "/" not in outputs and reciprocals[0][0] in outputs, outputs


def test_a_denominator_that_can_be_tiny_stays_divided():
    # p in (0, 1): 1/p**2 overflows at p = 1e-160 where y/p/p is finite, so p keeps its divisions,
    # while 1 - p >= 2**-53 (float64) may be inverted but not in float32 (its reciprocal's square
    # would pass 2**60 there).
    loss = lg.Loss("ratio", "y/p + y/(1 - p)", inputs=["y", "p"], wrt="p", domain={"p": "(0, 1)", "y": "[0, 1]"})
    code64 = _code(lower(loss, "float64"))
    assert "/p/p" in code64 and "1.0/" in code64, code64
    assert "1.0/" not in _code(lower(loss, "float32"))
    result = loss.compile(reduction="none")(np.array([1e-300]), np.array([1e-160]))
    assert result.grad[0] == pytest.approx(-1e20 + 1e-300, rel=1e-14)
    assert result.hess[0] == pytest.approx(2e180, rel=1e-14)


def test_share_reciprocals_places_each_reciprocal_after_what_it_reads():
    from lossgen.hazards import Bounds
    from lossgen.lower import Quotient, share_reciprocals

    x, t0, t1 = sp.symbols("x _t0 _t1", real=True)
    temporaries = [(t0, sp.exp(-sp.Abs(x))), (t1, t0 + 1)]
    reduced = [Quotient(x, t1, 1) + Quotient(sp.S(2), t1, 2), Quotient(x, x, 2)]
    new_temps, new_reduced = share_reciprocals(temporaries, reduced, {x: Bounds(-5.0, 5.0)}, "float64")
    names = [str(s) for s, _ in new_temps]
    assert names == ["_t0", "_t1", "_r0"] and new_temps[2][1] == Quotient(sp.S.One, t1, 1)
    r0 = new_temps[2][0]
    assert sp.simplify(new_reduced[0] - (x * r0 + 2 * r0**2)) == 0
    assert new_reduced[1] == Quotient(x, x, 2)  # x can be 0: divided, as written


def test_negative_half_powers_of_one_base_share_one_reciprocal_square_root():
    # pseudo-Huber: the gradient has b**(-1/2) and the Hessian b**(-3/2), b = 1 + (r/delta)**2.
    # Both come from r = 1/sqrt(b), computed once: one division instead of two.
    lowered = lower(lg.get("pseudo_huber"), "float64")
    roots = [name for name, value in lowered.temporaries if value.startswith("math.sqrt(")]
    reciprocals = [(name, value) for name, value in lowered.temporaries if value.startswith("1.0/")]
    assert len(roots) == 1 and reciprocals == [(reciprocals[0][0], f"1.0/{roots[0]}")], lowered.temporaries
    r = reciprocals[0][0]
    assert lowered.hess == (f"({r}*{r}*{r})",)
    derivatives = " ".join((*lowered.grad, *lowered.hess))
    assert "/" not in derivatives and "sqrt" not in derivatives, derivatives


def test_share_root_reciprocals_needs_two_different_negative_half_powers_of_one_base():
    from lossgen.lower import Quotient, share_root_reciprocals

    x, z = sp.symbols("x z", positive=True)
    alone = [x ** sp.Rational(-1, 2) + z ** sp.Rational(-3, 2), x ** sp.Rational(-1, 2) * z ** sp.Rational(1, 2)]
    assert share_root_reciprocals(alone) == alone
    shared = share_root_reciprocals([x ** sp.Rational(-1, 2), 2 * x ** sp.Rational(-5, 2) + sp.sqrt(x)])
    r = Quotient(sp.S.One, sp.sqrt(x), 1)
    assert shared == [r, 2 * r**5 + sp.sqrt(x)]


@pytest.mark.parametrize(
    "dtype, residuals",
    [
        ("float64", [1e-170, 0.5, 3.0, 1e100, 1e150, 1e153]),
        ("float32", [1e-20, 0.5, 3.0, 1e12, 1e15, 1e18]),
    ],
)
def test_pseudo_huber_gradient_and_hessian_through_the_shared_reciprocal_root_are_accurate(dtype, residuals):
    # Checked against mpmath at residuals from tiny to where b**(-3/2) underflows.
    import mpmath

    kernel = lg.get("pseudo_huber").compile(dtype=dtype, reduction="none")
    r = np.array(residuals, dtype=dtype)
    result = kernel(np.zeros_like(r), r)
    info = np.finfo(dtype)
    with mpmath.workdps(60):
        for value, grad, hess in zip(residuals, result.grad, result.hess):
            v = mpmath.mpf(float(np.array(value, dtype=dtype)))
            b = 1 + v * v
            exact_grad, exact_hess = v / mpmath.sqrt(b), b ** mpmath.mpf(-1.5)
            assert abs(grad - exact_grad) <= 3 * info.eps * abs(exact_grad) + float(info.smallest_subnormal)
            if exact_hess >= info.tiny:
                assert abs(hess - exact_hess) <= 5 * info.eps * exact_hess, (value, hess, exact_hess)
            else:  # below the normal range: only absolute accuracy is possible
                assert abs(hess - exact_hess) <= info.tiny, (value, hess, exact_hess)
