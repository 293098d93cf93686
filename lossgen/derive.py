"""Derive: gradient and Hessian of a loss with SymPy, as almost-everywhere derivatives.

At a kink the derivative of Abs, sign, Max and Min is the mean of the two one-sided
derivatives (sign(0) = 0, Heaviside(0) = 1/2); a Piecewise uses the derivative of the branch
whose condition holds at that point. DiracDelta (the derivative of a jump) is zero almost
everywhere and never reaches generated code.
"""

from __future__ import annotations

from collections.abc import Sequence

import sympy as sp

from .errors import CodegenError


def _almost_everywhere(expr: sp.Expr) -> sp.Expr:
    expr = expr.replace(lambda e: isinstance(e, sp.DiracDelta), lambda e: sp.S.Zero)
    expr = expr.replace(
        lambda e: isinstance(e, sp.Heaviside),
        lambda e: sp.Piecewise((1, e.args[0] > 0), (sp.Rational(1, 2), sp.Eq(e.args[0], 0)), (0, True)),
    )
    if expr.has(sp.Derivative, sp.Subs):
        raise CodegenError(f"SymPy left an unevaluated derivative in {expr}; the formula has a function it cannot differentiate")
    return expr


def differentiate(expr: sp.Expr, variable: sp.Symbol) -> sp.Expr:
    """d expr / d variable, almost everywhere."""
    return _almost_everywhere(sp.diff(expr, variable))


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
