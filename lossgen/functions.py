"""SymPy functions that lossgen adds to the formula language (sigmoid, softplus, ...).

Each knows its derivative (so derivation stays in closed form) and how to rewrite itself as
elementary functions (used by the high-precision reference, where overflow cannot happen).
The numerically stable forms used in kernels live in :mod:`lossgen.stabilize`.
"""

from __future__ import annotations

import sympy as sp


class sigmoid(sp.Function):
    """Logistic function 1 / (1 + exp(-x))."""

    nargs = 1

    def fdiff(self, argindex=1):
        s = sigmoid(self.args[0])
        return s * (1 - s)

    @classmethod
    def eval(cls, x):
        if x.is_zero:
            return sp.Rational(1, 2)
        if x is sp.oo:
            return sp.S.One
        if x is -sp.oo:
            return sp.S.Zero

    def _eval_rewrite_as_exp(self, x, **kwargs):
        return 1 / (1 + sp.exp(-x))

    def _eval_is_real(self):
        return self.args[0].is_real

    def _eval_is_positive(self):
        if self.args[0].is_extended_real:
            return True


class softplus(sp.Function):
    """log(1 + exp(x)), the smooth ReLU."""

    nargs = 1

    def fdiff(self, argindex=1):
        return sigmoid(self.args[0])

    @classmethod
    def eval(cls, x):
        if x.is_zero:
            return sp.log(2)

    def _eval_rewrite_as_exp(self, x, **kwargs):
        return sp.log(1 + sp.exp(x))

    def _eval_is_real(self):
        return self.args[0].is_real

    def _eval_is_positive(self):
        if self.args[0].is_extended_real:
            return True


class logsigmoid(sp.Function):
    """log(sigmoid(x)) = -softplus(-x)."""

    nargs = 1

    def fdiff(self, argindex=1):
        return sigmoid(-self.args[0])

    @classmethod
    def eval(cls, x):
        if x.is_zero:
            return -sp.log(2)

    def _eval_rewrite_as_exp(self, x, **kwargs):
        return -sp.log(1 + sp.exp(-x))

    def _eval_is_real(self):
        return self.args[0].is_real

    def _eval_is_negative(self):
        if self.args[0].is_extended_real:
            return True


class logaddexp(sp.Function):
    """log(exp(a) + exp(b))."""

    nargs = 2

    def fdiff(self, argindex=1):
        a, b = self.args
        return sigmoid(a - b) if argindex == 1 else sigmoid(b - a)

    def _eval_rewrite_as_exp(self, a, b, **kwargs):
        return sp.log(sp.exp(a) + sp.exp(b))

    def _eval_is_real(self):
        if self.args[0].is_real and self.args[1].is_real:
            return True


class logcosh(sp.Function):
    """log(cosh(x)), the smooth absolute value."""

    nargs = 1

    def fdiff(self, argindex=1):
        return sp.tanh(self.args[0])

    @classmethod
    def eval(cls, x):
        if x.is_zero:
            return sp.S.Zero
        if x.could_extract_minus_sign():
            return cls(-x)

    def _eval_rewrite_as_exp(self, x, **kwargs):
        return sp.log(sp.cosh(x))

    def _eval_is_real(self):
        return self.args[0].is_real

    def _eval_is_nonnegative(self):
        if self.args[0].is_real:
            return True


class scaled_exp(sp.Function):
    """scaled_exp(z, y) = y*exp(z) for y >= 0, evaluated as exp(z + log(y)) so that it stays
    finite when exp(z) alone overflows but the product does not."""

    nargs = 2

    def fdiff(self, argindex=1):
        z, y = self.args
        return self if argindex == 1 else sp.exp(z)

    def _eval_rewrite_as_exp(self, z, y, **kwargs):
        return y * sp.exp(z)

    def _eval_is_real(self):
        if all(a.is_real for a in self.args):
            return True

    def _eval_is_nonnegative(self):
        if self.args[0].is_real and self.args[1].is_nonnegative:
            return True


class scaled_expm1(sp.Function):
    """scaled_expm1(z, y) = y*exp(z) - 1 for y >= 0, evaluated as expm1(z + log(y)): exact
    where y*exp(z) is near 1 (the gradient of Gamma and Tweedie losses near their optimum)."""

    nargs = 2

    def fdiff(self, argindex=1):
        z, y = self.args
        return scaled_exp(z, y) if argindex == 1 else sp.exp(z)

    def _eval_rewrite_as_exp(self, z, y, **kwargs):
        return y * sp.exp(z) - 1

    def _eval_is_real(self):
        if all(a.is_real for a in self.args):
            return True


class exp_minus(sp.Function):
    """exp(z) - y for data y >= 0, evaluated as y*expm1(z - log(y)) where exp(z) is near y:
    the Poisson gradient near its optimum, exact when y = 1."""

    nargs = 2

    def fdiff(self, argindex=1):
        z, y = self.args
        return sp.exp(z) if argindex == 1 else sp.S.NegativeOne

    def _eval_rewrite_as_exp(self, z, y, **kwargs):
        return sp.exp(z) - y

    def _eval_is_real(self):
        if all(a.is_real for a in self.args):
            return True


