"""Hazard analysis: interval reasoning finds where a formula can overflow, divide by zero or
cancel, and reports which hazards the stabilizing rewrites removed."""

import sympy as sp

import lossgen as lg
from lossgen.hazards import find_hazards, hazard_report

z = sp.Symbol("z", real=True)
REAL = {z: sp.Interval(-sp.oo, sp.oo)}


def kinds(hazards):
    return {h.kind for h in hazards}


def test_exp_of_an_unbounded_argument_can_overflow():
    assert "overflow" in kinds(find_hazards(sp.exp(z), REAL))


def test_exp_of_a_nonpositive_argument_cannot_overflow():
    assert not find_hazards(sp.exp(-sp.Abs(z)), REAL)


def test_float32_overflows_earlier_than_float64():
    bounded = {z: sp.Interval(-100, 100)}
    assert "overflow" in kinds(find_hazards(sp.exp(z), bounded, "float32"))
    assert not find_hazards(sp.exp(z), bounded, "float64")


def test_division_by_a_value_that_can_be_zero():
    assert "division by zero" in kinds(find_hazards(1 / z, REAL))


def test_open_domain_end_is_never_reached():
    p = sp.Symbol("p", positive=True)
    assert not find_hazards(sp.log(p) + 1 / (1 - p), {p: sp.Interval.open(0, 1)})
    assert "log of zero" in kinds(find_hazards(sp.log(p), {p: sp.Interval(0, 1)}))


def test_cancellation_patterns_are_found():
    assert "cancellation" in kinds(find_hazards(sp.exp(z) - 1, REAL))
    assert "cancellation" in kinds(find_hazards(sp.log(1 + z**2), REAL))


def test_rewrites_remove_every_hazard_of_hand_written_bce():
    loss = lg.Loss("bce_naive", "-(y*log(1/(1 + exp(-z))) + (1 - y)*log(1 - 1/(1 + exp(-z))))", inputs=["y", "z"], wrt="z", domain={"y": "[0, 1]"})
    report = hazard_report(loss)
    assert len(report.written) >= 4
    assert report.remaining == ()
    assert set(report.removed) == set(report.written)


def test_overflow_of_an_unbounded_value_is_a_note_not_a_warning():
    report = hazard_report(lg.get("poisson"))
    assert [h.kind for h in report.remaining] == ["overflow"]
    assert report.warnings == ()


def test_hazard_without_a_rule_remains():
    loss = lg.Loss("ratio", "exp(z)/(2 + exp(z)) - y", inputs=["y", "z"], wrt="z")
    assert "overflow" in kinds(hazard_report(loss).remaining)


def test_division_hazard_without_a_rule_is_a_warning():
    loss = lg.Loss("inverse", "1/(p - y)", inputs=["y", "p"], wrt="p")
    assert "division by zero" in kinds(hazard_report(loss).warnings)


# Known and documented: multiclass focal's Hessian for gamma < 2 at a row whose label
# probability rounds to exactly 1 ((1 - pt)**(gamma - 2) with 1 - pt = 0).
KNOWN_WARNINGS = {("multiclass_focal", "division by zero")}


def test_no_catalog_loss_has_an_unremoved_warning():
    for name, loss in lg.catalog().items():
        report = hazard_report(loss)
        real_warnings = [h for h in report.warnings if h.kind != "log of zero" and (name, h.kind) not in KNOWN_WARNINGS]
        assert not real_warnings, (name, [str(h) for h in real_warnings])


def test_inspect_lists_rewrites_and_warnings(capsys):
    from lossgen.cli import main

    assert main(["inspect", "bce_with_logits"]) == 0
    assert main(["inspect", "poisson"]) == 0
    out = capsys.readouterr().out
    assert "rewrites applied:" in out
    assert "note (float64): overflow: exp(p)" in out
