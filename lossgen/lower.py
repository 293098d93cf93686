"""Lower: turn the loss, gradient and Hessian diagonal into printed kernel statements.

One common-subexpression elimination runs over all outputs together, so the loss and its
derivatives share temporaries, and a strict printer writes each term as numba-compatible Python
(`math.*` calls that work in both @njit and CUDA device code). An expression the printer does not
know raises CodegenError instead of printing something wrong.
"""

from __future__ import annotations

import math

from collections.abc import Mapping
import dataclasses
from dataclasses import dataclass

import sympy as sp
from sympy.codegen.cfunctions import expm1, log1p
from sympy.printing.precedence import PRECEDENCE, precedence
from sympy.printing.pycode import PythonCodePrinter

from . import rowwise
from .budget import distinct_nodes
from .dtypes import DTYPES
from .errors import CodegenError
from .hazards import Bounds, value_bounds
from .functions import CUSTOM_FUNCTIONS
from .stabilize import exp_exact, exp_shared, expand_for_code, expm1_exact, kept_for_library

# x**n with n up to this is printed as n-1 multiplications (CSE has already shared repeated bases).
MAX_UNROLLED_POWER = 8

# Functions a formula may contain once lowered; anything else is refused before printing.
SUPPORTED_FUNCTIONS = (
    sp.exp, sp.log, log1p, expm1, sp.Abs, sp.sign, sp.sin, sp.cos, sp.tan, sp.tanh, sp.sinh, sp.cosh,
    sp.erf, sp.erfc, sp.loggamma, sp.Max, sp.Min, sp.Piecewise, sp.sech, exp_exact, exp_shared, expm1_exact,
) + CUSTOM_FUNCTIONS + rowwise.AGGREGATES + (rowwise.OneHot,)


def check_supported(expr: sp.Expr) -> str | None:
    """Return a message naming the first function kernels cannot evaluate, or None."""
    for node in sp.preorder_traversal(expr):
        if isinstance(node, sp.Function) and not isinstance(node, SUPPORTED_FUNCTIONS):
            return f"function {type(node).__name__!r} is not supported in kernels"
        if isinstance(node, (sp.Integral, sp.Sum, sp.Product, sp.Derivative, sp.Limit)):
            return f"{type(node).__name__} is not supported in kernels"
    return None


class Quotient(sp.Function):
    """a / b**n printed as a/b/.../b: neither b**n nor 1/b**n is formed, so 0/tiny**2 stays 0."""

    nargs = 3
    # It prints as a division, so it binds like one: as a power's base or exponent it must be
    # parenthesized (2**(0.5/p) was printed 2.0**(0.5)/p; found by the long fuzz profile).
    precedence = PRECEDENCE["Mul"]


def protect_divisions(expr: sp.Expr) -> sp.Expr:
    """Turn products with small negative integer powers into Quotient nodes (kept whole by CSE)."""

    def rewrite(node):
        # A constant (2/pi) stays a number: the printer writes it as one float, and a Quotient
        # inside Max or a comparison would make SymPy try to compare it ("not comparable").
        if not isinstance(node, sp.Mul) or node.is_number:
            return node
        denominators = [f for f in node.args if isinstance(f, sp.Pow) and f.exp.is_Integer and -4 <= f.exp < 0]
        if not denominators:
            return node
        numerator = sp.Mul(*(f for f in node.args if f not in denominators))
        for pw in denominators:
            numerator = Quotient(numerator, pw.base, -pw.exp)
        return numerator

    return expr.replace(lambda e: isinstance(e, sp.Mul), rewrite)


