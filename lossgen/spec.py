"""Spec: the immutable description of a loss (LossSpec) and the public Loss object built on it.

A Loss validates its arguments eagerly and raises SpecError naming the field. Derivatives,
kernels and analyses are computed on first use and cached on the object, never at import time.
"""

from __future__ import annotations

import functools
import math
import numbers
import types
import unicodedata
from collections.abc import Callable, Mapping, Sequence
import dataclasses
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .errors import CodegenError, SpecError

# SymPy and the stages built on it are imported where they are used, not here: `import lossgen`
# and a catalog loss whose kernel is in the on-disk cache need none of them (a fresh process
# would otherwise spend half a second importing SymPy before its first call).
if TYPE_CHECKING:
    import sympy as sp

# Characters that end a line (in Python source or for str.splitlines).
_LINE_BREAKS = frozenset("\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029")

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

    def __reduce__(self):
        # The read-only mappings are mappingproxy objects, which pickle refuses: send them as
        # dicts and wrap them again on the other side (dask workers, DataLoader processes).
        values = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        proxied = tuple(name for name, value in values.items() if isinstance(value, types.MappingProxyType))
        return _rebuild_spec, ({name: dict(value) if name in proxied else value for name, value in values.items()}, proxied)


def _rebuild_spec(values: dict, proxied: tuple[str, ...]) -> LossSpec:
    """Unpickle a LossSpec (see LossSpec.__reduce__)."""
    return LossSpec(**{name: types.MappingProxyType(value) if name in proxied else value for name, value in values.items()})


def _show(value, width: int = 60) -> str:
    """repr(value) for a message, shortened: user values can be megabytes long."""
    text = repr(value)
    return text if len(text) <= width else text[: width - 3] + "..."


def _as_name_list(value, field_name: str) -> tuple[str, ...]:
    from .parse import check_name

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
        raise SpecError(f"params: default of {name!r} must be a real number, got {_show(value)}")
    try:
        value = float(value)
    except (OverflowError, ValueError, TypeError):  # an int beyond float range, say 10**400
        raise SpecError(f"params: default of {name!r} is beyond the floating-point range") from None
    if not math.isfinite(value):
        raise SpecError(f"params: default of {name!r} must be finite, got {value!r}")
    return value


# Characters in one domain string; a bound of many digits or a huge exponent would make SymPy
# build an enormous exact number.
MAX_DOMAIN_CHARS = 100


def _interval(text, field_name: str) -> sp.Interval:
    """parse_interval, with the bounds first checked to be ordinary floating-point numbers."""
    from . import budget
    from .domain import parse_interval

    if isinstance(text, str):
        if len(text) > MAX_DOMAIN_CHARS:
            raise SpecError(f"{field_name}: interval string is longer than {MAX_DOMAIN_CHARS} characters {budget.limit_hint('spec', 'MAX_DOMAIN_CHARS')}")
        inner = text.strip()[1:-1]
        for bound in inner.split(","):
            bound = bound.strip()
            if bound.lstrip("+-") in ("oo", "inf"):
                continue
            try:
                number = float(bound)
            except ValueError:
                continue  # parse_interval refuses it with the usual message
            if not math.isfinite(number):
                raise SpecError(f"{field_name}: bound {bound!r} is beyond the floating-point range; use oo")
            if number == 0 and any(c in "123456789" for c in bound.lower().partition("e")[0]):
                raise SpecError(f"{field_name}: bound {bound!r} underflows to 0 in floating point")
    try:
        return parse_interval(text, field_name)
    except SpecError:
        raise
    except (ValueError, TypeError, ArithmeticError) as exc:
        raise SpecError(f"{field_name}: cannot read interval {_show(text)} ({type(exc).__name__})") from None


def _helper_order(helpers: Mapping[str, sp.Expr], placeholders: Mapping[str, sp.Symbol]) -> list[str]:
    """The `where` helpers in dependency order (each after those it uses); a cycle is a SpecError."""
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
    return order


def _resolve_helpers(where: Mapping, symbols: Mapping[str, sp.Symbol], placeholders: Mapping[str, sp.Symbol]) -> dict:
    """Each helper's value with the helpers it uses substituted.

    Helpers are read once with placeholder symbols to learn their dependencies, then read again,
    in dependency order, with the values of the helpers they use in scope: the parser then sees
    every formula as substituted, so its limits and checks hold for it (r**r with r = -10**55
    is refused as an exponent too large, not left for SymPy to try; log(r) with r = 0 is named).
    """
    scope = {**symbols, **placeholders}
    first = {key: _read_expr(value, scope, f"where.{key}") for key, value in where.items()}
    resolved: dict[str, sp.Expr] = {}
    for key in _helper_order(first, placeholders):
        resolved[key] = _read_expr(where[key], {**symbols, **placeholders, **resolved}, f"where.{key}")
    return resolved


