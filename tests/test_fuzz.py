"""Fuzzing with hypothesis: formulas, spec files and the command line never crash, hang or lie.

Whatever lossgen is given it answers with a result or a one-line error, and the numbers it
returns are right:

- random formulas of the whitelisted grammar: lg.Loss gives a Loss or a SpecError/CodegenError
  (any other exception fails); the formula, its stable form and its gradient agree with an
  independent high-precision evaluation of the formula's *text*; and compiled kernels agree, in
  float64, within the error that evaluating the formula as written in float64 could have;
- random text and token soup: a Loss or a SpecError/CodegenError, never anything else;
- mutated TOML spec files: lg.load gives a dict of Loss or a one-line SpecError naming the file;
- bad command lines: exit code 2, exactly one line on stderr, no traceback.

Profiles. The tests here without a marker are the fast profile (CI, about a minute on 2 cores:
hypothesis derandomized, a bounded number of compiled kernels). The same checks marked `fuzz`
are the long profile (100,000+ examples, tens of minutes), deselected by default:

    python -m pytest -m fuzz tests/test_fuzz.py                    # the long profile
    LOSSGEN_FUZZ_STATS=stats.json python -m pytest -m fuzz ...     # and write the counts

Hypothesis' example database is off in both profiles (nothing is written into the repo).

The reference evaluator below reads the formula text with Python's ast module and computes with
its own mpmath context: it shares nothing with lossgen's parser, SymPy path or kernels. Alongside
each value it carries a bound on the absolute error that evaluating the text in float64 could
have (each operation rounds, each input and literal may be off by half an ulp, and every
function maps its argument's error interval to a value interval). A kernel is right when it lies
within a small multiple of that bound. Points where the formula as written is undefined,
overflows, or sits within that bound of a branch boundary (a Piecewise condition, sign(0), a
pole) are skipped: there float64 itself cannot say which side is meant.
"""

from __future__ import annotations

import ast
import collections
import contextlib
import io
import itertools
import json
import math
import os
import shutil
import string
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

import mpmath
import numpy as np
import pytest
import sympy as sp
from hypothesis import HealthCheck, event, given, note, settings, strategies as st
from hypothesis.configuration import set_hypothesis_home_dir
from mpmath.ctx_mp import MPContext

import lossgen as lg
from lossgen import budget
from lossgen.catalog import CATALOG_FILE
from lossgen.cli import main as cli_main

REPO = Path(__file__).resolve().parent.parent

# --- profiles -----------------------------------------------------------------------------------

# Hypothesis keeps caches (and, unless disabled as below, its example database) under .hypothesis/
# in the working directory: point it at a temporary directory so nothing is written into the repo.
set_hypothesis_home_dir(os.path.join(tempfile.gettempdir(), "lossgen-fuzz-hypothesis"))

_COMMON = dict(
    deadline=None,  # hangs are caught by HANG_SECONDS below, with a clearer report
    database=None,  # never write .hypothesis/ into the repository
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large],
    print_blob=True,
)
settings.register_profile("lossgen-fuzz-fast", derandomize=True, **_COMMON)
settings.register_profile("lossgen-fuzz-long", derandomize=False, **_COMMON)
FAST = settings.get_profile("lossgen-fuzz-fast")
LONG = settings.get_profile("lossgen-fuzz-long")

# Examples per check: (fast profile, long profile). The long total is over 100,000.
EXAMPLES = {
    "formulas_exact": (120, 12_000),
    "formulas_compiled": (12, 1_000),
    "random_text": (300, 45_000),
    "spec_files": (150, 30_000),
    "cli_in_process": (120, 15_000),
    "cli_subprocess": (3, 50),
}

# One example that runs longer than this is a hang: the parse (30 s) and derivation (60 s)
# budgets are inside it, so only something they fail to bound can reach it.
HANG_SECONDS = 150.0

# --- statistics (written to $LOSSGEN_FUZZ_STATS for docs/reliability.md) -----------------------

STATS: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)


def count(test: str, outcome: str, n: int = 1) -> None:
    """Record an outcome of one example of `test` (also shown by --hypothesis-show-statistics)."""
    STATS[test][outcome] += n
    if n == 1:
        event(outcome)


@pytest.fixture(scope="module", autouse=True)
def _write_stats():
    yield
    target = os.environ.get("LOSSGEN_FUZZ_STATS")
    if target:
        existing = json.loads(Path(target).read_text()) if Path(target).exists() else {}
        for test, counter in STATS.items():
            merged = collections.Counter(existing.get(test, {}))
            merged.update(counter)
            existing[test] = dict(sorted(merged.items()))
        Path(target).write_text(json.dumps(existing, indent=2, sort_keys=True) + "\n")


@contextlib.contextmanager
def no_hang(test: str, what: str):
    """Fail (not skip) an example that runs past HANG_SECONDS, naming what it was doing."""
    try:
        with budget.time_limit(HANG_SECONDS):
            yield
    except budget.TimeLimit:
        count(test, "HANG")
        pytest.fail(f"hang: {what} ran longer than {HANG_SECONDS} s")


# LOSSGEN_FUZZ_SCALE=0.1 runs a tenth of the long profile (to explore, or on a slow machine).
LONG_SCALE = float(os.environ.get("LOSSGEN_FUZZ_SCALE", "1"))


def both_profiles(name: str, *strategies, **kw_strategies):
    """Decorate a check into a fast test (this module's name) and a long `fuzz`-marked one."""

    def decorate(body):
        fast, long = EXAMPLES[name]
        long = max(1, round(long * LONG_SCALE))
        fast_test = settings(FAST, max_examples=fast)(given(*strategies, **kw_strategies)(body))
        long_test = pytest.mark.fuzz(settings(LONG, max_examples=long)(given(*strategies, **kw_strategies)(body)))
        return fast_test, long_test

    return decorate


# --- formulas: a generator of the whitelisted grammar --------------------------------------------
#
# Trees are tuples: ("num", text) ("name", n) ("neg", x) (op, a, b) ("call", f, args)
# ("pw", [(value, condition), ...], otherwise); conditions: ("cmp", op, a, b) ("and"/"or", c, d)
# ("not", c). render() writes them fully parenthesized, so the text means exactly the tree.

UNARY = ["exp", "log", "log1p", "expm1", "sqrt", "Abs", "abs", "sign", "sin", "cos", "tan", "tanh", "sinh", "cosh",
         "sigmoid", "softplus", "logsigmoid", "logcosh", "erf", "erfc", "lgamma"]
VARIADIC = ["Max", "Min", "max", "min"]
COMPARE = ["<", "<=", ">", ">=", "Eq", "Ne"]

NUMBER_TEXTS = st.one_of(
    st.integers(0, 12).map(str),
    st.sampled_from(["0.5", "0.25", "1.5", "2.5", "0.1", "0.3", "1e-3", "1e-8", "3.75", "100", "1e3", "7e2", "2e10",
                     "1e-300", "0.0", "1.0", "2.0"]),
    st.floats(min_value=1e-6, max_value=1e6, allow_nan=False, allow_infinity=False).map(repr),
)


