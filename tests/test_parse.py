"""The safe formula parser: what it accepts, what it refuses, and that it never executes text.

Formulas are read by lossgen.parse.parse_expression (directly, and through lg.Loss). Every
refusal is an lg.SpecError with a one-line message that names the field and the problem.
"""

from __future__ import annotations

import math
import time

import pytest
import sympy as sp

import lossgen as lg
from lossgen import parse
from lossgen.functions import to_elementary
from lossgen.parse import parse_expression

P, Y = sp.symbols("p y", real=True)
SYMBOLS = {"p": P, "y": Y}


def read(text: str) -> sp.Expr:
    return parse_expression(text, SYMBOLS, "expr")


def refusal(text: str) -> str:
    """The message of the SpecError that reading `text` must raise."""
    with pytest.raises(lg.SpecError) as info:
        read(text)
    message = str(info.value)
    assert "\n" not in message, f"message is not one line: {message!r}"
    assert message.startswith("expr:"), f"message does not name the field: {message!r}"
    return message


def value_at(expr: sp.Expr, p: float, y: float = 0.0) -> float:
    return float(sp.N(to_elementary(expr).subs({P: sp.Float(p, 30), Y: sp.Float(y, 30)}), 30))


# --- accepted grammar ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, expected",
    [
        ("3", sp.Integer(3)),
        ("2.5", sp.Rational(5, 2)),
        ("1e-3", sp.Rational(1, 1000)),
        (".5", sp.Rational(1, 2)),
        ("0.1", sp.Rational(1, 10)),
    ],
)
def test_number_literals_become_exact_sympy_numbers(text, expected):
    result = read(text)
    assert result == expected
    assert result.is_Rational


@pytest.mark.parametrize(
    "text, expected",
    [
        ("p + y", P + Y),
        ("p - y", P - Y),
        ("p * y", P * Y),
        ("p / y", P / Y),
        ("p ** 3", P**3),
        ("p ** y", P**Y),
        ("p ** -y", P ** (-Y)),
        ("-p", -P),
        ("+p", P),
        ("--p", P),
        ("p + y * 2", P + 2 * Y),
        ("(p + y) * 2", 2 * (P + Y)),
        ("-p ** 2", -(P**2)),
        ("2 ** 3 ** 2", sp.Integer(512)),
        ("p / 2 / 4", P / 8),
        ("-(p - y)**2 / 2", -((P - Y) ** 2) / 2),
    ],
)
def test_arithmetic_follows_python_precedence(text, expected):
    assert read(text) == expected


@pytest.mark.parametrize(
    "text, expected",
    [
        ("exp(p)", sp.exp(P)),
        ("log(p)", sp.log(P)),
        ("sqrt(p)", sp.sqrt(P)),
        ("Abs(p)", sp.Abs(P)),
        ("abs(p)", sp.Abs(P)),
        ("sign(p)", sp.sign(P)),
        ("sin(p)", sp.sin(P)),
        ("cos(p)", sp.cos(P)),
        ("tan(p)", sp.tan(P)),
        ("tanh(p)", sp.tanh(P)),
        ("sinh(p)", sp.sinh(P)),
        ("cosh(p)", sp.cosh(P)),
        ("erf(p)", sp.erf(P)),
        ("erfc(p)", sp.erfc(P)),
        ("lgamma(p)", sp.loggamma(P)),
        ("Min(p, y)", sp.Min(P, Y)),
        ("Max(p, y)", sp.Max(P, Y)),
        ("min(p, y)", sp.Min(P, Y)),
        ("max(p, y, 0)", sp.Max(P, Y, 0)),
    ],
)
def test_standard_functions_become_their_sympy_functions(text, expected):
    assert read(text) == expected


