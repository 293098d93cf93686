"""Transforms applied after the reduction (RMSE is sqrt of the mean squared error).

Each transform T gives its value and first two derivatives at the reduced loss L, so the
kernel's gradient and Hessian diagonal of T(L) are exact: T'(L)*dL and T''(L)*dL**2 + T'(L)*d2L.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Transform:
    """A scalar function of the reduced loss with its first and second derivatives."""

    name: str
    value: Callable[[float], float]
    first: Callable[[float], float]
    second: Callable[[float], float]


def _sqrt_first(x):
    return 0.5 / math.sqrt(x) if x > 0 else math.inf


def _sqrt_second(x):
    return -0.25 / x**1.5 if x > 0 else -math.inf


TRANSFORMS: dict[str, Transform] = {
    "sqrt": Transform("sqrt", lambda x: math.sqrt(x) if x >= 0 else math.nan, _sqrt_first, _sqrt_second),
}


def apply_transform(name: str, loss: float, grads: tuple, hesses: tuple) -> tuple:
    """(T(L), grads*T'(L), T''(L)*grads**2 + T'(L)*hesses), arrays updated in place."""
    transform = TRANSFORMS[name]
    first, second = transform.first(loss), transform.second(loss)
    for g, h in zip(grads, hesses):
        h *= first
        h += second * g * g
        g *= first
    return transform.value(loss), grads, hesses