def expressions(names: tuple[str, ...], max_leaves: int = 10):
    """Random formula trees over `names`, numbers and pi, E."""
    leaf = st.one_of(
        NUMBER_TEXTS.map(lambda t: ("num", t)),
        st.sampled_from(names).map(lambda n: ("name", n)),
        st.sampled_from(["pi", "E"]).map(lambda n: ("name", n)),
    )

    def extend(children):
        exponent = st.one_of(
            st.sampled_from(["2", "3", "-1", "-2", "0.5", "1.5", "4", "0"]).map(lambda t: ("num", t)),
            st.sampled_from(["1/3", "-1/2"]).map(lambda t: ("raw", t)),
            children,
        )
        # Not st.recursive again in here: a nested recursive strategy makes hypothesis build
        # (and validate) reprs that grow exponentially with the depth.
        comparison = st.tuples(st.just("cmp"), st.sampled_from(COMPARE), children, children)
        conditions = st.one_of(
            comparison,
            st.tuples(st.sampled_from(["and", "or"]), comparison, comparison),
            st.tuples(st.just("not"), comparison),
        )
        return st.one_of(
            st.tuples(st.just("neg"), children),
            st.tuples(st.sampled_from(["+", "-", "*", "/"]), children, children),
            st.tuples(st.just("**"), children, exponent),
            st.tuples(st.just("call"), st.sampled_from(UNARY), st.tuples(children)),
            st.tuples(st.just("call"), st.sampled_from(VARIADIC), st.lists(children, min_size=2, max_size=3).map(tuple)),
            st.tuples(st.just("call"), st.just("logaddexp"), st.tuples(children, children)),
            st.tuples(st.just("pw"), st.lists(st.tuples(children, conditions), min_size=1, max_size=2).map(tuple), children),
        )

    return st.recursive(leaf, extend, max_leaves=max_leaves)


def render(tree) -> str:
    """Formula text of a tree, fully parenthesized."""
    kind = tree[0]
    if kind in ("num", "raw"):
        return tree[1] if kind == "num" else f"({tree[1]})"
    if kind == "name":
        return tree[1]
    if kind == "neg":
        return f"(-{render(tree[1])})"
    if kind in ("+", "-", "*", "/", "**"):
        return f"({render(tree[1])} {kind} {render(tree[2])})"
    if kind == "call":
        return f"{tree[1]}({', '.join(render(a) for a in tree[2])})"
    if kind == "pw":
        pieces = "".join(f"({render(v)}, {render_condition(c)}), " for v, c in tree[1])
        return f"Piecewise({pieces}({render(tree[2])}, True))"
    raise AssertionError(kind)


def render_condition(tree) -> str:
    kind = tree[0]
    if kind == "cmp":
        op, a, b = tree[1:]
        return f"{op}({render(a)}, {render(b)})" if op in ("Eq", "Ne") else f"({render(a)} {op} {render(b)})"
    if kind in ("and", "or"):
        return f"({render_condition(tree[1])} {'&' if kind == 'and' else '|'} {render_condition(tree[2])})"
    return f"(~{render_condition(tree[1])})"


def names_in(tree) -> set[str]:
    """Every name a tree uses."""
    found = set()
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, tuple):
            if len(node) == 2 and node[0] == "name":
                found.add(node[1])
            else:
                stack.extend(node)
    return found


DOMAINS = {"real": None, "unit": "[0, 1]", "positive": "(0, oo)"}


@st.composite
def loss_specs(draw):
    """Keyword arguments of lg.Loss for a random elementwise formula in y, p and a param a."""
    domain_y = draw(st.sampled_from(["real", "real", "unit", "positive"]))
    domain_p = draw(st.sampled_from(["real", "real", "real", "positive"]))
    helper = draw(st.booleans())
    where = {}
    names = ("y", "p", "a")
    helper_names = set()
    if helper:
        helper_tree = draw(expressions(names, max_leaves=5))
        where["r"] = render(helper_tree)
        helper_names = names_in(helper_tree)
        names = names + ("r", "r")
    tree = draw(expressions(names))
    used = names_in(tree)
    if "p" not in used and not ("r" in used and "p" in helper_names):
        tree = (draw(st.sampled_from(["+", "*"])), tree, ("name", "p"))
    domain = {k: DOMAINS[v] for k, v in (("y", domain_y), ("p", domain_p)) if DOMAINS[v]}
    domain["a"] = "(0, oo)"
    return dict(
        expr=render(tree), inputs=["y", "p"], wrt="p", params={"a": 1.5}, where=where, domain=domain,
        stabilize=draw(st.sampled_from([True, True, True, False])),
    )


# --- the reference: the formula text evaluated with mpmath, with a float64 error bound -----------

MP = MPContext()  # a context of our own: lossgen's mpmath use cannot affect it, nor it lossgen's
MP.prec = 320
U64 = MP.mpf(2) ** -53  # float64 unit roundoff
ETA = MP.mpf(2) ** -1074  # float64 spacing at zero: the absolute error of an underflowed result
BIG = MP.mpf(2) ** 1023 * (2 - MP.mpf(2) ** -52)  # largest float64
SMALL = MP.mpf(10) ** -300  # below this (and above BIG) the exact mode stops: mpmath would crawl


class Undefined(Exception):
    """The formula as written has no finite real value at this point, or float64 cannot tell
    which side of a boundary it is on; the point is skipped, with the reason."""


def _representable(v) -> bool:
    return abs(v) <= BIG and MP.mpf(float(v)) == v