# Each whitelisted function, called on p = 0.3 (and y = -0.7), against the math library.
FUNCTION_VALUES = {
    "exp": ("exp(p)", math.exp(0.3)),
    "log": ("log(p)", math.log(0.3)),
    "log1p": ("log1p(p)", math.log1p(0.3)),
    "expm1": ("expm1(p)", math.expm1(0.3)),
    "sqrt": ("sqrt(p)", math.sqrt(0.3)),
    "Abs": ("Abs(y)", 0.7),
    "abs": ("abs(y)", 0.7),
    "sign": ("sign(y)", -1.0),
    "sin": ("sin(p)", math.sin(0.3)),
    "cos": ("cos(p)", math.cos(0.3)),
    "tan": ("tan(p)", math.tan(0.3)),
    "tanh": ("tanh(p)", math.tanh(0.3)),
    "sinh": ("sinh(p)", math.sinh(0.3)),
    "cosh": ("cosh(p)", math.cosh(0.3)),
    "sigmoid": ("sigmoid(p)", 1 / (1 + math.exp(-0.3))),
    "softplus": ("softplus(p)", math.log1p(math.exp(0.3))),
    "logsigmoid": ("logsigmoid(p)", -math.log1p(math.exp(-0.3))),
    "logaddexp": ("logaddexp(p, y)", math.log(math.exp(0.3) + math.exp(-0.7))),
    "logcosh": ("logcosh(p)", math.log(math.cosh(0.3))),
    "erf": ("erf(p)", math.erf(0.3)),
    "erfc": ("erfc(p)", math.erfc(0.3)),
    "lgamma": ("lgamma(p)", math.lgamma(0.3)),
    "Min": ("Min(p, y)", -0.7),
    "Max": ("Max(p, y)", 0.3),
    "min": ("min(p, y, 5)", -0.7),
    "max": ("max(p, y, -5)", 0.3),
}


def test_every_whitelisted_function_has_a_value_check():
    # Row-wise functions reduce over a class axis; tests/test_rowwise.py checks their values.
    assert set(FUNCTION_VALUES) == set(parse.FUNCTIONS) - parse.ROW_FUNCTIONS


@pytest.mark.parametrize("name", sorted(FUNCTION_VALUES))
def test_each_whitelisted_function_computes_what_its_name_says(name):
    text, expected = FUNCTION_VALUES[name]
    assert value_at(read(text), 0.3, -0.7) == pytest.approx(expected, rel=1e-14, abs=1e-15)


@pytest.mark.parametrize(
    "condition, expected",
    [
        ("p < y", sp.Lt(P, Y)),
        ("p <= y", sp.Le(P, Y)),
        ("p > y", sp.Gt(P, Y)),
        ("p >= y", sp.Ge(P, Y)),
        ("Eq(p, y)", sp.Eq(P, Y)),
        ("Ne(p, y)", sp.Ne(P, Y)),
        ("(p > 0) & (y > 0)", sp.And(P > 0, Y > 0)),
        ("(p > 0) | (y > 0)", sp.Or(P > 0, Y > 0)),
        ("0 < p < 1", sp.And(P > 0, P < 1)),
    ],
)
def test_piecewise_conditions_become_sympy_relations(condition, expected):
    result = read(f"Piecewise((p, {condition}), (y, True))")
    assert result == sp.Piecewise((P, expected), (Y, True))


def test_piecewise_with_several_branches_keeps_their_order():
    result = read("Piecewise((p**2/2, Abs(p) <= 1), (Abs(p) - 1/2, True))")
    assert result == sp.Piecewise((P**2 / 2, sp.Abs(P) <= 1), (sp.Abs(P) - sp.Rational(1, 2), True))
    assert value_at(result, 0.5) == pytest.approx(0.125)
    assert value_at(result, -3.0) == pytest.approx(2.5)


@pytest.mark.parametrize("text, expected", [("pi", sp.pi), ("E", sp.E), ("2*pi*p", 2 * sp.pi * P), ("E**p", sp.exp(P))])
def test_constants_pi_and_e_are_exact(text, expected):
    assert read(text) == expected


def test_declared_names_are_the_callers_symbols():
    q = sp.Symbol("q", positive=True)
    result = parse_expression("q + p", {"q": q, "p": P})
    assert result.free_symbols == {q, P}


def test_whitespace_around_a_formula_is_ignored():
    assert read("  p + y \n") == P + Y


