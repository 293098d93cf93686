"""Every catalog loss agrees with the implementation its doc names (its peer).

A peer is the library function a user would otherwise call: ``torch.nn.functional``,
``torchvision.ops.sigmoid_focal_loss`` (re-implemented below from its published source, since
torchvision is not a dependency), ``sklearn.metrics``, scikit-learn's per-sample loss classes in
``sklearn._loss.loss``, or, where the doc names no callable, the plain NumPy formula.

In float64 the loss (reductions "none" and "mean") and its gradient with respect to ``p`` must
agree to 1e-12 relative, sample by sample; where the peer has one (torch's double backward,
sklearn's gradient_hessian, a closed form), the diagonal Hessian must agree to 1e-12 of the batch's
largest |Hessian|.  In float32 a few torch peers must agree to 1e-5 relative.  Inputs are ~1000 seeded random samples drawn from each loss's
declared domain, restricted to a window where the peer itself is accurate (torch and the textbook
formulas lose digits to cancellation far out; lossgen's stabilised kernels do not, and the
wide-range checks at the end use cancellation-free NumPy references instead).
"""

from __future__ import annotations

import math
import zlib
from typing import Callable, NamedTuple

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy.special import expit, xlogy
from sklearn import metrics
from sklearn._loss import loss as sklearn_loss

import lossgen as lg

N = 1000
SEED = 20240617
RTOL64 = 1e-12
RTOL32 = 1e-5

torch.set_num_threads(1)


# --------------------------------------------------------------------------------------------
# helpers


@pytest.fixture(scope="module")
def kernel():
    """kernel(name, reduction="none", dtype="float64") -> the catalog loss's Kernel, each
    (name, dtype, reduction) compiled once for this module."""
    cache: dict[tuple[str, str, str], object] = {}

    def get(name: str, reduction: str = "none", dtype: str = "float64"):
        key = (name, dtype, reduction)
        if key not in cache:
            cache[key] = lg.get(name).compile(target="cpu", dtype=dtype, reduction=reduction)
        return cache[key]

    return get


def rng_for(*key) -> np.random.Generator:
    """A generator seeded by SEED and the test's own key, so each case has its own fixed inputs."""
    return np.random.default_rng([SEED, *(zlib.crc32(repr(k).encode()) for k in key)])


def draw(rng, loss_name: str, var: str, low: float, high: float, n: int = N) -> np.ndarray:
    """n uniform samples from the declared domain of `var`, intersected with [low, high]."""
    interval = lg.get(loss_name).domain[var]
    lo, hi = max(float(interval.start), low), min(float(interval.end), high)
    assert lo < hi, f"window [{low}, {high}] misses the domain {interval} of {loss_name}.{var}"
    values = rng.uniform(lo, hi, n)
    assert_in_domain(loss_name, var, values)
    return values


def assert_in_domain(loss_name: str, var: str, values: np.ndarray) -> None:
    interval = lg.get(loss_name).domain[var]
    lo, hi = float(interval.start), float(interval.end)
    above = values > lo if interval.left_open else values >= lo
    below = values < hi if interval.right_open else values <= hi
    assert np.all(above & below), f"test inputs for {loss_name}.{var} leave its domain {interval}"


def soft_and_hard_labels(rng, n: int = N) -> np.ndarray:
    """Targets in [0, 1]: half exact {0, 1} labels, half soft labels."""
    hard = rng.integers(0, 2, n // 2).astype(np.float64)
    soft = rng.uniform(0.0, 1.0, n - n // 2)
    return np.concatenate([hard, soft])


def signs(rng, n: int = N) -> np.ndarray:
    """Labels in {-1, 1}, both present."""
    y = rng.choice([-1.0, 1.0], n)
    y[:2] = [-1.0, 1.0]
    return y


def assert_close(actual, expected, rtol: float, what: str) -> None:
    actual = np.asarray(actual, dtype=np.float64)
    expected = np.asarray(expected, dtype=np.float64)
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape} != {expected.shape}"
    assert np.all(np.isfinite(expected)), f"{what}: the peer itself is not finite on these inputs"
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=0, err_msg=what)


def assert_hessian_close(actual, expected, rtol: float, what: str) -> None:
    """Hessians of non-convex losses (focal) cross zero, where no two correct formulas agree to
    relative precision; they are compared to rtol times the largest |Hessian| in the batch."""
    expected = np.asarray(expected, dtype=np.float64)
    scale = float(np.max(np.abs(expected))) if expected.size else 0.0
    np.testing.assert_allclose(np.asarray(actual, dtype=np.float64), expected, rtol=rtol, atol=rtol * scale, err_msg=what)


