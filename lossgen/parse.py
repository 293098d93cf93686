"""Safe expression parser: formula text to SymPy, by walking Python's AST against a whitelist.

User text is never given to eval, exec, sympify or parse_expr. Only numbers, arithmetic,
comparisons, the functions in FUNCTIONS and the names the caller declares can appear.
"""

from __future__ import annotations

import ast
import builtins
import keyword
import math
import sys
import warnings
from collections.abc import Mapping
from dataclasses import dataclass

import sympy as sp
from sympy.codegen.cfunctions import expm1, log1p

from . import budget
from .budget import TimeLimit, limit_hint, time_limit
from .errors import SpecError
from . import rowwise
from .functions import CUSTOM_FUNCTIONS, logaddexp, logcosh, logsigmoid, sigmoid, softplus

# Limits keep hostile input from exhausting memory or time. Each is read when a formula is
# parsed, so `lossgen.parse.MAX_DEPTH = 400` raises one for the rest of the session; every
# refusal names the limit it hit and says so.
MAX_EXPR_CHARS = 100_000   # characters in one formula
MAX_NODES = 20_000         # expression nodes of its syntax tree (names, numbers, operations, calls)
MAX_DEPTH = 200            # nesting depth (a long sum or product a + b + ... counts as one level)
MAX_INT_DIGITS = 30        # digits of one integer literal
MAX_INT_EXPONENT = 1_000   # |n| in x**n for a rational n
MAX_CONSTANT_BITS = 4_096  # bits of a folded rational constant (numerator or denominator)
MAX_NAME_CHARS = 100       # characters in an input, param, helper or loss name
MAX_CALL_ARGS = 32         # arguments of Max, Min, max, min (SymPy compares them pairwise)


def _limit(name: str) -> str:
    return limit_hint("parse", name)


@dataclass(frozen=True)
class FunctionRule:
    """A whitelisted function: how to build it in SymPy and how many arguments it takes."""

    build: object
    min_args: int
    max_args: int | None


def _lgamma(x):
    # SymPy folds loggamma of a positive integer n into log((n - 1)!) exactly; beyond n = 171
    # that factorial does not fit a float64 (and lgamma(1e7) would compute millions of digits;
    # found by the long fuzz profile).
    # Half-integers fold likewise (Gamma(n + 1/2) is a ratio of factorials times sqrt(pi)).
    if x.is_Rational and abs(x) > 171:
        raise ValueError(f"lgamma of the constant {x} folds to the logarithm of an exact factorial beyond float64; write its value instead")
    return sp.loggamma(x)


def _variadic(cls):
    return lambda *args: cls(*args)


def _row_max(*args):
    return rowwise.RowMax(args[0]) if len(args) == 1 else sp.Max(*args)


def _row_min(*args):
    return rowwise.RowMin(args[0]) if len(args) == 1 else sp.Min(*args)


FUNCTIONS: dict[str, FunctionRule] = {
    "exp": FunctionRule(sp.exp, 1, 1),
    "log": FunctionRule(sp.log, 1, 1),
    "log1p": FunctionRule(log1p, 1, 1),
    "expm1": FunctionRule(expm1, 1, 1),
    "sqrt": FunctionRule(sp.sqrt, 1, 1),
    "Abs": FunctionRule(sp.Abs, 1, 1),
    "abs": FunctionRule(sp.Abs, 1, 1),
    "sign": FunctionRule(sp.sign, 1, 1),
    "sin": FunctionRule(sp.sin, 1, 1),
    "cos": FunctionRule(sp.cos, 1, 1),
    "tan": FunctionRule(sp.tan, 1, 1),
    "tanh": FunctionRule(sp.tanh, 1, 1),
    "sinh": FunctionRule(sp.sinh, 1, 1),
    "cosh": FunctionRule(sp.cosh, 1, 1),
    "sigmoid": FunctionRule(sigmoid, 1, 1),
    "softplus": FunctionRule(softplus, 1, 1),
    "logsigmoid": FunctionRule(logsigmoid, 1, 1),
    "logaddexp": FunctionRule(logaddexp, 2, 2),
    "logcosh": FunctionRule(logcosh, 1, 1),
    "erf": FunctionRule(sp.erf, 1, 1),
    "erfc": FunctionRule(sp.erfc, 1, 1),
    "lgamma": FunctionRule(_lgamma, 1, 1),
    "Min": FunctionRule(_variadic(sp.Min), 2, None),
    "Max": FunctionRule(_variadic(sp.Max), 2, None),
    # Row-wise: one argument reduces over the class axis; two or more compare element-wise.
    "min": FunctionRule(_row_min, 1, None),
    "max": FunctionRule(_row_max, 1, None),
    "sum": FunctionRule(rowwise.RowSum, 1, 1),
    "mean": FunctionRule(rowwise.RowMean, 1, 1),
    "logsumexp": FunctionRule(rowwise.RowLogSumExp, 1, 1),
    "take": FunctionRule(rowwise.Take, 2, 2),
    "onehot": FunctionRule(rowwise.OneHot, 1, 1),
    "softmax": FunctionRule(rowwise.softmax, 1, 1),
    "log_softmax": FunctionRule(rowwise.log_softmax, 1, 1),
}

