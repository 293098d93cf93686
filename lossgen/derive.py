"""Derive: gradient and Hessian of a loss with SymPy, as almost-everywhere derivatives.

At a kink the derivative of Abs, sign, Max and Min is the mean of the two one-sided
derivatives (sign(0) = 0, Heaviside(0) = 1/2); a Piecewise uses the derivative of the branch
whose condition holds at that point. DiracDelta (the derivative of a jump) is zero almost
everywhere and never reaches generated code.
"""

from __future__ import annotations

from collections.abc import Sequence

import sympy as sp

from .budget import shared_has, shared_replace
from .errors import CodegenError


def _almost_everywhere(expr: sp.Expr) -> sp.Expr:
    # shared_replace/shared_has give Basic.replace/has's results, but visit each distinct
    # subexpression once: derivatives of nested formulas repeat subtrees many times over.
    if shared_has(expr, (sp.DiracDelta,)):
        expr = shared_replace(expr, lambda e: isinstance(e, sp.DiracDelta), lambda e: sp.S.Zero)
    if shared_has(expr, (sp.Heaviside,)):
        expr = shared_replace(
            expr,
            lambda e: isinstance(e, sp.Heaviside),
            lambda e: sp.Piecewise((1, e.args[0] > 0), (sp.Rational(1, 2), sp.Eq(e.args[0], 0)), (0, True)),
        )
    if shared_has(expr, (sp.Derivative, sp.Subs)):
        raise CodegenError(f"SymPy left an unevaluated derivative in {expr}; the formula has a function it cannot differentiate")
    return expr


def _diff(expr: sp.Expr, variable: sp.Symbol) -> sp.Expr:
    # A sum term by term: the same result as sp.diff (whose Add rule is exactly this), without
    # the bookkeeping SymPy's Derivative does over the whole sum (5x faster for 600 terms).
    if isinstance(expr, sp.Add):
        return sp.Add(*[sp.diff(term, variable) for term in expr.args])
    return sp.diff(expr, variable)


def differentiate(expr: sp.Expr, variable: sp.Symbol) -> sp.Expr:
    """d expr / d variable, almost everywhere."""
    return _almost_everywhere(_diff(expr, variable))


def gradient(expr: sp.Expr, variables: Sequence[sp.Symbol]) -> tuple[sp.Expr, ...]:
    """One first derivative per variable, in order."""
    return tuple(differentiate(expr, v) for v in variables)


def hessian(grad: Sequence[sp.Expr], variables: Sequence[sp.Symbol]) -> sp.Matrix:
    """Square matrix of second derivatives from the gradient (symmetric by construction)."""
    n = len(variables)
    rows = [[None] * n for _ in range(n)]
    for i in range(n):
        for j in range(i, n):
            rows[i][j] = rows[j][i] = differentiate(grad[i], variables[j])
    return sp.Matrix(rows)
