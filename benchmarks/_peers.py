"""Peer implementations of every elementwise catalog loss, for benchmarks/bench_elementwise.py.

For each loss (catalog name, default parameters as keyword arguments) this module has:

  make_inputs   arrays drawn from the loss's domain: the (y, p) a user of that loss would pass.
  NUMPY         name -> fn(y, p, **params) -> (loss, grad, hess) per sample, closed forms written with
                NumPy array ops (stable forms: logaddexp, tanh-based sigmoid, log1p).
  torch_losses  name -> fn(y, p, **params) -> mean loss tensor: torch.nn.functional built-ins where
                one exists, else the formula in torch ops (autograd gives the gradient).
  jax_losses    name -> fn(p, y, **params) -> mean loss: optax's formula where optax has the loss,
                else the formula in jax.numpy (jax.value_and_grad gives the gradient).

Every peer computes the same mean loss as lossgen's kernel with reduction="mean"; the benchmark and
tests/test_bench_smoke.py check that they agree before anything is timed. Nothing here imports torch
or JAX: the caller passes the modules in, so that either may be absent.
"""

from __future__ import annotations

import math

import numpy as np

import lossgen as lg

# --------------------------------------------------------------------------------------------------
# Which losses: elementwise ones (one value per sample, no class axis, no transform of the reduced
# loss, one wrt input). Row-wise losses (cross_entropy, dice, kl_div, ...) and rmse (a sqrt of the
# mean) are benchmarked by bench_rowwise.py or not at all.


def is_elementwise(loss) -> bool:
    spec = loss.spec
    return (
        not loss.rowwise
        and set(loss.roles.values()) <= {"sample"}
        and spec.transform is None
        and spec.normalizer is None
        and len(loss.wrt) == 1
    )


def elementwise_names() -> list[str]:
    """The elementwise catalog losses, in catalog order."""
    return [name for name, loss in lg.catalog().items() if is_elementwise(loss)]


# --------------------------------------------------------------------------------------------------
# Inputs


def _labels01(rng, n):
    return (rng.random(n) < 0.5).astype(np.float64)


def _signs(rng, n):
    return np.where(rng.random(n) < 0.5, -1.0, 1.0)


def _regression(rng, n):
    return rng.normal(0.0, 1.0, n), rng.normal(0.0, 1.0, n)


def _logits(rng, n):
    return _labels01(rng, n), rng.normal(0.0, 3.0, n)


def _margins(rng, n):
    return _signs(rng, n), rng.normal(0.0, 1.0, n)


def _mape(rng, n):
    y = np.exp(rng.normal(0.0, 0.5, n))  # > 0, bounded away from 0 in practice
    return y, y * (1.0 + rng.normal(0.0, 0.3, n))


def _msle(rng, n):
    return np.exp(rng.normal(0.0, 1.0, n)), np.exp(rng.normal(0.0, 1.0, n))


def _poisson(rng, n):
    return rng.poisson(2.0, n).astype(np.float64), rng.normal(0.5, 1.0, n)  # counts, log-means


def _gamma(rng, n):
    return np.exp(rng.normal(0.0, 1.0, n)), rng.normal(0.0, 1.0, n)  # y > 0, log-means


def _tweedie(rng, n):
    y = np.where(rng.random(n) < 0.3, 0.0, np.exp(rng.normal(0.0, 1.0, n)))  # zero-inflated amounts
    return y, rng.normal(0.0, 1.0, n)


def _probabilities(rng, n):
    return _labels01(rng, n), rng.uniform(0.005, 0.995, n)


# name -> inputs(rng, n) -> (y, p) in float64. The catalog's domain facts: mape y > 0; msle y, p > -1;
# poisson and tweedie y >= 0; gamma y > 0; bce y in [0, 1], p in (0, 1); labels in [0, 1] for the
# logit losses and in [-1, 1] (here exactly -1 or 1) for the margin losses.
INPUTS = {
    "squared_error": _regression,
    "absolute_error": _regression,
    "huber": _regression,
    "smooth_l1": _regression,
    "pseudo_huber": _regression,
    "log_cosh": _regression,
    "quantile": _regression,
    "epsilon_insensitive": _regression,
    "mape": _mape,
    "msle": _msle,
    "poisson": _poisson,
    "gamma": _gamma,
    "tweedie": _tweedie,
    "bce": _probabilities,
    "bce_with_logits": _logits,
    "weighted_bce_with_logits": _logits,
    "focal": _logits,
    "hinge": _margins,
    "squared_hinge": _margins,
    "logistic": _margins,
    "exponential": _margins,
    "l1": _regression,  # y is unused by the penalties
    "l2": _regression,
    "elastic_net": _regression,
}


