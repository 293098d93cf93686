"""Plots: a loss, its gradient and its Hessian against the prediction (needs the [plot] extra).

`plot_losses([...])` (and `Loss.plot()`) evaluates each loss's compiled kernel (reduction
"none") on a grid of the prediction, with the other inputs held at a target value, and draws
three panels: loss, gradient and Hessian diagonal. Kinks, the points where the gradient or the
Hessian jumps, are found from the kernel itself: a jump between two grid points is narrowed by
bisection down to float64 resolution and kept only if it is still a jump there (a steep but
smooth stretch shrinks with the interval, a discontinuity does not). So they are found for any
formula and parameter values, Piecewise, Abs, Max and sign alike.

matplotlib is imported here, inside the functions, never by `import lossgen`. Figures come from
pyplot only when the program has imported pyplot already (so `plt.show()` shows them);
otherwise a plain `matplotlib.figure.Figure` is made, which needs no display.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Mapping, Sequence

import numpy as np

from .errors import InputError

# Half-width of the default prediction window, around its center.
HALF_WIDTH = 3.0
FIGSIZE = (13.0, 3.8)


def plot_losses(
    losses, ax=None, *, target=None, params=None, x_range=None, points: int = 801, dtype: str = "float64",
    wrt: str | None = None, kinks: bool = True, title: str | None = None, **param_values,
):
    """Draw loss, gradient and Hessian of one or more losses against the prediction; the Figure.

    losses: a Loss, a catalog name, or a sequence of them (one legend entry each).
    ax: None (a new figure with three panels), a sequence of three Axes (loss, gradient,
        Hessian), or one Axes (the loss panel only).
    target: the value of the inputs other than the plotted one: a number for all of them, or a
        dict by input name. Default, per input, from its domain: 0 on the real line, else 1 when
        the domain holds it (a positive label for y in [0, 1] or [-1, 1], a count for y >= 0).
    params, **param_values: parameter values (each loss takes the names it has; a name that no
        loss has is an error).
    x_range: (low, high) of the prediction; default a window of +-3 around the target (when the
        target and prediction share a domain, as in regression) or 0, clipped to the domain.
    points: grid size; dtype: the kernel's dtype ("float32" shows float32 rounding).
    wrt: which input to plot against (default the loss's first `wrt`).
    kinks: mark the kinks (markers on the loss, dotted lines on the derivative panels).
    """
    plt_figure = _matplotlib()
    losses = _as_losses(losses)
    params = dict(params or {}, **param_values)
    known = {name for loss in losses for name in loss.params}
    unknown = [name for name in params if name not in known]
    if unknown:
        raise InputError(f"plot: no plotted loss has a param {unknown[0]!r}; params: {', '.join(sorted(known)) or 'none'}")
    if not isinstance(points, (int, np.integer)) or isinstance(points, bool) or not 3 <= points <= 1_000_000:
        raise InputError(f"plot: points must be an integer from 3 to 1000000, got {points!r}")
    setups = [_setup(loss, target, wrt) for loss in losses]
    low, high = _window(setups, x_range)
    grid = np.linspace(low, high, int(points))

    figure, axes = _axes(plt_figure, ax)
    same_fixed = all(s.fixed == setups[0].fixed for s in setups)
    any_kinks = False
    for i, setup in enumerate(setups):
        own = {k: v for k, v in params.items() if k in setup.loss.params}
        curves = _Evaluator(setup, own, dtype)
        loss_values, grads, hesses = curves(grid)
        color = f"C{i % 10}"
        label = setup.loss.name if same_fixed else f"{setup.loss.name} ({_fixed_text(setup.fixed)})"
        for axis, values in zip(axes, (loss_values, grads, hesses)):
            axis.plot(grid, values, color=color, label=label, gid=f"curve:{setup.loss.name}")
        if kinks:
            found = find_kinks(_Evaluator(setup, own, "float64"), grid)
            if found:
                any_kinks = True
                at = np.array(found)
                axes[0].plot(
                    at, curves(at)[0], linestyle="none", marker="o", markersize=7, markerfacecolor="white",
                    markeredgecolor=color, markeredgewidth=1.5, zorder=3, gid=f"kinks:{setup.loss.name}", label="_kinks",
                )
                for axis in axes[1:]:
                    for x in found:
                        axis.axvline(x, color=color, linestyle=":", linewidth=1, gid=f"kink-line:{setup.loss.name}")
    wrt_name = setups[0].wrt
    names = ("loss", f"gradient d/d{wrt_name}", f"Hessian d²/d{wrt_name}²")
    for axis, name in zip(axes, names):
        axis.set_xlabel(wrt_name)
        axis.set_title(name)
        axis.grid(True, alpha=0.3)
    handles, labels = axes[0].get_legend_handles_labels()
    if any_kinks:
        from matplotlib.lines import Line2D

        handles.append(Line2D([], [], linestyle="none", marker="o", markerfacecolor="white", markeredgecolor="0.3"))
        labels.append("kink")
    axes[0].legend(handles, labels, fontsize="small")
    heading = title if title is not None else (_fixed_text(setups[0].fixed) if same_fixed and setups[0].fixed else None)
    if heading and ax is None:
        figure.suptitle(heading)
    return figure


def save_figure(figure, path, dpi: int = 120) -> None:
    """Write a figure to `path`, in the format its suffix names (png, svg, pdf, ...)."""
    from pathlib import Path

    suffix = Path(path).suffix.lstrip(".").lower()
    formats = figure.canvas.get_supported_filetypes()
    if suffix not in formats:
        raise InputError(f"plot: cannot write {str(path)!r}: the suffix must be one of {', '.join('.' + f for f in sorted(formats))}")
    figure.savefig(path, dpi=dpi)


# --- kinks ----------------------------------------------------------------------------------------


def find_kinks(evaluate, grid: np.ndarray) -> list[float]:
    """Points of `grid`'s span where the gradient or the Hessian of `evaluate` jumps, sorted.

    evaluate(x) -> (loss, grad, hess) arrays. A grid step whose change stands out from the
    steps around it is narrowed by bisection; it is a kink if the jump survives at the end.
    """
    _, grads, hesses = evaluate(grid)
    found = []
    for which, values in ((1, grads), (2, hesses)):
        for a, b in _jump_candidates(grid, values):
            x = _narrow(evaluate, which, a, b)
            if x is not None and not any(abs(x - k) <= 1e-9 * max(1.0, abs(x)) for k in found):
                found.append(x)
    return sorted(found)


def _jump_candidates(grid, values):
    """Grid intervals [a, b] where `values` changes much more than two steps to either side."""
    with np.errstate(invalid="ignore"):
        steps = np.abs(np.diff(values))
        finite = np.isfinite(values)
        if not finite.any():
            return []
        scale = float(np.nanmax(np.abs(values[finite])))
        padded = np.concatenate([[np.inf, np.inf], steps, [np.inf, np.inf]])
        # The background is the smaller of the steps two away on each side: a jump that the
        # grid splits over two steps (a kink on a grid point) then still stands out.
        left, right = padded[:-4], padded[4:]
        background = np.minimum(left, right)
        background = np.where(np.isfinite(background), background, np.where(np.isfinite(left), left, right))
        flagged = np.isfinite(steps) & (steps > 4 * background + 1e-8 * (scale + 1.0))
    intervals = []
    for i in np.flatnonzero(flagged):
        if intervals and intervals[-1][1] == i:  # a jump split over neighbouring steps
            intervals[-1][1] = i + 1
        else:
            intervals.append([i, i + 1])
    return [(float(grid[i]), float(grid[j])) for i, j in intervals]


def _narrow(evaluate, which: int, a: float, b: float) -> float | None:
    """Bisect [a, b] towards the jump of output `which`; its position, or None if it fades."""

    def value(x):
        return float(evaluate(np.array([x]))[which][0])

    va, vb = value(a), value(b)
    initial = abs(vb - va)
    if not math.isfinite(initial) or initial == 0:
        return None
    for _ in range(200):
        m = 0.5 * (a + b)
        if not a < m < b:
            break
        vm = value(m)
        if not math.isfinite(vm):
            return None
        if abs(vm - va) >= abs(vb - vm):
            b, vb = m, vm
        else:
            a, va = m, vm
    # A smooth function's change shrinks with the interval (by ~1e12 here); a jump stays.
    if abs(vb - va) < 0.25 * initial:
        return None
    x = 0.5 * (a + b)
    nice = round(x, 9)  # a kink at 1.0 is found within an ulp or two of it: show 1.0
    x = nice if abs(nice - x) <= 1e-12 * max(1.0, abs(x)) else x
    return x + 0.0  # -0.0 reads as 0


# --- set-up ---------------------------------------------------------------------------------------


class _Setup:
    """One loss to plot: the input on the x axis and the fixed values of the others."""

    def __init__(self, loss, wrt: str, fixed: dict):
        self.loss, self.wrt, self.fixed = loss, wrt, fixed


def _setup(loss, target, wrt) -> _Setup:
    if loss.rowwise:
        raise InputError(f"plot: {loss.name!r} is row-wise (a class axis); plots are drawn for elementwise losses")
    axis = wrt if wrt is not None else loss.wrt[0]
    if axis not in loss.wrt:
        raise InputError(f"plot: {axis!r} is not a wrt input of {loss.name!r} ({', '.join(loss.wrt)})")
    fixed = {}
    others = [n for n in loss.inputs if n != axis]
    if isinstance(target, Mapping):
        unknown = [k for k in target if k not in loss.inputs]
        if unknown:
            raise InputError(f"plot: target names {unknown[0]!r}, which is not an input of {loss.name!r} ({', '.join(loss.inputs)})")
    for name in others:
        given = target.get(name) if isinstance(target, Mapping) else target
        fixed[name] = _number(f"target {name!r}", given) if given is not None else default_value(loss.domain[name])
    return _Setup(loss, axis, fixed)


def default_value(interval) -> float:
    """A representative value of a domain: 0 on the real line, else 1 if inside, else 0 if
    inside, else a point near its finite end(s)."""
    lo, hi = float(interval.start), float(interval.end)
    if math.isinf(lo) and math.isinf(hi):
        return 0.0
    for candidate in (1.0, 0.0):
        if interval.contains(candidate) == True:  # noqa: E712 - SymPy returns its own booleans
            return candidate
    if math.isfinite(lo) and math.isfinite(hi):
        return 0.5 * (lo + hi)
    return lo + 1.0 if math.isfinite(lo) else hi - 1.0


def _window(setups, x_range) -> tuple[float, float]:
    if x_range is not None:
        try:
            low, high = (float(v) for v in x_range)
        except (TypeError, ValueError):
            raise InputError(f"plot: x_range must be two numbers (low, high), got {x_range!r}") from None
        if not (math.isfinite(low) and math.isfinite(high) and low < high):
            raise InputError(f"plot: x_range must be finite with low < high, got ({low}, {high})")
        return low, high
    lows, highs = [], []
    for setup in setups:
        low, high = _default_window(setup)
        lows.append(low)
        highs.append(high)
    return min(lows), max(highs)


def _default_window(setup) -> tuple[float, float]:
    interval = setup.loss.domain[setup.wrt]
    lo, hi = float(interval.start), float(interval.end)
    # Regression-like (target and prediction share a domain): centre on the target's value.
    same = [v for n, v in setup.fixed.items() if setup.loss.domain[n] == interval]
    center = same[0] if same else (0.0 if interval.contains(0) == True else default_value(interval))  # noqa: E712
    low, high = center - HALF_WIDTH, center + HALF_WIDTH
    if math.isfinite(lo) and math.isfinite(hi):
        low, high = lo, hi
    # Stay off open ends (log(0), a division by 0) by half a percent of the window.
    margin = 0.005 * (min(high, hi) - max(low, lo))
    if math.isfinite(lo) and low <= lo:
        low = lo + (margin if interval.left_open else 0.0)
    if math.isfinite(hi) and high >= hi:
        high = hi - (margin if interval.right_open else 0.0)
    return low, high


class _Evaluator:
    """x -> (loss, grad, hess) of one loss along its plotted input, from its compiled kernel;
    points outside the input's domain give nan (not drawn)."""

    def __init__(self, setup: _Setup, params: dict, dtype: str):
        self.setup, self.params = setup, params
        self.kernel = setup.loss.compile(target="cpu", dtype=dtype, reduction="none")
        self.index = setup.loss.wrt.index(setup.wrt)
        self.domain = setup.loss.domain[setup.wrt]

    def __call__(self, x):
        x = np.asarray(x, dtype=np.float64)
        dtype = self.kernel.dtype
        arrays = {n: np.full(x.shape, v, dtype) for n, v in self.setup.fixed.items()}
        arrays[self.setup.wrt] = x.astype(dtype)
        with np.errstate(all="ignore"):
            result = self.kernel(**arrays, **self.params)
        grad = result.grad[self.index] if isinstance(result.grad, tuple) else result.grad
        hess = result.hess[self.index] if isinstance(result.hess, tuple) else result.hess
        inside = self._inside(x)
        outputs = []
        for values in (result.loss, grad, hess):
            values = values.astype(np.float64)
            values[~inside] = np.nan
            outputs.append(values)
        return tuple(outputs)

    def _inside(self, x):
        lo, hi = float(self.domain.start), float(self.domain.end)
        above = x > lo if self.domain.left_open else x >= lo
        below = x < hi if self.domain.right_open else x <= hi
        return above & below


# --- helpers --------------------------------------------------------------------------------------


def _matplotlib():
    """matplotlib's Figure class, imported on use; an ImportError that says how to install it."""
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise ImportError("lossgen plot needs matplotlib: pip install 'lossgen[plot]'") from None
    return Figure


def _axes(Figure, ax):
    """(figure, [loss, grad, hess] axes to draw on); a single given Axes gets the loss only."""
    if ax is None:
        if "matplotlib.pyplot" in sys.modules:
            import matplotlib.pyplot as plt

            figure = plt.figure(figsize=FIGSIZE, layout="constrained")
        else:
            figure = Figure(figsize=FIGSIZE, layout="constrained")
        return figure, list(figure.subplots(1, 3))
    from matplotlib.axes import Axes

    if isinstance(ax, Axes):
        return ax.figure, [ax]
    if isinstance(ax, Sequence) or isinstance(ax, np.ndarray):
        axes = list(np.ravel(np.asarray(ax, dtype=object)))
        if len(axes) == 3 and all(isinstance(a, Axes) for a in axes):
            return axes[0].figure, axes
    raise InputError("plot: ax must be one matplotlib Axes (the loss panel) or a sequence of 3 Axes (loss, gradient, Hessian)")


def _as_losses(losses) -> list:
    from .catalog import get
    from .spec import Loss

    items = [losses] if isinstance(losses, (Loss, str)) else list(losses)
    if not items:
        raise InputError("plot: no loss to plot")
    out = []
    for item in items:
        if isinstance(item, str):
            item = get(item)
        if not isinstance(item, Loss):
            raise InputError(f"plot: expected a Loss or a catalog name, got {type(item).__name__}")
        out.append(item)
    return out


def _number(what: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)) or not math.isfinite(value):
        raise InputError(f"plot: {what} must be a finite number, got {value!r}")
    return float(value)


def _fixed_text(fixed: dict) -> str:
    return ", ".join(f"{k} = {v:g}" for k, v in fixed.items())