def build_spec(name, expr, *, inputs, wrt, params=None, where=None, domain=None, doc="", stabilize=True, normalizer=None, transform=None) -> LossSpec:
    """Validate the constructor arguments of Loss and return an immutable LossSpec."""
    import sympy as sp

    from . import budget
    from .domain import REAL_LINE, assumptions_for, interval_text
    from .parse import MAX_NAME_CHARS, check_name

    if isinstance(name, str) and len(name) > MAX_NAME_CHARS:
        raise SpecError(f"name: {_show(name, 30)} is longer than {MAX_NAME_CHARS} characters {budget.limit_hint('parse', 'MAX_NAME_CHARS')}")
    if not isinstance(name, str) or not name.isidentifier():
        raise SpecError(f"name: {_show(name)} is not a valid loss name (letters, digits and _)")
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
            raise SpecError(f"domain: {_show(key)} is not an input or param")
        intervals[key] = _interval(text, f"domain.{key}")
    for key, value in param_values.items():
        interval = intervals.get(key, REAL_LINE)
        if not interval.contains(sp.Float(value)):
            raise SpecError(f"params: default {key}={value} lies outside its domain {interval_text(interval)}")
    if not isinstance(doc, str):
        raise SpecError(f"doc: expected a string, got {type(doc).__name__}")
    breaks = [ch for ch in doc if ch in _LINE_BREAKS or (unicodedata.category(ch) == "Cc" and ch != "\t")]
    if breaks:
        # The doc is written into generated kernel source as a comment: a line break would end
        # the comment and make the rest of the doc Python code that runs when the kernel loads.
        raise SpecError(f"doc: must be one line of text; it contains the control character {breaks[0]!r}")

    symbols = {n: sp.Symbol(n, **assumptions_for(intervals.get(n, REAL_LINE))) for n in input_names + tuple(param_values)}
    placeholders = {}
    for key in where:
        check_name(key, "where")
        if key in symbols:
            raise SpecError(f"where: helper {key!r} has the name of an input or param")
        placeholders[key] = sp.Symbol(key, real=True)
    helpers = _resolve_helpers(where, symbols, placeholders)
    scope = {**symbols, **helpers}
    body = _read_expr(expr, scope, "expr")
    unused = [w for w in wrt_names if symbols[w] not in body.free_symbols]
    if unused:
        raise SpecError(f"wrt: the formula does not depend on {unused[0]!r}")
    norm = None
    if normalizer is not None:
        norm = _read_expr(normalizer, scope, "normalizer")
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
    import sympy as sp

    from .parse import parse_expression

    if isinstance(value, str):
        return parse_expression(value, scope, field_name)
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        # As Python writes the number (numpy scalars repr as np.float64(...), not a number).
        text = repr(int(value)) if isinstance(value, numbers.Integral) else repr(float(value))
        return parse_expression(text, scope, field_name)
    if isinstance(value, sp.Expr):
        return _adopt_sympy(value, scope, field_name)
    raise SpecError(f"{field_name}: expected a formula string or a sympy.Expr, got {type(value).__name__}")


def _adopt_sympy(expr: sp.Expr, scope: Mapping[str, sp.Symbol], field_name: str) -> sp.Expr:
    """Accept a user's SymPy expression: map its symbols by name onto ours (with domain facts)."""
    import sympy as sp

    from .lower import check_supported

    mapping = {}
    for sym in expr.free_symbols:
        if sym.name not in scope:
            raise SpecError(f"{field_name}: unknown name {sym.name!r} (declare it in inputs, params or where)")
        mapping[sym] = scope[sym.name]
    try:
        expr = expr.xreplace(mapping)
    except (TypeError, ValueError, ArithmeticError) as exc:  # SymPy re-evaluating with helper values
        raise SpecError(f"{field_name}: cannot substitute the declared names: {' '.join(str(exc).split())[:120]}") from None
    for atom, label in ((sp.nan, "nan"), (sp.zoo, "zoo"), (sp.oo, "oo"), (-sp.oo, "-oo"), (sp.I, "I")):
        if expr.has(atom):
            raise SpecError(f"{field_name}: formula is not a finite real number (it contains {label})")
    if expr.is_extended_real is False:
        raise SpecError(f"{field_name}: formula is not real for any value of its inputs")
    problem = check_supported(expr)
    if problem:
        raise SpecError(f"{field_name}: {problem}")
    return expr