# Functions of a whole row (reductions over the class axis and row-wise transforms).
ROW_FUNCTIONS = frozenset({"sum", "mean", "logsumexp", "take", "onehot", "softmax", "log_softmax"})

CONSTANTS: dict[str, sp.Expr] = {"pi": sp.pi, "E": sp.E, "oo": sp.oo}

# Condition-only constructors; Piecewise is handled on its own because its arguments are pairs.
RELATION_FUNCTIONS = {"Eq": sp.Eq, "Ne": sp.Ne}

_COMPARE = {ast.Lt: sp.Lt, ast.LtE: sp.Le, ast.Gt: sp.Gt, ast.GtE: sp.Ge, ast.Eq: sp.Eq, ast.NotEq: sp.Ne}

# Names that read as constants which are not finite real numbers; refused in formulas by name.
NONFINITE_NAMES = {
    "nan": "nan (not a number)", "NaN": "NaN (not a number)", "inf": "inf (infinity)", "Inf": "Inf (infinity)",
    "infinity": "infinity", "Infinity": "Infinity", "zoo": "zoo (complex infinity)", "I": "I (the imaginary unit)",
}

# Names the generated kernels use for themselves (modules, the block size, the call's own
# keywords); user names must not shadow them.
GENERATED_CODE_NAMES = frozenset(
    {"np", "math", "numba", "nb", "prange", "njit", "cuda", "BLOCK", "weight", "out", "self", "reduction",
     # The kernels' own module-level functions, and the helpers they import: a param of the same
     # name is a kernel argument and would shadow the function inside the kernel body.
     "block_sum", "per_sample", "reduced", "rows", "normalizers", "per_row", "reduced_rows"}
    # lossgen.kmath's functions (exp_f64, log1p_f32, ...) and the CUDA kernels' sign_f32/f64,
    # spelled out so that parsing does not import numba; tests/test_parse.py checks them.
    | {
        f"{name}_{suffix}"
        for name in ("exp", "expm1", "log", "log1p", "tanh", "sinh", "scaled_exp", "scaled_expm1", "exp_minus", "sign")
        for suffix in ("f64", "f32")
    }
)
# Names that SymPy's lambdify prints into the reference evaluators (verify, convexity): an
# argument of the same name would shadow the function the evaluator calls.
EVALUATOR_NAMES = frozenset(
    {"numpy", "mpmath", "scipy", "sympy", "sp", "mpf", "select", "greater", "greater_equal", "less", "less_equal",
     "equal", "not_equal", "logical_and", "logical_or", "logical_not", "logical_xor", "maximum", "minimum",
     "amax", "amin", "where", "isnan", "reduce", "nan", "inf", "zoo", "sech", "polygamma", "digamma",
     # lambdify prints the constant E as `e`: a param named e would replace it (p*E + e*p).
     "e"}
) | {f.__name__ for f in CUSTOM_FUNCTIONS}  # xlogy, logratio, scaled_exp, ...: stabilize introduces them
# Every builtin (print, open, eval, len, ...): generated code and the evaluators call some of them.
BUILTIN_NAMES = frozenset(n for n in dir(builtins) if not n.startswith("_")) | {"True", "False", "None"}
# Generated kernels name the array of input x `x_arr`: a user name ending so could collide.
RESERVED_SUFFIX = "_arr"

