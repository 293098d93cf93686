"""Stabilizing rewrite rules: each has an exact symbolic result, and formulas written the
naive way verify to full precision where they would overflow or cancel as written."""

import pytest
import sympy as sp
from sympy.codegen.cfunctions import expm1, log1p

import lossgen as lg
from lossgen.functions import logaddexp, logcosh, logsigmoid, scaled_exp, sigmoid, softplus
from lossgen.stabilize import RULES, apply_rules

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
        ("source", y * sp.exp(-x), scaled_exp(-x, y), "exp_absorbs_factor"),
        ("derived", 1 - sigmoid(x), sigmoid(-x), "one_minus_sigmoid"),
        ("derived", 1 - sp.tanh(x) ** 2, sp.sech(x) ** 2, "sech_squared"),
        ("derived", (1 + x**2) ** a / (1 + x**2), (1 + x**2) ** (a - 1), "combine_powers"),
    ],
)
def test_rule_gives_its_exact_symbolic_result(phase, written, expected, rule):
    applied = set()
    assert apply_rules(written, phase, applied) == expected
    assert rule in applied


def test_every_rule_has_a_name_phase_and_doc():
    assert len({r.name for r in RULES}) == len(RULES)
    assert all(r.phase in {"source", "derived"} and r.doc for r in RULES)


def test_rewritten_loss_is_mathematically_unchanged():
    loss = lg.Loss("bce_naive", "-(y*log(1/(1 + exp(-z))) + (1 - y)*log(1 - 1/(1 + exp(-z))))", inputs=["y", "z"], wrt="z")
    point = {loss.symbol("y"): sp.Rational(3, 10), loss.symbol("z"): sp.Rational(7, 3)}
    written = sp.N(loss.expr.subs(point), 40)
    stable = sp.N(loss.stable_expr.rewrite(sp.exp).subs(point), 40)
    assert abs(written - stable) < 1e-35


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize(
    "name, formula, domain",
    [
        ("bce_by_hand", "-(y*log(1/(1 + exp(-z))) + (1 - y)*log(1 - 1/(1 + exp(-z))))", {"y": "[0, 1]"}),
        ("log_cosh_by_hand", "log(cosh(z - y))", {}),
        ("softplus_by_hand", "log(1 + exp(z)) - y*z", {"y": "[0, 1]"}),
        ("gamma_by_hand", "z + y*exp(-z)", {"y": "(0, oo)"}),
    ],
)
def test_naive_formula_verifies_to_full_precision(name, formula, domain, dtype):
    loss = lg.Loss(name, formula, inputs=["y", "z"], wrt="z", domain=domain)
    report = lg.verify(loss, n=100, dtype=dtype)
    assert report.ok, report.failures
    assert loss.rewrites