def torch_peer(fn, y: np.ndarray, p: np.ndarray, reduction: str):
    """(loss, d loss/d p, diagonal d2 loss/d p2) of `fn(p_tensor, y_tensor, reduction)` by autograd.

    Elementwise losses have a diagonal Hessian, so the gradient of sum(grad) is its diagonal.
    """
    pt = torch.tensor(p, requires_grad=True)
    yt = torch.tensor(y)
    out = fn(pt, yt, reduction)
    (grad,) = torch.autograd.grad(out.sum(), pt, create_graph=True)
    (hess,) = torch.autograd.grad(grad.sum(), pt)
    return out.detach().numpy(), grad.detach().numpy(), hess.numpy(force=True)


def check_against_torch(kernel, fn, y, p, reduction, params, rtol, label, hess=True, exact_hess=None):
    """Loss and gradient against torch; the Hessian against torch's double backward, or against
    `exact_hess(y, p, **params)` (per sample) where torch's double backward is itself approximate."""
    loss, grad, hess_ref = torch_peer(fn, y, p, reduction)
    if exact_hess is not None:
        hess_ref = exact_hess(y, p, **params) / (len(p) if reduction == "mean" else 1)
    result = kernel(reduction)(y, p, **params)
    if reduction == "none":
        assert isinstance(result.loss, np.ndarray), f"{label}: reduction 'none' must give an array"
    else:
        assert isinstance(result.loss, float), f"{label}: reduction {reduction!r} must give a float"
    assert_close(result.loss, loss, rtol, f"{label} loss ({reduction})")
    assert_close(result.grad, grad, rtol, f"{label} d/dp ({reduction})")
    if hess:
        assert_hessian_close(result.hess, hess_ref, rtol, f"{label} d2/dp2 ({reduction})")


# --------------------------------------------------------------------------------------------
# torch peers


def torchvision_sigmoid_focal_loss(inputs, targets, alpha: float = 0.25, gamma: float = 2, reduction: str = "none"):
    """torchvision.ops.sigmoid_focal_loss, copied from its published source (torchvision >= 0.8)."""
    p = torch.sigmoid(inputs)
    ce_loss = F.binary_cross_entropy_with_logits(inputs, targets, reduction="none")
    p_t = p * targets + (1 - p) * (1 - targets)
    loss = ce_loss * ((1 - p_t) ** gamma)
    if alpha >= 0:
        alpha_t = alpha * targets + (1 - alpha) * (1 - targets)
        loss = alpha_t * loss
    if reduction == "none":
        pass
    elif reduction == "mean":
        loss = loss.mean()
    elif reduction == "sum":
        loss = loss.sum()
    return loss


def _regression_inputs(rng, name):
    return draw(rng, name, "y", -5, 5), draw(rng, name, "p", -5, 5)


def _logit_inputs(rng, name, bound=5.0):
    # Logits within +-5: torch computes (1 - y)*x - log_sigmoid(x), which cancels for very
    # negative x, and torchvision's 1 - p_t cancels for large |x|; here both keep ~14 digits.
    y = soft_and_hard_labels(rng)
    assert_in_domain(name, "y", y)
    return y, draw(rng, name, "p", -bound, bound)


def _hard_logit_inputs(rng, name, bound):
    # Exact {0, 1} labels: with a soft label y close to sigmoid(x), sigmoid(x) - y has no correct
    # float32 digits, in torch or anywhere.
    y = rng.integers(0, 2, N).astype(np.float64)
    return y, draw(rng, name, "p", -bound, bound)


def _probability_inputs(rng, name):
    # Away from 0 and 1, so torch's clamp of log at -100 and its 1e-12 floor in the gradient's
    # denominator never act.
    y = soft_and_hard_labels(rng)
    assert_in_domain(name, "y", y)
    return y, draw(rng, name, "p", 0.01, 0.99)


