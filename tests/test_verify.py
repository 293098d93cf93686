"""lg.verify: every catalog kernel agrees with finite differences and the mpmath reference,
and the checks catch a kernel that is wrong."""

import mpmath
import pytest

import lossgen as lg
from lossgen.verify import evaluate_reference, reference_for

CATALOG = sorted(lg.catalog())


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("name", CATALOG)
def test_catalog_kernel_passes_verification(name, dtype):
    report = lg.verify(lg.get(name), n=200, seed=1, dtype=dtype)
    assert report.ok, report.failures
    assert set(report.max_rel_err) >= {"loss", "grad_p", "hess_p", "fd_grad_p", "fd_hess_p"}


def test_report_names_worst_input_for_every_output():
    report = lg.verify(lg.get("huber"), n=50)
    assert set(report.worst) == set(report.max_rel_err)
    assert set(report.worst["loss"]) == {"y", "p"}


def test_verification_catches_a_wrong_gradient(monkeypatch):
    loss = lg.Loss("wrong_grad", "p**3/3 - y*p", inputs=["y", "p"], wrt="p")
    p = loss.symbol("p")
    stable, grad, hess, rewrites = loss._derived
    # A plausible slip: the gradient of p**3/3 written as p**2/2.
    loss.__dict__["_derived"] = (stable, (grad[0] - p**2 / 2,), hess, rewrites)
    report = lg.verify(loss, n=100)
    assert not report.ok
    assert any(f.startswith("grad_p") for f in report.failures)
    assert any(f.startswith("fd_grad_p") for f in report.failures)
    with pytest.raises(lg.VerificationError, match="grad_p"):
        report.raise_if_failed()


def test_verification_catches_a_wrong_hessian(monkeypatch):
    loss = lg.Loss("wrong_hess", "exp(p) - y*p", inputs=["y", "p"], wrt="p")
    stable, grad, hess, rewrites = loss._derived
    loss.__dict__["_derived"] = (stable, grad, hess * 2, rewrites)
    report = lg.verify(loss, n=100)
    assert not report.ok
    assert any(f.startswith("hess_p") for f in report.failures)
    assert any(f.startswith("fd_hess_p") for f in report.failures)


def test_naive_formula_fails_where_it_overflows():
    # No rule rewrites exp(p)/(2 + exp(p)) (yet): at p = 1000 it is inf/inf, truly 1.
    loss = lg.Loss("naive", "exp(p)/(2 + exp(p)) - y", inputs=["y", "p"], wrt="p")
    report = lg.verify(loss, n=50)
    assert not report.ok


def test_reference_raises_precision_until_cancellation_is_resolved():
    # log(1 + exp(-z)) - exp(-z) at z = 675: at 50 digits exp(-675) vanishes beside 1.
    loss = lg.Loss("cancel", "log(1 + exp(-p)) - exp(-p) + 0*y", inputs=["y", "p"], wrt="p")
    reference = reference_for(loss)
    values, _ = evaluate_reference(reference, [0.0, 675.0])
    # log1p(e) - e = -e**2/2 + e**3/3 - ... with e = exp(-675): about -1.4e-587.
    e = mpmath.exp(mpmath.mpf(-675))
    truth = -e**2 / 2 + e**3 / 3
    assert values[0] != 0
    assert abs(values[0] / truth - 1) < 1e-12


def test_verify_float32_kernel_reports_float32_tolerances():
    report = lg.verify(lg.get("log_cosh"), n=50, dtype="float32")
    assert report.ok
    assert all(c.tolerance >= 1e-4 for c in report.checks)
    assert report.dtype == "float32"