RESERVED_NAMES = (
    GENERATED_CODE_NAMES | EVALUATOR_NAMES | BUILTIN_NAMES
    | {"mean"} | set(FUNCTIONS) | set(CONSTANTS) | set(RELATION_FUNCTIONS) | {"Piecewise", "And", "Or", "Not"}
)


def check_name(name: object, field: str) -> str:
    """Validate a user-chosen name (input, param or helper) and return it.

    Refused: non-identifiers, non-ASCII, Python keywords, names starting with '_', builtins,
    the formula language's own function and constant names, names generated code or the
    reference evaluators use (RESERVED_NAMES), names ending in '_arr', and names longer than
    MAX_NAME_CHARS.
    """
    if isinstance(name, str) and len(name) > MAX_NAME_CHARS:
        raise SpecError(f"{field}: name {name[:20]!r}... is longer than {MAX_NAME_CHARS} characters {_limit('MAX_NAME_CHARS')}")
    if not isinstance(name, str) or not name.isidentifier() or not name.isascii():
        raise SpecError(f"{field}: {name!r} is not a valid name (use letters, digits and _, not starting with a digit)")
    if keyword.iskeyword(name) or keyword.issoftkeyword(name):
        raise SpecError(f"{field}: {name!r} is a Python keyword and cannot be a name")
    if name.startswith("_"):
        raise SpecError(f"{field}: {name!r} starts with '_', which generated code reserves")
    if name in RESERVED_NAMES:
        raise SpecError(f"{field}: {name!r} is reserved (a Python builtin, a function or constant of the formula language, or a name used by generated code)")
    if name.endswith(RESERVED_SUFFIX):
        raise SpecError(f"{field}: {name!r} ends in {RESERVED_SUFFIX!r}, which generated code reserves for its arrays")
    return name


# Operators that chain left to right: a long chain a + b - c + ... is read in a loop and counts
# as one level of nesting, so a sum of 2000 terms is as acceptable as a sum of 3.
_CHAINS = ((ast.Add, ast.Sub), (ast.Mult, ast.Div), (ast.BitAnd,), (ast.BitOr,))


def _chain_group(op: ast.operator):
    return next((group for group in _CHAINS if isinstance(op, group)), None)


def _same_chain(parent: ast.AST, child: ast.AST) -> bool:
    """Whether `child` is the left operand of `parent` in one left-to-right chain."""
    if not (isinstance(parent, ast.BinOp) and isinstance(child, ast.BinOp) and child is parent.left):
        return False
    group = _chain_group(parent.op)
    return group is not None and isinstance(child.op, group)


# Atoms SymPy produces for undefined, infinite or complex values, with how messages name them.
_NONFINITE_ATOMS = {
    sp.nan: "nan, undefined", sp.zoo: "zoo, complex infinity", sp.oo: "oo, infinity", -sp.oo: "-oo, infinity",
    sp.I: "I, imaginary",
}