class Reference:
    """Evaluate formula text (with helpers) at a point, with a bound on float64's error.

    unit: the unit roundoff whose errors are bounded (2**-53 for float64; tiny for the exact
    comparisons against SymPy). perturb_inputs: let each input be off by half an ulp too, so the
    bound also covers any backward-stable rearrangement of the formula (SymPy distributes
    2*(p + 1) into 2*p + 2). lgamma_abs: lgamma(x) is log|Gamma(x)| (math.lgamma's meaning, the
    kernels'); otherwise negative arguments are undefined (SymPy's loggamma is complex there).
    """

    def __init__(self, values: dict[str, float], helpers: dict[str, str], *, unit, perturb_inputs=True,
                 lgamma_abs=True, float64=True):
        self.branches: list = []  # every branch decision (Abs, sign, Max/Min, conditions), in order
        self.unit = MP.mpf(unit)
        self.float64 = float64
        self.tiny = ETA if float64 else MP.mpf(0)
        self.lgamma_abs = lgamma_abs
        self.env = {}
        for name, x in values.items():
            v = MP.mpf(x)
            self.env[name] = (v, self.unit * abs(v) if perturb_inputs else MP.mpf(0))
        self.env["pi"] = (+MP.pi, self.unit * MP.pi)
        self.env["E"] = (+MP.e, self.unit * MP.e)
        for name, text in helpers.items():
            self.env[name] = self.evaluate(text)

    def evaluate(self, text: str):
        """(value, error bound) of the formula text; raises Undefined."""
        self.text = text.strip()
        try:
            return self.value(ast.parse(self.text, mode="eval").body)
        except (OverflowError, ZeroDivisionError) as exc:  # mpmath at 1e300: erfc(1e250) raises
            raise Undefined(f"beyond mpmath ({type(exc).__name__})") from None

    # -- helpers --
    def checked(self, v):
        """v, unless float64 overflows there (or, in exact mode, v is beyond 1e+-300)."""
        if not MP.isfinite(v):
            raise Undefined("not finite")
        if abs(v) > (BIG if self.float64 else 1 / SMALL):
            raise Undefined("overflow")
        if not self.float64 and v != 0 and abs(v) < SMALL:
            raise Undefined("out of range")
        return v  # float64 underflows gracefully: the ETA terms bound that error

    def rounding(self, v, exact_inputs: bool, ulps=1, scale=None):
        """The error of rounding a result v once (ulps of it, or of `scale`)."""
        if exact_inputs and self.float64 and _representable(v):
            return MP.mpf(0)
        return ulps * self.unit * (abs(v) if scale is None else scale) + self.tiny

    # -- values --
    def value(self, node):
        kind = type(node).__name__
        if kind == "Constant":
            return self.constant(node)
        if kind == "Name":
            return self.env[node.id]
        if kind == "UnaryOp":
            v, e = self.value(node.operand)
            return (-v if isinstance(node.op, ast.USub) else v), e
        if kind == "BinOp":
            return self.binary(node)
        if kind == "Call":
            return self.call(node)
        raise AssertionError(f"the generator does not make {kind}")

    def constant(self, node):
        value = node.value
        if isinstance(value, int):
            v = MP.mpf(value)
            return v, (MP.mpf(0) if abs(value) <= 2**53 else self.unit * abs(v))
        text = ast.get_source_segment(self.text, node).replace("_", "")
        v = MP.mpf(text)  # the decimal as written, exactly (to 320 bits)
        return self.checked(v), (MP.mpf(0) if self.float64 and _representable(v) else self.unit * abs(v))

    def binary(self, node):
        (a, ea) = self.value(node.left)
        op = type(node.op)
        if op is ast.Pow:
            return self.power(a, ea, *self.value(node.right))
        (b, eb) = self.value(node.right)
        exact = ea == 0 and eb == 0
        if op in (ast.Add, ast.Sub):
            v = a + b if op is ast.Add else a - b
            return self.checked(v), ea + eb + self.rounding(v, exact)
        if op is ast.Mult:
            v = a * b
            return self.checked(v), abs(a) * eb + abs(b) * ea + ea * eb + self.rounding(v, exact)
        if op is ast.Div:
            if b == 0:
                raise Undefined("division by zero")
            if eb >= abs(b):
                raise Undefined("denominator within rounding of 0")
            v = a / b
            return self.checked(v), (ea + abs(v) * eb) / (abs(b) - eb) + self.rounding(v, exact)
        raise AssertionError(op)

    def power(self, a, ea, b, eb):
        if eb == 0 and b == int(b):
            n = int(b)
            if n == 0:
                return MP.mpf(1), MP.mpf(0)
            if a == 0 and n < 0:
                raise Undefined("zero to a negative power")
            v = self.checked(a**n)
            lo, hi = a - ea, a + ea
            if n < 0 and lo <= 0 <= hi:
                raise Undefined("negative power of a base within rounding of 0")
            points = [lo, hi] + ([MP.mpf(0)] if lo < 0 < hi else [])
            spread = max(abs(t**n - v) for t in points)
            return v, spread + self.rounding(v, ea == 0, ulps=abs(n) + 1)
        # a**b with b not a literal integer: real only for a > 0 (or a = 0 exactly, b > 0).
        if a == 0 and ea == 0 and b - eb > 0:
            return MP.mpf(0), MP.mpf(0)
        if a - ea <= 0:
            raise Undefined("power of a base that is not safely positive")
        v = self.checked(MP.power(a, b))
        spread = max(abs(MP.power(s, t) - v) for s, t in itertools.product((a - ea, a + ea), (b - eb, b + eb)))
        return v, spread + self.rounding(v, False, ulps=2)

    def call(self, node):
        name = node.func.id
        if name == "Piecewise":
            for index, pair in enumerate(node.args):
                value_node, cond_node = pair.elts
                if isinstance(cond_node, ast.Constant) or self.condition(cond_node):
                    self.branches.append(("Piecewise", index))
                    return self.value(value_node)
            raise AssertionError("Piecewise without a True branch")
        args = [self.value(a) for a in node.args]
        if name in ("Max", "Min", "max", "min"):
            pick = max if name.lower() == "max" else min
            v = pick(a for a, _ in args)
            winners = [i for i, (a, _) in enumerate(args) if a == v]
            self.branches.append((name, winners[0] if len(winners) == 1 else "tie"))
            return v, max(e for _, e in args)
        if name == "logaddexp":
            (a, ea), (b, eb) = args

            def lae(s, t):
                m = max(s, t)
                return m + MP.log1p(MP.exp(-abs(s - t)))

            v = self.checked(lae(a, b))
            spread = max(abs(lae(a + ea, b + eb) - v), abs(lae(a - ea, b - eb) - v))
            m = max(a, b)
            return v, spread + self.rounding(v, False, ulps=4, scale=abs(v) + abs(m) + 1)
        (x, ex) = args[0]
        return self.function(name, x, ex)

    def function(self, name, x, ex):
        lo, hi = x - ex, x + ex
        ulps, scale = 4, None
        if name in ("Abs", "abs"):
            self.branches.append(("Abs", MP.sign(x)))
            return abs(x), ex
        if name == "sign":
            self.branches.append(("sign", MP.sign(x)))
            if x == 0 and ex == 0:
                return MP.mpf(0), MP.mpf(0)
            if abs(x) <= ex:
                raise Undefined("sign within rounding of 0")
            return MP.sign(x), MP.mpf(0)
        if name in ("sin", "cos"):
            f = MP.sin if name == "sin" else MP.cos
            v = f(x)
            return v, min(ex, 2) + self.rounding(v, False, ulps)  # |f'| <= 1
        if name in ("cosh", "logcosh"):
            # log(cosh(t)) would lose t**2/2 against 1 for tiny t even at 320 bits.
            f = MP.cosh if name == "cosh" else (lambda t: MP.log1p(2 * MP.sinh(t / 2) ** 2))
            points = [lo, hi]  # convex and even: the extremes of an interval are at its ends
            if name == "logcosh":
                ulps, scale = 8, None
        elif name == "tan":
            if MP.floor((lo - MP.pi / 2) / MP.pi) != MP.floor((hi - MP.pi / 2) / MP.pi):
                raise Undefined("tan within rounding of a pole")
            f, points = MP.tan, [lo, hi]
        elif name == "lgamma":
            if x <= 0 and not self.lgamma_abs:
                raise Undefined("lgamma of a non-positive number (SymPy's loggamma is complex there)")
            if lo <= 0 and MP.floor(hi) >= MP.ceil(lo) and any(k <= 0 for k in range(int(MP.ceil(lo)), int(MP.floor(hi)) + 1)):
                raise Undefined("lgamma within rounding of a pole")
            if x <= 0 and x == int(x):
                raise Undefined("lgamma at a pole")
            f, points = (lambda t: MP.re(MP.loggamma(t))), [lo, hi]  # convex between poles
            scale_abs = 1
        else:
            monotone = {
                "exp": MP.exp, "log": MP.log, "log1p": MP.log1p, "expm1": MP.expm1, "sqrt": MP.sqrt, "tanh": MP.tanh,
                "sinh": MP.sinh, "erf": MP.erf, "erfc": MP.erfc,
                "sigmoid": lambda t: 1 / (1 + MP.exp(-t)),
                "softplus": lambda t: max(t, 0) + MP.log1p(MP.exp(-abs(t))),
                "logsigmoid": lambda t: min(t, 0) - MP.log1p(MP.exp(-abs(t))),
            }
            f, points = monotone[name], [lo, hi]
            if name == "log" and lo <= 0:
                raise Undefined("log of a number not safely positive")
            if name == "log1p" and lo <= -1:
                raise Undefined("log1p of a number not safely above -1")
            if name == "sqrt":
                if x == 0 and ex == 0:
                    return MP.mpf(0), MP.mpf(0)
                if lo < 0:
                    raise Undefined("sqrt of a number not safely non-negative")
                ulps = 1
        v = self.checked(f(x))
        spread = max(abs(f(t) - v) for t in points)
        if name == "lgamma":
            return v, spread + self.rounding(v, False, ulps, scale=abs(v) + scale_abs)
        if name == "logcosh":
            scale = abs(v) + (abs(x) if abs(x) >= 1 else 0)
        return v, spread + self.rounding(v, False, ulps, scale)

    # -- conditions --
    def condition(self, node) -> bool:
        """A Piecewise condition; Undefined when rounding could flip it."""
        kind = type(node).__name__
        if kind == "BinOp":
            left, right = self.condition(node.left), self.condition(node.right)
            return (left and right) if isinstance(node.op, ast.BitAnd) else (left or right)
        if kind == "UnaryOp":
            return not self.condition(node.operand)
        if kind == "Call":  # Eq, Ne
            (a, ea), (b, eb) = self.value(node.args[0]), self.value(node.args[1])
            if a == b and ea == 0 and eb == 0:
                return node.func.id == "Eq"
            if abs(a - b) <= 4 * (ea + eb):
                raise Undefined("equality within rounding")
            return node.func.id == "Ne"
        if kind == "Compare":
            (a, ea), (b, eb) = self.value(node.left), self.value(node.comparators[0])
            if ea + eb == 0 or abs(a - b) > 4 * (ea + eb):
                op = type(node.ops[0])
                return {ast.Lt: a < b, ast.LtE: a <= b, ast.Gt: a > b, ast.GtE: a >= b}[op]
            raise Undefined("comparison within rounding")
        raise AssertionError(kind)


