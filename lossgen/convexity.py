"""Convexity: the Convexity verdict type and the analyses that decide it.

A verdict other than "unknown" must be a proof. Analyses are registered in ANALYSES and tried
cheapest first; each may answer None ("cannot decide"), and the first decision wins.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

VERDICTS = ("affine", "convex", "concave", "neither", "unknown")


@dataclass(frozen=True)
class Convexity:
    """Convexity of a loss in its wrt inputs jointly.

    verdict: "affine", "convex", "concave", "neither" or "unknown".
    method: the analysis that decided it. certificate: a readable proof (affine/convex/concave).
    counterexample: input and param values showing convexity fails (concave/neither).
    """

    verdict: str
    method: str
    certificate: str | None = None
    counterexample: Mapping[str, float] | None = field(default=None)

    def __post_init__(self):
        if self.verdict not in VERDICTS:
            raise ValueError(f"verdict must be one of {VERDICTS}, got {self.verdict!r}")


# Each analysis takes (loss, fixed values) and returns a Convexity or None when it cannot decide.
ANALYSES: list[tuple[str, Callable]] = []


def analyze_convexity(loss, fixed: Mapping[str, float]) -> Convexity:
    """Run the registered analyses in order; "unknown" when none can decide."""
    for name in fixed:
        if name not in loss.spec.symbols:
            from .errors import SpecError

            raise SpecError(f"convexity: {name!r} is not an input or param of {loss.name!r}")
    for _name, analysis in ANALYSES:
        verdict = analysis(loss, fixed)
        if verdict is not None:
            return verdict
    return Convexity("unknown", "none", None, None)