class _Reader:
    """Turns one checked AST into SymPy; every node type it accepts has a method here."""

    def __init__(self, symbols: Mapping[str, sp.Expr], field: str, text: str = ""):
        self.symbols = symbols
        self.field = field
        self.text = text
        self.constant: dict[int, bool] = {}

    def fail(self, message: str) -> SpecError:
        return SpecError(f"{self.field}: {message}")

    def source(self, node: ast.AST) -> str:
        """The text of `node` in the formula, on one line and shortened for a message."""
        try:
            segment = ast.get_source_segment(self.text, node) or ""
        except Exception:  # noqa: BLE001 - the text is only for the message
            segment = ""
        segment = " ".join(segment.split())
        if not segment:
            return "part of the formula"
        if not segment.isprintable():
            segment = ascii(segment)[1:-1]
        return segment if len(segment) <= 60 else segment[:57] + "..."

    def mark_constants(self, tree: ast.AST) -> None:
        """Record which nodes contain no declared symbol (their value is a number)."""
        order, stack = [], [tree]
        while stack:
            node = stack.pop()
            order.append(node)
            stack.extend(ast.iter_child_nodes(node))
        # A declared name is constant when it stands for a number (a helper such as r = "-8").
        numeric = {name: not getattr(value, "free_symbols", True) for name, value in self.symbols.items()}
        for node in reversed(order):  # children before parents
            if isinstance(node, ast.Name):
                self.constant[id(node)] = numeric.get(node.id, True)
            else:
                self.constant[id(node)] = all(self.constant[id(c)] for c in ast.iter_child_nodes(node))

    def read(self, node: ast.AST, *, condition: bool = False):
        method = getattr(self, "read_" + type(node).__name__, None)
        if method is None:
            raise self.fail(f"{_describe(node)} is not allowed in a formula")
        try:
            result = method(node)
        except SpecError:
            raise
        except (TypeError, ValueError, ArithmeticError) as exc:
            # SymPy refuses some real-looking input (a comparison with a complex value, Max of
            # something not comparable): one line naming the part, never a traceback.
            detail = " ".join(str(exc).split())[:120]
            raise self.fail(f"cannot build {self.source(node)}: {detail or type(exc).__name__}") from None
        is_condition = isinstance(result, (sp.logic.boolalg.Boolean, bool)) and not isinstance(result, sp.Expr)
        if condition and not is_condition:
            raise self.fail("expected a condition (a comparison such as r <= delta), got an expression")
        if not condition and is_condition:
            raise self.fail("a condition can only appear inside Piecewise")
        if not is_condition:
            self.check_finite(result, node)
        return result

    def check_finite(self, value, node: ast.AST) -> None:
        """Refuse, naming the text, a value that is nan, infinite or complex: at any node when
        SymPy folded it to one of those atoms, and at constant nodes also when it is a compound
        such as sqrt(-2) = sqrt(2)*I or (-8)**(1/3) = 2*(-1)**(1/3)."""
        try:
            atom = _NONFINITE_ATOMS.get(value)
        except TypeError:
            atom = None
        if atom is not None:
            raise self.fail(f"{self.source(node)} is not a finite real number (it is {atom})")
        if not self.constant.get(id(node)) or not isinstance(value, sp.Expr):
            return
        problem = _too_large(value) if value.is_Rational else _constant_problem(value)
        if problem:
            raise self.fail(f"{self.source(node)} is not a finite real number ({problem})")

    def read_Expression(self, node: ast.Expression):
        return self.read(node.body)

    def read_Constant(self, node: ast.Constant):
        value = node.value
        if isinstance(value, complex):
            raise self.fail(f"complex number {self.source(node)} is not allowed (losses are real)")
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise self.fail(f"constant {value!r:.60} is not a number")
        if isinstance(value, int):
            # Compare, never convert to text: str() of a huge int is itself refused by Python.
            if abs(value) >= 10**MAX_INT_DIGITS:
                raise self.fail(f"integer literal with more than {MAX_INT_DIGITS} digits {_limit('MAX_INT_DIGITS')}")
            return sp.Integer(value)
        if not math.isfinite(value):
            raise self.fail(f"number {self.source(node)} overflows to {value!r} in floating point")
        if value == 0.0 and any(c in "123456789" for c in self.source(node).lower().partition("e")[0]):
            raise self.fail(f"number {self.source(node)} underflows to 0 in floating point")
        return sp.Rational(repr(value))

    def read_Name(self, node: ast.Name):
        name = node.id
        if name in self.symbols:
            return self.symbols[name]
        if name in CONSTANTS:
            return CONSTANTS[name]
        if name in FUNCTIONS or name in RELATION_FUNCTIONS or name == "Piecewise":
            raise self.fail(f"function {name!r} used without calling it")
        if name in NONFINITE_NAMES:
            raise self.fail(f"{NONFINITE_NAMES[name]} is not a finite real number; a formula cannot contain it")
        raise self.fail(f"unknown name {name!r} (declare it in inputs, params or where)")

    def read_UnaryOp(self, node: ast.UnaryOp):
        if isinstance(node.op, ast.USub):
            return -self.read(node.operand)
        if isinstance(node.op, ast.UAdd):
            return self.read(node.operand)
        if isinstance(node.op, ast.Invert):
            return sp.Not(self.read(node.operand, condition=True))
        raise self.fail(f"operator {type(node.op).__name__} is not allowed")

    def read_BinOp(self, node: ast.BinOp):
        group = _chain_group(node.op)
        if group is None:
            return self.binary(node.op, self.read(node.left), node.right)
        # a + b - c + ...: walk the left spine in a loop (no recursion per term) and combine
        # left to right, exactly as the nested reading would.
        steps = []
        first = node
        while isinstance(first, ast.BinOp) and isinstance(first.op, group):
            steps.append(first)
            first = first.left
        if group == (ast.Add, ast.Sub):
            # One Add of all terms: the same canonical sum as adding them one by one, without
            # re-sorting the partial sum at every term (a 2000-term sum takes a second, not a minute).
            terms = [self.read(first)]
            for step in reversed(steps):
                term = self.read(step.right)
                terms.append(term if isinstance(step.op, ast.Add) else -term)
            return self.checked_constant(sp.Add(*terms))
        result = self.read(first) if group not in ((ast.BitAnd,), (ast.BitOr,)) else self.read(first, condition=True)
        for step in reversed(steps):
            result = self.binary(step.op, result, step.right)
            if step is not node and not (isinstance(result, sp.logic.boolalg.Boolean) and not isinstance(result, sp.Expr)):
                self.check_finite(result, step)
        return result

    def binary(self, op: ast.operator, left, right_node: ast.AST):
        """left (already read) combined by `op` with the operand at right_node."""
        op = type(op)
        if op in (ast.BitAnd, ast.BitOr):
            if not (isinstance(left, (sp.logic.boolalg.Boolean, bool)) and not isinstance(left, sp.Expr)):
                raise self.fail("expected a condition (a comparison such as r <= delta), got an expression")
            right = self.read(right_node, condition=True)
            return sp.And(left, right) if op is ast.BitAnd else sp.Or(left, right)
        if isinstance(left, (sp.logic.boolalg.Boolean, bool)) and not isinstance(left, sp.Expr):
            raise self.fail("a condition can only appear inside Piecewise")
        right = self.read(right_node)
        if op is ast.Add:
            return self.checked_constant(left + right)
        if op is ast.Sub:
            return self.checked_constant(left - right)
        if op is ast.Mult:
            return self.checked_constant(left * right)
        if op is ast.Div:
            if right.is_zero:
                raise self.fail(f"division by zero in {self.source(right_node)}" if not right.is_Number else "division by zero")
            return self.checked_constant(left / right)
        if op is ast.Pow:
            # Any rational exponent, not only an integer one: SymPy folds 2**(n + 1/2) into
            # 2**n*sqrt(2), and with n = 10**20 that never finishes.
            if right.is_Rational and abs(right) > MAX_INT_EXPONENT:
                raise self.fail(f"exponent {_short(right)} is larger than {MAX_INT_EXPONENT} in magnitude {_limit('MAX_INT_EXPONENT')}")
            if left.is_zero and right.is_number and right.is_negative:
                raise self.fail("zero raised to a negative power")
            if left.is_zero and not right.is_number:
                # 0**x is 0, 1 or infinite by the sign of x, and its derivative is nan
                # (SymPy's d/dx 0**x is 0**x*log(0)): say which with Piecewise instead.
                raise self.fail(f"zero raised to a variable power in {self.source(right_node)}; write the cases with Piecewise")
            if left.is_number and left.is_negative and not right.is_number:
                # (-1)**p is complex for every non-integer p, and lossgen's inputs are real.
                raise self.fail(
                    f"a negative number raised to a variable power in {self.source(right_node)} is not real "
                    "for non-integer exponents; write the cases with Piecewise"
                )
            if left.is_Rational and right.is_Rational:
                # Check the size before SymPy folds the power: (9**999)**999 has a million digits.
                bits = max(int(left.p).bit_length(), int(left.q).bit_length()) * math.ceil(abs(right))
                if bits > MAX_CONSTANT_BITS:
                    raise self.fail(f"constant {_short(left)}**{right} is larger than {MAX_CONSTANT_BITS} bits {_limit('MAX_CONSTANT_BITS')}")
            return self.checked_constant(left**right)
        raise self.fail(f"operator {op.__name__} is not allowed (use + - * / **)")

    def checked_constant(self, value):
        """Refuse folded rational constants beyond MAX_CONSTANT_BITS (products of many literals),
        also where SymPy keeps the constant as the coefficient or constant term of p*c*c*c..."""
        number = value if isinstance(value, sp.Rational) else None
        if number is None and isinstance(value, (sp.Mul, sp.Add)) and isinstance(value.args[0], sp.Rational):
            number = value.args[0]  # SymPy keeps the numeric coefficient/term first
        if number is not None and max(int(number.p).bit_length(), int(number.q).bit_length()) > MAX_CONSTANT_BITS:
            raise self.fail(f"a constant in the formula is larger than {MAX_CONSTANT_BITS} bits {_limit('MAX_CONSTANT_BITS')}")
        return value

    def read_Compare(self, node: ast.Compare):
        parts = []
        left = self.read(node.left)
        for op, comparator in zip(node.ops, node.comparators):
            relation = _COMPARE.get(type(op))
            if relation is None:
                raise self.fail(f"comparison {type(op).__name__} is not allowed")
            right = self.read(comparator)
            parts.append(_decided(relation(left, right)))
            left = right
        return parts[0] if len(parts) == 1 else sp.And(*parts)

    def read_BoolOp(self, node: ast.BoolOp):
        raise self.fail("use & and | (with parentheses) for conditions, not 'and'/'or'")

    def read_Call(self, node: ast.Call):
        if not isinstance(node.func, ast.Name):
            raise self.fail(f"{_describe(node.func)} cannot be called; only named functions such as exp(x)")
        name = node.func.id
        if node.keywords:
            raise self.fail(f"{name}() takes no keyword arguments")
        if name == "Piecewise":
            return self.read_piecewise(node)
        if name in RELATION_FUNCTIONS:
            if len(node.args) != 2:
                raise self.fail(f"{name}() takes 2 arguments")
            return _decided(RELATION_FUNCTIONS[name](self.read(node.args[0]), self.read(node.args[1])))
        rule = FUNCTIONS.get(name)
        if rule is None:
            if name in self.symbols:
                raise self.fail(f"{name!r} is a variable, not a function")
            raise self.fail(f"unknown function {name!r}; allowed: {', '.join(sorted(FUNCTIONS))}, Piecewise, Eq, Ne")
        count = len(node.args)
        if count < rule.min_args or (rule.max_args is not None and count > rule.max_args):
            expected = rule.min_args if rule.max_args == rule.min_args else f"at least {rule.min_args}"
            raise self.fail(f"{name}() takes {expected} argument(s), got {count}")
        if rule.max_args is None and count > MAX_CALL_ARGS:
            # SymPy compares the arguments of Max/Min pairwise, and their derivatives repeat
            # them: 300 arguments take minutes.
            raise self.fail(f"{name}() has {count} arguments, more than {MAX_CALL_ARGS} {_limit('MAX_CALL_ARGS')}")
        return rule.build(*(self.read(arg) for arg in node.args))

    def read_piecewise(self, node: ast.Call):
        if not node.args:
            raise self.fail("Piecewise() needs at least one (expression, condition) pair")
        pairs = []
        for arg in node.args:
            if not isinstance(arg, ast.Tuple) or len(arg.elts) != 2:
                raise self.fail("each Piecewise argument must be a pair (expression, condition)")
            value_node, cond_node = arg.elts
            value = self.read(value_node)
            if isinstance(cond_node, ast.Constant) and cond_node.value is True:
                cond = sp.true
            else:
                cond = self.read(cond_node, condition=True)
            pairs.append((value, cond))
        if pairs[-1][1] is not sp.true:
            raise self.fail("the last Piecewise pair must have the condition True (a value for every input)")
        return sp.Piecewise(*pairs)


