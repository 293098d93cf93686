"""Safe expression parser: formula text to SymPy, by walking Python's AST against a whitelist.

User text is never given to eval, exec, sympify or parse_expr. Only numbers, arithmetic,
comparisons, the functions in FUNCTIONS and the names the caller declares can appear.
"""

from __future__ import annotations

import ast
import keyword
import math
from collections.abc import Mapping
from dataclasses import dataclass

import sympy as sp
from sympy.codegen.cfunctions import expm1, log1p

from .errors import SpecError
from . import rowwise
from .functions import logaddexp, logcosh, logsigmoid, sigmoid, softplus

# Limits keep hostile input from exhausting memory or time.
MAX_EXPR_CHARS = 100_000
MAX_NODES = 20_000
MAX_DEPTH = 200
MAX_INT_DIGITS = 30
MAX_INT_EXPONENT = 1_000
MAX_CONSTANT_BITS = 4_096


@dataclass(frozen=True)
class FunctionRule:
    """A whitelisted function: how to build it in SymPy and how many arguments it takes."""

    build: object
    min_args: int
    max_args: int | None


def _lgamma(x):
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

# Names the generated kernels use for themselves; user names must not shadow them.
RESERVED_NAMES = frozenset(
    {"np", "math", "numba", "nb", "prange", "njit", "cuda", "range", "len", "float", "int",
     "min", "max", "abs", "sum", "mean", "True", "False", "None", "weight", "out", "self", "reduction"}
) | set(FUNCTIONS) | set(CONSTANTS) | set(RELATION_FUNCTIONS) | {"Piecewise", "And", "Or", "Not"}


def check_name(name: object, field: str) -> str:
    """Validate a user-chosen name (input, param or helper) and return it."""
    if not isinstance(name, str) or not name.isidentifier() or not name.isascii():
        raise SpecError(f"{field}: {name!r} is not a valid name (use letters, digits and _, not starting with a digit)")
    if keyword.iskeyword(name) or keyword.issoftkeyword(name):
        raise SpecError(f"{field}: {name!r} is a Python keyword and cannot be a name")
    if name.startswith("_"):
        raise SpecError(f"{field}: {name!r} starts with '_', which generated code reserves")
    if name in RESERVED_NAMES:
        raise SpecError(f"{field}: {name!r} is reserved (a function, constant or name used by generated code)")
    return name


