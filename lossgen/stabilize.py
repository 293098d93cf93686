"""Stabilize: named rewrite rules that turn formulas as written into forms that never overflow
or cancel, applied to the loss before derivation and to its derivatives after.

Each rule is a small object registered in RULES under a phase:
  "source"  - on the loss as written, before derivation (naive log(1 + exp(x)) becomes softplus(x)),
              so derivatives come from the stable form; also on derivatives, which can hold the
              same patterns;
  "loss"    - on the loss only, after "source" (y*exp(z) becomes scaled_exp(z, y); its
              derivatives inherit the form, and products made by differentiation must not be
              split up again);
  "derived" - on the gradient and Hessian (1 - tanh(x)**2 becomes sech(x)**2).
The lowering of lossgen's own functions into branch-free primitive code is in EXPANSIONS, used by
the lower stage: math lives here, the printer only prints.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import sympy as sp
from sympy.codegen.cfunctions import expm1, log1p

from .budget import MAX_SIMPLIFY_NODES, distinct_nodes, shared_replace, simplified
from .functions import (
    exp_minus, expm1mx, log1pmx, logaddexp, logcosh, logratio, logsigmoid, scaled_exp, scaled_expm1, sigmoid, softplus,
    sqrt1pm1, xlogy,
)


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


@rule("expm1", "source", "k*exp(x) - k -> k*expm1(x) (and 1 - y*exp(x) -> -expm1(x + log(y))): exact for tiny x")
def _expm1(node):
    if not isinstance(node, sp.Add):
        return None
    constants = [t for t in node.args if t.is_number]
    if len(constants) != 1:
        return None
    k = constants[0]
    for term in node.args:
        if isinstance(term, sp.Mul) or isinstance(term, (sp.exp, scaled_exp)):
            coefficient, factor = term.as_independent(*term.free_symbols) if term.free_symbols else (term, sp.S.One)
            if coefficient == -k and isinstance(factor, sp.exp):
                return coefficient * expm1(factor.args[0]) + (node - term - k)
            if coefficient == -k and isinstance(factor, scaled_exp):
                return -k * scaled_expm1(*factor.args) + (node - term - k)
    return None


@rule("softplus", "source", "log1p(exp(x)) -> softplus(x): never overflows")
def _softplus(node):
    if isinstance(node, log1p):
        x = _exp_argument(node.args[0])
        if x is not None:
            return softplus(x)
    return None


@rule("sigmoid", "source", "1/(1 + exp(-x))**k -> sigmoid(x)**k: never overflows")
def _sigmoid(node):
    if isinstance(node, sp.Pow) and node.exp.is_Integer and node.exp < 0:
        x = _split_one_plus(node.base)
        if x is not None:
            arg = _exp_argument(x)
            if arg is not None:
                return sigmoid(-arg) ** (-node.exp)
    return None


@rule("logsigmoid", "source", "log(sigmoid(x)) -> logsigmoid(x), -softplus(-x)")
def _logsigmoid(node):
    if isinstance(node, sp.log) and isinstance(node.args[0], sigmoid):
        return logsigmoid(node.args[0].args[0])
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


@rule("exp_minus_data", "derived", "exp(z) - y -> exp_minus(z, y) for data y >= 0: y*expm1(z - log(y)) where exp(z) is near y")
def _exp_minus_data(node):
    if isinstance(node, sp.Add):
        exps = [t for t in node.args if isinstance(t, sp.exp)]
        data = [t for t in node.args if isinstance(-t, sp.Symbol) and (-t).is_nonnegative]
        if len(exps) == 1 and len(data) == 1:
            return exp_minus(exps[0].args[0], -data[0]) + (node - exps[0] - data[0])
    return None


@rule("cosh_by_hand", "source", "exp(a) + exp(-a) -> 2*cosh(a), exp(a) - exp(-a) -> 2*sinh(a)")
def _cosh_by_hand(node):
    if not isinstance(node, sp.Add):
        return None
    # c*exp(a) by argument a, for terms that are a constant times one exponential.
    scaled = {}
    for term in node.args:
        c, factor = term.as_coeff_Mul()
        if isinstance(factor, sp.exp):
            scaled[factor.args[0]] = (c, term)
    for a, (c, term) in scaled.items():
        if -a in scaled:
            c_other, other = scaled[-a]
            rest = node - term - other
            if c_other == c and sp.default_sort_key(a) < sp.default_sort_key(-a):
                return 2 * c * sp.cosh(a) + rest
            if c_other == -c:
                return 2 * c * sp.sinh(a) + rest
    return None


@rule("softplus_minus_linear", "source", "softplus(z) - y*z -> (1 - y)*softplus(z) + y*softplus(-z), y >= 0: no cancellation for y in [0, 1]")
def _softplus_minus_linear(node):
    if not isinstance(node, sp.Add):
        return None
    for term in node.args:
        if isinstance(term, softplus):
            z = term.args[0]
            for other in node.args:
                y = -other / z
                if other is not term and not y.has(z) and y.free_symbols and y.is_nonnegative:
                    return (1 - y) * softplus(z) + y * softplus(-z) + (node - term - other)
    return None


@rule("sinh_over_cosh", "source", "sinh(x)/cosh(x) -> tanh(x): no inf/inf")
def _sinh_over_cosh(node):
    if isinstance(node, sp.Mul):
        sinhs = [f for f in node.args if isinstance(f, sp.sinh)]
        for f in sinhs:
            partner = sp.Pow(sp.cosh(f.args[0]), -1)
            if partner in node.args:
                return node / (f * partner) * sp.tanh(f.args[0])
    return None


@rule("exp_times_sigmoid", "source", "exp(a)*sigmoid(-a)**k -> sigmoid(a)*sigmoid(-a)**(k-1): no inf*0")
def _exp_times_sigmoid(node):
    if not isinstance(node, sp.Mul):
        return None
    for f in node.args:
        if not isinstance(f, sp.exp):
            continue
        a = f.args[0]
        for g in node.args:
            base, k = (g.base, g.exp) if isinstance(g, sp.Pow) else (g, sp.S.One)
            if isinstance(base, sigmoid) and base.args[0] == -a and k.is_Integer and k >= 1:
                return node / (f * g) * sigmoid(a) * sigmoid(-a) ** (k - 1)
    return None


def _zero_or_positive(x: sp.Expr) -> bool:
    return bool(x.is_nonnegative or (isinstance(x, sp.Pow) and x.base.is_nonnegative and x.exp.is_real))


@rule("xlogy", "source", "x*log(z) -> xlogy(x, z), 0 where x = 0: 0*log(0) is 0, not nan")
def _xlogy(node):
    if not isinstance(node, sp.Mul):
        return None
    for f in node.args:
        # y*(log(y) - log(p)): distribute, so each product is seen on its own.
        if isinstance(f, sp.Add) and any(isinstance(t, sp.log) and not t.args[0].is_positive for t in f.args):
            if any(g.is_nonnegative and not g.is_positive and not g.is_number for g in node.args):
                # The product of the sums' lengths is the size of the expansion: beyond the
                # budget the rule declines rather than build it.
                terms = math.prod(len(g.args) for g in node.args if isinstance(g, sp.Add))
                if terms > MAX_SIMPLIFY_NODES:
                    return None
                return simplified(lambda: sp.expand_mul(node), node)
    # log(z) or log(z)**k (Hessians square it): x*log(z)**k is xlogy applied k times, 0 where x = 0.
    logs = [f for f in node.args if isinstance(f, sp.log) or (
        isinstance(f, sp.Pow) and isinstance(f.base, sp.log) and f.exp.is_Integer and 1 <= f.exp <= 4)]
    if len(logs) != 1:
        return None
    log, times = (logs[0], 1) if isinstance(logs[0], sp.log) else (logs[0].base, int(logs[0].exp))
    if log.args[0].is_positive:
        return None
    rest = node / logs[0]
    factors = [f for f in sp.Mul.make_args(rest) if not f.is_number]
    # y**(-2*p) on y >= 0 is 0, not negative, where y = 0 and the exponent is positive; SymPy
    # leaves its sign open (0 to a negative power is zoo), so a power is judged by its base.
    if len(factors) == 1 and _zero_or_positive(factors[0]) and not factors[0].is_positive:
        # The numbers of rest, not rest/factor: SymPy turns 1/Piecewise into a Piecewise of
        # reciprocals (zoo where a branch is 0) that never cancels against the factor.
        coefficient = sp.Mul(*[f for f in sp.Mul.make_args(rest) if f.is_number])
        result = factors[0]
        for _ in range(times):
            result = xlogy(result, log.args[0])
        return coefficient * result
    return None


def _minus_argument_in_sum(node: sp.Add, function: type, combined: type) -> sp.Expr | None:
    """For node = f(x) - x + rest (the -x possibly spread over several terms), combined(x) + rest."""
    terms = set(node.args)
    for term in node.args:
        if isinstance(term, function):
            x = term.args[0]
            if set(sp.Add.make_args(-x)) <= terms - {term}:
                return combined(x) + (node - term + x)
    return None


@rule("logratio", "source", "log(a/b) -> logratio(a, b): log1p((a - b)/b) near a = b, no cancellation in log(~1)")
def _logratio(node):
    if isinstance(node, sp.log) and isinstance(node.args[0], sp.Mul):
        a, b = sp.fraction(node.args[0])
        if b != 1 and not b.is_number and a.is_nonnegative and b.is_nonnegative:
            return logratio(a, b)
    return None


@rule("expm1mx", "source", "expm1(x) - x -> expm1mx(x): exact near 0 (series branch)")
def _expm1mx(node):
    return _minus_argument_in_sum(node, expm1, expm1mx) if isinstance(node, sp.Add) else None


@rule("log1pmx", "source", "log1p(x) - x -> log1pmx(x): exact near 0 (series branch)")
def _log1pmx(node):
    return _minus_argument_in_sum(node, log1p, log1pmx) if isinstance(node, sp.Add) else None


@rule("sigmoid_power", "source", "sigmoid(x)**g -> exp(g*logsigmoid(x)) for non-integer g: no 0**negative")
def _sigmoid_power(node):
    if isinstance(node, sp.Pow) and isinstance(node.base, sigmoid) and not node.exp.is_Integer:
        return sp.exp(node.exp * logsigmoid(node.base.args[0]))
    return None


def _sigmoid_terms(expr: sp.Expr):
    """For expr = sum of c_i*sigmoid(a_i), the pairs (c_i, a_i); None otherwise."""
    pairs = []
    for term in sp.Add.make_args(expr):
        sigmoids = [f for f in sp.Mul.make_args(term) if isinstance(f, sigmoid)]
        if len(sigmoids) != 1:
            return None
        coefficient = term / sigmoids[0]
        if coefficient.has(sigmoid) or coefficient.is_negative:
            return None
        pairs.append((coefficient, sigmoids[0].args[0]))
    return pairs


@rule("sigmoid_sum_power", "source", "(c1*sigmoid(a) + c2*sigmoid(b))**g -> exp(g*logaddexp(log(c1) + logsigmoid(a), ...)) for non-integer g: no 0**negative when the sum underflows")
def _sigmoid_sum_power(node):
    if isinstance(node, sp.Pow) and not node.exp.is_Integer and isinstance(node.base, sp.Add):
        pairs = _sigmoid_terms(node.base)
        if pairs and len(pairs) == 2:
            (c1, a1), (c2, a2) = pairs
            log_sum = logaddexp(sp.log(c1) + logsigmoid(a1), sp.log(c2) + logsigmoid(a2))
            return sp.exp(node.exp * log_sum)
    return None


@rule("exp_absorbs_factor", "loss", "y*exp(z) -> scaled_exp(z, y) = exp(z + log(y)) for an input y >= 0: finite when exp(z) alone overflows")
def _exp_absorbs_factor(node):
    if isinstance(node, sp.Mul):
        exps = [f for f in node.args if isinstance(f, sp.exp)]
        factors = [f for f in node.args if isinstance(f, sp.Symbol) and f.is_nonnegative]
        if len(exps) == 1 and factors:
            factor = factors[0]
            rest = node / (exps[0] * factor)
            return rest * scaled_exp(exps[0].args[0], factor)
    return None


@rule("sqrt1pm1", "source", "sqrt(x + c**2) - c -> c*sqrt1pm1(x/c**2), c > 0: exact for tiny x (pseudo-Huber, Charbonnier)")
def _sqrt1pm1(node):
    if not isinstance(node, sp.Add):
        return None
    for term in node.args:
        if isinstance(term, sp.Pow) and term.exp == sp.S.Half and isinstance(term.base, sp.Add):
            for c_term in node.args:
                c = -c_term
                if c_term is term or not c.is_positive:
                    continue
                if (c**2) in term.base.args or (c == 1 and sp.S.One in term.base.args):
                    x = term.base - c**2
                    return c * sqrt1pm1(x / c**2) + (node - term - c_term)
    return None


@rule("one_minus_sigmoid", "source", "k - k*sigmoid(x) -> k*sigmoid(-x): no cancellation")
def _one_minus_sigmoid(node):
    if isinstance(node, sp.Add) and len(node.args) == 2:
        constant, term = sorted(node.args, key=lambda t: not t.is_number)
        if constant.is_number and constant != 0:
            ratio = -term / constant
            if isinstance(ratio, sigmoid):
                return constant * sigmoid(-ratio.args[0])
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


@rule("combine_powers", "derived", "u**g / u -> u**(g - 1) (also with -u): finite where u underflows to 0")
def _combine_powers(node):
    if not isinstance(node, sp.Mul):
        return None
    symbolic = {f.base: f for f in node.args if isinstance(f, sp.Pow) and not f.exp.is_Integer}
    for f in node.args:
        base, k = (f.base, f.exp) if isinstance(f, sp.Pow) else (f, sp.S.One)
        if k.is_Integer and -base in symbolic and not base.is_number:
            # b**k * (-b)**g = (-1)**k * (-b)**(g + k), built whole (SymPy would split (-b)**k).
            power = symbolic[-base]
            return node / (f * power) * (-1) ** k * sp.Pow(-base, power.exp + k)
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
        # Expanding base**k makes comb(m + k - 1, k) terms for a base of m terms: decline
        # (keep the form as it is) when that exceeds the budget.
        width = len(base.args)
        terms = sum(math.comb(width + int(e - lowest) - 1, int(e - lowest)) * len(sp.Add.make_args(c)) for c, e in parts)
        if terms > MAX_SIMPLIFY_NODES:
            continue
        inner = sp.Add(*(c * base ** (e - lowest) for c, e in parts))
        expanded = simplified(lambda: sp.expand(inner), inner)
        if expanded is None:
            continue
        # Only when expanding cancels a variable away entirely (SymPy may already have done so
        # while building `inner`): a partial cancellation would leave forms such as
        # p**2 - 2*p*y + y**2 that floats evaluate worse than (p - y)**2.
        before = base.free_symbols.union(*(c.free_symbols for c, _ in parts))
        if expanded.free_symbols < before:
            factored = simplified(lambda: sp.factor_terms(expanded), expanded)
            return None if factored is None else factored * base**lowest
    return None


def apply_rules(expr: sp.Expr, phase: str, applied: set[str] | None = None, max_passes: int = 8) -> sp.Expr:
    """Apply every rule of `phase` bottom-up until nothing changes; record rule names in `applied`."""
    active = [r for r in RULES if r.phase == phase]
    for _ in range(max_passes):
        before = expr
        for current in active:
            fired: list[str] = []

            def query(node, current=current):
                return isinstance(node, sp.Basic) and current.match(node) is not None

            def value(node, current=current):
                fired.append(current.name)
                return current.match(node)

            # Basic.replace's result, with each distinct subexpression visited once (derivatives
            # of nested formulas repeat subtrees so often that a plain walk takes minutes); a
            # rewrite SymPy cannot rebuild (Max(p, logcosh(2))) is declined, not an error.
            declined: list = []
            rewritten = shared_replace(expr, query, value, keep_on_error=True, declined=declined)
            if applied is not None and fired and not (declined and rewritten == expr):
                applied.add(current.name)
            expr = rewritten
        if expr == before:
            break
    return expr


def stabilize_loss(expr: sp.Expr, applied: set[str] | None = None) -> sp.Expr:
    """The loss as written, rewritten into stable forms before it is differentiated."""
    return apply_rules(apply_rules(expr, "source", applied), "loss", applied)


def stabilize_derivative(expr: sp.Expr, applied: set[str] | None = None) -> sp.Expr:
    """A derivative in stable form: the source rules (a derivative of a naive form can hold
    the same hazards as a naive loss), then the rules for what differentiation produces."""
    return apply_rules(apply_rules(expr, "source", applied), "derived", applied)


# Branch-free primitive forms used in generated code. exp(-|x|) <= 1 never overflows, and CSE
# shares it between, say, a softplus in the loss and a sigmoid in the gradient.
def _sigmoid_code(x):
    # exp(min(x, 0)) is 1 or exp(-|x|): written as a select, the one exp(-|x|) that softplus and
    # the other sigmoids of x (or -x) need is shared by CSE instead of computing three.
    tail = sp.exp(-sp.Abs(x))
    return sp.Piecewise((1, x >= 0), (tail, True)) / (1 + tail)


def _softplus_code(x):
    return sp.Max(x, 0) + log1p(sp.exp(-sp.Abs(x)))


def _logsigmoid_code(x):
    return sp.Min(x, 0) - log1p(sp.exp(-sp.Abs(x)))


def _logaddexp_code(a, b):
    return sp.Max(a, b) + log1p(sp.exp(-sp.Abs(a - b)))


def _logcosh_code(x):
    # One exp(-|x|), one expm1(-|x|) and one log1p for the loss, and CSE shares the first two with
    # tanh and sech (the gradient and Hessian): kmath's exp and expm1 share their range reduction,
    # so after inlining LLVM computes it once. Near 0, |x| - log(2) + log1p(e**2) cancels, so
    # there log cosh x = log1p(cosh(x) - 1) = log1p(m**2/(2e)), exact from m = expm1(-|x|);
    # for |x| >= 1 the first form has no cancellation and cannot overflow. Selecting log1p's
    # argument rather than its result computes one log1p, not two.
    a = sp.Abs(x)
    e, m = exp_shared(-a), expm1(-a)
    small = a < 1
    shift = sp.Piecewise((0, small), (a - sp.log(2), True))
    return shift + log1p(sp.Piecewise((m**2 / (2 * e), small), (e**2, True)))


def _tanh_code(x):
    # tanh|x| = (1 - e**2)/(1 + e**2) with 1 - e**2 = -m*(2 + m) exact from m = expm1(-|x|): no
    # cancellation near 0, saturates to 1 without overflow, and shares e and m with logcosh.
    a = sp.Abs(x)
    e, m = exp_shared(-a), expm1(-a)
    return sp.sign(x) * (-m * (2 + m)) / (1 + e**2)


def _sech_code(x):
    # exp_shared keeps e**2 a square of the one exp(-|x|) (SymPy would fold it into exp(-2|x|),
    # a second call); e itself, not 1 + m, since 1 + m loses e's relative accuracy for large |x|.
    e = exp_shared(-sp.Abs(x))
    return 2 * e / (1 + e**2)


class exp_shared(sp.Function):
    """Print-only exp that SymPy keeps apart: exp_shared(x)**2 stays the square of one call that
    CSE shares (SymPy folds exp(x)**2 into exp(2*x), a second call)."""

    nargs = 1

    # Numbers like exp: a constant form inside Max or a comparison (logaddexp(0, exp(logcosh(7))))
    # must stay comparable.
    def _eval_evalf(self, prec):
        return sp.exp(self.args[0])._eval_evalf(prec)

    def _eval_is_real(self):
        return self.args[0].is_real

    def _eval_is_positive(self):
        return True if self.args[0].is_real else None


class exp_exact(sp.Function):
    """Print-only exp whose argument SymPy leaves alone (exp(z + log(y)) would fold to y*exp(z))."""

    nargs = 1


class expm1_exact(sp.Function):
    """Print-only expm1 whose argument SymPy leaves alone (expm1(z - log(y)) would become exp(z)/y - 1)."""

    nargs = 1


# Where exp(x) overflows or underflows in the kernel's dtype; the lower stage substitutes
# the dtype's value, since the forms here are shared by float32 and float64.
LOG_MAX = sp.Symbol("_log_max", positive=True)


def _scaled_exp_code(z, y):
    # y*exp(z) is exact to an ulp or two; exp(z + log(y)) magnifies rounding by |z + log(y)|,
    # so it is used only where exp(z) alone would overflow or underflow.
    return sp.Piecewise((y * sp.exp(z), sp.Abs(z) < LOG_MAX), (exp_exact(z + sp.log(y)), True))


def _scaled_expm1_code(z, y):
    # expm1(z + log(y)) only where y*exp(z) is within [3/4, 3/2] of 1: outside, the direct
    # subtraction loses at most a factor 3 (u/|u - 1| <= 3), and most samples skip the log.
    direct = y * sp.exp(z)
    far_from_one = sp.And(sp.Abs(z) < LOG_MAX, sp.Or(direct < sp.Rational(3, 4), direct > sp.Rational(3, 2)))
    return sp.Piecewise((direct - 1, far_from_one), (expm1_exact(z + sp.log(y)), True))


def _exp_minus_code(z, y):
    direct = sp.exp(z)
    near = sp.And(y > 0, direct >= 3 * y / 4, direct <= 3 * y / 2)
    return sp.Piecewise((y * expm1_exact(z - sp.log(y)), near), (direct - y, True))


def _sqrt1pm1_code(x):
    return x / (sp.sqrt(1 + x) + 1)


def _log_code(z):
    """log(z); for a ratio a/b near 1, log1p((a - b)/b), where a - b is exact (Sterbenz)."""
    a, b = sp.fraction(z)
    if b == 1:
        return sp.log(z)
    near_one = sp.And(a >= b / 2, a <= 2 * b)
    return sp.Piecewise((log1p((a - b) / b), near_one), (sp.log(z), True))


def _logratio_code(a, b):
    return _log_code(a / b)


def _xlogy_code(x, z):
    return sp.Piecewise((0, sp.Eq(x, 0)), (x * _log_code(z), True))


# Taylor coefficients 1/n! for n = 2..17: for |x| < 1/2 the first omitted term is below
# 0.5**16 * 2/18! ~ 5e-21 relative to x**2/2, far under float64's 1.1e-16.
_EXPM1MX_TERMS = [sp.Rational(1, sp.factorial(n)) for n in range(2, 18)]
# log1p(x) - x = -x**2/(2 + x) + 2*(t**3/3 + t**5/5 + ...), t = x/(2 + x); |x| < 1/4 gives
# |t| <= 1/7 and the first omitted term (k = 12) is below 7**-23 relative to t**2.
_LOG1PMX_ODD_TERMS = [sp.Rational(2, 2 * k + 1) for k in range(1, 12)]


def _horner(coefficients, x):
    result = sp.S.Zero
    for c in reversed(coefficients):
        result = result * x + c
    return result


def _expm1mx_code(x):
    series = x**2 * _horner(_EXPM1MX_TERMS, x)
    return sp.Piecewise((series, sp.Abs(x) < sp.Rational(1, 2)), (expm1(x) - x, True))


def _log1pmx_code(x):
    t = x / (2 + x)
    series = -(x**2) / (2 + x) + t**3 * _horner(_LOG1PMX_ODD_TERMS, t**2)
    return sp.Piecewise((series, sp.Abs(x) < sp.Rational(1, 4)), (log1p(x) - x, True))


# A sigmoid pair mixed by data, c1*sigmoid(-x) + c2*sigmoid(x) with c1, c2 >= 0 (focal's
# p_t = y*sigmoid(-p) + (1 - y)*sigmoid(p)), reaches the kernel in the log domain: its power is
# exp(g*logaddexp(log(c1) + logsigmoid(-x), log(c2) + logsigmoid(x))), and the derivatives hold
# sigmoid(+-(log(c1) - log(c2) + logsigmoid(-x) - logsigmoid(x))). Expanded term by term, that
# is log(c1), log(c2), a second exp and a second log1p per sample. With e = exp(-|x|), the one
# softplus(x) needs anyway,
#     c1*sigmoid(-x) + c2*sigmoid(x) = (lead + other*e)/(1 + e),
# lead = c2, other = c1 for x >= 0 (swapped for x < 0): a sum of non-negative terms, so its log
# is one log, and each sigmoid above is one division. Where lead is 0 (a hard label), the sum is
# other*e exactly, whose log, log(other) - |x|, stays finite after e underflows.


def _log_coefficient(term: sp.Expr) -> sp.Expr | None:
    """c for term = log(c) or log1p(u) (c = 1 + u); None otherwise."""
    if isinstance(term, sp.log):
        return term.args[0]
    if isinstance(term, log1p):
        return 1 + term.args[0]
    return None


def _scaled_logsigmoid(expr: sp.Expr) -> tuple[sp.Expr, sp.Expr] | None:
    """(c, s) for expr = log(c) + logsigmoid(s); c = 1 for logsigmoid(s) alone."""
    terms = sp.Add.make_args(expr)
    sigmoids = [t for t in terms if isinstance(t, logsigmoid)]
    rest = [t for t in terms if not isinstance(t, logsigmoid)]
    if len(sigmoids) != 1 or len(rest) > 1:
        return None
    coefficient = _log_coefficient(rest[0]) if rest else sp.S.One
    return None if coefficient is None else (coefficient, sigmoids[0].args[0])


def _pair_parts(c_minus, c_plus, x):
    """(x, e, lead, other, lead_is_zero) with c_minus*sigmoid(-x) + c_plus*sigmoid(x) =
    (lead + other*e)/(1 + e), e = exp(-|x|):
    x is oriented one way for the pair and its mirror (c_plus, c_minus, -x), so that the
    logaddexp and both sigmoids of one pair share e and total."""
    if x.could_extract_minus_sign():
        c_minus, c_plus, x = c_plus, c_minus, -x
    e = sp.exp(-sp.Abs(x))
    nonnegative = x >= 0
    lead = sp.Piecewise((c_plus, nonnegative), (c_minus, True))
    other = sp.Piecewise((c_minus, nonnegative), (c_plus, True))
    return x, e, lead, other, sp.Eq(lead, 0)


def _pair_logaddexp(node):
    """logaddexp(log(c1) + logsigmoid(-x), log(c2) + logsigmoid(x)) = log(c1*sigmoid(-x) + c2*sigmoid(x))."""
    a, b = (_scaled_logsigmoid(arg) for arg in node.args)
    if a is None or b is None or sp.expand(a[1] + b[1]) != 0:
        return None
    (c_minus, _), (c_plus, x) = a, b
    x, e, lead, other, lead_is_zero = _pair_parts(c_minus, c_plus, x)
    log_sum = sp.log(sp.Piecewise((other, lead_is_zero), (lead + other * e, True)))
    return log_sum - sp.Piecewise((sp.Abs(x), lead_is_zero), (0, True)) - log1p(e)


def _pair_sigmoid(node):
    """sigmoid(log(c1) - log(c2) + logsigmoid(s) - logsigmoid(-s)): the share of c1*sigmoid(s)
    in c1*sigmoid(s) + c2*sigmoid(-s), one division."""
    logs, logsigmoids = [], []
    for term in sp.Add.make_args(node.args[0]):
        coefficient, factor = term.as_coeff_Mul()
        if coefficient not in (1, -1):
            return None
        if isinstance(factor, logsigmoid):
            logsigmoids.append((coefficient, factor.args[0]))
        elif _log_coefficient(factor) is not None:
            logs.append((coefficient, _log_coefficient(factor)))
        else:
            return None
    ups = [c for sign, c in logs if sign == 1]
    downs = [c for sign, c in logs if sign == -1]
    if len(logsigmoids) != 2 or sorted(c for c, _ in logsigmoids) != [-1, 1] or len(ups) > 1 or len(downs) > 1:
        return None
    (_, s_up), (_, s_down) = sorted(logsigmoids, key=lambda pair: -pair[0])
    if sp.expand(s_up + s_down) != 0:
        return None
    c_up, c_down = (ups or [sp.S.One])[0], (downs or [sp.S.One])[0]
    # c_up goes with sigmoid(s_up) = sigmoid(-s_down): the pair (c_up, c_down, s_down).
    x, e, lead, other, lead_is_zero = _pair_parts(c_up, c_down, s_down)
    up_is_minus = x == s_down  # after orientation, is c_up's sigmoid sigmoid(-x)?
    nonnegative = x >= 0
    # c_up*sigmoid(-+x)*(1 + e): the factor is e on the side where that sigmoid is small.
    up_part = c_up * (sp.Piecewise((e, nonnegative), (1, True)) if up_is_minus else sp.Piecewise((1, nonnegative), (e, True)))
    # lead = 0 leaves one term: the share is 1 if it is c_up's, 0 if not (0/0 once e underflows).
    up_is_lead = sp.Piecewise((sp.S.Zero if up_is_minus else sp.S.One, nonnegative), (sp.S.One if up_is_minus else sp.S.Zero, True))
    return sp.Piecewise((1 - up_is_lead, lead_is_zero), (up_part / (lead + other * e), True))


PAIR_FORMS: dict[type, Callable[[sp.Expr], sp.Expr | None]] = {
    logaddexp: _pair_logaddexp,
    sigmoid: _pair_sigmoid,
}


def _sigmoid_pair_forms(expr: sp.Expr) -> sp.Expr:
    """Replace the sigmoid-pair nodes of PAIR_FORMS by their one-log, one-division forms; before
    the other expansions, which would take their logsigmoid arguments apart."""
    forms = {}
    for node in distinct_nodes(expr):
        rewrite = PAIR_FORMS.get(type(node))
        form = rewrite(node) if rewrite is not None else None
        if form is not None:
            forms[node] = form
    return expr.xreplace(forms) if forms else expr


EXPANSIONS: dict[type, Callable[..., sp.Expr]] = {
    scaled_exp: _scaled_exp_code,
    scaled_expm1: _scaled_expm1_code,
    exp_minus: _exp_minus_code,
    sqrt1pm1: _sqrt1pm1_code,
    xlogy: _xlogy_code,
    logratio: _logratio_code,
    expm1mx: _expm1mx_code,
    log1pmx: _log1pmx_code,
    sigmoid: _sigmoid_code,
    softplus: _softplus_code,
    logsigmoid: _logsigmoid_code,
    logaddexp: _logaddexp_code,
    logcosh: _logcosh_code,
    sp.tanh: _tanh_code,
    sp.sech: _sech_code,
}


LOG_MAX_BY_DTYPE = {"float64": sp.Rational(700), "float32": sp.Rational(85)}


# lossgen functions a target's math library may compute itself (kmath does, on the CPU): where
# it does, they are printed as calls instead of their forms above.
LIBRARY_FUNCTIONS = (scaled_exp, scaled_expm1, exp_minus)


def kept_for_library(exprs, library) -> frozenset[str]:
    """Names of the functions that expand_for_code should leave to the target for `exprs`: those
    of LIBRARY_FUNCTIONS that `library` has, and tanh, unless a logcosh of the same argument is
    present (then tanh's form shares its exp and expm1 with logcosh's: cheaper than a call)."""
    keep = {f.__name__ for f in LIBRARY_FUNCTIONS if f.__name__ in library}
    logcosh_args = {f.args[0] for e in exprs for f in e.atoms(logcosh)}
    if not any(t.args[0] in logcosh_args for e in exprs for t in e.atoms(sp.tanh)):
        keep.add("tanh")
    return frozenset(keep)


def expand_for_code(expr: sp.Expr, dtype: str = "float64", keep=()) -> sp.Expr:
    """Replace lossgen's functions (and sech, tanh) by their stable primitive forms for printing,
    except those named in `keep` (see kept_for_library)."""
    keep = frozenset(keep)

    def expands(e):
        return type(e) in EXPANSIONS and getattr(type(e), "__name__", "") not in keep

    expanded = _sigmoid_pair_forms(expr).replace(expands, lambda e: EXPANSIONS[type(e)](*e.args))
    return expanded.xreplace({LOG_MAX: LOG_MAX_BY_DTYPE[dtype]})