def _decided(relation):
    """A comparison of two numbers, decided: SymPy leaves logaddexp(0, 0) < 0 open (lossgen's
    functions have no numerical evaluation in SymPy), and a condition that never varies would
    otherwise reach the derivatives as a Piecewise without symbols, which SymPy fails on."""
    if not isinstance(relation, sp.core.relational.Relational) or relation.free_symbols:
        return relation
    from .functions import to_elementary

    try:
        difference = complex(sp.N(to_elementary(relation.lhs - relation.rhs), 30, maxn=200))
    except (TypeError, ValueError, ArithmeticError, RecursionError):
        return relation
    if difference.imag != 0 or not math.isfinite(difference.real) or difference.real == 0:
        return relation  # too close to call at 30 digits (or not real): left to SymPy
    d = difference.real
    outcome = {sp.Lt: d < 0, sp.Le: d < 0, sp.Gt: d > 0, sp.Ge: d > 0, sp.Eq: False, sp.Ne: True}.get(type(relation))
    return relation if outcome is None else sp.true if outcome else sp.false


def _short(number) -> str:
    """A number for a message: in full when short, else its first digits and its length."""
    text = str(number)
    return text if len(text) <= 24 else f"{text[:12]}...({len(text)} digits)"


def _constant_problem(value: sp.Expr) -> str | None:
    """Why a constant SymPy expression is not a finite real number, or None when it is one."""
    if value.has(*_NONFINITE_ATOMS):
        atom = next(a for a in _NONFINITE_ATOMS if value.has(a))
        return f"it contains {_NONFINITE_ATOMS[atom]}"
    real, finite = value.is_extended_real, value.is_finite
    if real is False:
        return "it is complex"
    if finite is False:
        return "it is infinite"
    if real and finite:
        return _too_large(value)
    # SymPy cannot decide (such as (-2)**pi): evaluate it. What SymPy cannot evaluate either
    # (lossgen's own functions of a number, such as logaddexp(0, 1)) is not refused: only a
    # proved problem is.
    try:
        number = complex(sp.N(value, 30, maxn=200))
    except (TypeError, ValueError, ArithmeticError, RecursionError):
        return None
    if not (math.isfinite(number.real) and math.isfinite(number.imag)):
        return "it is infinite or undefined"
    if number.imag != 0:
        return "it is complex"
    return _too_large(value, number.real)


