"""Stabilizing rewrite rules: each has an exact symbolic result, and formulas written the
naive way verify to full precision where they would overflow or cancel as written."""

import math
import re

import numpy as np
import pytest
import sympy as sp
from sympy.codegen.cfunctions import expm1, log1p

import lossgen as lg
from lossgen.functions import (
    exp_minus, expm1mx, log1pmx, logaddexp, logcosh, logratio, logsigmoid, scaled_exp, sigmoid, softplus, sqrt1pm1, to_reference_form, xlogy,
)
from lossgen.stabilize import RULES, apply_rules, stabilize_derivative

x, a, b = sp.symbols("x a b", real=True)
y = sp.Symbol("y", nonnegative=True)


@pytest.mark.parametrize(
    "phase, written, expected, rule",
    [
        ("source", sp.log(1 + x), log1p(x), "log1p"),
        ("source", sp.exp(x) - 1, expm1(x), "expm1"),
        ("source", sp.log(1 + sp.exp(x)), softplus(x), "softplus"),
        ("source", 1 / (1 + sp.exp(-x)), sigmoid(x), "sigmoid"),
        ("source", sp.log(sigmoid(x)), logsigmoid(x), "logsigmoid"),
        ("source", sp.log(1 - sigmoid(x)), logsigmoid(-x), "log1m_sigmoid"),
        ("source", sp.log(1 / (1 + sp.exp(-x))), logsigmoid(x), "logsigmoid"),
        ("source", sp.log(1 / (2 + x**2)), -sp.log(2 + x**2), "log_of_reciprocal"),
        ("source", sp.log(sp.cosh(x)), logcosh(x), "logcosh"),
        ("source", sp.log(sp.exp(a) + sp.exp(b)), logaddexp(a, b), "logaddexp"),
        ("loss", y * sp.exp(-x), scaled_exp(-x, y), "exp_absorbs_factor"),
        ("source", 1 - sigmoid(x), sigmoid(-x), "one_minus_sigmoid"),
        ("source", 2 - 2 * sigmoid(x), 2 * sigmoid(-x), "one_minus_sigmoid"),
        ("source", 1 / (1 + sp.exp(-x)) ** 2, sigmoid(x) ** 2, "sigmoid"),
        ("source", sp.sqrt(1 + x**2) - 1, sqrt1pm1(x**2), "sqrt1pm1"),
        ("source", y * sp.log(y), xlogy(y, y), "xlogy"),
        ("source", y * sp.log(y / (1 + x**2)), xlogy(y, y / (1 + x**2)), "xlogy"),
        ("source", sp.exp(x) - 1 - x, expm1mx(x), "expm1mx"),
        ("source", sp.log(y / (1 + x**2)), logratio(y, 1 + x**2), "logratio"),
        ("source", sp.log(1 + x) - x, log1pmx(x), "log1pmx"),
        ("source", sigmoid(x) ** a, sp.exp(a * logsigmoid(x)), "sigmoid_power"),
        ("source", sp.exp(x) / (1 + sp.exp(x)), sigmoid(x), "exp_times_sigmoid"),
        ("source", sp.sinh(x) / sp.cosh(x), sp.tanh(x), "sinh_over_cosh"),
        ("derived", 1 - sp.tanh(x) ** 2, sp.sech(x) ** 2, "sech_squared"),
        ("derived", sp.exp(x) - y, exp_minus(x, y), "exp_minus_data"),
        ("derived", (1 + x**2) ** a / (1 + x**2), (1 + x**2) ** (a - 1), "combine_powers"),
    ],
)
def test_rule_gives_its_exact_symbolic_result(phase, written, expected, rule):
    applied = set()
    assert apply_rules(written, phase, applied) == expected
    assert rule in applied


def test_every_rule_has_a_name_phase_and_doc():
    assert len({r.name for r in RULES}) == len(RULES)
    assert all(r.phase in {"source", "loss", "derived"} and r.doc for r in RULES)


def test_rewritten_loss_is_mathematically_unchanged():
    loss = lg.Loss("bce_naive", "-(y*log(1/(1 + exp(-z))) + (1 - y)*log(1 - 1/(1 + exp(-z))))", inputs=["y", "z"], wrt="z")
    point = {loss.symbol("y"): sp.Rational(3, 10), loss.symbol("z"): sp.Rational(7, 3)}
    written = sp.N(loss.expr.subs(point), 40)
    stable = sp.N(loss.stable_expr.rewrite(sp.exp).subs(point), 40)
    assert abs(written - stable) < 1e-35




