"""Load and call: compile a Loss into a Kernel and run it on arrays.

Kernel(*arrays, weight=None, **params) checks names, shapes and dtypes up front and answers a
mismatch with one InputError naming the argument, so numba never sees an argument it cannot type.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np

import sympy as sp

from .cache import kernel_key, load_kernel_module
from .errors import CodegenError, InputError
from .lower import DTYPES, lower, lower_rows
from .render import layout_for, render_kernel
from .transforms import apply_transform

REDUCTIONS = ("none", "sum", "mean", "weighted_mean")


@dataclass(frozen=True)
class Result:
    """What a kernel returns.

    loss: float for "sum"/"mean"/"weighted_mean", array (input shape) for "none".
    grad: d loss / d wrt, shaped like the wrt array (a tuple when several wrt).
    hess: diagonal second derivative, shaped like grad.
    """

    loss: float | np.ndarray
    grad: np.ndarray | tuple[np.ndarray, ...]
    hess: np.ndarray | tuple[np.ndarray, ...]


@functools.lru_cache(maxsize=256)
def kernel_source(loss, target: str, dtype: str) -> str:
    """Rendered module source for (loss, target, dtype); cached per Loss in this process."""
    layout_for(target)
    lowered = lower_rows(loss, dtype) if loss.rowwise else lower(loss, dtype)
    return render_kernel(lowered, target, loss.name, loss.doc)


@dataclass(frozen=True)
class _ParamCheck:
    name: str
    default: float
    low: float
    high: float
    low_open: bool
    high_open: bool

    def value(self, given) -> float:
        if isinstance(given, (bool, np.bool_)) or not isinstance(given, (int, float, np.integer, np.floating)):
            raise InputError(f"param {self.name!r} must be a real number, got {type(given).__name__}")
        value = float(given)
        below = value < self.low or (self.low_open and value == self.low)
        above = value > self.high or (self.high_open and value == self.high)
        if math.isnan(value) or below or above:
            lo, hi = ("(" if self.low_open else "["), (")" if self.high_open else "]")
            raise InputError(f"param {self.name!r} = {value} lies outside its domain {lo}{self.low}, {self.high}{hi}")
        return value


class Kernel:
    """A compiled loss for one target, dtype and reduction. Call it with arrays."""

    def __init__(self, loss, target: str, dtype: str, reduction: str, module):
        self.loss = loss
        self.target = target
        self.dtype = np.dtype(dtype)
        self.reduction = reduction
        self._module = module
        self._params = {}
        for name, default in loss.params.items():
            interval = loss.domain[name]
            self._params[name] = _ParamCheck(
                name, default, float(interval.start), float(interval.end), bool(interval.left_open), bool(interval.right_open)
            )

    def __repr__(self):
        return f"<Kernel {self.loss.name} target={self.target} dtype={self.dtype} reduction={self.reduction}>"

    @property
    def source(self) -> str:
        """The generated module source this kernel was compiled from."""
        return kernel_source(self.loss, self.target, str(self.dtype))

    def _bind(self, arrays, named) -> tuple[dict, dict]:
        inputs = self.loss.inputs
        if len(arrays) > len(inputs):
            raise InputError(f"{self.loss.name} takes {len(inputs)} arrays ({', '.join(inputs)}), got {len(arrays)}")
        bound = dict(zip(inputs, arrays))
        params = {}
        for key, value in named.items():
            if key in inputs:
                if key in bound:
                    raise InputError(f"array {key!r} given both by position and by name")
                bound[key] = value
            elif key in self._params:
                params[key] = value
            else:
                raise InputError(f"unknown argument {key!r}; arrays: {', '.join(inputs)}; params: {', '.join(self._params) or 'none'}")
        missing = [n for n in inputs if n not in bound]
        if missing:
            raise InputError(f"missing array {missing[0]!r} ({self.loss.name} takes {', '.join(inputs)})")
        return bound, params

    def _array(self, name: str, value, is_wrt: bool) -> np.ndarray:
        try:
            array = np.asarray(value)
        except Exception as exc:  # noqa: BLE001 - any failure to become an array is the user's input
            raise InputError(f"array {name!r} cannot be read as an array: {exc}") from None
        kind = array.dtype.kind
        if is_wrt:
            if array.dtype != self.dtype:
                raise InputError(
                    f"array {name!r} has dtype {array.dtype}, but this kernel is {self.dtype}; "
                    f"convert it or compile with dtype={str(array.dtype)!r}"
                )
        elif kind not in "biuf" or array.dtype.itemsize > 8:
            raise InputError(f"array {name!r} has dtype {array.dtype}; expected real numbers")
        # asarray with order="C" copies only non-contiguous arrays and keeps 0-d arrays 0-d.
        return np.asarray(array, dtype=self.dtype, order="C")

    def __call__(self, *arrays, weight=None, **named) -> Result:
        """Evaluate loss, gradient and Hessian diagonal; see Result for shapes."""
        bound, given_params = self._bind(arrays, named)
        if self.loss.rowwise:
            return self._call_rows(bound, given_params, weight)
        converted = {n: self._array(n, bound[n], n in self.loss.wrt) for n in self.loss.inputs}
        shape = converted[self.loss.wrt[0]].shape
        for name, array in converted.items():
            if array.shape != shape:
                raise InputError(f"array {name!r} has shape {array.shape}, expected {shape} like {self.loss.wrt[0]!r}")
        if weight is not None:
            weight = self._array("weight", weight, False)
            if weight.shape != shape:
                raise InputError(f"array 'weight' has shape {weight.shape}, expected {shape}")
        scalar = self.dtype.type
        params = [scalar(self._params[n].value(given_params.get(n, self._params[n].default))) for n in self._params]
        flat = [converted[n].reshape(-1) for n in self.loss.inputs]
        size = flat[0].shape[0]
        outputs = []
        for _ in self.loss.wrt:
            outputs += [np.empty(size, self.dtype), np.empty(size, self.dtype)]
        extra = [weight.reshape(-1)] if weight is not None else []
        suffix = "_weighted" if weight is not None else ""
        if self.reduction == "none":
            loss_out = np.empty(size, self.dtype)
            getattr(self._module, "per_sample" + suffix)(*flat, *params, *extra, loss_out, *outputs)
            loss_value = loss_out.reshape(shape)
        else:
            scale = self._scale(size, weight)
            total = getattr(self._module, "reduced" + suffix)(*flat, *params, *extra, scalar(scale), *outputs)
            with np.errstate(divide="ignore", invalid="ignore"):
                # A zero total weight or no samples gives nan, as NumPy's 0/0 does.
                loss_value = float(np.float64(total) / np.float64(scale))
        grads = tuple(outputs[2 * k].reshape(shape) for k in range(len(self.loss.wrt)))
        hesses = tuple(outputs[2 * k + 1].reshape(shape) for k in range(len(self.loss.wrt)))
        return self._result(loss_value, grads, hesses)

    def _result(self, loss_value, grads, hesses) -> Result:
        if self.loss.spec.transform and self.reduction != "none":
            loss_value, grads, hesses = apply_transform(self.loss.spec.transform, loss_value, grads, hesses)
        if len(grads) == 1:
            return Result(loss_value, grads[0], hesses[0])
        return Result(loss_value, grads, hesses)

    def _labels(self, name: str, value, rows: int, classes: int, ignore) -> np.ndarray:
        labels = np.asarray(value)
        if labels.dtype.kind not in "iu":
            raise InputError(f"array {name!r} holds class labels and must be integers, got dtype {labels.dtype}")
        if labels.shape != (rows,):
            raise InputError(f"array {name!r} has shape {labels.shape}, expected ({rows},): one label per row")
        bad = (labels < 0) | (labels >= classes)
        if ignore is not None:
            bad &= labels != ignore
        if bad.any():
            first = int(labels[np.argmax(bad)])
            raise InputError(f"array {name!r} has label {first} outside 0..{classes - 1}" + (f" (ignore_index is {ignore})" if ignore is not None else ""))
        return np.ascontiguousarray(labels, dtype=np.int64)

    def _class_param(self, name: str, given, classes: int) -> np.ndarray:
        check = self._params[name]
        if given is None:
            given = check.default
        values = np.asarray(given, dtype=np.float64)
        if values.ndim == 0:
            values = np.full(classes, check.value(float(values)))
        elif values.shape != (classes,):
            raise InputError(f"param {name!r} has shape {values.shape}, expected ({classes},): one value per class")
        else:
            for v in values:
                check.value(float(v))
        return np.ascontiguousarray(values, dtype=self.dtype)

    def _call_rows(self, bound, given_params, weight) -> Result:
        roles = self.loss.roles
        wrt0 = self.loss.wrt[0]
        row_arrays = {n: self._array(n, bound[n], n in self.loss.wrt) for n in self.loss.inputs if roles[n] == "row"}
        shape = row_arrays[wrt0].shape
        if len(shape) != 2:
            raise InputError(f"array {wrt0!r} is a row-wise input and must be 2-D (rows x classes), got shape {shape}")
        rows, classes = shape
        for name, array in row_arrays.items():
            if array.shape != shape:
                raise InputError(f"array {name!r} has shape {array.shape}, expected {shape} like {wrt0!r}")
        scalar = self.dtype.type
        class_params = set(self.loss.spec.class_params)
        ignore = None
        if "ignore_index" in self._params and "ignore_index" not in class_params:
            ignore = int(self._params["ignore_index"].value(given_params.get("ignore_index", self._params["ignore_index"].default)))
        arguments = []
        for name in self.loss.inputs:
            role = roles[name]
            if role == "row":
                arguments.append(row_arrays[name])
            elif role == "label":
                arguments.append(self._labels(name, bound[name], rows, classes, ignore))
            else:
                array = self._array(name, bound[name], False)
                if array.shape != (rows,):
                    raise InputError(f"array {name!r} has one value per row and must have shape ({rows},), got {array.shape}")
                arguments.append(array)
        for name in self._params:
            if name not in class_params:
                arguments.append(scalar(self._params[name].value(given_params.get(name, self._params[name].default))))
        for name in self.loss.spec.class_params:
            arguments.append(self._class_param(name, given_params.get(name), classes))
        unweighted = list(arguments)
        suffix = ""
        if weight is not None:
            weight = self._array("weight", weight, False)
            if weight.shape != (rows,):
                raise InputError(f"array 'weight' has one value per row and must have shape ({rows},), got {weight.shape}")
            arguments.append(weight)
            suffix = "_weighted"
        scale = 1.0
        if self.reduction in ("mean", "weighted_mean"):
            use_weight = self.reduction == "weighted_mean" and weight is not None
            if hasattr(self._module, "normalizers"):
                norms = np.empty(rows, np.float64)
                function = self._module.normalizers_weighted if use_weight else self._module.normalizers
                function(*(arguments if use_weight else unweighted), norms)
                scale = float(np.sum(norms))
            else:
                scale = float(np.sum(weight, dtype=np.float64)) if use_weight else float(rows)
        outputs = []
        for _ in self.loss.wrt:
            outputs += [np.empty(shape, self.dtype), np.empty(shape, self.dtype)]
        loss_out = np.empty(rows, np.float64)
        getattr(self._module, "rows" + suffix)(*arguments, scalar(scale), loss_out, *outputs)
        if self.reduction == "none":
            loss_value = loss_out.astype(self.dtype)
        else:
            with np.errstate(divide="ignore", invalid="ignore"):
                loss_value = float(np.float64(np.sum(loss_out)) / np.float64(scale))
        grads = tuple(outputs[2 * k] for k in range(len(self.loss.wrt)))
        hesses = tuple(outputs[2 * k + 1] for k in range(len(self.loss.wrt)))
        return self._result(loss_value, grads, hesses)

    def _scale(self, size: int, weight) -> float:
        if self.reduction == "sum":
            return 1.0
        # For the means, an empty input or zero total weight makes the scale 0: results are nan.
        if self.reduction == "weighted_mean" and weight is not None:
            return float(np.sum(weight, dtype=np.float64))
        return float(size)


def compile_kernel(loss, target: str = "cpu", dtype: str = "float64", reduction: str = "mean") -> Kernel:
    """Generate, load (from the on-disk cache when possible) and wrap the kernel of a Loss."""
    if target not in ("cpu", "cuda"):
        raise CodegenError(f"target must be 'cpu' or 'cuda', got {target!r}")
    if str(dtype) not in DTYPES:
        raise CodegenError(f"dtype must be 'float32' or 'float64', got {dtype!r}")
    if reduction not in REDUCTIONS:
        raise CodegenError(f"reduction must be one of {', '.join(REDUCTIONS)}, got {reduction!r}")
    dtype = str(dtype)
    layout_for(target)
    spec = loss.spec
    key = kernel_key(
        target, dtype, spec.name, spec.doc, sp.srepr(spec.expr), repr(spec.inputs), repr(spec.wrt),
        repr(tuple(spec.params)), f"stabilize={spec.stabilize}",
    )
    module = load_kernel_module(key, f"{loss.name}_{target}_{dtype}", lambda: kernel_source(loss, target, dtype))
    return Kernel(loss, target, dtype, reduction, module)