# --- points -------------------------------------------------------------------------------------

SPECIAL = [0.0, 1.0, -1.0, 0.5, -0.5, 2.0, -2.0, 3.0, 0.1, -0.1, 1e-8, -1e-8, 10.0, -10.0, 100.0, math.pi / 2]


def draw_values(rng: np.random.Generator, n: int, domain: str | None) -> np.ndarray:
    """n float64 values: special values, uniform ones, integers, magnitudes from 1e-8 to 1e8 and
    (one in twenty) from 1e-300 to 1e300, where overflow and underflow live."""
    kind = np.where(rng.uniform(size=n) < 0.05, 4, rng.integers(0, 4, n))
    special = rng.choice(SPECIAL, n)
    uniform = rng.uniform(-5, 5, n)
    magnitude = rng.choice([-1.0, 1.0], n) * 10.0 ** rng.uniform(-8, 8, n)
    integer = rng.integers(-4, 5, n).astype(float)
    extreme = rng.choice([-1.0, 1.0], n) * 10.0 ** rng.uniform(-300, 300, n)
    x = np.choose(kind, [special, uniform, magnitude, integer, extreme])
    if domain == "[0, 1]":
        x = np.where((x >= 0) & (x <= 1), x, np.abs(x) % 1.0)
    elif domain == "(0, oo)":
        x = np.where(x > 0, x, np.abs(x) + 0.25)
    return x


PARAM_VALUES = [0.5, 1.5, 2.0, 3.7, 0.01, 10.0]


# --- checks: formulas ---------------------------------------------------------------------------

ALLOWED = (lg.SpecError, lg.CodegenError)


def build(test: str, kwargs: dict):
    """lg.Loss(**kwargs) and its derivatives: a Loss, or None after an allowed error."""
    note(f"Loss kwargs: {kwargs!r}")
    try:
        loss = lg.Loss("fuzz", **kwargs)
    except ALLOWED as exc:
        message = str(exc)
        assert message and "\n" not in message, f"error message is not one line: {message!r}"
        count(test, f"refused: {type(exc).__name__}")
        return None
    try:
        loss.grad, loss.hess, loss.stable_expr
    except ALLOWED as exc:
        assert "\n" not in str(exc)
        # A CodegenError that only wraps a SymPy exception is a bug to look into, not a refusal.
        assert "SymPy failed" not in str(exc), str(exc)
        count(test, f"derivatives refused: {type(exc).__name__}")
        return None
    assert isinstance(loss, lg.Loss)
    assert len(loss.grad) == 1 and isinstance(loss.grad[0], sp.Expr)
    assert loss.hess.shape == (1, 1)
    assert loss.expr.free_symbols <= {loss.symbol(n) for n in ("y", "p", "a")}
    return loss


# lossgen's own functions for the high-precision evaluation of its SymPy expressions, in forms
# with no cancellation at high precision (log1p(exp(x)), not log(1 + exp(x)): SymPy's evalf
# returns 0 for log(1 + exp(-238)), which is -4.3e-104).
def _log1pmx(x):
    return mpmath.log1p(x) - x


SPECIAL_FUNCTIONS = {
    "sigmoid": lambda x: 1 / (1 + mpmath.exp(-x)),
    "softplus": lambda x: max(x, 0) + mpmath.log1p(mpmath.exp(-abs(x))),
    "logsigmoid": lambda x: min(x, 0) - mpmath.log1p(mpmath.exp(-abs(x))),
    "logaddexp": lambda a, b: max(a, b) + mpmath.log1p(mpmath.exp(-abs(a - b))),
    "logcosh": lambda x: mpmath.log1p(2 * mpmath.sinh(x / 2) ** 2),
    "scaled_exp": lambda z, y: y * mpmath.exp(z),
    "scaled_expm1": lambda z, y: mpmath.expm1(z + mpmath.log(y)) if y > 0 else y * mpmath.exp(z) - 1,
    "exp_minus": lambda z, y: y * mpmath.expm1(z - mpmath.log(y)) if y > 0 else mpmath.exp(z) - y,
    "sqrt1pm1": lambda x: x / (mpmath.sqrt(1 + x) + 1),
    "xlogy": lambda x, z: 0 * z if x == 0 else x * mpmath.log(z),
    "logratio": lambda a, b: mpmath.log(a / b),
    "expm1mx": lambda x: mpmath.expm1(x) - x,
    "log1pmx": _log1pmx,
    # lambdify prints Max/Min as Python's max/min, which return an int argument as it is: then
    # 1/max(3, y) is Python's float 1/3, not the 1200-bit value this evaluation must give.
    "max": lambda *args: mpmath.mpf(max(args)),
    "min": lambda *args: mpmath.mpf(min(args)),
}
SYMPY_BITS = 1200  # lossgen's expressions are evaluated at 1200 bits; the reference uses 320