NAIVE_FORMULAS = [
    ("bce", "-(y*log(1/(1 + exp(-z))) + (1 - y)*log(1 - 1/(1 + exp(-z))))", {"y": "[0, 1]"}),
    ("softplus", "log(1 + exp(z)) - y*z", {"y": "[0, 1]"}),
    ("logistic", "log(1 + exp(-y*z))", {"y": "[-1, 1]"}),
    ("log_cosh", "log(cosh(z - y))", {}),
    ("poisson", "exp(z) - y*z", {"y": "[0, oo)"}),
    ("gamma", "z + y*exp(-z)", {"y": "(0, oo)"}),
    ("pseudo_huber", "sqrt(1 + (z - y)**2) - 1", {}),
    ("linex", "exp(z - y) - (z - y) - 1", {}),
    ("kl", "y*log(y/z)", {"y": "[0, 1]", "z": "(0, 1)"}),
    ("entropy", "z*log(z) - y", {"z": "[0, 1]"}),
    ("focal", "-(y*(1 - 1/(1+exp(-z)))**2*log(1/(1+exp(-z))) + (1-y)*(1/(1+exp(-z)))**2*log(1 - 1/(1+exp(-z))))", {"y": "[0, 1]"}),
]


def _naive_loss(name, formula, domain):
    return lg.Loss(name + "_naive", formula, inputs=["y", "z"], wrt="z", domain=domain)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("name, formula, domain", NAIVE_FORMULAS, ids=[c[0] for c in NAIVE_FORMULAS])
def test_naive_formula_verifies_to_full_precision(name, formula, domain, dtype):
    loss = _naive_loss(name, formula, domain)
    report = lg.verify(loss, n=100, dtype=dtype)
    assert report.ok, report.failures


@pytest.mark.parametrize("name, formula, domain", NAIVE_FORMULAS, ids=[c[0] for c in NAIVE_FORMULAS])
def test_stabilized_naive_derivative_equals_derivative_of_stable_form(name, formula, domain):
    # Both ways: d/dz of the stable loss, and the naive loss's derivative made stable.
    loss = _naive_loss(name, formula, domain)
    z = loss.symbol("z")
    from_stable = loss.grad[0]
    stabilized_naive = stabilize_derivative(sp.diff(loss.expr, z))
    points = [{loss.symbol("y"): sp.Rational(1, 3), z: sp.Rational(2, 7)}, {loss.symbol("y"): sp.Rational(1, 2), z: sp.Rational(3, 4)}]
    for point in points:
        a = sp.N(to_reference_form(from_stable).subs(point), 30)
        b = sp.N(to_reference_form(stabilized_naive).subs(point), 30)
        assert abs(a - b) <= 1e-25 * max(1, abs(a)), (name, a, b)


@pytest.mark.parametrize("name, formula, domain", NAIVE_FORMULAS, ids=[c[0] for c in NAIVE_FORMULAS])
def test_stabilized_naive_derivative_is_accurate_in_a_kernel(name, formula, domain):
    # The naive loss's derivative, stabilized on its own, compiled as a loss of its own.
    loss = _naive_loss(name, formula, domain)
    derivative = stabilize_derivative(sp.diff(loss.expr, loss.symbol("z")))
    as_loss = lg.Loss(name + "_dnaive", derivative, inputs=["y", "z"], wrt="z", domain=domain)
    report = lg.verify(as_loss, n=100)
    assert report.max_rel_err["loss"] <= 1e-10, report.failures


def test_stable_forms_keep_kernels_single_fused_passes():
    source = _naive_loss(*NAIVE_FORMULAS[0]).compile().source
    assert source.count("for _i in prange") == 2  # per_sample and per_sample_weighted only


def test_stabilize_false_evaluates_the_formula_as_written():
    naive = lg.Loss("lc_naive", "log(cosh(z - y))", inputs=["y", "z"], wrt="z", stabilize=False)
    stable = lg.Loss("lc_naive", "log(cosh(z - y))", inputs=["y", "z"], wrt="z")
    assert naive.rewrites == () and naive.stable_expr == naive.expr
    import numpy as np

    y, z = np.zeros(1), np.array([800.0])
    assert np.isinf(naive.compile(reduction="none")(y, z).loss[0])  # cosh(800) overflows
    assert stable.compile(reduction="none")(y, z).loss[0] == pytest.approx(800 - np.log(2), rel=1e-15)