class sqrt1pm1(sp.Function):
    """sqrt(1 + x) - 1, exact for tiny x (pseudo-Huber, Charbonnier)."""

    nargs = 1

    def fdiff(self, argindex=1):
        return 1 / (2 * sp.sqrt(1 + self.args[0]))

    @classmethod
    def eval(cls, x):
        if x.is_zero:
            return sp.S.Zero

    def _eval_rewrite_as_exp(self, x, **kwargs):
        return sp.sqrt(1 + x) - 1

    def _eval_is_real(self):
        if self.args[0].is_nonnegative:
            return True

    def _eval_is_nonnegative(self):
        if self.args[0].is_nonnegative:
            return True


class xlogy(sp.Function):
    """x*log(z), defined as 0 where x = 0 (so 0*log(0) = 0, as in entropy and KL terms)."""

    nargs = 2

    def fdiff(self, argindex=1):
        x, z = self.args
        return sp.log(z) if argindex == 1 else x / z

    @classmethod
    def eval(cls, x, z):
        if x.is_zero:
            return sp.S.Zero
        if z == 1:
            return sp.S.Zero

    def _eval_rewrite_as_exp(self, x, z, **kwargs):
        return x * sp.log(z)

    def _eval_is_real(self):
        if self.args[0].is_real and self.args[1].is_nonnegative:
            return True


class logratio(sp.Function):
    """log(a/b), evaluated as log1p((a - b)/b) where a/b is near 1 (a - b is then exact)."""

    nargs = 2

    def fdiff(self, argindex=1):
        a, b = self.args
        return 1 / a if argindex == 1 else -1 / b

    def _eval_rewrite_as_exp(self, a, b, **kwargs):
        return sp.log(a / b)

    def _eval_is_real(self):
        if self.args[0].is_positive and self.args[1].is_positive:
            return True


class expm1mx(sp.Function):
    """exp(x) - 1 - x, exact near 0 where it is about x**2/2 (LINEX, Poisson deviance)."""

    nargs = 1

    def fdiff(self, argindex=1):
        from sympy.codegen.cfunctions import expm1

        return expm1(self.args[0])

    @classmethod
    def eval(cls, x):
        if x.is_zero:
            return sp.S.Zero

    def _eval_rewrite_as_exp(self, x, **kwargs):
        return sp.exp(x) - 1 - x

    def _eval_is_real(self):
        return self.args[0].is_real

    def _eval_is_nonnegative(self):
        if self.args[0].is_real:
            return True


class log1pmx(sp.Function):
    """log(1 + x) - x, exact near 0 where it is about -x**2/2."""

    nargs = 1

    def fdiff(self, argindex=1):
        x = self.args[0]
        return -x / (1 + x)

    @classmethod
    def eval(cls, x):
        if x.is_zero:
            return sp.S.Zero

    def _eval_rewrite_as_exp(self, x, **kwargs):
        return sp.log(1 + x) - x

    def _eval_is_real(self):
        if (self.args[0] + 1).is_positive:
            return True


CUSTOM_FUNCTIONS = (sigmoid, softplus, logsigmoid, logaddexp, logcosh, scaled_exp, scaled_expm1, exp_minus, sqrt1pm1, xlogy, logratio, expm1mx, log1pmx)


def to_elementary(expr: sp.Expr) -> sp.Expr:
    """Rewrite lossgen's own functions as exp/log so that any SymPy or mpmath tool can evaluate them."""
    return expr.replace(
        lambda e: isinstance(e, CUSTOM_FUNCTIONS),
        lambda e: e._eval_rewrite_as_exp(*e.args),
    )


def to_reference_form(expr: sp.Expr) -> sp.Expr:
    """Elementary forms that stay exact in arbitrary precision: log(1 + exp(x)) as log1p(exp(x)).

    A high-precision reference cannot overflow, but log(1 + tiny) still needs as many digits as
    tiny is small; log1p(tiny) needs none, so the reference converges at a modest precision.
    """
    from sympy.codegen.cfunctions import expm1, log1p

    rewrites = {
        softplus: lambda x: log1p(sp.exp(x)),
        logsigmoid: lambda x: -log1p(sp.exp(-x)),
        logaddexp: lambda a, b: sp.log(sp.exp(a) + sp.exp(b)),
        sigmoid: lambda x: 1 / (1 + sp.exp(-x)),
        logcosh: lambda x: sp.log(sp.cosh(x)),
        scaled_exp: lambda z, y: y * sp.exp(z),
        scaled_expm1: lambda z, y: y * sp.exp(z) - 1,
        exp_minus: lambda z, y: sp.exp(z) - y,
        sqrt1pm1: lambda x: x / (sp.sqrt(1 + x) + 1),
        xlogy: lambda x, z: x * sp.log(z),
        logratio: lambda a, b: sp.log(a) - sp.log(b),
        expm1mx: lambda x: expm1(x) - x,
        log1pmx: lambda x: log1p(x) - x,
    }
    return expr.replace(lambda e: type(e) in rewrites, lambda e: rewrites[type(e)](*e.args))
