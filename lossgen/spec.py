"""Spec: the immutable description of a loss (LossSpec) and the public Loss object built on it.

A Loss validates its arguments eagerly and raises SpecError naming the field. Derivatives,
kernels and analyses are computed on first use and cached on the object, never at import time.
"""

from __future__ import annotations

import functools
import math
import numbers
import types
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import sympy as sp

from . import derive, stabilize
from .domain import REAL_LINE, assumptions_for, interval_text, parse_interval
from .errors import SpecError
from .parse import check_name, parse_expression

SPEC_KEYS = ("expr", "inputs", "wrt", "params", "where", "domain", "doc", "normalizer", "transform")

# Roles of inputs: per-sample values of an elementwise loss, or for a row-wise loss a row
# (rows x classes, used inside aggregates), a class label per row, or one value per row.
ROLES = ("sample", "row", "label")


@dataclass(frozen=True)
class LossSpec:
    """Validated, immutable description of a loss: the formula and the facts about its names."""

    name: str
    expr: sp.Expr
    inputs: tuple[str, ...]
    wrt: tuple[str, ...]
    params: Mapping[str, float]
    domain: Mapping[str, sp.Interval]
    symbols: Mapping[str, sp.Symbol]
    doc: str = ""
    source: str = field(default="", compare=False)
    stabilize: bool = True
    roles: Mapping[str, str] = field(default_factory=dict)
    class_params: tuple[str, ...] = ()
    normalizer: sp.Expr | None = None
    transform: str | None = None

    @property
    def rowwise(self) -> bool:
        """Whether the loss reduces over a class axis (some input is a row)."""
        return "row" in self.roles.values()

    def symbol(self, name: str) -> sp.Symbol:
        """The SymPy symbol (with its domain's assumptions) for an input or param."""
        return self.symbols[name]


def _as_name_list(value, field_name: str) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, Sequence) or isinstance(value, (bytes, bytearray)):
        raise SpecError(f"{field_name}: expected a name or a list of names, got {type(value).__name__}")
    names = tuple(check_name(v, field_name) for v in value)
    if not names:
        raise SpecError(f"{field_name}: needs at least one name")
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise SpecError(f"{field_name}: {duplicates[0]!r} is listed twice")
    return names


def _as_mapping(value, field_name: str) -> Mapping:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise SpecError(f"{field_name}: expected a table/dict, got {type(value).__name__}")
    return value