def numeric(expr: sp.Expr, loss, values: dict[str, float]):
    """The value of a SymPy expression of the loss at the point (the thing being checked),
    evaluated by lambdify at 1200 bits, as a number of the reference's context; None where it is
    not real."""
    names = [n for n in ("y", "p", "a") if n in loss.spec.symbols]
    function = sp.lambdify([loss.symbol(n) for n in names], expr, modules=[SPECIAL_FUNCTIONS, "mpmath"])
    with mpmath.workprec(SYMPY_BITS):
        try:
            result = function(*(mpmath.mpf(values[n]) for n in names))
        except (OverflowError, ZeroDivisionError):  # mpmath itself gives up (erfc(1e250))
            raise Undefined("lossgen's expression is beyond mpmath here") from None
        if isinstance(result, mpmath.mpc):
            if result.imag != 0:
                return None
            result = result.real
        result = mpmath.mpf(result)
        if not mpmath.isfinite(result):
            return None
        return MP.mpf(result)


def check_exact(kwargs, seed):
    """One random formula: Loss or allowed error; its value, stable form and gradient against
    the reference evaluated from its text."""
    test = "formulas_exact"
    with no_hang(test, f"building {kwargs['expr']!r}"):
        loss = build(test, kwargs)
        if loss is None:
            return
        count(test, "built")
        rng = np.random.default_rng(seed)
        for _ in range(2):
            values = {k: float(draw_values(rng, 1, kwargs["domain"].get(k))[0]) for k in ("y", "p")}
            values["a"] = float(rng.choice(PARAM_VALUES))
            compare_exact(test, loss, kwargs, values)


def compare_exact(test, loss, kwargs, values):
    def reference(p_value):
        point = dict(values, p=p_value)
        ref = Reference(point, kwargs["where"], unit=MP.mpf(2) ** -300, perturb_inputs=False, lgamma_abs=False,
                        float64=False)
        v, e = ref.evaluate(kwargs["expr"])
        return v, e, ref.branches

    try:
        v, e, branches = reference(MP.mpf(values["p"]))
    except Undefined as why:
        count(test, f"point skipped: {why}")
        return
    note(f"point {values}: reference {v} +- {e}")
    for label, expr in (("expr", loss.expr), ("stable_expr", loss.stable_expr)):
        try:
            got = numeric(expr, loss, values)
        except Undefined as why:
            count(test, f"point skipped: {why}")
            return
        assert got is not None, f"{label} is not real at {values} where the formula is {v}"
        assert abs(got - v) <= 4 * e + MP.mpf(10) ** -40 * abs(v), f"{label} = {got} but the formula is {v} at {values}"
    # The gradient against a central difference of the reference, step h: truncation h**2 f'''
    # and the reference's own error e/h are both negligible at 320 bits.
    h = MP.mpf(10) ** -25
    if abs(values["p"]) > 1e50:
        # p +- 1e-25 would not differ from p at 320 bits.
        count(test, "gradient skipped: |p| > 1e50")
        return
    try:
        (up, e_up, branches_up), (down, e_down, branches_down) = (
            reference(MP.mpf(values["p"]) + h), reference(MP.mpf(values["p"]) - h))
    except Undefined as why:
        count(test, f"gradient skipped: {why}")
        return
    if not branches == branches_up == branches_down:
        # A kink (Abs, Max, a Piecewise boundary) within h of the point, or on it: the central
        # difference mixes two sides there.
        count(test, "gradient skipped: at or within 1e-25 of a kink")
        return
    slope = (up - down) / (2 * h)
    allowance = (e_up + e_down) / h + MP.mpf(10) ** -30 * (abs(slope) + abs(v) + 1)
    # A kink no branch records, such as sqrt(p**2 + y**2) at p = y = 0: the one-sided slopes differ.
    if abs((up - v) / h - (v - down) / h) > 2 * allowance + (e_up + e_down + 2 * e) / h + MP.mpf(10) ** -20 * (abs(slope) + 1):
        count(test, "gradient skipped: not differentiable here")
        return
    try:
        got = numeric(loss.grad[0], loss, values)
    except Undefined as why:
        count(test, f"gradient skipped: {why}")
        return
    assert got is not None, f"the gradient is not real at {values}"
    assert abs(got - slope) <= allowance, f"gradient {got} but the formula's slope is {slope} at {values}"
    count(test, "point compared (value, stable form, gradient)")


def check_compiled(kwargs, seed):
    """One random formula compiled (float64, reduction none) and evaluated at 48 points."""
    test = "formulas_compiled"
    with no_hang(test, f"compiling {kwargs['expr']!r}"):
        loss = build(test, kwargs)
        if loss is None:
            return
        try:
            kernel = loss.compile(target="cpu", dtype="float64", reduction="none")
        except ALLOWED as exc:
            assert "\n" not in str(exc)
            count(test, f"compile refused: {type(exc).__name__}")
            return
        count(test, "compiled")
        rng = np.random.default_rng(seed)
        n = 48
        y = draw_values(rng, n, kwargs["domain"].get("y"))
        p = draw_values(rng, n, kwargs["domain"].get("p"))
        a = float(rng.choice(PARAM_VALUES))
        with np.errstate(all="ignore"):
            result = kernel(y, p, a=a)
        loss_values = np.asarray(result.loss)
        assert loss_values.shape == (n,)
        for i in range(n):
            values = {"y": float(y[i]), "p": float(p[i]), "a": a}
            try:
                v, e = Reference(values, kwargs["where"], unit=U64).evaluate(kwargs["expr"])
            except Undefined as why:
                count(test, f"point skipped: {why}")
                continue
            got = loss_values[i]
            tolerance = 4 * e + 4 * U64 * abs(v) + 4 * ETA
            note(f"point {values}: kernel {got!r}, reference {v} +- {e}")
            assert math.isfinite(got), f"kernel gave {got} where the formula is {v} (at {values})"
            assert abs(MP.mpf(float(got)) - v) <= tolerance, (
                f"kernel gave {got!r} but the formula is {float(v)!r} +- {float(tolerance):.3g} at {values}"
            )
            count(test, "point compared" if tolerance < abs(v) / 2 or v == 0 else "point compared (ill-conditioned)")


test_formulas_match_the_reference_exactly, test_formulas_match_the_reference_exactly_long = both_profiles(
    "formulas_exact", loss_specs(), st.integers(0, 2**32 - 1)
)(check_exact)

test_compiled_formulas_match_the_reference_in_float64, test_compiled_formulas_match_the_reference_in_float64_long = (
    both_profiles("formulas_compiled", loss_specs(), st.integers(0, 2**32 - 1))(check_compiled)
)