# --- refusals --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, problem",
    [
        ("__import__('os').system('touch MARKER')", "attribute access"),
        ("p.real", "attribute access"),
        ("p.__class__.__bases__", "attribute access"),
        ("p[0]", "subscripting"),
        ("lambda: p", "lambda"),
        ("(lambda: p)()", "lambda"),
        ("[x for x in (p, y)]", "comprehension"),
        ("(x for x in (p, y))", "comprehension"),
        ("f'{p}'", "f-string"),
        ("eval('p')", "unknown function 'eval'"),
        ("exec('p')", "unknown function 'exec'"),
        ("exec", "unknown name 'exec'"),
        ("open('x')", "unknown function 'open'"),
        ("open", "unknown name 'open'"),
        ("Symbol('x')", "unknown function 'Symbol'"),
        ("Function('f')(p)", "cannot be called"),
        ("Integral(p, p)", "unknown function 'Integral'"),
        ("getattr(p, 'real')", "unknown function 'getattr'"),
        ("foo(p)", "unknown function 'foo'"),
        ("p(1)", "'p' is a variable, not a function"),
        ("exp", "'exp' used without calling it"),
        ("exp(x=p)", "keyword"),
        ("Max(p, y, key=p)", "keyword"),
        ("exp(p, y)", "exp() takes 1"),
        ("Max(p)", "at least 2"),
        ("p if p > 0 else y", "Piecewise"),
        ("(p := 1)", "assignment"),
        ("(p, y)", "tuple"),
        ("'text'", "not a number"),
        ("True", "not a number"),
        ("1j", "complex number 1j"),
        ("p % y", "Mod"),
        ("p // y", "FloorDiv"),
        ("p @ y", "MatMult"),
        ("p ^ y", "BitXor"),
        ("p is y", "Is"),
        ("p in y", "In"),
        ("import os", "syntax error"),
        ("p; y", "syntax error"),
        ("", "empty"),
        ("   ", "empty"),
    ],
)
def test_text_outside_the_grammar_is_refused_with_the_reason(text, problem):
    assert problem in refusal(text)


def test_undeclared_name_is_refused_naming_it():
    message = refusal("p + q_unknown")
    assert "'q_unknown'" in message


@pytest.mark.parametrize("text", ["p < 1 and p > 0", "(p < 1) or (y > 0)", "p and y"])
def test_python_and_or_are_refused_pointing_to_ampersand_and_bar(text):
    message = refusal(f"Piecewise((p, {text}), (y, True))")
    assert "and" in message and "&" in message


@pytest.mark.parametrize("text", ["p < 1", "p == y", "Eq(p, 1)", "(p > 0) & (y > 0)", "~(p < 1)", "p + (p < 1)"])
def test_a_bare_condition_outside_piecewise_is_refused(text):
    assert "inside Piecewise" in refusal(text)


def test_a_value_where_a_condition_belongs_is_refused():
    assert "expected a condition" in refusal("Piecewise((p, p + 1), (y, True))")


@pytest.mark.parametrize("text", ["Piecewise((p, p < 1))", "Piecewise((p, p < 1), (y, p >= 1))"])
def test_piecewise_without_a_final_true_branch_is_refused(text):
    assert "last Piecewise pair must have the condition True" in refusal(text)


@pytest.mark.parametrize("text", ["Piecewise()", "Piecewise(p)", "Piecewise((p, p < 1, y), (y, True))"])
def test_piecewise_arguments_must_be_expression_condition_pairs(text):
    assert "Piecewise" in refusal(text)


@pytest.mark.parametrize("text", ["1/0", "p/0", "p/(y - y)"])
def test_division_by_a_literal_zero_is_refused(text):
    assert "division by zero" in refusal(text)


@pytest.mark.parametrize("text", ["0**-1", "(p - p)**-2"])
def test_zero_to_a_negative_power_is_refused(text):
    assert "zero raised to a negative power" in refusal(text)


@pytest.mark.parametrize("text", ["0**log(p)", "(p - p)**p", "0**(y + 1)"])
def test_zero_to_a_variable_power_is_refused(text):
    # Found by tests/test_fuzz.py: 0**log(p) is 0 for p > 1, but its SymPy derivative is nan.
    assert "zero raised to a variable power" in refusal(text)


@pytest.mark.parametrize("text", ["(-1)**p", "(-1)**(0 + p)", "(-2)**(p*y) + p", "(1 - E)**p"])
def test_a_negative_number_to_a_variable_power_is_refused(text):
    # Found by the long fuzz profile: (-1)**p compiled to complex code that numba refused to
    # store into a float array, a page of numba typing errors.
    assert "negative number raised to a variable power" in refusal(text)