def _from_domain(loss, rng, n):
    """Inputs of a loss without a hand-written generator: each input drawn from its declared domain
    (the two ends of a closed interval, as labels; uniform inside another bounded one; low end +
    lognormal on a half line; N(0, 1) on the real line)."""
    arrays = []
    for input_name in loss.inputs:
        interval = loss.domain[input_name]
        lo, hi = float(interval.start), float(interval.end)
        if math.isfinite(lo) and math.isfinite(hi):
            if not interval.left_open and not interval.right_open:
                x = np.where(rng.random(n) < 0.5, lo, hi)
            else:
                x = lo + (hi - lo) * rng.uniform(0.01, 0.99, n)
        elif math.isfinite(lo):
            x = lo + np.exp(rng.normal(0.0, 1.0, n))
        elif math.isfinite(hi):
            x = hi - np.exp(rng.normal(0.0, 1.0, n))
        else:
            x = rng.normal(0.0, 1.0, n)
        arrays.append(x)
    return arrays


def make_inputs(name: str, n: int, dtype: str, seed: int = 0) -> tuple[np.ndarray, ...]:
    """The loss's arrays, in its input order, of the given dtype."""
    rng = np.random.default_rng(seed)
    loss = lg.get(name)
    if name in INPUTS and tuple(loss.inputs) == ("y", "p"):
        arrays = INPUTS[name](rng, n)
    else:
        arrays = _from_domain(loss, rng, n)
    return tuple(np.ascontiguousarray(a, dtype=dtype) for a in arrays)


# --------------------------------------------------------------------------------------------------
# NumPy: per-sample loss, gradient and Hessian diagonal in closed form


def _sigmoid(x):
    # 0.5 * (1 + tanh(x / 2)) never overflows, unlike 1 / (1 + exp(-x)).
    return 0.5 * (1.0 + np.tanh(0.5 * x))


def _softplus(x):
    return np.logaddexp(0.0, x)


def np_squared_error(y, p):
    r = p - y
    return r * r, 2.0 * r, np.full_like(p, 2.0)


def np_absolute_error(y, p):
    r = p - y
    return np.abs(r), np.sign(r), np.zeros_like(p)


def np_huber(y, p, delta=1.0):
    r = p - y
    a = np.abs(r)
    inside = a <= delta
    loss = np.where(inside, 0.5 * r * r, delta * (a - 0.5 * delta))
    return loss, np.clip(r, -delta, delta), inside.astype(p.dtype)


def np_smooth_l1(y, p, beta=1.0):
    r = p - y
    a = np.abs(r)
    inside = a < beta
    loss = np.where(inside, 0.5 * r * r / beta, a - 0.5 * beta)
    grad = np.where(inside, r / beta, np.sign(r))
    return loss, grad, np.where(inside, 1.0 / beta, 0.0).astype(p.dtype)


def np_pseudo_huber(y, p, delta=1.0):
    r = p - y
    s = np.sqrt(1.0 + (r / delta) ** 2)
    # delta**2 (s - 1) written as r**2 / (s + 1): the same number without the cancellation near 0.
    return r * r / (s + 1.0), r / s, 1.0 / (s * s * s)


def np_log_cosh(y, p):
    r = p - y
    a = np.abs(r)
    # log(cosh(r)) = |r| + log1p(exp(-2|r|)) - log 2, finite for every r.
    loss = a + np.log1p(np.exp(-2.0 * a)) - math.log(2.0)
    grad = np.tanh(r)
    return loss, grad, 1.0 - grad * grad


def np_quantile(y, p, tau=0.5):
    r = y - p
    loss = np.maximum(tau * r, (tau - 1.0) * r)
    return loss, np.where(p > y, 1.0 - tau, -tau).astype(p.dtype), np.zeros_like(p)


