"""Properties: smoothness and kinks, Hessian sign and constancy, gradient bound, bounded below with
its minimizer -- each proved or unknown -- and choosing a loss with `lossgen list`."""

import dataclasses
import math

import numpy as np
import pytest
import sympy as sp

import lossgen as lg
from lossgen.cli import main
from lossgen.functions import to_elementary
from lossgen.properties import LossProperties, analyze_properties
from lossgen.tasks import CATALOG_TASKS, TASKS, fits


def loss(name, expr, inputs=("y", "p"), wrt="p", **kwargs):
    return lg.Loss(name, expr, inputs=list(inputs), wrt=wrt, **kwargs)


def test_properties_are_a_frozen_dataclass_holding_the_convexity_verdict():
    props = lg.get("huber").properties()
    assert isinstance(props, LossProperties)
    assert props.convexity == lg.get("huber").convexity()
    with pytest.raises(dataclasses.FrozenInstanceError):
        props.smoothness = "Cinf"


# --- smoothness and kinks ---------------------------------------------------------------------------

@pytest.mark.parametrize("name, smoothness, kinks", [
    ("squared_error", "Cinf", ()),
    ("log_cosh", "Cinf", ()),
    ("bce", "Cinf", ()),
    ("absolute_error", "C0", ("p = y",)),
    ("quantile", "C0", ("p = y",)),
    ("hinge", "C0", ("p*y = 1",)),
    ("huber", "C1", ("|p - y| = delta",)),
    ("smooth_l1", "C1", ("|p - y| = beta",)),
    ("squared_hinge", "C1", ("p*y = 1",)),
])
def test_catalog_smoothness_and_kinks(name, smoothness, kinks):
    props = lg.get(name).properties()
    assert (props.smoothness, props.kinks) == (smoothness, kinks)


def test_a_jump_makes_a_loss_discontinuous():
    props = loss("jump", "Piecewise((p**2, p < 1), (p**2 + 1, True))").properties()
    assert props.smoothness == "discontinuous" and props.kinks == ("p = 1",)


def test_matching_value_slope_and_curvature_make_a_loss_c2():
    assert loss("c2", "Piecewise((p**3, p >= 0), (0, True))").properties().smoothness == "C2"


def test_identical_pieces_leave_no_kink():
    assert loss("same", "Abs(p)**2").properties().smoothness == "Cinf"


# --- Hessian ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name, sign", [
    ("squared_error", "positive"),
    ("bce_with_logits", "positive"),
    ("poisson", "positive"),
    ("logistic", "nonnegative"),   # y = 0 is in the domain, where it is 0
    ("huber", "nonnegative"),
    ("absolute_error", "zero_ae"),
    ("hinge", "zero_ae"),
    ("msle", "indefinite"),
    ("focal", "indefinite"),
])
def test_catalog_hessian_sign(name, sign):
    assert lg.get(name).properties().hessian_sign == sign


def test_hessian_sign_is_of_the_almost_everywhere_hessian():
    # Not convex (the slope drops at |r| = 1), yet its Hessian is >= 0 wherever it exists.
    bad = loss("bad_huber", "Piecewise((r**2, Abs(r) <= 1), (Abs(r), True))", where={"r": "p - y"})
    props = bad.properties()
    assert props.convexity.verdict == "neither" and props.hessian_sign == "nonnegative"


def test_several_variables_hessian_sign_from_minors():
    qol = loss("qol", "x**2/t", inputs=["x", "t"], wrt=["x", "t"], domain={"t": "(0, oo)"})
    assert qol.properties().hessian_sign == "nonnegative"
    saddle = loss("saddle", "x**2 - t**2", inputs=["x", "t"], wrt=["x", "t"])
    assert saddle.properties().hessian_sign == "indefinite"


@pytest.mark.parametrize("name, constant", [
    ("squared_error", True), ("l2", True), ("elastic_net", True), ("absolute_error", True),
    ("huber", False), ("poisson", False), ("bce_with_logits", False),
])
def test_catalog_hessian_constant(name, constant):
    assert lg.get(name).properties().hessian_constant is constant


# --- gradient bound ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("name, bound", [
    ("absolute_error", 1.0), ("huber", 1.0), ("smooth_l1", 1.0), ("pseudo_huber", 1.0), ("log_cosh", 1.0),
    ("quantile", 0.5), ("epsilon_insensitive", 1.0), ("bce_with_logits", 1.0), ("logistic", 1.0), ("hinge", 1.0),
    ("squared_error", math.inf), ("mape", math.inf), ("poisson", math.inf), ("squared_hinge", math.inf),
])
def test_catalog_grad_bound(name, bound):
    got = lg.get(name).properties().grad_bound
    assert got == bound if math.isinf(bound) else got == pytest.approx(bound, rel=1e-9)


def test_grad_bound_follows_the_params():
    assert analyze_properties(lg.get("huber"), delta=2.5).grad_bound == pytest.approx(2.5)
    assert analyze_properties(lg.get("quantile"), tau=0.2).grad_bound == pytest.approx(0.8)
    assert lg.get("huber").properties().grad_bound_params == {"delta": 1.0}


@pytest.mark.parametrize("text, sup", [
    ("log(1 + (p - y)**2)", 1.0),                                  # Cauchy
    ("1 - exp(-(p - y)**2)", math.sqrt(2) * math.exp(-0.5)),        # Welsch
    ("Piecewise((1 - (1 - (p - y)**2)**3, Abs(p - y) <= 1), (1, True))", 6 * 0.2**0.5 * 0.8**2),  # Tukey, c = 1
])
def test_robust_losses_get_a_tight_gradient_bound(text, sup):
    got = loss("robust", text).properties().grad_bound
    assert sup <= got <= sup * (1 + 1e-6)


