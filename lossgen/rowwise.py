"""Row-wise losses: aggregates over the class axis of a row, and how they differentiate.

An input used inside an aggregate is a row (rows x classes); inside, its symbol stands for one
class element. Outside aggregates the same symbol stands for the element whose derivative is
taken, so d/dp_k of an aggregate A(f) is A's weight at k times df/dp (sum: 1, mean: 1/C,
logsumexp: softmax_k, max: [f_k is the max], take(., y): [k == y]), plus, for aggregates
nested inside f, sum_j(weight_j * df_j/dB) * dB/dp_k. Params used inside aggregates are
per-class vectors.
"""

from __future__ import annotations

from collections.abc import Iterable

import sympy as sp

# The number of classes in a row, as the kernel sees it.
N_CLASSES = sp.Symbol("_C", positive=True, integer=True)


class _ShownByFormulaName:
    """Print as the name a formula uses (logsumexp(p), not RowLogSumExp(p))."""

    display = ""

    def _sympystr(self, printer):
        return f"{self.display}({', '.join(printer._print(a) for a in self.args)})"

    def _pretty(self, printer):
        return printer._print_Function(self, func_name=self.display)

    def _latex(self, printer):
        args = ", ".join(printer._print(a) for a in self.args)
        return rf"\operatorname{{{self.display}}}\left({args}\right)"


class OneHot(_ShownByFormulaName, sp.Function):
    """onehot(y): 1 at the class y of the row, 0 elsewhere (an element-level value)."""

    nargs = 1
    display = "onehot"

    def _eval_is_real(self):
        return True

    def _eval_is_nonnegative(self):
        return True

    def _eval_derivative(self, s):
        return sp.S.Zero


class Aggregate(_ShownByFormulaName, sp.Function):
    """Base of reductions over the class axis; subclasses give the weight d(self)/d(f_k)."""

    nargs = 1
    kind = "aggregate"

    def weight(self) -> sp.Expr:
        raise NotImplementedError

    def _eval_is_real(self):
        if self.args[0].is_real:
            return True

    def _eval_derivative(self, s):
        body = self.args[0]
        inner = outermost_aggregates(body)
        dummies = {a: sp.Dummy(f"agg{i}", real=True) for i, a in enumerate(inner)}
        back = {d: a for a, d in dummies.items()}
        g = body.xreplace(dummies)
        w = self.weight()
        result = w * sp.diff(g, s).xreplace(back)
        for a, d in dummies.items():
            dg = sp.diff(g, d)
            if dg != 0:
                result += RowSum(w * dg.xreplace(back)) * sp.diff(a, s)
        return result


def _free_of_rows(f: sp.Expr) -> bool:
    # Only numbers and the class count: the same value in every class.
    return f.free_symbols <= {N_CLASSES} and not f.has(OneHot, *AGGREGATES)


class RowSum(Aggregate):
    display = "sum"
    """sum(f): sum of f over the classes of the row."""

    kind = "sum"

    @classmethod
    def eval(cls, f):
        if _free_of_rows(f):
            return N_CLASSES * f

    def weight(self):
        return sp.S.One


class RowMean(Aggregate):
    display = "mean"
    """mean(f): mean of f over the classes of the row."""

    kind = "mean"

    @classmethod
    def eval(cls, f):
        if _free_of_rows(f):
            return f

    def weight(self):
        return 1 / N_CLASSES


class RowLogSumExp(Aggregate):
    display = "logsumexp"
    """logsumexp(f): log(sum(exp(f))), computed max-shifted so it never overflows."""

    kind = "logsumexp"

    def weight(self):
        return sp.exp(self.args[0] - self)


class RowMax(Aggregate):
    display = "max"
    """max(f) over the classes of the row."""

    kind = "max"

    def weight(self):
        return sp.Piecewise((1, sp.Eq(self.args[0], self)), (0, True))


class RowMin(Aggregate):
    display = "min"
    """min(f) over the classes of the row."""

    kind = "min"

    def weight(self):
        return sp.Piecewise((1, sp.Eq(self.args[0], self)), (0, True))


class Take(Aggregate):
    display = "take"
    """take(f, y): f at the class y of the row (x[i, y[i]])."""

    nargs = 2
    kind = "take"

    def weight(self):
        return OneHot(self.args[1])