def test_xlogy_of_a_piecewise_factor_leaves_no_complex_infinity():
    # Found by the long fuzz profile: d/dp p**Max(0, p) has Heaviside(p)*log(p); the rule divided
    # by the Heaviside's Piecewise, which SymPy turned into a Piecewise of reciprocals with zoo.
    loss = lg.Loss("t", "Max(0, p**r)", inputs=["y", "p"], wrt="p", where={"r": "Max(0, p)"})
    for expr in (loss.stable_expr, *loss.grad, loss.hess[0, 0]):
        assert not expr.has(sp.zoo, sp.nan), expr


def test_a_power_times_log_squared_is_zero_where_the_power_is():
    # Found by the long fuzz profile: d/dp (y**2)**(-p) = -2*log(y)/y**(2p) was nan at y = 0,
    # p < 0 (0*inf) where it is 0; SymPy cannot tell the sign of y**(-2p), and the Hessian has
    # log(y)**2. Both are xlogy forms now, and the kernel gives 0 there.
    loss = lg.Loss("t", "(y**2)**(-p)", inputs=["y", "p"], wrt="p", domain={"y": "[0, 1]"})
    assert loss.grad[0].has(xlogy) and loss.hess[0, 0].has(xlogy)
    result = loss.compile(reduction="none")(np.array([0.0, 0.5]), np.array([-4.72, 2.0]))
    assert result.grad[0] == 0.0 and result.hess[0] == 0.0
    assert result.hess[1] == pytest.approx(4 * math.log(0.5) ** 2 * 0.5**-4.0, rel=1e-14)


# A sigmoid pair mixed by data, raised to a power: focal's modulating factor, and the same shape
# mirrored or on a shifted argument. Their kernels take one log of the pair's sum, not log(y) and
# log1p(-y), and stay exact for hard labels after exp(-|z|) underflows.
SIGMOID_PAIR_POWERS = [
    ("focal_factor", "(z**2 + 1)*(y*sigmoid(-z) + (1 - y)*sigmoid(z))**g", 0.5),
    ("mirrored", "softplus(z)*((1 - y)*sigmoid(z) + y*sigmoid(-z))**g", 3.7),
    ("shifted", "(y*sigmoid(1 - 2*z) + (1 - y)*sigmoid(2*z - 1))**g*(z - y)**2", 2.0),
]


def _pair_loss(name, formula, g):
    return lg.Loss(name, formula, inputs=["y", "z"], wrt="z", params={"g": g}, domain={"y": "[0, 1]", "g": "[0, oo)"})


@pytest.mark.parametrize("name, formula, g", SIGMOID_PAIR_POWERS, ids=[c[0] for c in SIGMOID_PAIR_POWERS])
def test_sigmoid_pair_powers_verify_with_one_log(name, formula, g):
    loss = _pair_loss(name, formula, g)
    source = loss.compile().source
    assert not re.search(r"log_f64\(y\)|log1p_f64\(-y\)", source), source
    body = source.split("def per_sample(")[1].split("def ")[0]
    calls = re.findall(r"\b(exp|expm1|log|log1p)_f64\(", body)
    assert sorted(calls) == ["exp", "exp", "log", "log1p"], calls
    for dtype in ("float64", "float32"):
        report = lg.verify(loss, n=100, dtype=dtype)
        assert report.ok, report.failures


def test_focal_with_a_hard_label_stays_exact_after_exp_underflows():
    # y = 1, z = 800: the pair's sum is exp(-800) (0 in float64), its power exp(-400) is not.
    loss = _pair_loss(*SIGMOID_PAIR_POWERS[0])
    result = loss.compile(reduction="none")(np.array([1.0, 0.0, 0.3]), np.array([800.0, -800.0, 30.0]))
    import mpmath

    with mpmath.workdps(60):
        for i, (y, z) in enumerate([(1, 800), (0, -800), (mpmath.mpf(0.3), 30)]):
            sig = lambda t: 1 / (1 + mpmath.exp(-t))  # noqa: E731
            exact = (mpmath.mpf(z) ** 2 + 1) * (y * sig(-z) + (1 - y) * sig(z)) ** mpmath.mpf(0.5)
            assert float(result.loss[i]) == pytest.approx(float(exact), rel=1e-13), (y, z)
            assert result.loss[i] > 0