def _count_inputs(rng, name, top=8.0):
    y = np.concatenate([rng.poisson(min(top, 2.0), N // 2).clip(0, top), rng.uniform(0.0, top, N - N // 2)])
    assert_in_domain(name, "y", y)
    return y, draw(rng, name, "p", -3, 3)


def _bce_hessian(y, p):
    # torch's double backward of binary_cross_entropy divides by max(p*(1 - p), 1e-12) - style
    # guarded terms and is off by ~1e-11 relative; this is the exact second derivative.
    return y / p**2 + (1 - y) / (1 - p) ** 2


class TorchCase(NamedTuple):
    id: str
    name: str  # catalog name
    params: dict  # passed to the lossgen kernel
    fn: Callable  # fn(p, y, reduction) -> tensor, the same parameters given to torch
    inputs: Callable  # inputs(rng, name) -> (y, p), float64
    exact_hess: Callable | None = None  # replaces torch's double backward where that is approximate
    float32_inputs: Callable | None = None  # well-conditioned in float32: run the float32 check too


def _pos_weighted(pos_weight):
    return lambda p, y, r: F.binary_cross_entropy_with_logits(p, y, reduction=r, pos_weight=torch.tensor(pos_weight, dtype=p.dtype))


def _focal(**kwargs):
    return lambda p, y, r: torchvision_sigmoid_focal_loss(p, y, reduction=r, **kwargs)


TORCH_CASES = [
    TorchCase("squared_error", "squared_error", {}, lambda p, y, r: F.mse_loss(p, y, reduction=r), _regression_inputs,
              float32_inputs=_regression_inputs),
    TorchCase("absolute_error", "absolute_error", {}, lambda p, y, r: F.l1_loss(p, y, reduction=r), _regression_inputs),
    TorchCase("huber-default", "huber", {}, lambda p, y, r: F.huber_loss(p, y, reduction=r), _regression_inputs),
    TorchCase("huber-delta=2", "huber", {"delta": 2.0}, lambda p, y, r: F.huber_loss(p, y, reduction=r, delta=2.0), _regression_inputs,
              float32_inputs=_regression_inputs),
    TorchCase("huber-delta=0.3", "huber", {"delta": 0.3}, lambda p, y, r: F.huber_loss(p, y, reduction=r, delta=0.3), _regression_inputs),
    TorchCase("smooth_l1-default", "smooth_l1", {}, lambda p, y, r: F.smooth_l1_loss(p, y, reduction=r), _regression_inputs),
    TorchCase("smooth_l1-beta=0.5", "smooth_l1", {"beta": 0.5}, lambda p, y, r: F.smooth_l1_loss(p, y, reduction=r, beta=0.5),
              _regression_inputs, float32_inputs=_regression_inputs),
    TorchCase("smooth_l1-beta=3", "smooth_l1", {"beta": 3.0}, lambda p, y, r: F.smooth_l1_loss(p, y, reduction=r, beta=3.0), _regression_inputs),
    TorchCase("bce", "bce", {}, lambda p, y, r: F.binary_cross_entropy(p, y, reduction=r), _probability_inputs, exact_hess=_bce_hessian,
              float32_inputs=_probability_inputs),
    # float32: logits within +-2, where torch's (1 - y)*x - log_sigmoid(x) keeps ~6 digits.
    TorchCase("bce_with_logits", "bce_with_logits", {}, lambda p, y, r: F.binary_cross_entropy_with_logits(p, y, reduction=r),
              _logit_inputs, float32_inputs=lambda rng, name: _hard_logit_inputs(rng, name, bound=2.0)),
    TorchCase("weighted_bce_with_logits-default", "weighted_bce_with_logits", {}, _pos_weighted(1.0), _logit_inputs),
    TorchCase("weighted_bce_with_logits-pos_weight=3", "weighted_bce_with_logits", {"pos_weight": 3.0}, _pos_weighted(3.0), _logit_inputs),
    TorchCase("weighted_bce_with_logits-pos_weight=0.25", "weighted_bce_with_logits", {"pos_weight": 0.25}, _pos_weighted(0.25),
              _logit_inputs),
    # float32: y <= 2 < e keeps exp(p) - y*p away from 0, where float32 cancellation would dominate.
    TorchCase("poisson", "poisson", {}, lambda p, y, r: F.poisson_nll_loss(p, y, log_input=True, full=False, reduction=r),
              _count_inputs, float32_inputs=lambda rng, name: _count_inputs(rng, name, top=2.0)),
    # float32: logits within +-1.5, where torchvision's 1 - p_t keeps ~6 digits.
    TorchCase("focal-default", "focal", {}, _focal(), _logit_inputs, float32_inputs=lambda rng, name: _logit_inputs(rng, name, bound=1.5)),
    TorchCase("focal-alpha=0.75,gamma=1.5", "focal", {"alpha": 0.75, "gamma": 1.5}, _focal(alpha=0.75, gamma=1.5), _logit_inputs),
    TorchCase("focal-alpha=0.5,gamma=0", "focal", {"alpha": 0.5, "gamma": 0.0}, _focal(alpha=0.5, gamma=0.0), _logit_inputs),
    TorchCase("focal-alpha=0,gamma=3", "focal", {"alpha": 0.0, "gamma": 3.0}, _focal(alpha=0.0, gamma=3.0), _logit_inputs),
]
FLOAT32_CASES = [case for case in TORCH_CASES if case.float32_inputs is not None]


@pytest.mark.parametrize("reduction", ["none", "mean"])
@pytest.mark.parametrize("case", TORCH_CASES, ids=[case.id for case in TORCH_CASES])
def test_float64_matches_torch_loss_gradient_and_hessian(kernel, case, reduction):
    y, p = case.inputs(rng_for(case.name, case.params), case.name)
    check_against_torch(
        lambda r: kernel(case.name, r), case.fn, y, p, reduction, case.params, RTOL64, f"{case.id} vs torch",
        exact_hess=case.exact_hess,
    )


@pytest.mark.parametrize("case", [c for c in TORCH_CASES if c.name in ("huber", "smooth_l1")], ids=lambda c: c.id)
def test_torch_inputs_reach_both_pieces_of_piecewise_losses(case):
    """The random inputs of the torch comparisons exercise both branches, so a wrong switch point fails."""
    width = case.params.get("delta", case.params.get("beta", 1.0))
    y, p = case.inputs(rng_for(case.name, case.params), case.name)
    r = np.abs(p - y)
    assert np.sum(r < width) > 50 and np.sum(r > width) > 50


@pytest.mark.parametrize("reduction", ["none", "mean"])
@pytest.mark.parametrize("case", FLOAT32_CASES, ids=[case.id for case in FLOAT32_CASES])
def test_float32_matches_torch_float32(kernel, case, reduction):
    y64, p64 = case.float32_inputs(rng_for(case.name, case.params, "float32"), case.name)
    y, p = y64.astype(np.float32), p64.astype(np.float32)
    loss, grad, _ = torch_peer(case.fn, y, p, reduction)
    result = kernel(case.name, reduction, "float32")(y, p, **case.params)
    assert result.grad.dtype == np.float32 and result.hess.dtype == np.float32
    if reduction == "none":
        assert result.loss.dtype == np.float32
    assert_close(result.loss, loss, RTOL32, f"{case.id} float32 loss ({reduction})")
    assert_close(result.grad, grad, RTOL32, f"{case.id} float32 d/dp ({reduction})")


@pytest.mark.parametrize(
    "name, fn, y, p",
    [
        ("squared_error", lambda p, y, r: F.mse_loss(p, y, reduction=r), [1.5, -2.0, 0.0], [1.5, -2.0, 0.0]),
        ("absolute_error", lambda p, y, r: F.l1_loss(p, y, reduction=r), [1.5, -2.0, 0.0], [1.5, -2.0, 0.0]),
        ("huber", lambda p, y, r: F.huber_loss(p, y, reduction=r), [0.0, 0.0, 3.0, 3.0, 0.0], [1.0, -1.0, 3.0, 2.0, 0.0]),
        ("smooth_l1", lambda p, y, r: F.smooth_l1_loss(p, y, reduction=r), [0.0, 0.0, 3.0, 3.0, 0.0], [1.0, -1.0, 3.0, 2.0, 0.0]),
    ],
)
def test_loss_and_gradient_at_kinks_and_ties_match_torch(kernel, name, fn, y, p):
    """At p == y and at |p - y| == delta/beta the value and the (sub)gradient are torch's: sign(0) = 0."""
    y, p = np.array(y), np.array(p)
    check_against_torch(lambda r: kernel(name, r), fn, y, p, "none", {}, RTOL64, f"{name} at ties", hess=False)


# --------------------------------------------------------------------------------------------
# sklearn.metrics peers (means; per-sample values through multioutput="raw_values" on a 1 x n
# array, where the metric supports it), gradients against the closed-form derivative


def per_sample(metric, y, p, **kwargs):
    """A sklearn regression metric evaluated on each sample alone: one output per sample."""
    return metric(y.reshape(1, -1), p.reshape(1, -1), multioutput="raw_values", **kwargs)


@pytest.mark.parametrize("tau", [None, 0.1, 0.37, 0.9])
def test_quantile_matches_sklearn_mean_pinball_loss(kernel, tau):
    params = {} if tau is None else {"tau": tau}
    alpha = 0.5 if tau is None else tau  # lossgen's default tau is the median, sklearn's default alpha
    y, p = _regression_inputs(rng_for("quantile", tau), "quantile")
    result = kernel("quantile")(y, p, **params)
    assert_close(result.loss, per_sample(metrics.mean_pinball_loss, y, p, alpha=alpha), RTOL64, "pinball per sample")
    assert_close(kernel("quantile", "mean")(y, p, **params).loss, metrics.mean_pinball_loss(y, p, alpha=alpha), RTOL64, "pinball mean")
    assert_close(result.grad, np.where(p > y, 1.0 - alpha, -alpha), RTOL64, "pinball d/dp")
    assert_close(result.hess, np.zeros_like(p), RTOL64, "pinball d2/dp2")


def test_mape_matches_sklearn_mean_absolute_percentage_error(kernel):
    rng = rng_for("mape")
    y, p = draw(rng, "mape", "y", 0.1, 10), draw(rng, "mape", "p", -10, 10)
    result = kernel("mape")(y, p)
    assert_close(result.loss, per_sample(metrics.mean_absolute_percentage_error, y, p), RTOL64, "mape per sample")
    assert_close(kernel("mape", "mean")(y, p).loss, metrics.mean_absolute_percentage_error(y, p), RTOL64, "mape mean")
    assert_close(result.grad, np.sign(p - y) / y, RTOL64, "mape d/dp")


@pytest.mark.parametrize("low", [0.0, -0.99], ids=["nonnegative", "whole-domain"])
def test_msle_matches_sklearn_mean_squared_log_error(kernel, low):
    rng = rng_for("msle", low)
    y, p = draw(rng, "msle", "y", low, 20), draw(rng, "msle", "p", low, 20)
    result = kernel("msle")(y, p)
    assert_close(result.loss, per_sample(metrics.mean_squared_log_error, y, p), RTOL64, "msle per sample")
    assert_close(kernel("msle", "mean")(y, p).loss, metrics.mean_squared_log_error(y, p), RTOL64, "msle mean")
    assert_close(result.grad, 2 * (np.log1p(p) - np.log1p(y)) / (1 + p), RTOL64, "msle d/dp")


def test_hinge_matches_sklearn_hinge_loss(kernel):
    """sklearn.metrics.hinge_loss on labels {-1, 1} is mean(max(0, 1 - y*p))."""
    rng = rng_for("hinge")
    y, p = signs(rng), draw(rng, "hinge", "p", -3, 3)
    assert_in_domain("hinge", "y", y)
    result = kernel("hinge")(y, p)
    assert_close(kernel("hinge", "mean")(y, p).loss, metrics.hinge_loss(y, p), RTOL64, "hinge mean")
    assert_close(result.loss, np.maximum(0.0, 1.0 - y * p), RTOL64, "hinge per sample")
    assert_close(result.grad, np.where(y * p < 1, -y, 0.0), RTOL64, "hinge d/dp")
    assert np.any(y * p < 1) and np.any(y * p > 1)


def test_bce_matches_sklearn_log_loss(kernel):
    rng = rng_for("bce", "log_loss")
    y = rng.integers(0, 2, N).astype(np.float64)
    p = draw(rng, "bce", "p", 0.01, 0.99)
    assert_close(kernel("bce", "mean")(y, p).loss, metrics.log_loss(y, p), RTOL64, "bce mean vs log_loss")


# --------------------------------------------------------------------------------------------
# sklearn._loss peers: the same per-sample loss, gradient and Hessian


def _gamma_inputs(rng):
    return draw(rng, "gamma", "y", 0.05, 10), draw(rng, "gamma", "p", -3, 3)


def _tweedie_inputs(rng):
    y = draw(rng, "tweedie", "y", 0.0, 10)
    y[rng.random(N) < 0.3] = 0.0  # zero-inflated amounts, the reason to use Tweedie
    assert_in_domain("tweedie", "y", y)
    return y, draw(rng, "tweedie", "p", -3, 3)


SKLEARN_LOSS_CASES = [
    # (id, catalog name, lossgen params, sklearn loss object, inputs, half deviance(y, mu))
    (
        "gamma",
        "gamma",
        {},
        sklearn_loss.HalfGammaLoss(),
        _gamma_inputs,
        lambda y, mu: np.log(mu / y) + y / mu - 1,
    ),
    (
        "poisson",
        "poisson",
        {},
        sklearn_loss.HalfPoissonLoss(),
        lambda rng: _count_inputs(rng, "poisson"),
        lambda y, mu: xlogy(y, y / mu) - y + mu,
    ),
    *[
        (
            f"tweedie-power={power}",
            "tweedie",
            {"power": power} if power != 1.5 else {},
            sklearn_loss.HalfTweedieLoss(power=power),
            _tweedie_inputs,
            lambda y, mu, q=power: np.maximum(y, 0) ** (2 - q) / ((1 - q) * (2 - q)) - y * mu ** (1 - q) / (1 - q) + mu ** (2 - q) / (2 - q),
        )
        for power in (1.2, 1.5, 1.8)
    ],
]


@pytest.mark.parametrize(
    "name, params, peer, inputs", [case[1:5] for case in SKLEARN_LOSS_CASES], ids=[case[0] for case in SKLEARN_LOSS_CASES]
)
def test_matches_sklearn_half_loss_classes(kernel, name, params, peer, inputs):
    """sklearn's loss() drops the same constant lossgen drops, so the two are equal, not just parallel."""
    y, p = inputs(rng_for(name, params))
    result = kernel(name)(y, p, **params)
    assert_close(result.loss, peer.loss(y_true=y, raw_prediction=p), RTOL64, f"{name} vs sklearn loss()")
    assert_close(result.grad, peer.gradient(y_true=y, raw_prediction=p), RTOL64, f"{name} vs sklearn gradient()")
    grad, hess = peer.gradient_hessian(y_true=y, raw_prediction=p)
    assert_close(result.grad, grad, RTOL64, f"{name} vs sklearn gradient_hessian()[0]")
    assert_close(result.hess, hess, RTOL64, f"{name} vs sklearn gradient_hessian()[1]")
    assert_close(kernel(name, "mean")(y, p, **params).loss, peer(y_true=y, raw_prediction=p), RTOL64, f"{name} mean vs sklearn __call__")


@pytest.mark.parametrize(
    "name, params, peer, inputs, half_deviance", [case[1:] for case in SKLEARN_LOSS_CASES], ids=[case[0] for case in SKLEARN_LOSS_CASES]
)
def test_loss_is_half_deviance_minus_sklearns_constant_to_optimal_zero(kernel, name, params, peer, inputs, half_deviance):
    """loss + peer.constant_to_optimal_zero(y) is the half deviance, which is 0 at p = log(y)."""
    y, p = inputs(rng_for(name, params, "deviance"))
    constant = peer.constant_to_optimal_zero(y)
    loss = kernel(name)(y, p, **params).loss
    # Adding the constant cancels digits (the deviance is small near the optimum): 1e-9 here.
    np.testing.assert_allclose(loss + constant, half_deviance(y, np.exp(p)), rtol=1e-9, atol=1e-12)
    positive = y > 0
    at_optimum = kernel(name)(y[positive], np.log(y[positive]), **params)
    np.testing.assert_allclose(at_optimum.loss + constant[positive], 0.0, atol=1e-12)
    np.testing.assert_allclose(at_optimum.grad, 0.0, atol=1e-12)


def test_tweedie_half_deviance_mean_matches_sklearn_mean_tweedie_deviance(kernel):
    y, p = _tweedie_inputs(rng_for("tweedie", "metric"))
    peer = sklearn_loss.HalfTweedieLoss(power=1.5)
    ours = kernel("tweedie", "mean")(y, p).loss + np.mean(peer.constant_to_optimal_zero(y))
    np.testing.assert_allclose(ours, metrics.mean_tweedie_deviance(y, np.exp(p), power=1.5) / 2, rtol=1e-11)


# --------------------------------------------------------------------------------------------
# NumPy formula peers: (loss, d/dp, d2/dp2) written out by hand


def _log_cosh_inputs(rng):
    # Moderate |r| in [0.5, 8]: np.log(np.cosh(r)) loses ~eps/r**2 relative near 0 and overflows far out.
    y = draw(rng, "log_cosh", "y", -5, 5)
    r = rng.choice([-1.0, 1.0], N) * rng.uniform(0.5, 8.0, N)
    return y, y + r


def _sign_inputs(name):
    def inputs(rng):
        y = signs(rng)
        assert_in_domain(name, "y", y)
        return y, draw(rng, name, "p", -3, 3)

    return inputs


def _weight_inputs(name):
    def inputs(rng):
        return draw(rng, name, "y", -5, 5), draw(rng, name, "p", -5, 5)

    return inputs


def _pseudo_huber(y, p, delta=1.0):
    r = p - y
    s = np.sqrt(1 + (r / delta) ** 2)
    # delta**2*(s - 1) written as r**2/(s + 1): the same number without the cancellation near r = 0.
    return r**2 / (s + 1), r / s, 1 / s**3


def _epsilon_insensitive(y, p, epsilon=0.1):
    r = p - y
    return np.maximum(0.0, np.abs(r) - epsilon), np.where(np.abs(r) > epsilon, np.sign(r), 0.0), np.zeros_like(r)


def _squared_hinge(y, p):
    m = np.maximum(0.0, 1 - y * p)
    return m**2, -2 * y * m, np.where(m > 0, 2 * y**2, 0.0)


def _logistic(y, p):
    z = y * p
    return np.logaddexp(0.0, -z), -y * expit(-z), y**2 * expit(z) * expit(-z)


def _exponential(y, p):
    e = np.exp(-y * p)
    return e, -y * e, y**2 * e


NUMPY_CASES = [
    # (id, catalog name, params, reference(y, p, **params) -> (loss, grad, hess), inputs[, xfail mark])
    ("log_cosh", "log_cosh", {}, lambda y, p: (np.log(np.cosh(p - y)), np.tanh(p - y), 1 / np.cosh(p - y) ** 2), _log_cosh_inputs),
    ("pseudo_huber-default", "pseudo_huber", {}, _pseudo_huber, _weight_inputs("pseudo_huber")),
    ("pseudo_huber-delta=2.5", "pseudo_huber", {"delta": 2.5}, _pseudo_huber, _weight_inputs("pseudo_huber")),
    ("epsilon_insensitive-default", "epsilon_insensitive", {}, _epsilon_insensitive, _weight_inputs("epsilon_insensitive")),
    ("epsilon_insensitive-epsilon=0.5", "epsilon_insensitive", {"epsilon": 0.5}, _epsilon_insensitive, _weight_inputs("epsilon_insensitive")),
    ("epsilon_insensitive-epsilon=0", "epsilon_insensitive", {"epsilon": 0.0}, _epsilon_insensitive, _weight_inputs("epsilon_insensitive")),
    ("squared_hinge", "squared_hinge", {}, _squared_hinge, _sign_inputs("squared_hinge")),
    ("logistic", "logistic", {}, _logistic, _sign_inputs("logistic")),
    ("exponential", "exponential", {}, _exponential, _sign_inputs("exponential")),
    ("l1-default", "l1", {}, lambda y, p, alpha=1.0: (alpha * np.abs(p), alpha * np.sign(p), np.zeros_like(p)), _weight_inputs("l1")),
    ("l1-alpha=0.3", "l1", {"alpha": 0.3}, lambda y, p, alpha=1.0: (alpha * np.abs(p), alpha * np.sign(p), np.zeros_like(p)), _weight_inputs("l1")),
    ("l2-default", "l2", {}, lambda y, p, alpha=1.0: (alpha * p**2, 2 * alpha * p, np.full_like(p, 2 * alpha)), _weight_inputs("l2")),
    ("l2-alpha=0.01", "l2", {"alpha": 0.01}, lambda y, p, alpha=1.0: (alpha * p**2, 2 * alpha * p, np.full_like(p, 2 * alpha)), _weight_inputs("l2")),
    *[
        (
            f"elastic_net-{label}",
            "elastic_net",
            params,
            lambda y, p, alpha=1.0, l1_ratio=0.5: (
                alpha * (l1_ratio * np.abs(p) + (1 - l1_ratio) * p**2 / 2),
                alpha * (l1_ratio * np.sign(p) + (1 - l1_ratio) * p),
                np.full_like(p, alpha * (1 - l1_ratio)),
            ),
            _weight_inputs("elastic_net"),
        )
        for label, params in [("default", {}), ("alpha=2,l1_ratio=0.2", {"alpha": 2.0, "l1_ratio": 0.2}), ("l1_ratio=1", {"l1_ratio": 1.0})]
    ],
]


@pytest.mark.parametrize(
    "name, params, reference, inputs", [pytest.param(*case[1:5], id=case[0], marks=case[5:]) for case in NUMPY_CASES]
)
def test_matches_numpy_formula(kernel, name, params, reference, inputs):
    y, p = inputs(rng_for(name, params))
    loss, grad, hess = reference(y, p, **params)
    result = kernel(name)(y, p, **params)
    assert_close(result.loss, loss, RTOL64, f"{name}{params or ''} loss")
    assert_close(result.grad, grad, RTOL64, f"{name}{params or ''} d/dp")
    assert_close(result.hess, hess, RTOL64, f"{name}{params or ''} d2/dp2")
    assert_close(kernel(name, "mean")(y, p, **params).loss, np.mean(loss), RTOL64, f"{name}{params or ''} mean")


def test_penalties_ignore_the_target(kernel):
    """l1, l2 and elastic_net depend on p only: any y gives the same loss, gradient and Hessian."""
    rng = rng_for("penalties")
    p = rng.uniform(-5, 5, N)
    for name in ("l1", "l2", "elastic_net"):
        a = kernel(name)(rng.uniform(-5, 5, N), p)
        b = kernel(name)(np.zeros(N), p)
        for field in ("loss", "grad", "hess"):
            np.testing.assert_array_equal(getattr(a, field), getattr(b, field), err_msg=f"{name}.{field}")


# --------------------------------------------------------------------------------------------
# where the peers are not the reference: far out, lossgen stays accurate


def test_bce_with_logits_matches_logaddexp_on_extreme_logits(kernel):
    """On |logit| up to 50 the loss is y*softplus(-p) + (1-y)*softplus(p) to full precision
    (torch's (1-y)*p - log_sigmoid(p) cancels there), and the gradient is sigmoid(p) - y."""
    rng = rng_for("bce_with_logits", "extreme")
    y = soft_and_hard_labels(rng)
    p = rng.uniform(-50, 50, N)
    result = kernel("bce_with_logits")(y, p)
    assert_close(result.loss, y * np.logaddexp(0, -p) + (1 - y) * np.logaddexp(0, p), RTOL64, "loss")
    # sigmoid(p) - y cancels only when y is soft and close to sigmoid(p); compare per label kind.
    hard = slice(0, N // 2)
    assert_close(result.grad[hard], np.where(y[hard] == 1, -expit(-p[hard]), expit(p[hard])), RTOL64, "d/dp (hard labels)")
    assert_close(result.hess, expit(p) * expit(-p), RTOL64, "d2/dp2")


def test_bce_does_not_clamp_log_at_minus_100_unlike_torch(kernel):
    """The documented difference from torch: -log(p) is not capped at 100."""
    y = np.array([1.0, 0.0, 1.0])
    p = np.array([1e-50, 1 - 1e-15, 0.3])
    result = kernel("bce")(y, p)
    expected = np.array([-math.log(1e-50), -math.log1p(-(1 - 1e-15)), -math.log(0.3)])
    assert_close(result.loss, expected, RTOL64, "bce far from the clamp")
    clamped = F.binary_cross_entropy(torch.tensor(p), torch.tensor(y), reduction="none").numpy()
    assert clamped[0] == 100.0 and result.loss[0] > 115


def test_log_cosh_is_accurate_near_zero_and_far_out(kernel):
    """log(cosh(r)) = r**2/2 - r**4/12 + ... near 0 and |r| - log(2) + log1p(exp(-2|r|)) far out."""
    r = np.array([1e-8, -3e-5, 1e-3, 800.0, -1000.0])
    y = np.zeros_like(r)
    result = kernel("log_cosh")(y, r)
    small = r[:3]
    big = r[3:]
    expected = np.concatenate([small**2 / 2 - small**4 / 12 + small**6 / 45, np.abs(big) - math.log(2.0)])
    assert_close(result.loss, expected, RTOL64, "log_cosh")
    assert_close(result.grad, np.tanh(r), RTOL64, "tanh")


def test_pseudo_huber_is_accurate_near_zero_and_far_out(kernel):
    """delta**2*(sqrt(1 + (r/delta)**2) - 1) is r**2/(s + 1) with s = sqrt(1 + (r/delta)**2), and its
    Hessian is 1/s**3: both have full relative precision at every r."""
    r = np.array([1e-8, 1e-5, 1e-3, 1e2, 1e4, 1e6])
    s = np.sqrt(1 + r**2)
    result = kernel("pseudo_huber")(np.zeros_like(r), r)
    assert_close(result.loss, r**2 / (s + 1), RTOL64, "pseudo_huber loss")
    assert_close(result.grad, r / s, RTOL64, "pseudo_huber d/dp")
    assert_close(result.hess, 1 / s**3, RTOL64, "pseudo_huber d2/dp2")


# --------------------------------------------------------------------------------------------
# cross_entropy: named by the contract; checked once a catalog entry exists


def _cross_entropy_or_skip():
    if "cross_entropy" not in lg.catalog():
        pytest.skip("the catalog has no cross_entropy yet")


@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"class_weight": [0.2, 1.0, 3.0, 0.7, 1.5]},
        {"ignore_index": 2},
        {"label_smoothing": 0.1},
        {"class_weight": [0.2, 1.0, 3.0, 0.7, 1.5], "ignore_index": 2, "label_smoothing": 0.1},
    ],
    ids=["plain", "class_weight", "ignore_index", "label_smoothing", "all"],
)
def test_cross_entropy_matches_torch_cross_entropy_loss(kernel, kwargs, reduction):
    _cross_entropy_or_skip()
    rng = rng_for("cross_entropy", kwargs)
    rows, classes = 200, 5
    logits = rng.normal(0.0, 3.0, (rows, classes))
    labels = rng.integers(0, classes, rows)
    peer_kwargs = dict(kwargs)
    if "class_weight" in peer_kwargs:
        peer_kwargs["weight"] = torch.tensor(peer_kwargs.pop("class_weight"), dtype=torch.float64)
    pt = torch.tensor(logits, requires_grad=True)
    out = F.cross_entropy(pt, torch.tensor(labels), reduction=reduction, **peer_kwargs)
    (grad,) = torch.autograd.grad(out.sum(), pt)
    ours_kwargs = {k: (np.array(v) if k == "class_weight" else v) for k, v in kwargs.items()}
    result = kernel("cross_entropy", reduction)(labels, logits, **ours_kwargs)
    assert_close(result.loss, out.detach().numpy(), RTOL64, f"cross_entropy{kwargs} loss ({reduction})")
    assert_close(result.grad, grad.numpy(), RTOL64, f"cross_entropy{kwargs} d/dp ({reduction})")