AGGREGATES = (RowSum, RowMean, RowLogSumExp, RowMax, RowMin, Take)


def softmax(x: sp.Expr) -> sp.Expr:
    """softmax of a row, element-wise: exp(x - logsumexp(x)), never exp(x)/sum(exp(x))."""
    return sp.exp(x - RowLogSumExp(x))


def log_softmax(x: sp.Expr) -> sp.Expr:
    """log_softmax of a row, element-wise: x - logsumexp(x), never log(softmax(x))."""
    return x - RowLogSumExp(x)


def is_rowwise(expr: sp.Expr) -> bool:
    """Whether an expression uses an aggregate or onehot (a row-wise loss)."""
    return expr.has(*AGGREGATES, OneHot)


def outermost_aggregates(expr: sp.Expr) -> list[sp.Expr]:
    """Aggregates in expr that are not inside another aggregate of expr, in a stable order."""
    found: list[sp.Expr] = []

    def walk(node):
        if isinstance(node, AGGREGATES):
            if node not in found:
                found.append(node)
            return
        for arg in node.args:
            walk(arg)

    walk(expr)
    return found


def all_aggregates(exprs: Iterable[sp.Expr]) -> list[sp.Expr]:
    """Every aggregate in exprs, inner ones before the ones that contain them."""
    ordered: list[sp.Expr] = []

    def visit(node):
        for arg in node.args:
            visit(arg)
        if isinstance(node, AGGREGATES) and node not in ordered:
            ordered.append(node)

    for expr in exprs:
        visit(expr)
    return ordered


def symbols_inside_aggregates(expr: sp.Expr) -> set[sp.Symbol]:
    """Symbols that appear inside the reduced body of some aggregate (a take's label excluded)."""
    inside: set[sp.Symbol] = set()
    for agg in all_aggregates([expr]):
        inside |= agg.args[0].free_symbols
    return inside


def label_symbols(expr: sp.Expr) -> set[sp.Symbol]:
    """Symbols used as class labels: take's second argument and onehot's argument."""
    labels = set()
    for node in sp.preorder_traversal(expr):
        if isinstance(node, Take):
            labels |= node.args[1].free_symbols
        elif isinstance(node, OneHot):
            labels |= node.args[0].free_symbols
    return labels


def symbols_outside_aggregates(expr: sp.Expr) -> set[sp.Symbol]:
    """Symbols that appear in expr outside every aggregate and onehot."""
    placeholders = {a: sp.Dummy() for a in outermost_aggregates(expr)}
    stripped = expr.xreplace(placeholders).replace(lambda e: isinstance(e, OneHot), lambda e: sp.S.One)
    return {s for s in stripped.free_symbols if not isinstance(s, sp.Dummy)}


def expand_row(expr: sp.Expr, element_symbols: dict, label_values: dict, n_classes: int) -> sp.Expr:
    """The expression for one concrete row: aggregates written out over classes 0..C-1.

    element_symbols maps each row-valued symbol to a list of C per-class symbols; label_values
    maps each label symbol to its integer value in this row. Used for the independent reference.
    """

    def at_class(body, j):
        replaced = body.xreplace({s: element_symbols[s][j] for s in element_symbols})
        return replaced.replace(
            lambda e: isinstance(e, OneHot), lambda e: sp.S.One if int(label_values[e.args[0]]) == j else sp.S.Zero
        )

    def expand(node):
        if isinstance(node, AGGREGATES):
            # Inner aggregates first: they are row-level values, not per-class ones.
            body = expand(node.args[0])
            if isinstance(node, Take):
                j = int(label_values[node.args[1]])
                return expand(at_class(body, j))
            terms = [expand(at_class(body, j)) for j in range(n_classes)]
            if isinstance(node, RowSum):
                return sp.Add(*terms)
            if isinstance(node, RowMean):
                return sp.Add(*terms) / n_classes
            if isinstance(node, RowLogSumExp):
                return sp.log(sp.Add(*(sp.exp(t) for t in terms)))
            if isinstance(node, RowMax):
                return sp.Max(*terms)
            return sp.Min(*terms)
        if not node.args:
            return node
        return node.func(*(expand(a) for a in node.args))

    return expand(expr).xreplace({N_CLASSES: sp.Integer(n_classes)})