def _same_normalizer(a: "Loss", b: "Loss"):
    import sympy as sp

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

    @classmethod
    def deferred(cls, name: str, build: Callable[[], LossSpec], source_key: tuple[str, ...]) -> "Loss":
        """A Loss whose spec is built by build() on first use (the catalog's losses).

        `source_key` is text that fully defines the spec, such as its catalog entry: kernels are
        cached under it, so compiling and calling a kernel that is in the cache builds nothing.
        build must be picklable (a module-level function or a functools.partial of one).
        """
        loss = cls.__new__(cls)
        loss._deferred_name, loss._build, loss._source_key = name, build, tuple(source_key)
        return loss

    @functools.cached_property
    def _spec(self) -> LossSpec:
        # Reached only by a deferred Loss: __init__ and from_spec store the spec directly.
        return self._build()

    def __reduce__(self):
        # Only the spec travels (for a deferred Loss, how to build it, which keeps its kernels'
        # cache key); derivatives and kernels are rebuilt (and cached) where it lands.
        if hasattr(self, "_build"):
            return Loss.deferred, (self._deferred_name, self._build, self._source_key)
        return Loss.from_spec, (self._spec,)

    @property
    def source_key(self) -> tuple[str, ...] | None:
        """The text that defines a deferred Loss (its kernels are cached under it), else None."""
        return getattr(self, "_source_key", None)

    # --- the spec, read-only -------------------------------------------------------------
    spec = property(lambda self: self._spec, doc="The immutable LossSpec.")

    @property
    def name(self) -> str:
        """The loss's name."""
        spec = self.__dict__.get("_spec")
        return spec.name if spec is not None else self._deferred_name

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
        from . import budget

        # A formula within the parser's limits can still have derivatives that take SymPy
        # minutes (or gigabytes) to build; the budget turns that into a CodegenError that names
        # the limit, instead of a hang.
        try:
            with budget.time_limit(budget.DERIVE_SECONDS):
                derived = self._derive()
        except budget.TimeLimit:
            raise CodegenError(
                f"{self.name}: deriving the gradient and Hessian took longer than {budget.DERIVE_SECONDS:g} s "
                f"{budget.limit_hint('budget', 'DERIVE_SECONDS')}"
            ) from None
        except RecursionError:
            raise CodegenError(f"{self.name}: the derivatives nest too deeply for SymPy (Python's recursion limit)") from None
        except (TypeError, ValueError, ArithmeticError, LookupError) as exc:
            # SymPy refusing its own intermediate results: a clear error, never a traceback.
            # (The fuzz tests treat this message as a bug to investigate, not as a refusal.)
            detail = " ".join(str(exc).split())[:160]
            raise CodegenError(f"{self.name}: SymPy failed while deriving the gradient and Hessian ({type(exc).__name__}: {detail})") from None
        outputs = [derived[0], *derived[1], *derived[2]]
        size = budget.dag_size(outputs, stop=budget.MAX_DERIVATIVE_NODES + 1)
        if size > budget.MAX_DERIVATIVE_NODES:
            raise CodegenError(
                f"{self.name}: the loss and its derivatives have more than {budget.MAX_DERIVATIVE_NODES} distinct "
                f"subexpressions {budget.limit_hint('budget', 'MAX_DERIVATIVE_NODES')}"
            )
        return derived

    def _derive(self):
        from . import derive, stabilize

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

    def to_torch(self, reduction: str = "mean", **params):
        """A torch.nn.Module computing this loss with the generated kernel (needs the [torch] extra)."""
        from .torch_adapter import LossModule

        return LossModule(self, reduction=reduction, **params)

    def plot(self, ax=None, **options):
        """A matplotlib figure of the loss, its gradient and its Hessian (needs the [plot] extra)."""
        from .plot import plot_losses

        return plot_losses([self], ax=ax, **options)

    # --- algebra -------------------------------------------------------------------------
    def _combine(self, other: "Loss", sign: int, symbol: str) -> "Loss":
        import sympy as sp

        from .domain import assumptions_for

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
        import sympy as sp

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