def np_epsilon_insensitive(y, p, epsilon=0.1):
    r = p - y
    a = np.abs(r)
    return np.maximum(0.0, a - epsilon), np.where(a > epsilon, np.sign(r), 0.0).astype(p.dtype), np.zeros_like(p)


def np_mape(y, p):
    r = p - y
    ay = np.abs(y)
    return np.abs(r) / ay, np.sign(r) / ay, np.zeros_like(p)


def np_msle(y, p):
    d = np.log1p(p) - np.log1p(y)
    q = 1.0 + p
    return d * d, 2.0 * d / q, 2.0 * (1.0 - d) / (q * q)


def np_poisson(y, p):
    e = np.exp(p)
    return e - y * p, e - y, e


def np_gamma(y, p):
    e = y * np.exp(-p)
    return e + p, 1.0 - e, e


def np_tweedie(y, p, power=1.5):
    a, b = 2.0 - power, 1.0 - power
    ea, eb = np.exp(a * p), y * np.exp(b * p)
    return ea / a - eb / b, ea - eb, a * ea - b * eb


def np_bce(y, p):
    q = 1.0 - p
    loss = -(y * np.log(p) + (1.0 - y) * np.log1p(-p))
    return loss, -y / p + (1.0 - y) / q, y / (p * p) + (1.0 - y) / (q * q)


def np_bce_with_logits(y, p):
    loss = _softplus(p) - y * p  # softplus(p) - y p = y softplus(-p) + (1 - y) softplus(p)
    s = _sigmoid(p)
    return loss, s - y, s * (1.0 - s)


def np_weighted_bce_with_logits(y, p, pos_weight=1.0):
    s = _sigmoid(p)
    wy = pos_weight * y
    loss = wy * _softplus(-p) + (1.0 - y) * _softplus(p)
    return loss, wy * (s - 1.0) + (1.0 - y) * s, (wy + 1.0 - y) * s * (1.0 - s)


def np_focal(y, p, alpha=0.25, gamma=2.0):
    s = _sigmoid(p)
    ds = s * (1.0 - s)
    ce = _softplus(p) - y * p
    ce1 = s - y
    q = y + s * (1.0 - 2.0 * y)  # 1 - p_t
    q1 = ds * (1.0 - 2.0 * y)
    q2 = q1 * (1.0 - 2.0 * s)
    at = alpha * y + (1.0 - alpha) * (1.0 - y)
    qg = q**gamma
    qg1 = gamma * q ** (gamma - 1.0)
    qg2 = gamma * (gamma - 1.0) * q ** (gamma - 2.0)
    loss = at * ce * qg
    grad = at * (ce1 * qg + ce * qg1 * q1)
    hess = at * (ds * qg + 2.0 * ce1 * qg1 * q1 + ce * (qg2 * q1 * q1 + qg1 * q2))
    return loss, grad, hess


def np_hinge(y, p):
    m = 1.0 - y * p
    return np.maximum(0.0, m), np.where(m > 0.0, -y, 0.0).astype(p.dtype), np.zeros_like(p)


def np_squared_hinge(y, p):
    m = np.maximum(0.0, 1.0 - y * p)
    return m * m, -2.0 * y * m, np.where(m > 0.0, 2.0 * y * y, 0.0).astype(p.dtype)


def np_logistic(y, p):
    z = y * p
    s = _sigmoid(z)
    return _softplus(-z), -y * (1.0 - s), y * y * s * (1.0 - s)


def np_exponential(y, p):
    e = np.exp(-y * p)
    return e, -y * e, y * y * e


def np_l1(y, p, alpha=1.0):
    return alpha * np.abs(p), alpha * np.sign(p), np.zeros_like(p)


def np_l2(y, p, alpha=1.0):
    return alpha * p * p, 2.0 * alpha * p, np.full_like(p, 2.0 * alpha)


def np_elastic_net(y, p, alpha=1.0, l1_ratio=0.5):
    loss = alpha * (l1_ratio * np.abs(p) + 0.5 * (1.0 - l1_ratio) * p * p)
    grad = alpha * (l1_ratio * np.sign(p) + (1.0 - l1_ratio) * p)
    return loss, grad, np.full_like(p, alpha * (1.0 - l1_ratio))