class KernelPrinter(PythonCodePrinter):
    """Strict printer of scalar kernel code in a given float type.

    Constants are typed (np.float32(0.5) in float32 kernels) so that no operation is silently
    promoted to float64; small integer powers become multiplications (numba's x**n is a loop,
    which keeps LLVM from vectorizing). `math_library` maps function names ("exp", "log1p", ...)
    to the kernel math functions a target calls instead of `math.*`; `used_math` collects the
    ones printed, for the module's imports.
    """

    _default_settings = dict(PythonCodePrinter._default_settings, strict=True, fully_qualified_modules=True)

    def __init__(self, dtype: str, math_library: Mapping[str, str] | None = None):
        super().__init__({"strict": True})
        if dtype not in DTYPES:
            raise CodegenError(f"dtype must be one of {DTYPES}, got {dtype!r}")
        self.dtype = dtype
        self.math_library = dict(math_library or {})
        self.used_math: set[str] = set()

    def call(self, name: str, *args) -> str:
        """A call of a math function: the target's kernel math library's, else Python's math module's."""
        function = self.math_library.get(name)
        if function is None:
            function = f"math.{name}"
        else:
            self.used_math.add(function)
        return f"{function}({', '.join(self._print(a) for a in args)})"

    def function(self, name: str, expr) -> str:
        """A math function of expr's arguments; of constants, its value (log(2) is a number, not a
        call per element that LLVM may or may not fold)."""
        if expr.is_number:
            value = expr.evalf(30)
            if value.is_real and value.is_finite:
                return self.typed(float(value))
        return self.call(name, *expr.args)

    def typed(self, value: float) -> str:
        try:
            number = float(value)
        except OverflowError:
            number = math.inf
        if not math.isfinite(number):
            # Also a constant that float() rounds to inf (exp(logaddexp(0, 710))), which would
            # print as the undefined name inf.
            raise CodegenError(f"the constant {str(value)[:40]}... is beyond the range of float64")
        text = repr(number)
        return text if self.dtype == "float64" else f"np.float32({text})"

    def _print_Integer(self, expr):
        return self.typed(int(expr))

    def _print_Rational(self, expr):
        return self.typed(float(expr))

    def _print_Float(self, expr):
        return self.typed(float(expr))

    def _print_NumberSymbol(self, expr):
        return self.typed(float(expr))

    _print_Pi = _print_Exp1 = _print_EulerGamma = _print_NumberSymbol

    def _print_Infinity(self, expr):
        return self.typed(float("inf"))

    def _print_NegativeInfinity(self, expr):
        return self.typed(float("-inf"))

    def _print_BooleanTrue(self, expr):
        return "True"

    def _print_BooleanFalse(self, expr):
        return "False"

    def _print_Pow(self, expr, rational=False):
        base, exponent = expr.as_base_exp()
        prec = precedence(expr)
        base_code = self.parenthesize(base, prec, strict=False)
        if exponent == sp.Rational(1, 2):
            return self.call_sqrt(base)
        if exponent == -sp.Rational(1, 2):
            return f"{self.typed(1)}/{self.call_sqrt(base)}"
        if exponent.is_Rational and exponent.q == 2 and 1 < abs(exponent.p) <= 2 * MAX_UNROLLED_POWER:
            # x**(k + 1/2) = x**k * sqrt(x): a vector instruction instead of a pow call.
            whole = self._integer_power(base, (abs(int(exponent.p)) - 1) // 2)
            product = f"({whole}*{self.call_sqrt(base)})"
            return product if exponent > 0 else f"{self.typed(1)}/{product}"
        if exponent.is_Integer:
            n = int(exponent)
            if n == -1:
                return f"{self.typed(1)}/{base_code}"
            if n < 0:
                return f"{self.typed(1)}/{self._integer_power(base, -n)}"
            return self._integer_power(base, n)
        return f"{base_code}**{self.parenthesize(exponent, prec, strict=False)}"

    def call_sqrt(self, base) -> str:
        """sqrt is an IEEE-exact instruction everywhere: always Python's math.sqrt."""
        return f"math.sqrt({self._print(base)})"

    def _integer_power(self, base, n: int) -> str:
        """base**n as multiplications up to MAX_UNROLLED_POWER, else numba's integer power."""
        code = self.parenthesize(base, precedence(sp.Mul(2, sp.Symbol("x"))) + 1, strict=False)
        if n == 1:
            return code
        if n > MAX_UNROLLED_POWER:
            return f"{self.parenthesize(base, precedence(sp.Pow(sp.Symbol('x'), 2)), strict=False)}**{n}"
        return "(" + "*".join([code] * n) + ")"

    def _print_Quotient(self, expr):
        numerator, base, count = expr.args
        code = self.parenthesize(numerator, precedence(sp.Mul(2, sp.Symbol("x"))), strict=False)
        divisor = self.parenthesize(base, precedence(sp.Pow(sp.Symbol("x"), 2)), strict=False)
        return code + f"/{divisor}" * int(count)

    def _print_sign(self, expr):
        # numba's CUDA target has no np.sign: a target's library may name its own.
        if "sign" in self.math_library:
            return self.call("sign", expr.args[0])
        return f"np.sign({self._print(expr.args[0])})"

    def _print_Abs(self, expr):
        return f"abs({self._print(expr.args[0])})"

    def _print_loggamma(self, expr):
        return f"math.lgamma({self._print(expr.args[0])})"

    def _print_Max(self, expr):
        return self._nested("max", expr.args)

    def _print_Min(self, expr):
        return self._nested("min", expr.args)

    def _nested(self, name, args):
        code = self._print(args[0])
        for arg in args[1:]:
            code = f"{name}({code}, {self._print(arg)})"
        return code

    def _print_Piecewise(self, expr):
        if expr.args[-1].cond is not sp.true:
            raise CodegenError(f"Piecewise without a final True branch cannot be printed: {expr}")
        code = self._print(expr.args[-1].expr)
        for branch in reversed(expr.args[:-1]):
            code = f"({self._print(branch.expr)} if {self._print(branch.cond)} else {code})"
        return code

    # Conditions combine with bitwise operators on booleans, never Python's short-circuit and/or
    # or a select between booleans: either leaves a branch in the loop, and LLVM then does not
    # vectorize numba's parallel loop (focal's float32 kernel ran 2x slower for one such select).
    def _print_And(self, expr):
        return "(" + " & ".join(self._print(a) for a in expr.args) + ")"

    def _print_Or(self, expr):
        return "(" + " | ".join(self._print(a) for a in expr.args) + ")"

    def _print_Not(self, expr):
        return f"(not {self._print(expr.args[0])})"

    def _print_ITE(self, expr):
        condition, if_true, if_false = (self._print(a) for a in expr.args)
        return f"(({condition} & {if_true}) | ((not {condition}) & {if_false}))"

    def _print_Relational(self, expr):
        ops = {"==": "==", "!=": "!=", "<": "<", "<=": "<=", ">": ">", ">=": ">="}
        return f"({self._print(expr.lhs)} {ops[expr.rel_op]} {self._print(expr.rhs)})"

    def _print_Symbol(self, expr):
        return expr.name

    def _print_OneHot(self, expr):
        # Inside a class loop, _j is the current class.
        return f"({self.typed(1)} if _j == {self._print(expr.args[0])} else {self.typed(0)})"

    def _print_not_supported(self, expr):
        raise CodegenError(f"cannot generate kernel code for {type(expr).__name__}: {expr}")

    def emptyPrinter(self, expr):
        raise CodegenError(f"cannot generate kernel code for {type(expr).__name__}: {expr}")


# SymPy class name -> the math function printed for it (through KernelPrinter.function: a call
# of the target's library or math.*, or the value of a constant). The print-only exp/expm1
# forms print as exp/expm1; scaled_exp, scaled_expm1 and exp_minus reach the printer only where
# the target's library has them (expand_for_code keeps them then).
MATH_CALLS = {
    "exp": "exp", "log": "log", "tanh": "tanh", "sinh": "sinh", "log1p": "log1p", "expm1": "expm1",
    "exp_exact": "exp", "exp_shared": "exp", "expm1_exact": "expm1",
    "scaled_exp": "scaled_exp", "scaled_expm1": "scaled_expm1", "exp_minus": "exp_minus",
}
for _class_name, _math_name in MATH_CALLS.items():
    setattr(KernelPrinter, f"_print_{_class_name}", lambda self, expr, _name=_math_name: self.function(_name, expr))


@dataclass(frozen=True)
class LoweredLoss:
    """Printed scalar code for one (loss, dtype): shared temporaries, then one line per output."""

    dtype: str
    inputs: tuple[str, ...]
    params: tuple[str, ...]
    wrt: tuple[str, ...]
    temporaries: tuple[tuple[str, str], ...]
    loss: str
    grad: tuple[str, ...]
    hess: tuple[str, ...]
    operation_count: int
    math_imports: tuple[str, ...] = ()


def share_root_reciprocals(exprs: list[sp.Expr]) -> list[sp.Expr]:
    """Where one base is raised to two or more different negative half-integer powers (the
    pseudo-Huber gradient's b**(-1/2) and Hessian's b**(-3/2)), write each as a power of one
    reciprocal square root r = 1/sqrt(b): one division for all of them instead of one each.

    r is a normal number for every positive finite b in either dtype (sqrt halves the exponent
    range), so a*r is as safe as a/sqrt(b) up to one rounding, and r**k under- or overflows where
    the b**j*sqrt(b) it replaces does."""
    powers = {p for e in exprs for p in e.atoms(sp.Pow) if p.exp.is_Rational and p.exp.q == 2 and p.exp < 0}
    exponents: dict[sp.Expr, set] = {}
    for power in powers:
        exponents.setdefault(power.base, set()).add(power.exp)
    shared = {p: Quotient(sp.S.One, sp.sqrt(p.base), 1) ** int(-p.exp.p) for p in powers if len(exponents[p.base]) >= 2}
    return [e.xreplace(shared) for e in exprs]


def _not_real(number: sp.Expr) -> bool:
    if number.is_extended_real is False:
        return True
    # SymPy leaves the sign of (-1)**c open for a numeric non-integer c; it is complex.
    return bool(isinstance(number, sp.Pow) and number.base.is_negative and not number.exp.is_integer)


def _code_forms(loss, outputs, dtype: str, keep) -> list[sp.Expr]:
    """The outputs in the primitive forms the printer writes; a CodegenError (one line) where
    SymPy cannot build them or a constant in them is not real (log of a negative constant
    becomes log(c) + I*pi once SymPy sees the number; (-1)**c for a non-integer c)."""
    try:
        forms = share_root_reciprocals([protect_divisions(expand_for_code(e, dtype, keep)) for e in outputs])
    except (ValueError, TypeError, AttributeError) as exc:
        raise CodegenError(f"{loss.name}: cannot write the kernel code: {str(exc).splitlines()[0][:200]}") from None
    for form in forms:
        culprit = next((n for n in distinct_nodes(form) if isinstance(n, sp.Expr) and n.is_number and _not_real(n)), None)
        if culprit is not None or form.has(sp.zoo, sp.nan):
            culprit = form if culprit is None else culprit
            raise CodegenError(
                f"{loss.name}: the kernel code has a constant that is not a finite real number ({str(culprit)[:80]}); "
                "is a log, root or power taken of a negative constant?"
            )
    return forms


# |b| within 2**-B .. 2**B: 1/b and its powers up to the fourth (Quotient's limit) are normal
# numbers, so a*(1/b)**n is finite and accurate wherever a/b/.../b is.
_RECIPROCAL_RANGE = {"float64": 250, "float32": 30}


def _safe_denominator(bounds: Bounds, dtype: str) -> bool:
    limit = 2.0 ** _RECIPROCAL_RANGE[dtype]
    away_from_zero = bounds.lo >= 1 / limit or bounds.hi <= -1 / limit
    return away_from_zero and bounds.magnitude <= limit


def share_reciprocals(temporaries, reduced, symbol_bounds: dict, dtype: str):
    """Where one denominator divides two or more times (sigmoid forms divide by 1 + exp(-|x|) in
    every derivative term), compute its reciprocal once and multiply: a vector division costs
    several multiplications. Only for a denominator whose interval (from the domains, see
    hazards.value_bounds) keeps the reciprocal's powers normal; any other stays divided, so
    0/tiny**2 still gives 0. Returns (temporaries, reduced) with the reciprocals placed after
    the temporaries they read."""
    known = dict(symbol_bounds)
    for symbol, value in temporaries:
        known[symbol] = value_bounds(value, known, dtype)
    divisions: dict[sp.Expr, int] = {}
    for expr in [value for _, value in temporaries] + list(reduced):
        for quotient in expr.atoms(Quotient):
            base = quotient.args[1]
            divisions[base] = divisions.get(base, 0) + int(quotient.args[2])
    shared = [b for b, count in divisions.items() if count >= 2 and _safe_denominator(value_bounds(b, known, dtype), dtype)]
    if not shared:
        return temporaries, reduced
    reciprocal = {b: sp.Symbol(f"_r{i}", real=True) for i, b in enumerate(shared)}

    def multiply(quotient):
        numerator, base, count = quotient.args
        return numerator * reciprocal[base] ** count if base in reciprocal else quotient

    def rewrite(expr):
        return expr.replace(lambda e: isinstance(e, Quotient), multiply)

    order = {symbol: i for i, (symbol, _) in enumerate(temporaries)}
    placed = {}
    for base, symbol in reciprocal.items():
        after = max((order[s] for s in base.free_symbols if s in order), default=-1)
        placed.setdefault(after, []).append((symbol, Quotient(sp.S.One, base, 1)))
    result = list(placed.get(-1, []))
    for i, (symbol, value) in enumerate(temporaries):
        result.append((symbol, rewrite(value)))
        result.extend(placed.get(i, []))
    return result, [rewrite(e) for e in reduced]


def _symbol_bounds(loss) -> dict:
    """{Symbol: Bounds} of a loss's inputs and params, from its domain facts."""
    return {loss.symbol(name): Bounds.of(loss.domain[name]) for name in loss.spec.symbols if name in loss.domain}


def lower(loss, dtype: str, math_library: Mapping[str, str] | None = None) -> LoweredLoss:
    """CSE and print a Loss's value, gradient and Hessian diagonal for one dtype, calling the
    functions of `math_library` (see KernelPrinter) where it has them."""
    outputs = [loss.stable_expr, *loss.grad, *(loss.hess[k, k] for k in range(len(loss.wrt)))]
    problem = next((m for m in map(check_supported, outputs) if m), None)
    if problem:
        raise CodegenError(f"{loss.name}: {problem}")
    keep = kept_for_library(outputs, math_library or {})
    code_exprs = _code_forms(loss, outputs, dtype, keep)
    temporaries, reduced = _cse(code_exprs, "_t")
    temporaries, reduced = share_reciprocals(temporaries, reduced, _symbol_bounds(loss), dtype)
    printer = KernelPrinter(dtype, math_library)
    printed_temps = tuple((sym.name, printer.doprint(value)) for sym, value in temporaries)
    printed = [printer.doprint(e) for e in reduced]
    n = len(loss.wrt)
    ops = sum(int(sp.count_ops(v)) for _, v in temporaries) + sum(int(sp.count_ops(e)) for e in reduced)
    return LoweredLoss(
        dtype=dtype,
        inputs=tuple(loss.inputs),
        params=tuple(loss.params),
        wrt=tuple(loss.wrt),
        temporaries=printed_temps,
        loss=printed[0],
        grad=tuple(printed[1:1 + n]),
        hess=tuple(printed[1 + n:]),
        operation_count=ops,
        math_imports=tuple(sorted(printer.used_math)),
    )


@dataclass(frozen=True)
class LoweredAggregate:
    """One aggregate of a row: its kind, the printed per-class body, the class of a take."""

    name: str
    kind: str
    temporaries: tuple[tuple[str, str], ...]
    body: str
    label: str | None


@dataclass(frozen=True)
class LoweredRows:
    """Printed code of a row-wise loss: aggregates, then row-level values, then per-class outputs."""

    dtype: str
    inputs: tuple[str, ...]
    roles: dict
    params: tuple[str, ...]
    class_params: tuple[str, ...]
    wrt: tuple[str, ...]
    aggregates: tuple[LoweredAggregate, ...]
    row_temporaries: tuple[tuple[str, str], ...]
    loss: str
    normalizer: str
    element_temporaries: tuple[tuple[str, str], ...]
    grad: tuple[str, ...]
    hess: tuple[str, ...]
    operation_count: int
    normalizer_aggregates: tuple[LoweredAggregate, ...] = ()
    normalizer_temporaries: tuple[tuple[str, str], ...] = ()
    constant_normalizer: bool = True
    math_imports: tuple[str, ...] = ()

    @property
    def temporaries(self):
        return self.row_temporaries + self.element_temporaries


def _cse(exprs, prefix):
    """One CSE over exprs, blind to the inside of cold-branch nodes.

    exp_exact/expm1_exact sit in branches taken only where a plain form would overflow or
    cancel; a subexpression CSE hoisted out of them (log(y), say) would run for every sample.
    """
    cold = {}

    def hide(node):
        cold.setdefault(node, sp.Dummy(f"cold{len(cold)}"))
        return cold[node]

    hidden = [e.replace(lambda n: isinstance(n, (exp_exact, expm1_exact)), hide) for e in exprs]
    temporaries, reduced = sp.cse(hidden, symbols=sp.numbered_symbols(prefix), optimizations=None, order="none")
    back = {d: n for n, d in cold.items()}
    return [(t, v.xreplace(back)) for t, v in temporaries], [e.xreplace(back) for e in reduced]


def lower_rows(loss, dtype: str, math_library: Mapping[str, str] | None = None) -> LoweredRows:
    """Lower a row-wise loss: every aggregate becomes a class loop whose value the row-level
    loss and the per-class gradient and Hessian use by name."""
    n = len(loss.wrt)
    normalizer = loss.spec.normalizer if loss.spec.normalizer is not None else sp.S.One
    outputs = [loss.stable_expr, normalizer, *loss.grad, *(loss.hess[k, k] for k in range(n))]
    problem = next((m for m in map(check_supported, outputs) if m), None)
    if problem:
        raise CodegenError(f"{loss.name}: {problem}")
    keep = kept_for_library(outputs, math_library or {})
    code = _code_forms(loss, outputs, dtype, keep)
    aggregates = rowwise.all_aggregates(code)
    names = {a: sp.Symbol(f"_A{i}", real=True) for i, a in enumerate(aggregates)}
    printer = KernelPrinter(dtype, math_library)
    lowered_aggregates = []
    ops = 0
    for i, agg in enumerate(aggregates):
        body = agg.args[0].xreplace({a: names[a] for a in aggregates if a != agg})
        temps, (reduced,) = _cse([body], f"_a{i}_")
        ops += int(sp.count_ops(body))
        label = printer.doprint(agg.args[1]) if isinstance(agg, rowwise.Take) else None
        lowered_aggregates.append(LoweredAggregate(
            names[agg].name, agg.kind, tuple((t.name, printer.doprint(v)) for t, v in temps), printer.doprint(reduced), label,
        ))
    placed = [e.xreplace(names) for e in code]
    rows = {loss.symbol(name) for name, role in loss.roles.items() if role == "row"}
    rows |= {loss.symbol(name) for name in loss.spec.class_params}
    for e in placed[:2]:
        if e.free_symbols & rows or e.has(rowwise.OneHot):
            raise CodegenError(f"{loss.name}: a row-level value uses a class element outside any aggregate: {e}")
    row_temps, row_reduced = _cse(placed[:2], "_r")
    element_temps, element_reduced = _cse(placed[2:], "_e")
    # The normalizer again on its own: a small kernel sums it before the main pass, so that
    # "mean" can scale every gradient in that one pass.
    needed = set(rowwise.all_aggregates([code[1]]))
    normalizer_temps, (normalizer_reduced,) = _cse([placed[1]], "_n")
    ops += sum(int(sp.count_ops(e)) for e in placed)
    lowered = LoweredRows(
        dtype=dtype,
        inputs=tuple(loss.inputs),
        roles=dict(loss.roles),
        params=tuple(p for p in loss.params if p not in loss.spec.class_params),
        class_params=tuple(loss.spec.class_params),
        wrt=tuple(loss.wrt),
        aggregates=tuple(lowered_aggregates),
        row_temporaries=tuple((t.name, printer.doprint(v)) for t, v in row_temps),
        loss=printer.doprint(row_reduced[0]),
        normalizer=printer.doprint(row_reduced[1]),
        element_temporaries=tuple((t.name, printer.doprint(v)) for t, v in element_temps),
        grad=tuple(printer.doprint(e) for e in element_reduced[:n]),
        hess=tuple(printer.doprint(e) for e in element_reduced[n:]),
        operation_count=ops,
        normalizer_aggregates=tuple(a for a, agg in zip(lowered_aggregates, aggregates) if agg in needed),
        normalizer_temporaries=tuple((t.name, printer.doprint(v)) for t, v in normalizer_temps) + (("_norm", printer.doprint(normalizer_reduced)),),
        constant_normalizer=normalizer == 1,
    )
    # Every printing call above has run: the kernel math functions used are known now.
    return dataclasses.replace(lowered, math_imports=tuple(sorted(printer.used_math)))