_FLOAT_MAX = sp.Rational(sys.float_info.max)


def _too_large(value: sp.Expr, approximation: float | None = None) -> str | None:
    """Why a real constant is unusable in float64 (it overflows to inf), or None.

    Checked at every constant node, so a huge value is refused where it arises: exp(814272) is
    refused before SymPy is asked whether sin(exp(814272)) is positive, which would take it
    minutes (the sine of a number of 350,000 digits needs all of them).
    """
    if value.is_Rational:
        return "it overflows floating point" if abs(value) > _FLOAT_MAX else None
    if approximation is None:
        try:
            approximation = complex(sp.N(value, 15, maxn=60)).real
        except (TypeError, ValueError, ArithmeticError, RecursionError, OverflowError):
            return None
    return "it overflows floating point" if not math.isfinite(approximation) or abs(approximation) > sys.float_info.max else None


def _describe(node: ast.AST) -> str:
    kinds = {
        "Attribute": "attribute access", "Subscript": "subscripting", "Lambda": "a lambda",
        "ListComp": "a comprehension", "GeneratorExp": "a comprehension", "SetComp": "a comprehension",
        "DictComp": "a comprehension", "JoinedStr": "an f-string", "IfExp": "an if-expression (use Piecewise)",
        "NamedExpr": "an assignment", "Starred": "star-arguments", "List": "a list", "Dict": "a dict",
        "Set": "a set", "Tuple": "a tuple", "Await": "await", "Yield": "yield", "YieldFrom": "yield",
        "Slice": "a slice",
    }
    return kinds.get(type(node).__name__, f"syntax {type(node).__name__}")


