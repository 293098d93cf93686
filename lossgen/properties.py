"""Properties: the facts people choose a loss by, each proved or reported unknown."""

from __future__ import annotations

from dataclasses import dataclass

from .convexity import Convexity


@dataclass(frozen=True)
class LossProperties:
    """Proved properties of a loss in its wrt inputs; "unknown"/None where not proved."""

    convexity: Convexity
    smoothness: str = "unknown"
    kinks: tuple[str, ...] = ()
    hessian_sign: str = "unknown"
    hessian_constant: bool | None = None
    grad_bound: float | None = None
    bounded_below: bool | None = None


def analyze_properties(loss) -> LossProperties:
    """Properties of `loss`; analyses beyond convexity are added by later stages."""
    return LossProperties(convexity=loss.convexity())