@pytest.mark.parametrize("text", ["(-1)**2*p", "(-p)**2", "(-2)**(1/3 + 2/3)*p"])
def test_a_negative_number_to_a_constant_integer_power_is_read(text):
    assert isinstance(lg.Loss("t", text, inputs=["y", "p"], wrt="p"), lg.Loss)


# Each non-finite or complex constant is refused naming the text that made it and what it is.
@pytest.mark.parametrize(
    "text, named, what",
    [
        ("p + nan", "nan", "not a number"),
        ("p + NaN", "NaN", "not a number"),
        ("p + inf", "inf", "infinity"),
        ("p * zoo", "zoo", "complex infinity"),
        ("p + I", "I", "imaginary unit"),
        ("p + oo", "oo", "infinity"),
        ("oo - oo", "oo", "infinity"),
        ("0*oo", "oo", "infinity"),
        ("p + log(0)", "log(0)", "zoo, complex infinity"),
        ("p + log(1 - 1)", "log(1 - 1)", "zoo"),
        ("p + log(p - p)", "log(p - p)", "zoo"),
        ("p + sqrt(-1)", "sqrt(-1)", "I, imaginary"),
        ("p * sqrt(-2)", "sqrt(-2)", "imaginary"),
        ("p + log(-2)", "log(-2)", "I, imaginary"),
        ("p + (-8)**(1/3)", "(-8)**(1/3)", "complex"),
        ("p + (-2)**pi", "(-2)**pi", "complex"),
        ("p + 1e400", "1e400", "overflows to inf"),
        ("p + 1e-400", "1e-400", "underflows to 0"),
        ("p * 1j", "1j", "complex number"),
    ],
)
def test_non_finite_and_complex_constants_are_refused_by_name(text, named, what):
    message = refusal(text)
    assert named in message and what in message, message


@pytest.mark.parametrize("text", ["1/0", "0/0", "p/(1 - 1)"])
def test_zero_divisions_are_refused_by_name(text):
    assert "division by zero" in refusal(text)


def test_a_formula_that_is_complex_everywhere_is_refused():
    assert "not real for any value" in refusal("sqrt(-1 - p**2)")


@pytest.mark.parametrize(
    "text", ["Piecewise((p, p < sqrt(-1 - p**2)), (y, True))", "Max(p, sqrt(-1 - p**2))", "Min(p, sqrt(-1 - y**2), 3)"]
)
def test_sympy_refusing_a_comparison_is_a_spec_error_naming_the_part(text):
    message = refusal(text)
    assert "cannot build" in message and "sqrt(-1 - " in message


def test_huge_integer_literal_is_refused():
    message = refusal("p * " + "9" * 200)
    assert "digits" in message and "lossgen.parse.MAX_INT_DIGITS" in message


def test_huge_hex_literal_is_refused_without_converting_it_to_text():
    # str() of an int of more than 4300 digits raises ValueError in Python itself.
    assert "MAX_INT_DIGITS" in refusal("p + 0x" + "f" * 5000)