class _Reader:
    """Turns one checked AST into SymPy; every node type it accepts has a method here."""

    def __init__(self, symbols: Mapping[str, sp.Expr], field: str):
        self.symbols = symbols
        self.field = field

    def fail(self, message: str) -> SpecError:
        return SpecError(f"{self.field}: {message}")

    def read(self, node: ast.AST, *, condition: bool = False):
        method = getattr(self, "read_" + type(node).__name__, None)
        if method is None:
            raise self.fail(f"{_describe(node)} is not allowed in a formula")
        result = method(node)
        is_condition = isinstance(result, (sp.logic.boolalg.Boolean, bool)) and not isinstance(result, sp.Expr)
        if condition and not is_condition:
            raise self.fail("expected a condition (a comparison such as r <= delta), got an expression")
        if not condition and is_condition:
            raise self.fail("a condition can only appear inside Piecewise")
        return result

    def read_Expression(self, node: ast.Expression):
        return self.read(node.body)

    def read_Constant(self, node: ast.Constant):
        value = node.value
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise self.fail(f"constant {value!r} is not a number")
        if isinstance(value, int):
            if len(str(abs(value))) > MAX_INT_DIGITS:
                raise self.fail(f"integer literal with more than {MAX_INT_DIGITS} digits")
            return sp.Integer(value)
        if not math.isfinite(value):
            raise self.fail(f"non-finite constant {value!r}")
        return sp.Rational(repr(value))

    def read_Name(self, node: ast.Name):
        name = node.id
        if name in self.symbols:
            return self.symbols[name]
        if name in CONSTANTS:
            return CONSTANTS[name]
        if name in FUNCTIONS or name in RELATION_FUNCTIONS or name == "Piecewise":
            raise self.fail(f"function {name!r} used without calling it")
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
        op = type(node.op)
        if op in (ast.BitAnd, ast.BitOr):
            left = self.read(node.left, condition=True)
            right = self.read(node.right, condition=True)
            return sp.And(left, right) if op is ast.BitAnd else sp.Or(left, right)
        left, right = self.read(node.left), self.read(node.right)
        if op is ast.Add:
            return self.checked_constant(left + right)
        if op is ast.Sub:
            return self.checked_constant(left - right)
        if op is ast.Mult:
            return self.checked_constant(left * right)
        if op is ast.Div:
            if right.is_zero:
                raise self.fail("division by zero")
            return self.checked_constant(left / right)
        if op is ast.Pow:
            if right.is_Integer and abs(int(right)) > MAX_INT_EXPONENT:
                raise self.fail(f"integer exponent {right} is larger than {MAX_INT_EXPONENT} (limit lossgen.parse.MAX_INT_EXPONENT)")
            if left.is_zero and right.is_number and right.is_negative:
                raise self.fail("zero raised to a negative power")
            if left.is_Rational and right.is_Integer:
                # Check the size before SymPy folds the power: (9**999)**999 has a million digits.
                bits = max(int(left.p).bit_length(), int(left.q).bit_length()) * abs(int(right))
                if bits > MAX_CONSTANT_BITS:
                    raise self.fail(f"constant {left}**{right} is too large (limit lossgen.parse.MAX_CONSTANT_BITS bits)")
            return self.checked_constant(left**right)
        raise self.fail(f"operator {op.__name__} is not allowed (use + - * / **)")

    def checked_constant(self, value):
        """Refuse folded rational constants beyond MAX_CONSTANT_BITS (products of many literals)."""
        if isinstance(value, sp.Rational) and max(int(value.p).bit_length(), int(value.q).bit_length()) > MAX_CONSTANT_BITS:
            raise self.fail(f"a constant in the formula is too large (limit lossgen.parse.MAX_CONSTANT_BITS bits)")
        return value

    def read_Compare(self, node: ast.Compare):
        parts = []
        left = self.read(node.left)
        for op, comparator in zip(node.ops, node.comparators):
            relation = _COMPARE.get(type(op))
            if relation is None:
                raise self.fail(f"comparison {type(op).__name__} is not allowed")
            right = self.read(comparator)
            parts.append(relation(left, right))
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
            return RELATION_FUNCTIONS[name](self.read(node.args[0]), self.read(node.args[1]))
        rule = FUNCTIONS.get(name)
        if rule is None:
            if name in self.symbols:
                raise self.fail(f"{name!r} is a variable, not a function")
            raise self.fail(f"unknown function {name!r}; allowed: {', '.join(sorted(FUNCTIONS))}, Piecewise, Eq, Ne")
        count = len(node.args)
        if count < rule.min_args or (rule.max_args is not None and count > rule.max_args):
            expected = rule.min_args if rule.max_args == rule.min_args else f"at least {rule.min_args}"
            raise self.fail(f"{name}() takes {expected} argument(s), got {count}")
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


def _check_shape(tree: ast.AST, field: str) -> None:
    count = 0
    stack = [(tree, 0)]
    while stack:
        node, depth = stack.pop()
        count += 1
        if count > MAX_NODES:
            raise SpecError(f"{field}: formula has more than {MAX_NODES} nodes (limit lossgen.parse.MAX_NODES)")
        if depth > MAX_DEPTH:
            raise SpecError(f"{field}: formula nests deeper than {MAX_DEPTH} levels (limit lossgen.parse.MAX_DEPTH)")
        stack.extend((child, depth + 1) for child in ast.iter_child_nodes(node))


def parse_expression(text: str, symbols: Mapping[str, sp.Expr], field: str = "expr") -> sp.Expr:
    """Parse formula text into a SymPy expression over the given symbols.

    Raises SpecError naming `field` for anything outside the whitelisted grammar.
    """
    if not isinstance(text, str):
        raise SpecError(f"{field}: expected a string, got {type(text).__name__}")
    if len(text) > MAX_EXPR_CHARS:
        raise SpecError(f"{field}: formula is longer than {MAX_EXPR_CHARS} characters (limit lossgen.parse.MAX_EXPR_CHARS)")
    if not text.strip():
        raise SpecError(f"{field}: formula is empty")
    # Deep nesting can overflow CPython's own parser before we can count it.
    depth = 0
    for char in text:
        depth += char in "([{"
        depth -= char in ")]}"
        if depth > MAX_DEPTH:
            raise SpecError(f"{field}: formula nests deeper than {MAX_DEPTH} levels (limit lossgen.parse.MAX_DEPTH)")
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except SyntaxError as exc:
        raise SpecError(f"{field}: syntax error in formula at column {exc.offset}: {exc.msg}") from None
    except (ValueError, RecursionError, MemoryError) as exc:
        raise SpecError(f"{field}: cannot parse formula ({type(exc).__name__})") from None
    _check_shape(tree, field)
    try:
        result = _Reader(symbols, field).read(tree)
    except RecursionError:
        raise SpecError(f"{field}: formula nests too deeply") from None
    if result.has(sp.zoo, sp.nan, sp.I):
        raise SpecError(f"{field}: formula contains a non-finite or complex constant (zoo, nan or I)")
    return result