NUMPY = {name: globals()[f"np_{name}"] for name in INPUTS}


# --------------------------------------------------------------------------------------------------
# PyTorch: the mean loss (autograd gives its gradient)


def torch_losses(torch) -> dict:
    F = torch.nn.functional
    log2 = math.log(2.0)
    pos_weights = {}

    def pos_weight_tensor(value, dtype):
        key = (value, dtype)
        if key not in pos_weights:  # made once, not on every call
            pos_weights[key] = torch.tensor(value, dtype=dtype)
        return pos_weights[key]

    def focal(y, p, alpha=0.25, gamma=2.0):
        # torchvision.ops.sigmoid_focal_loss, reduction="mean"
        prob = torch.sigmoid(p)
        ce = F.binary_cross_entropy_with_logits(p, y, reduction="none")
        p_t = prob * y + (1 - prob) * (1 - y)
        loss = ce * ((1 - p_t) ** gamma)
        alpha_t = alpha * y + (1 - alpha) * (1 - y)
        return (alpha_t * loss).mean()

    def tweedie(y, p, power=1.5):
        a, b = 2.0 - power, 1.0 - power
        return (torch.exp(a * p) / a - y * torch.exp(b * p) / b).mean()

    return {
        "squared_error": lambda y, p: F.mse_loss(p, y),
        "absolute_error": lambda y, p: F.l1_loss(p, y),
        "huber": lambda y, p, delta=1.0: F.huber_loss(p, y, delta=delta),
        "smooth_l1": lambda y, p, beta=1.0: F.smooth_l1_loss(p, y, beta=beta),
        "pseudo_huber": lambda y, p, delta=1.0: (delta**2 * (torch.sqrt(1 + ((p - y) / delta) ** 2) - 1)).mean(),
        "log_cosh": lambda y, p: ((p - y) + F.softplus(-2.0 * (p - y)) - log2).mean(),
        "quantile": lambda y, p, tau=0.5: torch.maximum(tau * (y - p), (tau - 1) * (y - p)).mean(),
        "epsilon_insensitive": lambda y, p, epsilon=0.1: F.relu(torch.abs(p - y) - epsilon).mean(),
        "mape": lambda y, p: (torch.abs(p - y) / torch.abs(y)).mean(),
        "msle": lambda y, p: ((torch.log1p(p) - torch.log1p(y)) ** 2).mean(),
        "poisson": lambda y, p: F.poisson_nll_loss(p, y, log_input=True, full=False),
        "gamma": lambda y, p: (y * torch.exp(-p) + p).mean(),
        "tweedie": tweedie,
        "bce": lambda y, p: F.binary_cross_entropy(p, y),
        "bce_with_logits": lambda y, p: F.binary_cross_entropy_with_logits(p, y),
        "weighted_bce_with_logits": lambda y, p, pos_weight=1.0: F.binary_cross_entropy_with_logits(
            p, y, pos_weight=pos_weight_tensor(pos_weight, p.dtype)
        ),
        "focal": focal,
        "hinge": lambda y, p: F.relu(1 - y * p).mean(),
        "squared_hinge": lambda y, p: (F.relu(1 - y * p) ** 2).mean(),
        "logistic": lambda y, p: F.soft_margin_loss(p, y),  # mean of log(1 + exp(-y p))
        "exponential": lambda y, p: torch.exp(-y * p).mean(),
        "l1": lambda y, p, alpha=1.0: alpha * p.abs().mean(),
        "l2": lambda y, p, alpha=1.0: alpha * (p * p).mean(),
        "elastic_net": lambda y, p, alpha=1.0, l1_ratio=0.5: (
            alpha * (l1_ratio * p.abs() + (1 - l1_ratio) * p * p / 2)
        ).mean(),
    }


# --------------------------------------------------------------------------------------------------
# JAX: the mean loss of (p, y) (jax.value_and_grad takes the first argument)


