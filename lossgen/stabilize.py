"""Stabilize: named rewrite rules that turn formulas as written into forms that never overflow
or cancel, applied to the loss before derivation and to its derivatives after.

Each rule is a small object registered in RULES under a phase:
  "source"  - on the loss as written, before derivation (naive log(1 + exp(x)) becomes softplus(x)),
              so derivatives come from the stable form;
  "derived" - on the gradient and Hessian (1 - tanh(x)**2 becomes sech(x)**2).
The lowering of lossgen's own functions into branch-free primitive code is in EXPANSIONS, used by
the lower stage: math lives here, the printer only prints.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import sympy as sp
from sympy.codegen.cfunctions import expm1, log1p

from .functions import logaddexp, logcosh, logsigmoid, scaled_exp, sigmoid, softplus, sqrt1pm1


@dataclass(frozen=True)
class RewriteRule:
    """One named rewrite: `match(node)` returns a replacement or None."""

    name: str
    phase: str
    match: Callable[[sp.Basic], sp.Basic | None]
    doc: str


RULES: list[RewriteRule] = []


def rule(name: str, phase: str, doc: str):
    """Register a rewrite function under a phase."""

    def register(match):
        RULES.append(RewriteRule(name, phase, match, doc))
        return match

    return register


def _split_one_plus(arg: sp.Expr) -> sp.Expr | None:
    """For arg = 1 + x return x, else None."""
    if isinstance(arg, sp.Add) and sp.S.One in arg.args:
        return arg - 1
    return None


def _exp_argument(expr: sp.Expr) -> sp.Expr | None:
    """For expr = exp(x) return x; also for exp(x)**k (as exp(k*x))."""
    if isinstance(expr, sp.exp):
        return expr.args[0]
    if isinstance(expr, sp.Pow) and isinstance(expr.base, sp.exp) and expr.exp.is_number:
        return expr.base.args[0] * expr.exp
    return None


@rule("log1p", "source", "log(1 + x) -> log1p(x): exact for tiny x")
def _log1p(node):
    if isinstance(node, sp.log):
        x = _split_one_plus(node.args[0])
        if x is not None:
            return log1p(x)
    return None


@rule("expm1", "source", "exp(x) - 1 -> expm1(x): exact for tiny x")
def _expm1(node):
    if isinstance(node, sp.Add) and sp.S.NegativeOne in node.args:
        for term in node.args:
            if isinstance(term, sp.exp):
                return expm1(term.args[0]) + (node - term + 1)
    return None


@rule("softplus", "source", "log1p(exp(x)) -> softplus(x): never overflows")
def _softplus(node):
    if isinstance(node, log1p):
        x = _exp_argument(node.args[0])
        if x is not None:
            return softplus(x)
    return None


@rule("sigmoid", "source", "1/(1 + exp(-x)) -> sigmoid(x): never overflows")
def _sigmoid(node):
    if isinstance(node, sp.Pow) and node.exp == -1:
        x = _split_one_plus(node.base)
        if x is not None:
            arg = _exp_argument(x)
            if arg is not None:
                return sigmoid(-arg)
    return None


@rule("logsigmoid", "source", "log(sigmoid(x)) -> logsigmoid(x), -softplus(-x)")
def _logsigmoid(node):
    if isinstance(node, sp.log) and isinstance(node.args[0], sigmoid):
        return logsigmoid(node.args[0].args[0])
    if isinstance(node, softplus):
        return None
    return None


@rule("log1m_sigmoid", "source", "log(1 - sigmoid(x)) -> logsigmoid(-x)")
def _log1m_sigmoid(node):
    if isinstance(node, (sp.log, log1p)):
        arg = node.args[0]
        rest = arg - 1 if isinstance(node, sp.log) else arg
        if isinstance(-rest, sigmoid):
            return logsigmoid(-(-rest).args[0])
    return None


@rule("log_of_reciprocal", "source", "log(1/x) -> -log(x), so softplus and sigmoid rules see it")
def _log_reciprocal(node):
    if isinstance(node, sp.log) and isinstance(node.args[0], sp.Pow) and node.args[0].exp == -1:
        return -sp.log(node.args[0].base)
    return None


@rule("logcosh", "source", "log(cosh(x)) -> logcosh(x): no overflow, no cancellation near 0")
def _logcosh(node):
    if isinstance(node, sp.log) and isinstance(node.args[0], sp.cosh):
        return logcosh(node.args[0].args[0])
    return None


@rule("logaddexp", "source", "log(exp(a) + exp(b)) -> logaddexp(a, b): max-shifted")
def _logaddexp(node):
    if isinstance(node, sp.log) and isinstance(node.args[0], sp.Add) and len(node.args[0].args) == 2:
        a, b = (_exp_argument(t) for t in node.args[0].args)
        if a is not None and b is not None:
            return logaddexp(a, b)
    return None


@rule("exp_absorbs_factor", "source", "y*exp(z) -> scaled_exp(z, y) = exp(z + log(y)) for an input y >= 0: finite when exp(z) alone overflows")
def _exp_absorbs_factor(node):
    if isinstance(node, sp.Mul):
        exps = [f for f in node.args if isinstance(f, sp.exp)]
        factors = [f for f in node.args if isinstance(f, sp.Symbol) and f.is_nonnegative]
        if len(exps) == 1 and factors:
            factor = factors[0]
            rest = node / (exps[0] * factor)
            return rest * scaled_exp(exps[0].args[0], factor)
    return None


@rule("sqrt1pm1", "source", "sqrt(1 + x) - 1 -> sqrt1pm1(x) = x/(sqrt(1 + x) + 1): exact for tiny x")
def _sqrt1pm1(node):
    if isinstance(node, sp.Add) and sp.S.NegativeOne in node.args:
        for term in node.args:
            if isinstance(term, sp.Pow) and term.exp == sp.S.Half:
                x = _split_one_plus(term.base)
                if x is not None:
                    return sqrt1pm1(x) + (node - term + 1)
    return None


@rule("one_minus_sigmoid", "derived", "1 - sigmoid(x) -> sigmoid(-x): no cancellation")
def _one_minus_sigmoid(node):
    if isinstance(node, sp.Add) and len(node.args) == 2 and sp.S.One in node.args:
        other = node - 1
        if isinstance(-other, sigmoid):
            return sigmoid(-(-other).args[0])
    return None


@rule("sech_squared", "derived", "1 - tanh(x)**2 -> sech(x)**2: no cancellation for large x")
def _sech_squared(node):
    if isinstance(node, sp.Add) and sp.S.One in node.args:
        for term in node.args:
            if (isinstance(term, sp.Mul) and term.args[0] == -1 and len(term.args) == 2
                    and isinstance(term.args[1], sp.Pow) and isinstance(term.args[1].base, sp.tanh)
                    and term.args[1].exp == 2):
                x = term.args[1].base.args[0]
                return sp.sech(x) ** 2 + (node - 1 - term)
    return None


@rule("combine_powers", "derived", "u**g / u -> u**(g - 1): finite where u underflows to 0")
def _combine_powers(node):
    if not isinstance(node, sp.Mul):
        return None
    bases = [f.base if isinstance(f, sp.Pow) else f for f in node.args]
    symbolic = any(isinstance(f, sp.Pow) and not f.exp.is_Integer for f in node.args)
    if symbolic and len(set(bases)) < len(bases):
        combined = sp.powsimp(node, combine="exp", deep=False)
        return combined if combined != node else None
    return None


def _power_of(term: sp.Expr, base: sp.Expr) -> tuple[sp.Expr, sp.Expr]:
    """Split term into (coefficient, exponent) with term = coefficient * base**exponent."""
    exponent = sp.S.Zero
    rest = []
    for factor in sp.Mul.make_args(term):
        if factor == base:
            exponent += 1
        elif isinstance(factor, sp.Pow) and factor.base == base:
            exponent += factor.exp
        else:
            rest.append(factor)
    return sp.Mul(*rest), exponent


@rule("common_power_base", "derived", "1/s - u**2/s**3 -> 1/s**3 with s**2 = 1 + u**2: cancel inside powers of one base")
def _common_power_base(node):
    if not isinstance(node, sp.Add):
        return None
    bases = {
        f.base
        for term in node.args
        for f in sp.Mul.make_args(term)
        if isinstance(f, sp.Pow) and f.exp.is_Rational and not f.exp.is_Integer and isinstance(f.base, sp.Add)
    }
    for base in sorted(bases, key=sp.default_sort_key):
        parts = [_power_of(term, base) for term in node.args]
        exponents = {e for _, e in parts}
        lowest = min(exponents)
        if len(exponents) < 2 or not all((e - lowest).is_Integer for e in exponents):
            continue
        inner = sp.Add(*(c * base ** (e - lowest) for c, e in parts))
        expanded = sp.expand(inner)
        # Only when expanding makes terms cancel: that is the cancellation floats cannot do.
        if sp.count_ops(expanded) < sp.count_ops(inner):
            return sp.factor_terms(expanded) * base**lowest
    return None


def apply_rules(expr: sp.Expr, phase: str, applied: set[str] | None = None, max_passes: int = 8) -> sp.Expr:
    """Apply every rule of `phase` bottom-up until nothing changes; record rule names in `applied`."""
    active = [r for r in RULES if r.phase == phase]
    for _ in range(max_passes):
        before = expr
        for current in active:
            def query(node, current=current):
                return isinstance(node, sp.Basic) and current.match(node) is not None

            def value(node, current=current):
                if applied is not None:
                    applied.add(current.name)
                return current.match(node)

            expr = expr.replace(query, value)
        if expr == before:
            break
    return expr


# Branch-free primitive forms used in generated code. exp(-|x|) <= 1 never overflows, and CSE
# shares it between, say, a softplus in the loss and a sigmoid in the gradient.
def _sigmoid_code(x):
    return sp.exp(sp.Min(x, 0)) / (1 + sp.exp(-sp.Abs(x)))


def _softplus_code(x):
    return sp.Max(x, 0) + log1p(sp.exp(-sp.Abs(x)))


def _logsigmoid_code(x):
    return sp.Min(x, 0) - log1p(sp.exp(-sp.Abs(x)))


def _logaddexp_code(a, b):
    return sp.Max(a, b) + log1p(sp.exp(-sp.Abs(a - b)))


def _logcosh_code(x):
    # Near 0, |x| - log(2) + log1p(...) cancels; log1p(2*sinh(x/2)**2) is exact there, and for
    # |x| >= 1 the first form has no cancellation and cannot overflow.
    small = log1p(2 * sp.sinh(x / 2) ** 2)
    large = sp.Abs(x) + log1p(sp.exp(-2 * sp.Abs(x))) - sp.log(2)
    return sp.Piecewise((small, sp.Abs(x) < 1), (large, True))


def _sech_code(x):
    e = sp.exp(-sp.Abs(x))
    return 2 * e / (1 + e**2)


def _sqrt1pm1_code(x):
    return x / (sp.sqrt(1 + x) + 1)


EXPANSIONS: dict[type, Callable[..., sp.Expr]] = {
    sqrt1pm1: _sqrt1pm1_code,
    sigmoid: _sigmoid_code,
    softplus: _softplus_code,
    logsigmoid: _logsigmoid_code,
    logaddexp: _logaddexp_code,
    logcosh: _logcosh_code,
    sp.sech: _sech_code,
}


def expand_for_code(expr: sp.Expr) -> sp.Expr:
    """Replace lossgen's functions (and sech) by their stable primitive forms for printing."""
    return expr.replace(lambda e: type(e) in EXPANSIONS, lambda e: EXPANSIONS[type(e)](*e.args))