# Every limit message says which limit it hit and how to raise it, in the same words.
@pytest.mark.parametrize(
    "limit, text",
    [
        ("MAX_EXPR_CHARS", "p+" * (5 * 1024 * 1024 // 2) + "p"),
        ("MAX_DEPTH", "(" * 20_000 + "p" + ")" * 20_000),
        ("MAX_DEPTH", "-" * 5_000 + "p"),
        ("MAX_DEPTH", "- " * 5_000 + "p"),
        ("MAX_DEPTH", "exp(" * 300 + "p" + ")" * 300),
        ("MAX_DEPTH", "**".join(["p"] * 300)),
        ("MAX_NODES", "+".join(["(" + "+".join(["sin(p)"] * 2_000) + ")"] * 4)),
        ("MAX_CALL_ARGS", "Max(" + ", ".join(["p"] * 15_000) + ")"),
        ("MAX_CALL_ARGS", "Min(" + ", ".join(f"p*{k}" for k in range(40)) + ")"),
        ("MAX_INT_DIGITS", "p * " + "9" * 31),
        ("MAX_INT_EXPONENT", "10**10**10"),
        ("MAX_INT_EXPONENT", "p**(10**100)"),
        ("MAX_INT_EXPONENT", "p**1001"),
        ("MAX_INT_EXPONENT", "2**(10**20 + 1/2)"),
        ("MAX_INT_EXPONENT", "sqrt(2)**(10**20 + 1)"),
        ("MAX_CONSTANT_BITS", "p * (1/9)**999 * (1/9)**999"),
        ("MAX_INT_EXPONENT", "p * 2**2**2**2**2"),
        ("MAX_CONSTANT_BITS", "p * (10**30)**(999/2)"),
        ("MAX_CONSTANT_BITS", "p * " + "*".join(["999999999999999999999999999999"] * 500)),
    ],
)
def test_every_limit_message_names_the_limit_and_how_to_raise_it(limit, text):
    start = time.perf_counter()
    message = refusal(text)
    assert f"(limit lossgen.parse.{limit}; raise it with lossgen.parse.{limit} = N)" in message, message
    assert time.perf_counter() - start < 2.0


def test_raising_a_limit_admits_what_it_refused(monkeypatch):
    text = "p**1500"
    assert "MAX_INT_EXPONENT" in refusal(text)
    monkeypatch.setattr(parse, "MAX_INT_EXPONENT", 2000)
    assert read(text) == P**1500


def test_a_long_sum_counts_as_one_level_of_nesting():
    # Left-to-right chains are read in a loop: 2000 terms nest no deeper than 3.
    start = time.perf_counter()
    result = read(" + ".join(f"sin({k}*p)" for k in range(1, 2001)) + " - y")
    assert time.perf_counter() - start < 10
    assert len(result.args) == 2001
    assert result.has(sp.sin(2000 * P)) and result.coeff(Y) == -1


def test_a_long_product_and_a_long_condition_chain_are_read():
    assert read("*".join(["p"] * 500)) == P**500
    chain = " & ".join(f"(p > {k})" for k in range(300))
    assert read(f"Piecewise((p, {chain}), (y, True))") == sp.Piecewise((P, sp.And(*(P > k for k in range(300)))), (Y, True))


# --- hostile sizes: refused quickly, never RecursionError or MemoryError -----------------------


@pytest.mark.parametrize(
    "label, text",
    [
        ("50,000 nested parentheses", "(" * 50_000 + "p" + ")" * 50_000),
        ("20,000 nested parentheses", "(" * 20_000 + "p" + ")" * 20_000),
        ("20,000 nested calls", "exp(" * 20_000 + "p" + ")" * 20_000),
        ("50,000 unary minus", "-" * 50_000 + "p"),
        ("30,000-term sum", "+".join(["p"] * 30_000)),
        ("3,000-deep power tower", "**".join(["p"] * 3_000)),
        ("5 MB string", "p+" * (5 * 1024 * 1024 // 2) + "p"),
        ("5 MB name", "p" * (5 * 1024 * 1024)),
    ],
)
def test_hostile_sizes_are_refused_quickly(label, text):
    start = time.perf_counter()
    refusal(text)
    assert time.perf_counter() - start < 2.0, f"{label} took too long"


@pytest.mark.parametrize("text", ["+".join(["p"] * 5_000), "**".join(["p"] * 3_000)])
def test_chains_too_long_for_pythons_own_parser_are_refused_in_one_line(text):
    assert "too deeply nested or chained for Python's parser" in refusal(text)


def test_nesting_at_a_sane_depth_is_accepted():
    assert read("(" * 100 + "p" + ")" * 100) == P


def test_nesting_beyond_the_limit_names_the_limit():
    assert "nests deeper" in refusal("(" * (parse.MAX_DEPTH + 5) + "p" + ")" * (parse.MAX_DEPTH + 5))


def test_too_many_nodes_names_the_limit():
    assert "MAX_NODES" in refusal("*".join(["(" + "+".join(["p"] * 2_500) + ")"] * 9))


def test_non_string_formula_is_refused():
    with pytest.raises(lg.SpecError, match="expected a string"):
        parse_expression(b"p", SYMBOLS, "expr")


# --- security: formula text is never executed -------------------------------------------------

# Plain-Python payloads: each creates the file MARKER when Python evaluates it.
PYTHON_PAYLOADS = [
    "__import__('os').system('touch MARKER')",
    "eval(\"__import__('os').system('touch MARKER')\")",
    "exec(\"import os; os.system('touch MARKER')\")",
    "open('MARKER', 'w')",
    "(lambda: __import__('os').system('touch MARKER'))()",
    "f\"{__import__('os').system('touch MARKER')}\"",
    "[__import__('os').system('touch MARKER') for _ in (1,)]",
    "__builtins__['__import__']('os').system('touch MARKER') if isinstance(__builtins__, dict) "
    "else __builtins__.__import__('os').system('touch MARKER')",
    "().__class__.__base__.__subclasses__() and __import__('subprocess').call(['touch', 'MARKER'])",
]
# SymPy-flavoured payloads: would run under sympify/parse_expr of raw text.
SYMPY_PAYLOADS = [
    "Symbol('x').__class__.__init__.__globals__['__builtins__']['__import__']('os').system('touch MARKER')",
    "Function('f')(__import__('os').system('touch MARKER'))",
    "Integral(__import__('os').system('touch MARKER'), p)",
]


def _payload(template: str, marker) -> str:
    return template.replace("MARKER", str(marker))


@pytest.mark.parametrize("template", PYTHON_PAYLOADS)
def test_control_python_payloads_do_create_the_marker_when_evaluated(template, tmp_path, monkeypatch):
    # Shows the payloads are live: if lossgen ever evaluated them, the checks below would fail.
    monkeypatch.chdir(tmp_path)
    marker = tmp_path / "marker"
    result = eval(_payload(template, marker), {"__builtins__": __builtins__})  # noqa: S307 - control test
    if hasattr(result, "close"):
        result.close()
    assert marker.exists()


@pytest.mark.parametrize("template", PYTHON_PAYLOADS + SYMPY_PAYLOADS)
def test_injection_in_a_formula_is_refused_and_never_executed(template, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    marker = tmp_path / "marker"
    with pytest.raises(lg.SpecError):
        read(_payload(template, marker))
    assert not marker.exists()


@pytest.mark.parametrize("template", PYTHON_PAYLOADS + SYMPY_PAYLOADS)
def test_injection_in_a_loss_expr_or_helper_is_refused_and_never_executed(template, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    marker = tmp_path / "marker"
    payload = _payload(template, marker)
    with pytest.raises(lg.SpecError, match=r"^expr:"):
        lg.Loss("evil", payload, inputs=["y", "p"], wrt="p")
    with pytest.raises(lg.SpecError, match=r"^where\.r:"):
        lg.Loss("evil", "r**2", inputs=["y", "p"], wrt="p", where={"r": payload})
    assert not marker.exists()


@pytest.mark.parametrize("template", PYTHON_PAYLOADS + SYMPY_PAYLOADS)
def test_injection_in_a_domain_string_is_refused_and_never_executed(template, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    marker = tmp_path / "marker"
    with pytest.raises(lg.SpecError, match=r"^domain\.p:"):
        lg.Loss("evil", "p**2", inputs=["p"], wrt="p", domain={"p": _payload(template, marker)})
    assert not marker.exists()


@pytest.mark.parametrize("template", PYTHON_PAYLOADS[:3] + SYMPY_PAYLOADS[:1])
def test_injection_in_a_spec_file_is_refused_and_never_executed(template, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    marker = tmp_path / "marker"
    payload = _payload(template, marker).replace("\\", "\\\\").replace('"', '\\"')
    spec = tmp_path / "evil.toml"
    spec.write_text(f'[evil]\nexpr = "{payload}"\ninputs = ["y", "p"]\nwrt = "p"\n')
    with pytest.raises(lg.SpecError, match=r"\[evil\]\.expr"):
        lg.load(spec)
    assert not marker.exists()


def test_injection_through_a_sympy_expr_with_a_hostile_symbol_name_is_refused(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    marker = tmp_path / "marker"
    hostile = sp.Symbol(f"__import__('os').system('touch {marker}')")
    with pytest.raises(lg.SpecError, match="unknown name"):
        lg.Loss("evil", hostile + sp.Symbol("p"), inputs=["p"], wrt="p")
    assert not marker.exists()


# --- reserved and invalid names ---------------------------------------------------------------


@pytest.mark.parametrize("name", ["np", "math", "_x", "lambda", "exp", "1abc", "weight", "pi", "match", "a-b", ""])
def test_reserved_or_invalid_input_name_is_refused_naming_the_field(name):
    with pytest.raises(lg.SpecError) as info:
        lg.Loss("l", "p", inputs=[name, "p"], wrt="p")
    message = str(info.value)
    assert message.startswith("inputs:")
    assert repr(name) in message


@pytest.mark.parametrize("name", ["np", "math", "_x", "lambda", "exp", "1abc"])
def test_reserved_or_invalid_param_name_is_refused_naming_the_field(name):
    with pytest.raises(lg.SpecError) as info:
        lg.Loss("l", "p", inputs=["p"], wrt="p", params={name: 1.0})
    message = str(info.value)
    assert message.startswith("params:")
    assert repr(name) in message


@pytest.mark.parametrize("name", ["np", "_x", "lambda", "exp", "1abc"])
def test_reserved_or_invalid_helper_name_is_refused_naming_the_field(name):
    with pytest.raises(lg.SpecError) as info:
        lg.Loss("l", "p", inputs=["p"], wrt="p", where={name: "p"})
    message = str(info.value)
    assert message.startswith("where:")
    assert repr(name) in message


@pytest.mark.parametrize("name", ["_x", "1abc", "lambda"])
def test_reserved_or_invalid_wrt_name_is_refused_naming_the_field(name):
    with pytest.raises(lg.SpecError, match=r"^wrt:"):
        lg.Loss("l", "p", inputs=["p"], wrt=name)


# Python's and the generated code's own names: builtins (print, open, eval, ...), module names,
# the kernels' block size and array suffix, the evaluators' function names, non-finite constants.
@pytest.mark.parametrize(
    "name",
    ["print", "open", "eval", "exec", "compile", "getattr", "len", "range", "input", "id", "type", "__import__", "__x",
     "math", "np", "numba", "nb", "prange", "njit", "cuda", "BLOCK", "numpy", "mpmath", "select", "where", "greater",
     "nan", "inf", "zoo", "p_arr", "y_arr", "sum", "mean", "take", "softmax", "Piecewise", "Eq", "True", "None",
     "class", "match", "case", "_", "e", "xlogy", "logratio", "scaled_exp"],
)
def test_names_python_or_generated_code_reserves_are_refused(name):
    with pytest.raises(lg.SpecError) as info:
        parse.check_name(name, "inputs")
    message = str(info.value)
    assert message.startswith("inputs:") and repr(name) in message and "\n" not in message


@pytest.mark.parametrize("name", ["p", "y", "delta", "class_weight", "x1", "I", "S", "N", "alpha", "gamma", "power", "arr"])
def test_ordinary_names_are_accepted(name):
    assert parse.check_name(name, "inputs") == name


def test_a_param_named_block_cannot_shadow_the_kernels_block_size():
    # BLOCK is the generated reduction kernels' block size: a param of that name would change it.
    with pytest.raises(lg.SpecError, match="'BLOCK' is reserved"):
        lg.Loss("l", "(p - BLOCK)**2", inputs=["p"], wrt="p", params={"BLOCK": 1.0})


def test_every_name_a_generated_kernel_module_defines_or_imports_is_reserved():
    # A param is a kernel argument: one named like a module-level function of the kernel
    # (block_sum, exp_f64, reduced, ...) would shadow it inside the kernel body.
    from lossgen import kmath

    names = set(kmath.KERNEL_MATH.values()) | {"block_sum", "per_sample", "reduced", "rows", "normalizers"}
    assert names <= parse.RESERVED_NAMES
    with pytest.raises(lg.SpecError, match="'exp_f64' is reserved"):
        lg.Loss("l", "exp_f64*exp(p)", inputs=["p"], wrt="p", params={"exp_f64": 1.0})


def test_every_name_a_rendered_kernel_imports_or_defines_is_reserved():
    # Read the names back from real kernel sources, elementwise and row-wise, both dtypes.
    import ast as python_ast

    from lossgen import runtime

    losses = [
        lg.Loss("all_math", "exp(p) + expm1(p) + log(1 + p**2) + log1p(p**2) + tanh(p) + sinh(p) + y", inputs=["y", "p"], wrt="p"),
        lg.get("cross_entropy"),
    ]
    from lossgen.render import KERNEL_LAYOUTS

    for loss, target in [(loss, target) for loss in losses for target in KERNEL_LAYOUTS]:
        for dtype in ("float64", "float32"):
            tree = python_ast.parse(runtime.kernel_source(loss, target, dtype))
            defined = set()
            for node in tree.body:
                if isinstance(node, python_ast.ImportFrom):
                    defined |= {alias.asname or alias.name for alias in node.names}
                elif isinstance(node, python_ast.FunctionDef):
                    defined.add(node.name.removesuffix("_serial").removesuffix("_weighted"))
            assert defined, "no imports or functions found"
            assert {"reduced", "rows", "reduced_rows"} & defined, defined
            assert defined <= parse.RESERVED_NAMES, defined - parse.RESERVED_NAMES


def test_an_input_named_like_another_inputs_array_is_refused():
    # Generated kernels call the array of input p `p_arr`.
    with pytest.raises(lg.SpecError, match="ends in '_arr'"):
        lg.Loss("l", "(p - p_arr)**2", inputs=["p_arr", "p"], wrt="p")


@pytest.mark.parametrize("text", ["p + nan", "p + inf", "Piecewise((p, p < oo), (y, True))", "p + zoo", "p*I"])
def test_non_finite_names_are_refused_even_inside_conditions(text):
    message = refusal(text)
    assert "is not a finite real number" in message


def test_parsing_past_the_time_budget_is_refused_naming_the_limit(monkeypatch):
    from lossgen import budget

    monkeypatch.setattr(budget, "PARSE_SECONDS", 0.05)
    # A formula no other test builds (SymPy caches): about 0.4 s of SymPy comparisons.
    text = "Max(" + ", ".join(f"p*{k} + y*0.123" for k in range(1, 33)) + ")"
    message = refusal(text)
    assert "(limit lossgen.budget.PARSE_SECONDS; raise it with lossgen.budget.PARSE_SECONDS = N)" in message


def test_sympy_warnings_and_python_warnings_are_not_printed(capfd):
    refusal("p + 1if")
    assert "Warning" not in capfd.readouterr().err


@pytest.mark.parametrize(
    "text, expected",
    [
        ("Piecewise((p, logaddexp(0, 0) > 0), (y, True))", P),
        ("Piecewise((p, softplus(0) < 0), (y, True))", Y),
        ("Piecewise((p, Eq(logcosh(1), 0)), (y, True))", Y),
        ("Piecewise((p, Ne(logcosh(1), 0)), (y, True))", P),
    ],
)
def test_a_condition_on_numbers_alone_is_decided_when_read(text, expected):
    # Found by tests/test_fuzz.py: SymPy left logaddexp(0, 0) < 0 open, and the derivative of
    # Max(0, Piecewise((p, logaddexp(0, 0) < 0), (0, True))) then raised KeyError inside SymPy.
    assert read(text) == expected


def test_a_condition_on_numbers_too_close_to_call_is_left_to_sympy():
    result = read("Piecewise((p, logaddexp(0, 0) < log(2)), (y, True))")
    assert isinstance(result, sp.Piecewise) and len(result.args) == 2


@pytest.mark.parametrize("text, named", [("p*exp(710)", "exp(710)"), ("p + 10**400", "10**400"),
                                         ("sin(expm1(9 + 814263.2354393409))*p", "expm1(9 + 814263.2354393409)")])
def test_constants_beyond_float64_are_refused_where_they_arise(text, named):
    # Found by tests/test_fuzz.py: SymPy spent minutes deciding the sign of sin(expm1(814272))*p.
    start = time.perf_counter()
    message = refusal(text)
    assert f"{named} is not a finite real number (it overflows floating point)" in message
    assert time.perf_counter() - start < 2


def test_large_constants_within_float64_are_accepted():
    assert read("p*exp(700)") == P * sp.exp(700)


@pytest.mark.parametrize("text", ["lgamma(1e3) + p", "lgamma(2000.5)*p", "lgamma(1e7) + p"])
def test_lgamma_of_a_large_constant_is_refused_in_one_line(text):
    # SymPy folds lgamma(1000) into log(999!) exactly: an integer no float64 holds (and lgamma(1e7)
    # would compute a factorial of millions of digits). Found by the long fuzz profile.
    message = refusal(text)
    assert "lgamma of the constant" in message and "write its value" in message


def test_lgamma_of_a_moderate_constant_still_works():
    import math

    import numpy as np

    loss = lg.Loss("l", "p*lgamma(171)", inputs=["y", "p"], wrt="p")
    assert loss.compile(reduction="none")(np.array([1.0]), np.array([2.0])).loss[0] == pytest.approx(2 * math.lgamma(171), rel=1e-15)