def jax_losses(jax, jnp) -> dict:
    log_sigmoid = jax.nn.log_sigmoid
    log2 = math.log(2.0)

    def huber(p, y, delta=1.0):
        # optax.huber_loss
        a = jnp.abs(p - y)
        quadratic = jnp.minimum(a, delta)
        return jnp.mean(0.5 * quadratic**2 + delta * (a - quadratic))

    def smooth_l1(p, y, beta=1.0):
        # optax.huber_loss(delta=beta) / beta, as torch's smooth_l1_loss
        a = jnp.abs(p - y)
        quadratic = jnp.minimum(a, beta)
        return jnp.mean(0.5 * quadratic**2 + beta * (a - quadratic)) / beta

    def sigmoid_binary_cross_entropy(p, y):
        # optax.sigmoid_binary_cross_entropy
        return -y * log_sigmoid(p) - (1.0 - y) * log_sigmoid(-p)

    def focal(p, y, alpha=0.25, gamma=2.0):
        # optax.sigmoid_focal_loss
        prob = jax.nn.sigmoid(p)
        ce = sigmoid_binary_cross_entropy(p, y)
        p_t = prob * y + (1.0 - prob) * (1.0 - y)
        loss = ce * ((1.0 - p_t) ** gamma)
        alpha_t = alpha * y + (1.0 - alpha) * (1.0 - y)
        return jnp.mean(alpha_t * loss)

    def tweedie(p, y, power=1.5):
        a, b = 2.0 - power, 1.0 - power
        return jnp.mean(jnp.exp(a * p) / a - y * jnp.exp(b * p) / b)

    return {
        "squared_error": lambda p, y: jnp.mean((p - y) ** 2),  # optax.squared_error
        "absolute_error": lambda p, y: jnp.mean(jnp.abs(p - y)),
        "huber": huber,
        "smooth_l1": smooth_l1,
        "pseudo_huber": lambda p, y, delta=1.0: jnp.mean(delta**2 * (jnp.sqrt(1.0 + ((p - y) / delta) ** 2) - 1.0)),
        "log_cosh": lambda p, y: jnp.mean(jnp.logaddexp(p - y, y - p) - log2),  # optax.log_cosh
        "quantile": lambda p, y, tau=0.5: jnp.mean(jnp.maximum(tau * (y - p), (tau - 1.0) * (y - p))),
        "epsilon_insensitive": lambda p, y, epsilon=0.1: jnp.mean(jnp.maximum(0.0, jnp.abs(p - y) - epsilon)),
        "mape": lambda p, y: jnp.mean(jnp.abs(p - y) / jnp.abs(y)),
        "msle": lambda p, y: jnp.mean((jnp.log1p(p) - jnp.log1p(y)) ** 2),
        "poisson": lambda p, y: jnp.mean(jnp.exp(p) - y * p),
        "gamma": lambda p, y: jnp.mean(y * jnp.exp(-p) + p),
        "tweedie": tweedie,
        "bce": lambda p, y: jnp.mean(-(y * jnp.log(p) + (1.0 - y) * jnp.log1p(-p))),
        "bce_with_logits": lambda p, y: jnp.mean(sigmoid_binary_cross_entropy(p, y)),
        "weighted_bce_with_logits": lambda p, y, pos_weight=1.0: jnp.mean(
            -pos_weight * y * log_sigmoid(p) - (1.0 - y) * log_sigmoid(-p)
        ),
        "focal": focal,
        "hinge": lambda p, y: jnp.mean(jnp.maximum(0.0, 1.0 - p * y)),  # optax.hinge_loss
        "squared_hinge": lambda p, y: jnp.mean(jnp.maximum(0.0, 1.0 - p * y) ** 2),
        "logistic": lambda p, y: jnp.mean(jax.nn.softplus(-y * p)),
        "exponential": lambda p, y: jnp.mean(jnp.exp(-y * p)),
        "l1": lambda p, y, alpha=1.0: alpha * jnp.mean(jnp.abs(p)),
        "l2": lambda p, y, alpha=1.0: alpha * jnp.mean(p * p),
        "elastic_net": lambda p, y, alpha=1.0, l1_ratio=0.5: alpha
        * jnp.mean(l1_ratio * jnp.abs(p) + (1.0 - l1_ratio) * p * p / 2.0),
    }