# --- checks: arbitrary text -----------------------------------------------------------------------

TOKENS = [
    "p", "y", "a", "r", "x", "(", ")", ",", " ", "+", "-", "*", "/", "**", "//", "%", "@", "&", "|", "~", "^", "<",
    "<=", "==", "!=", ">", ">=", "=", ":=", ".", "[", "]", "{", "}", ":", ";", "'", '"', "\\", "\n", "\t", "#",
    "0", "1", "2.5", "1e308", "1e-400", "9" * 40, "0x1F", "1j", "nan", "inf", "oo", "zoo", "I", "E", "pi", "True",
    "None", "lambda", "if", "else", "for", "in", "not", "and", "or", "import", "__import__", "__class__", "os",
    "eval", "exec", "open", "getattr", "Symbol", "Function", "Integral", "sympify", "S", "print", "Piecewise", "Eq",
    "Ne", "Max", "Min", "max", "min", "sum", "mean", "logsumexp", "take", "onehot", "softmax", "log_softmax",
    *UNARY, "logaddexp", "λ", "ｐ", "\x00", "\u202e", "🙂",
]

random_texts = st.one_of(
    st.lists(st.sampled_from(TOKENS), max_size=40).map("".join),
    st.text(max_size=60),
    expressions(("y", "p", "a", "q")).map(render).flatmap(
        lambda text: st.tuples(st.integers(0, len(text)), st.integers(0, 5), st.sampled_from(TOKENS)).map(
            lambda cut: text[: cut[0]] + cut[2] + text[cut[0] + cut[1]:]
        )
    ),
)


def check_text(text):
    """Arbitrary text as a formula: a Loss or an allowed one-line error, nothing else."""
    test = "random_text"
    inputs = ["y", "p"]
    with no_hang(test, f"reading {text!r}"):
        try:
            loss = lg.Loss("fuzz", text, inputs=inputs, wrt="p", params={"a": 2.0}, where={"r": "p - y"})
        except ALLOWED as exc:
            assert "\n" not in str(exc) and str(exc), repr(str(exc))
            count(test, f"refused: {type(exc).__name__}")
            return
        count(test, "accepted")
        try:
            loss.grad, loss.hess
        except ALLOWED as exc:
            assert "\n" not in str(exc) and "SymPy failed" not in str(exc), str(exc)
            count(test, f"derivatives refused: {type(exc).__name__}")


test_random_text_is_a_loss_or_a_spec_error, test_random_text_is_a_loss_or_a_spec_error_long = both_profiles(
    "random_text", random_texts
)(check_text)


# --- checks: mutated spec files -------------------------------------------------------------------


def _seed_tables() -> list[str]:
    """Spec-file texts to mutate: every catalog table on its own, the example file, and all."""
    from lossgen.catalog import _tables

    tables = list(_tables().values())
    example = (REPO / "examples" / "quickstart.toml").read_text(encoding="utf-8")
    return tables + [example, CATALOG_FILE.read_text(encoding="utf-8")]


SEEDS = _seed_tables()

HOSTILE_VALUES = [
    "__import__('os').system('true')", "().__class__.__bases__", "p" * 200, "(" * 300 + "p" + ")" * 300,
    "p**(10**100)", "10**10**10", "nan", "oo - oo", "log(0)", "1/0", "exp(" * 40 + "p" + ")" * 40, "", " ", "\n",
    "p[0]", "lambda: p", "Symbol('x')", "(0, 1e400)", "(0, 1e-99999999)", "[oo, 1]", "(1, 0)", "_x", "np", "print",
    "BLOCK", "y_arr", "sum(p)", "take(p, y)",
]


