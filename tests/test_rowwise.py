"""Row-wise losses: syntax and shape rules, kernels against NumPy and torch, input errors."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy.special import log_softmax as np_log_softmax
from scipy.special import logsumexp as np_logsumexp

import lossgen as lg

RNG = np.random.default_rng(7)
LOGITS = RNG.normal(0, 3, (64, 5))
LABELS = RNG.integers(0, 5, 64)


@pytest.fixture(scope="module")
def user_ce():
    return lg.Loss("ce", "logsumexp(p) - take(p, y)", inputs=["y", "p"], wrt="p")


def test_roles_follow_where_inputs_are_used(user_ce):
    assert dict(user_ce.roles) == {"y": "label", "p": "row"}
    dice = lg.get("dice")
    assert dict(dice.roles) == {"y": "row", "p": "row"}


def test_input_inside_and_outside_an_aggregate_is_refused():
    with pytest.raises(lg.SpecError, match="inside an aggregate"):
        lg.Loss("bad", "logsumexp(p) - p", inputs=["y", "p"], wrt="p")


def test_wrt_must_be_a_row():
    with pytest.raises(lg.SpecError, match="wrt"):
        lg.Loss("bad", "sum(p) * y", inputs=["y", "p"], wrt="y")


def test_derivatives_use_aggregate_rules(user_ce):
    assert str(user_ce.grad[0]) == "exp(p - logsumexp(p)) - onehot(y)"


@pytest.mark.parametrize(
    "formula, numpy_value",
    [
        ("sum(p) + 0*y", lambda p: p.sum(1)),
        ("mean(p) + 0*y", lambda p: p.mean(1)),
        ("logsumexp(p) + 0*y", lambda p: np_logsumexp(p, axis=1)),
        ("max(p) + 0*y", lambda p: p.max(1)),
        ("min(p) + 0*y", lambda p: p.min(1)),
        ("sum(softmax(p)*p) + 0*y", lambda p: (np.exp(np_log_softmax(p, axis=1)) * p).sum(1)),
        ("-sum(onehot(y)*log_softmax(p))", None),
    ],
)
def test_row_functions_compute_what_their_names_say(formula, numpy_value):
    loss = lg.Loss("row_function", formula, inputs=["y", "p"], wrt="p")
    if "onehot" in formula:
        expected = -np_log_softmax(LOGITS, axis=1)[np.arange(64), LABELS]
        result = loss.compile(reduction="none")(LABELS, LOGITS)
    else:
        expected = numpy_value(LOGITS)
        result = loss.compile(reduction="none")(np.zeros(64), LOGITS)
    np.testing.assert_allclose(result.loss, expected, rtol=1e-13)


def test_user_written_cross_entropy_equals_catalog(user_ce):
    ours = user_ce.compile(reduction="mean")(LABELS, LOGITS)
    catalog = lg.get("cross_entropy").compile(reduction="mean")(LABELS, LOGITS)
    assert ours.loss == pytest.approx(catalog.loss, rel=1e-14)
    np.testing.assert_allclose(ours.grad, catalog.grad, rtol=1e-13, atol=1e-17)
    np.testing.assert_allclose(ours.hess, catalog.hess, rtol=1e-13, atol=1e-17)


@pytest.mark.parametrize("dtype, rtol", [("float64", 1e-12), ("float32", 1e-5)])
def test_cross_entropy_gradient_and_hessian_match_torch(dtype, rtol):
    logits = LOGITS.astype(dtype)
    result = lg.get("cross_entropy").compile(dtype=dtype, reduction="sum")(LABELS, logits)
    pt = torch.tensor(logits, requires_grad=True)
    loss = F.cross_entropy(pt, torch.tensor(LABELS), reduction="sum")
    (grad,) = torch.autograd.grad(loss, pt)
    probs = torch.softmax(pt, 1).detach().numpy()
    assert result.loss == pytest.approx(loss.item(), rel=rtol)
    np.testing.assert_allclose(result.grad, grad.numpy(), rtol=rtol, atol=rtol * 1e-3)
    np.testing.assert_allclose(result.hess, probs * (1 - probs), rtol=rtol, atol=rtol * 1e-3)


def test_cross_entropy_is_finite_on_huge_logits():
    logits = np.array([[1000.0, -1000.0, 0.0], [-1000.0, -1000.0, -1000.0]])
    result = lg.get("cross_entropy").compile(reduction="none")(np.array([1, 2]), logits)
    assert np.all(np.isfinite(result.loss)) and np.all(np.isfinite(result.grad)) and np.all(np.isfinite(result.hess))
    assert result.loss[0] == pytest.approx(2000.0, rel=1e-15)
    assert result.loss[1] == pytest.approx(np.log(3), rel=1e-15)


def test_dice_matches_numpy():
    p = RNG.random((32, 6))
    y = (RNG.random((32, 6)) > 0.5).astype(float)
    result = lg.get("dice").compile(reduction="none")(y, p)
    expected = 1 - (2 * (p * y).sum(1) + 1) / (p.sum(1) + y.sum(1) + 1)
    np.testing.assert_allclose(result.loss, expected, rtol=1e-14)
    pt = torch.tensor(p, requires_grad=True)
    torch_loss = (1 - (2 * (pt * torch.tensor(y)).sum(1) + 1) / (pt.sum(1) + torch.tensor(y).sum(1) + 1)).sum()
    (grad,) = torch.autograd.grad(torch_loss, pt)
    np.testing.assert_allclose(result.grad, grad.numpy(), rtol=1e-12)


def test_kl_div_batchmean_matches_torch():
    y = np.exp(np_log_softmax(RNG.normal(size=(16, 4)), axis=1))
    logp = np_log_softmax(RNG.normal(size=(16, 4)), axis=1)
    result = lg.get("kl_div").compile(reduction="mean")(y, logp)
    expected = F.kl_div(torch.tensor(logp), torch.tensor(y), reduction="batchmean").item()
    assert result.loss == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize(
    "args, fragment",
    [
        ((LABELS.astype(float), LOGITS), "must be integers"),
        ((LABELS, LOGITS[:, 0]), "must be 2-D"),
        ((np.where(LABELS == 0, 7, LABELS), LOGITS), "label 7 outside 0..4"),
        ((LABELS[:10], LOGITS), "one label per row"),
    ],
)
def test_misuse_is_a_one_line_error_naming_the_input(args, fragment):
    kernel = lg.get("cross_entropy").compile(reduction="mean")
    with pytest.raises(lg.InputError, match=fragment):
        kernel(*args)


def test_class_weight_must_have_one_value_per_class():
    kernel = lg.get("cross_entropy").compile(reduction="mean")
    with pytest.raises(lg.InputError, match="class_weight"):
        kernel(LABELS, LOGITS, class_weight=np.ones(3))


def test_ignored_rows_have_zero_loss_and_gradient():
    labels = LABELS.copy()
    labels[:5] = -100
    result = lg.get("cross_entropy").compile(reduction="none")(labels, LOGITS)
    assert np.all(result.loss[:5] == 0) and np.all(result.grad[:5] == 0)


def test_weighted_mean_of_rows():
    weight = RNG.random(64)
    kernel = lg.get("cross_entropy")
    per_row = kernel.compile(reduction="none")(LABELS, LOGITS).loss
    result = kernel.compile(reduction="weighted_mean")(LABELS, LOGITS, weight=weight)
    assert result.loss == pytest.approx((weight * per_row).sum() / weight.sum(), rel=1e-13)


def test_softmax_cross_entropy_is_proved_convex_in_the_logits():
    for loss in (lg.get("cross_entropy"), lg.Loss("ce2", "logsumexp(p) - take(p, y)", inputs=["y", "p"], wrt="p")):
        verdict = loss.convexity()
        assert verdict.verdict == "convex" and verdict.method == "composition"
        assert "logsumexp" in verdict.certificate


def test_kl_div_in_log_probabilities_is_affine():
    assert lg.get("kl_div").convexity().verdict == "affine"


def test_dice_is_never_claimed_convex():
    # Dice is not convex; without a row-wise refutation the honest answer is "unknown".
    assert lg.get("dice").convexity().verdict in {"unknown", "neither"}