_MARKERS = (ast.expr_context, ast.operator, ast.unaryop, ast.cmpop, ast.boolop)


def _check_shape(tree: ast.AST, field: str) -> None:
    """Refuse trees with more than MAX_NODES nodes or deeper than MAX_DEPTH (iteratively, so a
    hostile tree cannot overflow the stack while it is measured)."""
    count = 0
    stack = [(tree, 0)]
    while stack:
        node, depth = stack.pop()
        # Operator and context markers (the + of a + b, the Load of a name) are not counted.
        count += not isinstance(node, _MARKERS)
        if count > MAX_NODES:
            raise SpecError(f"{field}: formula has more than {MAX_NODES} nodes {_limit('MAX_NODES')}")
        if depth > MAX_DEPTH:
            raise SpecError(f"{field}: formula nests deeper than {MAX_DEPTH} levels {_limit('MAX_DEPTH')}")
        stack.extend((child, depth if _same_chain(node, child) else depth + 1) for child in ast.iter_child_nodes(node))


def parse_expression(text: str, symbols: Mapping[str, sp.Expr], field: str = "expr") -> sp.Expr:
    """Parse formula text into a SymPy expression over the given symbols.

    Raises SpecError naming `field` for anything outside the whitelisted grammar, for values
    that are not finite real numbers (nan, oo, zoo, I, log(0), sqrt(-2), ...), and for input
    beyond the limits MAX_EXPR_CHARS, MAX_NODES, MAX_DEPTH, MAX_INT_DIGITS, MAX_INT_EXPONENT and
    MAX_CONSTANT_BITS (each message names the limit and how to raise it).
    """
    if not isinstance(text, str):
        raise SpecError(f"{field}: expected a string, got {type(text).__name__}")
    if len(text) > MAX_EXPR_CHARS:
        raise SpecError(f"{field}: formula is longer than {MAX_EXPR_CHARS} characters {_limit('MAX_EXPR_CHARS')}")
    if not text.strip():
        raise SpecError(f"{field}: formula is empty")
    # Deep nesting can overflow CPython's own parser before we can count it: brackets, and runs
    # of unary operators (- - - p nests one level per sign).
    depth = run = 0
    for char in text:
        depth += char in "([{"
        depth -= char in ")]}"
        if char in "-+~":
            run += 1
        elif not char.isspace():
            run = 0
        if depth > MAX_DEPTH or run > MAX_DEPTH:
            raise SpecError(f"{field}: formula nests deeper than {MAX_DEPTH} levels {_limit('MAX_DEPTH')}")
    source = text.strip()
    try:
        # Python warns about text such as "1if" or "'\d'" on stderr; the formula is either
        # read or refused here, in one line, so its warnings are noise (two lines from the CLI).
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            tree = ast.parse(source, mode="eval")
    except SyntaxError as exc:
        message = " ".join(str(exc.msg).split())
        raise SpecError(f"{field}: syntax error in formula at column {exc.offset}: {message}") from None
    except (RecursionError, MemoryError):
        # CPython builds the syntax tree recursively: a chain a + b + ... of about 3000 terms
        # is as deep to it as 3000 nested parentheses, and a tower p**p**... overflows its stack.
        raise SpecError(f"{field}: formula is too deeply nested or chained for Python's parser (such as a sum of more than about 2900 terms); split it with where helpers") from None
    except ValueError as exc:
        raise SpecError(f"{field}: cannot parse formula ({type(exc).__name__})") from None
    _check_shape(tree, field)
    reader = _Reader(symbols, field, source)
    reader.mark_constants(tree)
    try:
        # SymPy evaluates as it builds (assumptions, comparisons, folding); the limits above
        # bound the size, and this bounds the time of what a size cannot predict.
        with time_limit(budget.PARSE_SECONDS):
            result = reader.read(tree)
            if result.has(*_NONFINITE_ATOMS):
                atom = next(a for a in _NONFINITE_ATOMS if result.has(a))
                raise SpecError(f"{field}: formula is not a finite real number (it contains {_NONFINITE_ATOMS[atom]})")
            # Such as sqrt(-1 - p**2): complex for every real input, so kernels would return nan.
            # (SymPy may evaluate constants to answer: inside the time limit too.)
            if isinstance(result, sp.Expr) and result.is_extended_real is False:
                raise SpecError(f"{field}: formula is not real for any value of its inputs")
    except TimeLimit:
        raise SpecError(f"{field}: building the formula took longer than {budget.PARSE_SECONDS:g} s {limit_hint('budget', 'PARSE_SECONDS')}") from None
    except RecursionError:
        raise SpecError(f"{field}: formula nests too deeply for Python's recursion limit (lower lossgen.parse.MAX_DEPTH or raise sys.setrecursionlimit)") from None
    return result