def _param_value(name: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise SpecError(f"params: default of {name!r} must be a real number, got {value!r}")
    value = float(value)
    if not math.isfinite(value):
        raise SpecError(f"params: default of {name!r} must be finite, got {value!r}")
    return value


def _substitute_helpers(expr, helpers: Mapping[str, sp.Expr], placeholders: Mapping[str, sp.Symbol]) -> sp.Expr:
    """Substitute `where` helpers into expr in dependency order; a cycle is a SpecError."""
    order: list[str] = []
    state: dict[str, str] = {}

    def visit(name: str, path: tuple[str, ...]):
        if state.get(name) == "done":
            return
        if state.get(name) == "visiting":
            cycle = " -> ".join(path[path.index(name):] + (name,))
            raise SpecError(f"where: helpers refer to each other in a cycle: {cycle}")
        state[name] = "visiting"
        for dep in helpers[name].free_symbols:
            if dep.name in helpers and placeholders.get(dep.name) == dep:
                visit(dep.name, path + (name,))
        state[name] = "done"
        order.append(name)

    for name in helpers:
        visit(name, ())
    resolved: dict[sp.Symbol, sp.Expr] = {}
    for name in order:
        resolved[placeholders[name]] = helpers[name].xreplace(resolved)
    return expr.xreplace(resolved)


def build_spec(name, expr, *, inputs, wrt, params=None, where=None, domain=None, doc="", stabilize=True, normalizer=None, transform=None) -> LossSpec:
    """Validate the constructor arguments of Loss and return an immutable LossSpec."""
    if not isinstance(name, str) or not name.isidentifier():
        raise SpecError(f"name: {name!r} is not a valid loss name (letters, digits and _)")
    input_names = _as_name_list(inputs, "inputs")
    wrt_names = _as_name_list(wrt, "wrt")
    for w in wrt_names:
        if w not in input_names:
            raise SpecError(f"wrt: {w!r} is not one of the inputs {list(input_names)}")
    params = _as_mapping(params, "params")
    param_values = {}
    for key, value in params.items():
        check_name(key, "params")
        if key in input_names:
            raise SpecError(f"params: {key!r} is also an input")
        param_values[key] = _param_value(key, value)
    where = _as_mapping(where, "where")
    domain = _as_mapping(domain, "domain")
    intervals = {}
    for key, text in domain.items():
        if key not in input_names and key not in param_values:
            raise SpecError(f"domain: {key!r} is not an input or param")
        intervals[key] = parse_interval(text, f"domain.{key}")
    for key, value in param_values.items():
        interval = intervals.get(key, REAL_LINE)
        if not interval.contains(sp.Float(value)):
            raise SpecError(f"params: default {key}={value} lies outside its domain {interval_text(interval)}")
    if not isinstance(doc, str):
        raise SpecError(f"doc: expected a string, got {type(doc).__name__}")

    symbols = {n: sp.Symbol(n, **assumptions_for(intervals.get(n, REAL_LINE))) for n in input_names + tuple(param_values)}
    placeholders = {}
    for key in where:
        check_name(key, "where")
        if key in symbols:
            raise SpecError(f"where: helper {key!r} has the name of an input or param")
        placeholders[key] = sp.Symbol(key, real=True)
    scope = {**symbols, **placeholders}
    helpers = {key: _read_expr(value, scope, f"where.{key}") for key, value in where.items()}
    body = _read_expr(expr, scope, "expr")
    body = _substitute_helpers(body, helpers, placeholders)
    unused = [w for w in wrt_names if symbols[w] not in body.free_symbols]
    if unused:
        raise SpecError(f"wrt: the formula does not depend on {unused[0]!r}")
    norm = None
    if normalizer is not None:
        norm = _substitute_helpers(_read_expr(normalizer, scope, "normalizer"), helpers, placeholders)
    roles, class_params = _shape_roles(body, norm, input_names, wrt_names, symbols, param_values)
    from .transforms import TRANSFORMS

    if transform is not None and transform not in TRANSFORMS:
        raise SpecError(f"transform: unknown transform {transform!r}; available: {', '.join(TRANSFORMS)}")
    source = expr if isinstance(expr, str) else sp.sstr(expr)
    return LossSpec(
        name=name,
        expr=body,
        inputs=input_names,
        wrt=wrt_names,
        params=types.MappingProxyType(param_values),
        domain=types.MappingProxyType({n: intervals.get(n, REAL_LINE) for n in symbols}),
        symbols=types.MappingProxyType(symbols),
        doc=doc,
        source=source,
        stabilize=bool(stabilize),
        roles=types.MappingProxyType(roles),
        class_params=class_params,
        normalizer=norm,
        transform=transform,
    )


def _shape_roles(body, normalizer, inputs, wrt, symbols, params) -> tuple[dict, tuple]:
    """Each input's role (sample, row, label) and the params used per class, from where the
    formula uses them; mixed uses are a SpecError naming the input."""
    from . import rowwise

    exprs = [body] + ([normalizer] if normalizer is not None else [])
    if not any(rowwise.is_rowwise(e) for e in exprs):
        return {n: "sample" for n in inputs}, ()
    labels, inside, outside = set(), set(), set()
    for e in exprs:
        labels |= rowwise.label_symbols(e)
        inside |= rowwise.symbols_inside_aggregates(e)
        outside |= rowwise.symbols_outside_aggregates(e)
    roles = {}
    for n in inputs:
        sym = symbols[n]
        if sym in labels:
            if sym in inside - labels:
                raise SpecError(f"inputs: {n!r} is a class label (in take/onehot) and also a row inside an aggregate")
            roles[n] = "label"
        elif sym in inside:
            if sym in outside:
                raise SpecError(f"inputs: {n!r} is used inside an aggregate (a row) and outside one (a value per row); use it one way")
            roles[n] = "row"
        else:
            roles[n] = "sample"
    for w in wrt:
        if roles[w] != "row":
            raise SpecError(f"wrt: {w!r} must be a row (used inside sum, mean, logsumexp, max, min, take or softmax) in a row-wise loss")
    class_params = tuple(n for n in params if symbols[n] in inside)
    for n in class_params:
        if symbols[n] in outside:
            raise SpecError(f"params: {n!r} is used inside an aggregate (one value per class) and outside one")
    if normalizer is not None:
        stray = [n for n in inputs if roles[n] == "row" and symbols[n] in rowwise.symbols_outside_aggregates(normalizer)]
        if stray or any(symbols[w] in normalizer.free_symbols for w in wrt):
            raise SpecError("normalizer: must not depend on the wrt inputs (it weighs rows in the mean)")
    return roles, class_params


def _read_expr(value, scope: Mapping[str, sp.Symbol], field_name: str) -> sp.Expr:
    if isinstance(value, str):
        return parse_expression(value, scope, field_name)
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        return parse_expression(repr(value), scope, field_name)
    if isinstance(value, sp.Expr):
        return _adopt_sympy(value, scope, field_name)
    raise SpecError(f"{field_name}: expected a formula string or a sympy.Expr, got {type(value).__name__}")


def _adopt_sympy(expr: sp.Expr, scope: Mapping[str, sp.Symbol], field_name: str) -> sp.Expr:
    """Accept a user's SymPy expression: map its symbols by name onto ours (with domain facts)."""
    from .lower import check_supported

    mapping = {}
    for sym in expr.free_symbols:
        if sym.name not in scope:
            raise SpecError(f"{field_name}: unknown name {sym.name!r} (declare it in inputs, params or where)")
        mapping[sym] = scope[sym.name]
    expr = expr.xreplace(mapping)
    if expr.has(sp.zoo, sp.nan, sp.I):
        raise SpecError(f"{field_name}: formula contains a non-finite or complex constant (zoo, nan or I)")
    problem = check_supported(expr)
    if problem:
        raise SpecError(f"{field_name}: {problem}")
    return expr


def _same_normalizer(a: "Loss", b: "Loss"):
    if a._spec.normalizer is None and b._spec.normalizer is None:
        return None
    if sp.srepr(a._spec.normalizer) != sp.srepr(b._spec.normalizer):
        raise SpecError(f"cannot combine {a.name!r} and {b.name!r}: they normalize their means differently")
    return a._spec.normalizer


class Loss:
    """A loss function: formula, derivatives, analysis and compiled kernels.

    Loss(name, expr, *, inputs, wrt, params=None, where=None, domain=None, doc="", stabilize=True, normalizer=None)
    `expr` is formula text (read by lossgen's safe parser) or a sympy.Expr. A row-wise loss may
    give `normalizer`, a per-row weight that reduction "mean" divides by instead of the row
    count (torch's cross-entropy divides by the class weights of the non-ignored labels).
    `transform` (e.g. "sqrt", for RMSE) applies to the reduced loss, with the exact gradient
    and Hessian diagonal of the composition; reduction "none" returns the terms untransformed. With
    stabilize=False the rewrite rules are skipped and kernels evaluate the formula as written
    (for comparisons and benchmarks; lossgen's own functions such as softplus stay stable).
    """

    def __init__(
        self, name, expr, *, inputs, wrt, params=None, where=None, domain=None, doc="", stabilize=True, normalizer=None,
        transform=None,
    ):
        self._spec = build_spec(
            name, expr, inputs=inputs, wrt=wrt, params=params, where=where, domain=domain, doc=doc,
            stabilize=stabilize, normalizer=normalizer, transform=transform,
        )

    @classmethod
    def from_spec(cls, spec: LossSpec) -> "Loss":
        """Wrap an already validated LossSpec."""
        loss = cls.__new__(cls)
        loss._spec = spec
        return loss

    # --- the spec, read-only -------------------------------------------------------------
    spec = property(lambda self: self._spec, doc="The immutable LossSpec.")
    name = property(lambda self: self._spec.name, doc="The loss's name.")
    expr = property(lambda self: self._spec.expr, doc="The formula as a SymPy expression (helpers substituted).")
    inputs = property(lambda self: self._spec.inputs, doc="Per-sample array inputs, in call order.")
    wrt = property(lambda self: self._spec.wrt, doc="Inputs that derivatives are taken in.")
    params = property(lambda self: self._spec.params, doc="Scalar parameters and their defaults.")
    domain = property(lambda self: self._spec.domain, doc="Interval of every input and param.")
    doc = property(lambda self: self._spec.doc, doc="One-line description.")
    rowwise = property(lambda self: self._spec.rowwise, doc="Whether the loss reduces over a class axis.")
    roles = property(lambda self: self._spec.roles, doc="Each input's role: sample, row or label.")

    def symbol(self, name: str) -> sp.Symbol:
        """The SymPy symbol of an input or param."""
        return self._spec.symbol(name)

    # --- derivation ----------------------------------------------------------------------
    @functools.cached_property
    def _derived(self):
        applied: set[str] = set()
        variables = [self.symbol(w) for w in self.wrt]
        if not self._spec.stabilize:
            grad = derive.gradient(self.expr, variables)
            return self.expr, grad, derive.hessian(grad, variables), ()
        stable = stabilize.stabilize_loss(self.expr, applied)
        grad = tuple(stabilize.stabilize_derivative(g, applied) for g in derive.gradient(stable, variables))
        hess = derive.hessian(grad, variables).applyfunc(lambda h: stabilize.stabilize_derivative(h, applied))
        return stable, grad, hess, tuple(sorted(applied))

    @property
    def stable_expr(self) -> sp.Expr:
        """The loss after the stabilizing rewrites (mathematically equal to `expr`)."""
        return self._derived[0]

    @property
    def grad(self) -> tuple[sp.Expr, ...]:
        """First derivatives, one per `wrt` name, in order."""
        return self._derived[1]

    @property
    def hess(self) -> sp.Matrix:
        """Second derivatives, a len(wrt) x len(wrt) sympy.Matrix."""
        return self._derived[2]

    @property
    def rewrites(self) -> tuple[str, ...]:
        """Names of the stabilizing rewrite rules that changed this loss or its derivatives."""
        return self._derived[3]

    # --- kernels and analysis ------------------------------------------------------------
    def compile(self, target: str = "cpu", dtype: str = "float64", reduction: str = "mean"):
        """Generate, compile (or load from the on-disk cache) and return a Kernel."""
        from .runtime import compile_kernel

        return compile_kernel(self, target=target, dtype=dtype, reduction=reduction)

    def convexity(self, **fixed):
        """Convexity in the wrt inputs jointly, for all other values in their domains (or `fixed`)."""
        from .convexity import analyze_convexity

        return analyze_convexity(self, fixed)

    def properties(self):
        """Proved properties: convexity, smoothness, Hessian sign, gradient bound, bounded below."""
        from .properties import analyze_properties

        return analyze_properties(self)

    # --- algebra -------------------------------------------------------------------------
    def _combine(self, other: "Loss", sign: int, symbol: str) -> "Loss":
        if not isinstance(other, Loss):
            return NotImplemented
        if other.inputs != self.inputs or other.wrt != self.wrt:
            raise SpecError(
                f"cannot combine {self.name!r} and {other.name!r}: inputs/wrt differ "
                f"({list(self.inputs)}/{list(self.wrt)} vs {list(other.inputs)}/{list(other.wrt)})"
            )
        if dict(self._spec.roles) != dict(other._spec.roles):
            raise SpecError(f"cannot combine {self.name!r} and {other.name!r}: their inputs have different shapes {dict(self._spec.roles)} vs {dict(other._spec.roles)}")
        if self._spec.transform or other._spec.transform:
            raise SpecError(f"cannot add {self.name!r} and {other.name!r}: a loss with a transform (such as RMSE's sqrt) is not a sum of per-sample terms")
        clash = sorted(set(self.params) & set(other.params))
        if clash:
            raise SpecError(f"params: {clash[0]!r} is a parameter of both {self.name!r} and {other.name!r}; rename one")
        domain = {}
        for n in self.inputs:
            both = self.domain[n].intersect(other.domain[n])
            if not isinstance(both, sp.Interval):
                raise SpecError(f"domain: {n!r} has disjoint domains in {self.name!r} and {other.name!r}")
            domain[n] = both
        domain.update({k: self.domain[k] for k in self.params})
        domain.update({k: other.domain[k] for k in other.params})
        by_name = {n: sp.Symbol(n, **assumptions_for(iv)) for n, iv in domain.items()}
        a = self.expr.xreplace({self.symbol(n): by_name[n] for n in self._spec.symbols})
        b = other.expr.xreplace({other.symbol(n): by_name[n] for n in other._spec.symbols})
        word = "plus" if sign > 0 else "minus"
        spec = LossSpec(
            name=f"{self.name}_{word}_{other.name}",
            expr=a + sign * b,
            inputs=self.inputs,
            wrt=self.wrt,
            params=types.MappingProxyType({**self.params, **other.params}),
            domain=types.MappingProxyType(domain),
            symbols=types.MappingProxyType(by_name),
            doc=f"{self.name} {symbol} {other.name}",
            source=f"({self._spec.source}) {symbol} ({other._spec.source})",
            stabilize=self._spec.stabilize and other._spec.stabilize,
            roles=self._spec.roles,
            class_params=tuple(dict.fromkeys(self._spec.class_params + other._spec.class_params)),
            normalizer=_same_normalizer(self, other),
        )
        return Loss.from_spec(spec)

    def __add__(self, other):
        return self._combine(other, +1, "+")

    def __sub__(self, other):
        return self._combine(other, -1, "-")

    def __mul__(self, factor):
        if isinstance(factor, bool) or not isinstance(factor, numbers.Real) or not math.isfinite(factor):
            return NotImplemented
        coefficient = sp.Rational(repr(float(factor))) if isinstance(factor, float) else sp.Integer(factor)
        spec = LossSpec(
            name=self.name if coefficient == 1 else f"{self.name}_scaled",
            expr=coefficient * self.expr,
            inputs=self.inputs,
            wrt=self.wrt,
            params=self.params,
            domain=self.domain,
            symbols=self._spec.symbols,
            doc=f"{factor} * {self.name}",
            source=f"{factor} * ({self._spec.source})",
            stabilize=self._spec.stabilize,
            roles=self._spec.roles,
            class_params=self._spec.class_params,
            normalizer=self._spec.normalizer,
            transform=self._spec.transform,
        )
        return Loss.from_spec(spec)

    __rmul__ = __mul__

    def __neg__(self):
        return self * -1

    def __truediv__(self, factor):
        if isinstance(factor, bool) or not isinstance(factor, numbers.Real) or factor == 0:
            return NotImplemented
        return self * (1.0 / factor)

    def __repr__(self):
        return f"Loss({self.name!r}, {str(self.expr)!r}, inputs={list(self.inputs)}, wrt={list(self.wrt)}, params={dict(self.params)})"

    def __eq__(self, other):
        return isinstance(other, Loss) and other._spec == self._spec

    def __hash__(self):
        return hash((self._spec.name, self._spec.expr, self._spec.inputs, self._spec.wrt))