@pytest.mark.parametrize("name", ["huber", "log_cosh", "logistic", "bce_with_logits", "pseudo_huber", "quantile"])
def test_grad_bound_holds_at_sampled_points(name):
    l = lg.get(name)
    bound = l.properties().grad_bound
    defaults = {l.symbol(k): v for k, v in l.params.items()}
    grad = sp.lambdify([l.symbol(n) for n in l.inputs], to_elementary(l.grad[0].xreplace(defaults)), "numpy")
    rng = np.random.default_rng(1)
    columns = []
    for n in l.inputs:
        iv = l.domain[n]
        lo, hi = max(float(iv.start), -30.0), min(float(iv.end), 30.0)
        columns.append(rng.uniform(lo, hi, 5000))
    with np.errstate(all="ignore"):
        values = np.abs(np.broadcast_to(grad(*columns), (5000,)))
    assert np.nanmax(values) <= bound


# --- bounded below and the minimizer ----------------------------------------------------------------------

@pytest.mark.parametrize("name, minimizer", [
    ("squared_error", "y"), ("absolute_error", "y"), ("huber", "y"), ("quantile", "y"), ("epsilon_insensitive", "y"),
    ("log_cosh", "y"), ("msle", "y"), ("bce", "y"), ("poisson", "log(y)"), ("gamma", "log(y)"),
    ("bce_with_logits", "log(y/(1 - y))"), ("l2", "0"),
])
def test_catalog_minimizer(name, minimizer):
    l = lg.get(name)
    props = l.properties()
    assert props.bounded_below is True
    expected = sp.sympify(minimizer, locals={"y": l.symbol("y")})
    assert sp.simplify(props.minimizer["p"] - expected) == 0


def test_bounded_below_without_a_minimizer():
    props = lg.get("focal").properties()
    assert props.bounded_below is True and props.minimizer is None


@pytest.mark.parametrize("text, domain", [("p - y", {}), ("log(p)", {"p": "(0, oo)"})])
def test_unbounded_below_is_proved_by_a_limit(text, domain):
    props = loss("down", text, domain=domain).properties()
    assert props.bounded_below is False and "-oo" in props.reasons["bounded_below"]


# --- what has no rules ---------------------------------------------------------------------------------------

def test_rowwise_losses_get_unknown_properties_without_crashing():
    rowwise = [l for l in lg.catalog().values() if getattr(l.spec, "rowwise", False)]
    if not rowwise:
        pytest.skip("the catalog has no row-wise loss")
    props = rowwise[0].properties()
    assert (props.smoothness, props.hessian_sign, props.grad_bound, props.bounded_below) == ("unknown", "unknown", None, None)


# --- choosing a loss ----------------------------------------------------------------------------------------

def listed(capsys, *args):
    assert main(["list", *args]) == 0
    return {line.split()[0]: line for line in capsys.readouterr().out.splitlines()}


def test_every_task_tag_is_a_known_task_with_a_reason():
    for name, tags in CATALOG_TASKS.items():
        for fit in tags:
            assert fit.task in TASKS and fit.why, name


def test_every_elementwise_catalog_loss_but_the_penalties_fits_a_task():
    untagged = [n for n, l in lg.catalog().items() if not CATALOG_TASKS.get(n) and not getattr(l.spec, "rowwise", False)]
    assert sorted(untagged) == ["elastic_net", "l1", "l2"]


def test_list_by_task_shows_why_each_loss_fits(capsys):
    lines = listed(capsys, "--task", "quantile")
    assert set(lines) == {"quantile", "absolute_error"}
    assert fits("quantile", "quantile").why in lines["quantile"]
    assert lines["quantile"].split()[1] == "convex"


def test_list_robust_regression_losses(capsys):
    lines = listed(capsys, "--task", "regression", "--robust")
    assert {"huber", "smooth_l1", "pseudo_huber", "log_cosh", "absolute_error", "quantile"} <= set(lines)
    assert not {"squared_error", "msle", "poisson", "mape"} & set(lines)
    assert "|grad| <= 1" in lines["huber"]


def test_list_smooth_convex_binary_losses(capsys):
    lines = listed(capsys, "--task", "binary", "--convex", "--smooth")
    assert {"bce_with_logits", "logistic", "squared_hinge"} <= set(lines)
    assert not {"focal", "hinge"} & set(lines)


def test_list_without_filters_keeps_name_verdict_doc(capsys):
    lines = listed(capsys)
    assert list(lines) == list(lg.catalog())
    assert lines["huber"].split()[1] == "convex" and lg.get("huber").doc in lines["huber"]


def test_list_rejects_an_unknown_task(capsys):
    assert main(["list", "--task", "ranking"]) == 2
    assert "invalid choice" in capsys.readouterr().err


def test_inspect_prints_the_properties_after_the_convexity(capsys):
    assert main(["inspect", "huber"]) == 0
    out = capsys.readouterr().out
    assert out.index("convexity: convex") < out.index("smoothness: C1 (kinks: |p - y| = delta)")
    for fragment in ("hessian sign: nonnegative", "constant hessian: no", "grad bound: |d loss / d p| <= 1 (at delta=1.0)",
                     "bounded below: yes, minimizer p = y"):
        assert fragment in out