def toml_value(value) -> str:
    """A TOML literal for a Python value (strings escaped as TOML basic strings)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        if isinstance(value, float) and not math.isfinite(value):
            return "nan" if value != value else ("inf" if value > 0 else "-inf")
        return repr(value)
    if isinstance(value, str):
        out = []
        for ch in value:
            if ch in '"\\':
                out.append("\\" + ch)
            elif ord(ch) < 0x20 or ord(ch) == 0x7F:
                out.append(f"\\u{ord(ch):04x}")
            else:
                out.append(ch)
        return '"' + "".join(out) + '"'
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{toml_key(k)} = {toml_value(v)}" for k, v in value.items()) + " }"
    return toml_value(str(value))


def toml_key(key: str) -> str:
    return key if key and all(c.isascii() and (c.isalnum() or c in "_-") for c in key) else toml_value(key)


def toml_document(document: dict) -> str:
    return "".join(
        f"[{toml_key(name)}]\n" + "".join(f"{toml_key(k)} = {toml_value(v)}\n" for k, v in table.items()) + "\n"
        if isinstance(table, dict) else f"{toml_key(name)} = {toml_value(table)}\n"
        for name, table in document.items()
    )


safe_text = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=30)
json_values = st.recursive(
    st.one_of(st.none().map(lambda _: "null"), st.booleans(), st.integers(-(2**70), 2**70),
              st.floats(allow_nan=True, allow_infinity=True), safe_text, st.sampled_from(HOSTILE_VALUES)),
    lambda children: st.one_of(st.lists(children, max_size=3), st.dictionaries(safe_text, children, max_size=3)),
    max_leaves=6,
)


@st.composite
def structural_mutation(draw, document: dict) -> dict:
    """Change one table: drop, rename or retype a key, or put a hostile value in a field."""
    document = json.loads(json.dumps(document, default=str))  # a deep copy
    if not document:
        return document
    name = draw(st.sampled_from(sorted(document)))
    table = document[name]
    if not isinstance(table, dict) or not table:
        return document
    key = draw(st.sampled_from(sorted(table)))
    action = draw(st.sampled_from(["drop", "rename", "retype", "hostile", "nested", "rename_table", "add"]))
    if action == "drop":
        del table[key]
    elif action == "rename":
        table[draw(st.one_of(safe_text, st.sampled_from(["expr2", "Expr", "params ", "domain"])))] = table.pop(key)
    elif action == "retype":
        table[key] = draw(json_values)
    elif action == "hostile":
        value = draw(st.sampled_from(HOSTILE_VALUES))
        if isinstance(table[key], dict) and table[key]:
            inner = draw(st.sampled_from(sorted(table[key])))
            table[key][draw(st.sampled_from([inner, value[:20] or "k"]))] = value
        elif isinstance(table[key], list) and table[key]:
            table[key][draw(st.integers(0, len(table[key]) - 1))] = value
        else:
            table[key] = value
    elif action == "nested":
        table[key] = {"inner": table[key]}
    elif action == "rename_table":
        document[draw(st.one_of(safe_text, st.sampled_from(["", "a b", "1abc", "lambda", "λ", "x" * 150])))] = document.pop(name)
    else:
        table[draw(safe_text)] = draw(json_values)
    return document


@st.composite
def spec_file_bytes(draw) -> bytes:
    """A spec file: a real one, structurally mutated or not, then with byte-level mutations."""
    text = draw(st.sampled_from(SEEDS))
    if draw(st.booleans()):
        document = tomllib.loads(text)
        for _ in range(draw(st.integers(1, 3))):
            document = draw(structural_mutation(document))
        text = toml_document(document)
    data = bytearray(text.encode("utf-8"))
    for _ in range(draw(st.integers(0, 4))):
        action = draw(st.sampled_from(["flip", "insert", "delete", "truncate", "duplicate"]))
        at = draw(st.integers(0, max(len(data) - 1, 0)))
        if action == "flip" and data:
            data[at] = draw(st.integers(0, 255))
        elif action == "insert":
            data[at:at] = draw(st.one_of(st.binary(max_size=8), st.sampled_from([b"[", b"]", b"=", b'"', b"\n", b"{", b"\\", b"\xff", b"\x00"])))
        elif action == "delete":
            del data[at: at + draw(st.integers(1, 20))]
        elif action == "truncate":
            del data[at:]
        elif action == "duplicate":
            data[at:at] = data[at: at + draw(st.integers(1, 60))]
    return bytes(data)


SPEC_DIR = Path(tempfile.mkdtemp(prefix="lossgen-fuzz-specs-"))
_spec_counter = itertools.count()


def check_spec_file(data):
    """lg.load of a mutated file: a dict of Loss, or a one-line SpecError that names the file."""
    test = "spec_files"
    path = SPEC_DIR / f"spec_{next(_spec_counter)}.toml"
    path.write_bytes(data)
    try:
        with no_hang(test, f"loading {data[:200]!r}"):
            try:
                losses = lg.load(path)
            except lg.SpecError as exc:
                message = str(exc)
                assert "\n" not in message, f"not one line: {message!r}"
                assert str(path) in message, f"does not name the file: {message!r}"
                count(test, "refused: SpecError")
                return
        assert isinstance(losses, dict) and losses
        assert all(isinstance(name, str) and isinstance(loss, lg.Loss) and loss.name == name for name, loss in losses.items())
        count(test, "loaded")
    finally:
        path.unlink()


test_mutated_spec_files_load_or_name_the_file, test_mutated_spec_files_load_or_name_the_file_long = both_profiles(
    "spec_files", spec_file_bytes()
)(check_spec_file)


# --- checks: the command line ---------------------------------------------------------------------

BAD_SPEC = SPEC_DIR / "bad.toml"
BAD_SPEC.write_text('[bad]\nexpr = "p + __import__(\'os\')"\ninputs = ["y", "p"]\nwrt = "p"\n', encoding="utf-8")
GOOD_SPEC = SPEC_DIR / "good.toml"
GOOD_SPEC.write_text('[good]\nexpr = "(p - y)**2"\ninputs = ["y", "p"]\nwrt = "p"\n', encoding="utf-8")
NOT_TOML = SPEC_DIR / "broken.toml"
NOT_TOML.write_bytes(b"[broken\nexpr = \xff\xfe\n")
OUT_FILE = SPEC_DIR / "a_file"
OUT_FILE.write_text("not a directory")
DIR_TOML = SPEC_DIR / "folder.toml"
DIR_TOML.mkdir()

bad_loss_args = st.one_of(
    st.text(alphabet=string.ascii_letters + string.digits + "_-.:/ ", min_size=1, max_size=20).filter(
        lambda s: s not in lg.catalog() and not s.startswith("-")
    ),
    st.sampled_from([
        str(BAD_SPEC), str(NOT_TOML), f"{GOOD_SPEC}:missing", str(SPEC_DIR / "missing.toml"), str(DIR_TOML),
        "x" * 5000 + ".toml", "bad\nname.toml", "no_such_loss", str(SPEC_DIR / "bad.toml:bad"),
    ]),
)
junk = st.text(max_size=12).filter(lambda s: "\x00" not in s)
COMMANDS = ("list", "inspect", "build", "verify", "bench", "plot")


@st.composite
def bad_command_lines(draw, subprocess_safe=False) -> list[str]:
    """argv that must fail with exit code 2: a bad command, option, value, loss or spec file."""
    kind = draw(st.sampled_from(["command", "option", "value", "loss", "missing"]))
    good_name = st.sampled_from(["huber", "squared_error", str(GOOD_SPEC)])
    if kind == "command":
        argv = [draw(st.text(min_size=1, max_size=12).filter(
            lambda s: s not in COMMANDS and not s.startswith("-") and "\x00" not in s))]
        argv += draw(st.lists(junk, max_size=3))
    elif kind == "option":
        command = draw(st.sampled_from(["list", "inspect", "build", "verify", "bench"]))
        argv = [command, "--" + draw(st.text(alphabet=string.ascii_lowercase + "-", min_size=2, max_size=12).filter(
            lambda s: not any(o.startswith(s) for o in ("task", "convex", "robust", "smooth", "latex", "output", "target",
                                                        "check", "dtype", "seed", "n", "help", "range", "param",
                                                        "points")))), "huber"]
    elif kind == "value":
        argv = draw(st.sampled_from([
            ["verify", "huber", "--dtype", draw(st.sampled_from(["float16", "int", "", "all2", "FLOAT32"]))],
            ["verify", "huber", "-n", draw(st.sampled_from(["0", "-5", "abc", "1e3", "99999999999", "", "1.5"]))],
            ["verify", "huber", "--seed", draw(st.sampled_from(["-1", "x", "2**40", str(2**40)]))],
            ["build", draw(good_name), "--target", draw(st.sampled_from(["tpu", "gpu", "", "CPU", "cpu,all"])), "-o", str(SPEC_DIR / "out")],
            ["build", draw(good_name), "-o", str(OUT_FILE)],
            ["list", "--task", draw(st.sampled_from(["", "regresion", "x", "all"]))],
            ["bench", "huber", "--n", draw(st.sampled_from(["0", "-1", "many"]))],
        ]))
    elif kind == "loss":
        command = draw(st.sampled_from(["inspect", "verify", "build", "bench"]))
        names = draw(st.lists(st.one_of(good_name, bad_loss_args), min_size=1, max_size=3))
        bad = draw(bad_loss_args)
        names.insert(draw(st.integers(0, len(names))), bad)
        argv = [command, *names] + (["-o", str(SPEC_DIR / "out")] if command == "build" else [])
    else:
        argv = list(draw(st.sampled_from([
            ["inspect"], ["inspect", "--latex"], ["verify"], ["verify", "--dtype", "float32"], ["bench"], ["bench", "--n", "5"], [],
        ])))
    if subprocess_safe:
        argv = [a for a in argv if "\x00" not in a]
    return argv


def check_cli(argv):
    """main(argv) in-process: exit code 2 and exactly one line on stderr, no traceback."""
    test = "cli_in_process"
    out, err = io.StringIO(), io.StringIO()
    with no_hang(test, f"lossgen {argv!r}"):
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = cli_main(argv)
            except SystemExit as exc:  # argparse's own exits would land here
                code = exc.code
    message = err.getvalue()
    note(f"argv {argv!r} -> {code}, stderr {message!r}")
    assert code == 2, f"lossgen {argv!r} exited {code}, stderr {message!r}"
    assert message.endswith("\n") and message.count("\n") == 1, f"stderr is not one line: {message!r}"
    assert "Traceback" not in message and "internal error" not in message, message
    count(test, "exit 2, one line")


test_bad_command_lines_exit_2_with_one_line, test_bad_command_lines_exit_2_with_one_line_long = both_profiles(
    "cli_in_process", bad_command_lines()
)(check_cli)


def _entry_points() -> list[list[str]]:
    commands = [[sys.executable, "-m", "lossgen.cli"]]
    script = shutil.which("lossgen", path=str(Path(sys.executable).parent))
    if script:
        commands.append([script])
    return commands


def check_cli_subprocess(argv, which):
    """The same, through a real process: python -m lossgen.cli and the lossgen entry point."""
    test = "cli_subprocess"
    commands = _entry_points()
    command = commands[which % len(commands)]
    result = subprocess.run(command + argv, capture_output=True, text=True, timeout=HANG_SECONDS, cwd=SPEC_DIR)
    note(f"{command + argv!r} -> {result.returncode}, stderr {result.stderr!r}")
    assert result.returncode == 2, (result.returncode, result.stderr)
    assert result.stderr.count("\n") == 1 and result.stderr.endswith("\n"), result.stderr
    assert "Traceback" not in result.stderr and "internal error" not in result.stderr, result.stderr
    count(test, "exit 2, one line")


test_bad_command_lines_in_a_subprocess, test_bad_command_lines_in_a_subprocess_long = both_profiles(
    "cli_subprocess", bad_command_lines(subprocess_safe=True), st.integers(0, 1)
)(check_cli_subprocess)


# --- the oracle itself can fail -----------------------------------------------------------------


def test_the_reference_catches_a_wrong_kernel_value():
    # The comparison in check_compiled rejects a value one part in 1e12 off for a
    # well-conditioned formula, and accepts a value as far off as float64 evaluation allows.
    v, e = Reference({"y": 0.3, "p": 1.7, "a": 1.5}, {}, unit=U64).evaluate("exp(p) * (p - y)")
    exact = MP.exp(MP.mpf(1.7)) * (MP.mpf(1.7) - MP.mpf(0.3))
    assert abs(v - exact) < MP.mpf(10) ** -80
    tolerance = 4 * e + 4 * U64 * abs(v) + 4 * ETA
    assert tolerance < abs(v) * 1e-14
    assert abs(v * (1 + MP.mpf(10) ** -12) - v) > tolerance


def test_the_reference_allows_cancellation_in_the_formula_as_written():
    # (p + 1e10) - 1e10 loses 10 digits in float64 however it is evaluated: no false failure.
    v, e = Reference({"y": 0.0, "p": 1.2345, "a": 1.0}, {}, unit=U64).evaluate("(p + 1e10) - 1e10")
    assert e > 1e-7 and abs(v - MP.mpf(1.2345)) < MP.mpf(10) ** -60


@pytest.mark.parametrize(
    "text, point, reason",
    [
        ("log(p)", {"p": -1.0}, "log"),
        ("sqrt(p - y)", {"p": 1.0, "y": 1.0}, "sqrt"),
        ("Piecewise((p, p - y < 0), (y, True))", {"p": 0.1 + 0.2, "y": 0.3}, "comparison"),
        ("sign(p - y)", {"p": 0.1 + 0.2, "y": 0.3}, "sign"),
        ("exp(p)", {"p": 800.0}, "overflow"),
        ("p**0.5", {"p": -2.0}, "power"),
        ("tan(p)", {"p": math.pi / 2}, "pole"),
    ],
)
def test_the_reference_skips_points_float64_cannot_decide(text, point, reason):
    values = {"y": 0.0, "p": 0.0, "a": 1.0, **point}
    with pytest.raises(Undefined, match=reason):
        Reference(values, {}, unit=U64).evaluate(text)


def test_a_parser_that_misread_precedence_would_be_caught():
    # The exact check compares lossgen's reading with the text's: a wrong tree is a mismatch.
    loss = lg.Loss("t", "-p**2 + y", inputs=["y", "p"], wrt="p")
    values = {"y": 0.5, "p": 3.0, "a": 1.0}
    v, _ = Reference(values, {}, unit=MP.mpf(2) ** -300, float64=False).evaluate("-p**2 + y")
    assert numeric(loss.expr, loss, values) == v == -8.5
    wrong = lg.Loss("t", "(-p)**2 + y", inputs=["y", "p"], wrt="p")
    assert numeric(wrong.expr, wrong, values) != v


def test_rendered_formulas_mean_their_tree():
    tree = ("-", ("name", "p"), ("**", ("neg", ("name", "y")), ("num", "2")))
    assert render(tree) == "(p - ((-y) ** 2))"
    assert Reference({"y": 3.0, "p": 1.0, "a": 1.0}, {}, unit=U64).evaluate(render(tree))[0] == -8


def test_the_compiled_check_fails_for_a_kernel_off_by_one_part_in_1e10(monkeypatch):
    # End to end: the same check, with the kernel's loss scaled by 1 + 1e-10, must fail.
    original = lg.Loss.compile

    def sabotaged(self, *args, **kwargs):
        kernel = original(self, *args, **kwargs)

        def call(*arrays, **named):
            result = kernel(*arrays, **named)
            return type("Result", (), {"loss": np.asarray(result.loss) * (1 + 1e-10)})()

        return call

    monkeypatch.setattr(lg.Loss, "compile", sabotaged)
    kwargs = dict(expr="exp(p/3) * (p - y) + a", inputs=["y", "p"], wrt="p", params={"a": 1.5}, where={},
                  domain={"a": "(0, oo)"}, stabilize=True)
    run = settings(FAST, max_examples=1)(given(st.just(kwargs), st.just(7))(check_compiled))
    with pytest.raises(AssertionError, match="kernel gave"):
        run()
    monkeypatch.setattr(lg.Loss, "compile", original)
    run()  # and passes with the real kernel


@pytest.mark.parametrize("part", ["grad", "stable_expr"])
def test_the_exact_check_fails_for_a_derivation_off_by_one_part_in_1e20(part, monkeypatch):
    # End to end: a gradient or stable form that is off by 1e-20 (relative) must fail the check.
    original = getattr(lg.Loss, part)
    off = 1 + sp.Rational(1, 10**20)
    if part == "grad":
        monkeypatch.setattr(lg.Loss, "grad", property(lambda self: tuple(g * off for g in original.fget(self))))
    else:
        monkeypatch.setattr(lg.Loss, "stable_expr", property(lambda self: original.fget(self) * off))
    kwargs = dict(expr="exp(p/3) * (p - y)**2 + a*p", inputs=["y", "p"], wrt="p", params={"a": 1.5}, where={},
                  domain={"a": "(0, oo)"}, stabilize=True)
    run = settings(FAST, max_examples=1)(given(st.just(kwargs), st.just(11))(check_exact))
    with pytest.raises(AssertionError, match="gradient|stable_expr"):
        run()
    monkeypatch.setattr(lg.Loss, part, original)
    run()
