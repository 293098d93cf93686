"""Load and call: compile a Loss into a Kernel and run it on arrays.

Kernel(*arrays, weight=None, out=None, **params) checks names, shapes and dtypes up front and
answers a mismatch with one InputError naming the argument, so numba never sees an argument it
cannot type. Small inputs run a serial copy of the kernel (waking threads costs more than the work
below SERIAL_BELOW samples) and `out=` reuses preallocated outputs, so a training loop that calls
a kernel every step allocates nothing.
"""

from __future__ import annotations

import functools
import importlib
import json
import math
from dataclasses import dataclass

import numpy as np
from numba.core.errors import NumbaError

from .cache import kernel_key, load_kernel_module
from .dtypes import dtype_name
from .errors import CodegenError, InputError
from .prebuilt import prerendered_source
from .transforms import apply_transform

REDUCTIONS = ("none", "sum", "mean", "weighted_mean")
# Below this many samples the serial kernel is faster than the parallel one: waking numba's
# threads costs several microseconds (measured crossover: see docs/benchmarks.md).
SERIAL_BELOW = 8_192


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
    # The lowering and rendering stages (SymPy, Jinja2) load only when a kernel is generated: a
    # kernel found in the on-disk cache needs neither.
    from .lower import lower, lower_rows
    from .render import layout_for, render_kernel

    math_library = layout_for(target).math_functions(dtype)
    lowered = lower_rows(loss, dtype, math_library) if loss.rowwise else lower(loss, dtype, math_library)
    return render_kernel(lowered, target, loss.name, loss.doc, facts=KernelFacts.of_spec(loss.spec).to_json())


def module_source(loss, target: str, dtype: str) -> str:
    """A kernel module's source: a catalog kernel's file in generated/ when it is current (no
    SymPy, no derivation), otherwise rendered; the two are the same text."""
    return prerendered_source(loss, target, dtype) or kernel_source(loss, target, dtype)


@dataclass(frozen=True)
class _ParamCheck:
    name: str
    default: float
    low: float
    high: float
    low_open: bool
    high_open: bool

    @classmethod
    def of_interval(cls, name: str, default: float, interval) -> "_ParamCheck":
        """The check of a param whose domain is a SymPy interval."""
        return cls(name, default, float(interval.start), float(interval.end), bool(interval.left_open), bool(interval.right_open))

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


@dataclass(frozen=True)
class KernelFacts:
    """What a Kernel needs to bind, check and order a call's arguments.

    Every kernel module carries its facts (KERNEL_FACTS, JSON written at render time from the
    LossSpec), so a kernel loaded from the on-disk cache is called without parsing its formula.
    """

    name: str
    inputs: tuple[str, ...]
    wrt: tuple[str, ...]
    roles: dict
    class_params: tuple[str, ...]
    params: tuple[_ParamCheck, ...]
    transform: str | None

    @property
    def rowwise(self) -> bool:
        """Whether the loss reduces over a class axis (some input is a row)."""
        return "row" in self.roles.values()

    @classmethod
    def of_spec(cls, spec) -> "KernelFacts":
        """The facts of a LossSpec."""
        params = tuple(_ParamCheck.of_interval(name, default, spec.domain[name]) for name, default in spec.params.items())
        return cls(spec.name, tuple(spec.inputs), tuple(spec.wrt), dict(spec.roles), tuple(spec.class_params), params, spec.transform)

    def to_json(self) -> str:
        """One line of JSON (infinite bounds as Infinity, which json reads back)."""
        params = [[c.name, c.default, c.low, c.high, c.low_open, c.high_open] for c in self.params]
        return json.dumps({
            "name": self.name, "inputs": self.inputs, "wrt": self.wrt, "roles": self.roles,
            "class_params": self.class_params, "params": params, "transform": self.transform,
        }, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "KernelFacts":
        """Read to_json's text back."""
        data = json.loads(text)
        return cls(
            data["name"], tuple(data["inputs"]), tuple(data["wrt"]), dict(data["roles"]), tuple(data["class_params"]),
            tuple(_ParamCheck(*entry) for entry in data["params"]), data["transform"],
        )


class Kernel:
    """A compiled loss for one target, dtype and reduction. Call it with arrays."""

    def __init__(self, loss, target: str, dtype: str, reduction: str, module):
        self.loss = loss
        self.target = target
        self.dtype = np.dtype(dtype)
        self.reduction = reduction
        self._module = module
        # The entry points, resolved once: (weighted, serial) -> compiled function.
        stem = "per_sample" if reduction == "none" else "reduced"
        self._entries = {}
        for weighted in (False, True):
            name = stem + ("_weighted" if weighted else "")
            parallel = getattr(module, name, None)
            self._entries[weighted, False] = parallel
            self._entries[weighted, True] = getattr(module, name + "_serial", parallel)
        self.facts = facts = KernelFacts.from_json(module.KERNEL_FACTS)
        self._params = {check.name: check for check in facts.params}
        # Facts read on every call, looked up once (a small batch's call is microseconds).
        self._inputs, self._wrt, self._rowwise = facts.inputs, facts.wrt, facts.rowwise
        self._transform = facts.transform if reduction != "none" else None
        self._is_wrt = [n in facts.wrt for n in facts.inputs]
        self._checked_out = None  # (out, shape, checked outputs) of the last out= seen
        self._default_params = [self.dtype.type(check.value(check.default)) for check in self._params.values()]
        self._tiny = float(np.finfo(self.dtype).tiny)  # scales whose reciprocal is normal: [tiny, 1/tiny]

    @classmethod
    def check_target(cls) -> None:
        """Raise CodegenError when this target cannot run here (the CPU always can)."""

    def __repr__(self):
        return f"<Kernel {self.facts.name} target={self.target} dtype={self.dtype} reduction={self.reduction}>"

    @property
    def source(self) -> str:
        """The generated module source this kernel was compiled from."""
        return module_source(self.loss, self.target, str(self.dtype))

    @staticmethod
    def _row_shape(row_arrays: dict, wrt0: str) -> tuple[int, int]:
        """(rows, classes) of the row-wise arrays, which must all be 2-D and of one shape."""
        shape = tuple(row_arrays[wrt0].shape)
        if len(shape) != 2:
            raise InputError(f"array {wrt0!r} is a row-wise input and must be 2-D (rows x classes), got shape {shape}")
        for name, array in row_arrays.items():
            if tuple(array.shape) != shape:
                raise InputError(f"array {name!r} has shape {tuple(array.shape)}, expected {shape} like {wrt0!r}")
        return shape

    def _ignore_index(self, given_params: dict, class_params: set) -> int | None:
        """The label to skip (ignore_index), when the loss has one that is not per class."""
        if "ignore_index" not in self._params or "ignore_index" in class_params:
            return None
        return int(self._params["ignore_index"].value(given_params.get("ignore_index", self._params["ignore_index"].default)))

    def _bind(self, arrays, named) -> tuple[dict, dict]:
        inputs = self._inputs
        if len(arrays) > len(inputs):
            raise InputError(f"{self.facts.name} takes {len(inputs)} arrays ({', '.join(inputs)}), got {len(arrays)}")
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
            raise InputError(f"missing array {missing[0]!r} ({self.facts.name} takes {', '.join(inputs)})")
        return bound, params

    def _array(self, name: str, value, is_wrt: bool) -> np.ndarray:
        if type(value) is np.ndarray and value.dtype == self.dtype and value.flags.c_contiguous:
            return value  # the common case, checked in well under a microsecond
        try:
            array = np.asarray(value)
        except Exception as exc:  # noqa: BLE001 - any failure to become an array is the user's input
            raise InputError(f"array {name!r} cannot be read as an array: {exc}") from None
        self._check_dtype(name, array.dtype, is_wrt)
        # asarray with order="C" copies only non-contiguous arrays and keeps 0-d arrays 0-d.
        return np.asarray(array, dtype=self.dtype, order="C")

    def _check_dtype(self, name: str, dtype: np.dtype, is_wrt: bool) -> None:
        """InputError unless an input of this dtype fits: the wrt array must have the kernel's
        dtype exactly; other arrays may have any real dtype, converted to the kernel's."""
        if is_wrt:
            if dtype != self.dtype:
                raise InputError(
                    f"array {name!r} has dtype {dtype}, but this kernel is {self.dtype}; "
                    f"convert it or compile with dtype={str(dtype)!r}"
                )
        elif dtype.kind not in "biuf" or dtype.itemsize > 8:
            raise InputError(f"array {name!r} has dtype {dtype}; expected real numbers")

    def __call__(self, *arrays, weight=None, out=None, **named) -> Result:
        """Evaluate loss, gradient and Hessian diagonal; see Result for shapes.

        out: optional preallocated outputs, a Result from allocate() or from an earlier call of
        this kernel (for reduction "none" its loss array is filled too). The returned Result
        holds those arrays.
        """
        inputs, wrt = self._inputs, self._wrt
        if named or len(arrays) != len(inputs) or self._rowwise:
            bound, given_params = self._bind(arrays, named)
            if self._rowwise:
                try:
                    return self._call_rows(bound, given_params, weight, out)
                except NumbaError as exc:
                    raise _not_compiled(self.facts, exc) from None
            arrays = [bound[n] for n in inputs]
        else:
            given_params = None
        converted = [self._array(n, a, is_wrt) for n, a, is_wrt in zip(inputs, arrays, self._is_wrt)]
        shape = converted[inputs.index(wrt[0])].shape
        for name, array in zip(inputs, converted):
            if array.shape != shape:
                raise InputError(f"array {name!r} has shape {array.shape}, expected {shape} like {wrt[0]!r}")
        if weight is not None:
            weight = self._array("weight", weight, False)
            if weight.shape != shape:
                raise InputError(f"array 'weight' has shape {weight.shape}, expected {shape}")
        if given_params:
            scalar = self.dtype.type
            params = [scalar(check.value(given_params.get(name, check.default))) for name, check in self._params.items()]
        else:
            params = self._default_params
        loss_out, grads, hesses = self._outputs(out, shape, shape)
        arguments = [_flat(a) for a in converted]
        arguments += params
        if weight is not None:
            arguments.append(_flat(weight))
        size = arguments[0].shape[0]
        function = self._entries[weight is not None, size < SERIAL_BELOW]
        divide_after = None
        if self.reduction == "none":
            arguments.append(_flat(loss_out))
        else:
            scale = self._scale(size, weight)
            kernel_scale = self.dtype.type(scale)
            if not _reciprocal_is_normal(abs(float(kernel_scale)), self._tiny):
                # The kernel multiplies by 1/scale, which would overflow or lose bits here (a
                # total weight below the dtype's smallest normal, or above its reciprocal).
                divide_after, kernel_scale = kernel_scale, self.dtype.type(1.0)
            arguments.append(kernel_scale)
        for grad, hess in zip(grads, hesses):
            arguments += [_flat(grad), _flat(hess)]
        try:
            total = function(*arguments)
        except NumbaError as exc:
            raise _not_compiled(self.facts, exc) from None
        if divide_after is not None:
            for array in (*grads, *hesses):
                np.divide(array, divide_after, out=array)
        loss_value = loss_out if self.reduction == "none" else _divide(total, scale)
        return self._result(loss_value, grads, hesses)

    def allocate(self, shape) -> Result:
        """Empty outputs for inputs whose wrt array has `shape`, to pass as `out=` on every call.

        For row-wise losses `shape` is (rows, classes). The loss field is an array (reduction
        "none") or None.
        """
        shape = tuple(int(s) for s in np.atleast_1d(np.asarray(shape, dtype=np.int64))) if np.ndim(shape) else (int(shape),)
        loss_shape = shape[:1] if self._rowwise else shape
        loss = np.empty(loss_shape, self.dtype) if self.reduction == "none" else None
        grads = tuple(np.empty(shape, self.dtype) for _ in self._wrt)
        hesses = tuple(np.empty(shape, self.dtype) for _ in self._wrt)
        return self._result(loss, grads, hesses, transform=False)

    def _outputs(self, out, shape, loss_shape):
        """(loss array or None, grads, hesses): fresh arrays, or those of `out` after checking them."""
        n = len(self._wrt)
        if out is None:
            loss = np.empty(loss_shape, self.dtype) if self.reduction == "none" else None
            return loss, tuple(np.empty(shape, self.dtype) for _ in range(n)), tuple(np.empty(shape, self.dtype) for _ in range(n))
        last = self._checked_out
        # A training loop passes the same Result every step: check it once. A Result is frozen
        # and its arrays cannot be reallocated while it holds them; only a shape could change.
        if last is not None and last[0] is out and last[1] == shape and all(a.shape == s for a, s in last[3]):
            return last[2]
        checked = self._check_outputs(out, shape, loss_shape)
        if isinstance(out, Result):
            arrays = [a for a in (checked[0], *checked[1], *checked[2]) if a is not None]
            self._checked_out = (out, shape, checked, [(a, a.shape) for a in arrays])
        return checked

    def _check_outputs(self, out, shape, loss_shape):
        n = len(self._wrt)
        if isinstance(out, Result):
            loss, grads, hesses = out.loss, out.grad, out.hess
        elif isinstance(out, (tuple, list)) and len(out) == 3:
            loss, grads, hesses = out
        else:
            raise InputError("out must be a Result (see Kernel.allocate) or a (loss, grad, hess) tuple")
        if n == 1:
            grads, hesses = (grads,), (hesses,)
        elif not (isinstance(grads, tuple) and isinstance(hesses, tuple) and len(grads) == len(hesses) == n):
            raise InputError(f"out: grad and hess must be tuples of {n} arrays, one per wrt ({', '.join(self._wrt)})")
        checked = [self._out_array(f"out.grad[{k}]" if n > 1 else "out.grad", g, shape) for k, g in enumerate(grads)]
        checked += [self._out_array(f"out.hess[{k}]" if n > 1 else "out.hess", h, shape) for k, h in enumerate(hesses)]
        if self.reduction == "none":
            loss = self._out_array("out.loss", loss, loss_shape)
            checked.append(loss)
        else:
            loss = None
        for i, a in enumerate(checked):
            for b in checked[i + 1:]:
                if np.may_share_memory(a, b):
                    raise InputError("out: the output arrays overlap; each needs its own memory")
        return loss, tuple(checked[:n]), tuple(checked[n:2 * n])

    def _out_array(self, label: str, array, shape) -> np.ndarray:
        if not isinstance(array, np.ndarray):
            raise InputError(f"{label} must be a numpy array, got {type(array).__name__}")
        if array.dtype != self.dtype or array.shape != shape:
            raise InputError(f"{label} has dtype {array.dtype} and shape {array.shape}; expected {self.dtype} and {shape}")
        if not array.flags.c_contiguous or not array.flags.writeable:
            raise InputError(f"{label} must be C-contiguous and writeable")
        return array

    def _result(self, loss_value, grads, hesses, transform=True) -> Result:
        if transform and self._transform:
            loss_value, grads, hesses = apply_transform(self._transform, loss_value, grads, hesses)
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

    def _call_rows(self, bound, given_params, weight, out=None) -> Result:
        roles = self.facts.roles
        wrt0 = self._wrt[0]
        row_arrays = {n: self._array(n, bound[n], n in self._wrt) for n in self._inputs if roles[n] == "row"}
        shape = self._row_shape(row_arrays, wrt0)
        rows, classes = shape
        scalar = self.dtype.type
        class_params = set(self.facts.class_params)
        ignore = self._ignore_index(given_params, class_params)
        arguments = []
        for name in self._inputs:
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
        for name in self.facts.class_params:
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
        serial = "_serial" if rows * classes < SERIAL_BELOW else ""
        if self.reduction in ("mean", "weighted_mean"):
            use_weight = self.reduction == "weighted_mean" and weight is not None
            if hasattr(self._module, "normalizers"):
                norms = np.empty(rows, np.float64)
                function = getattr(self._module, ("normalizers_weighted" if use_weight else "normalizers") + serial)
                function(*(arguments if use_weight else unweighted), norms)
                scale = float(np.sum(norms))
            else:
                scale = float(np.sum(weight, dtype=np.float64)) if use_weight else float(rows)
        loss_array, grads, hesses = self._outputs(out, shape, (rows,))
        outputs = []
        for grad, hess in zip(grads, hesses):
            outputs += [grad, hess]
        loss_out = np.empty(rows, np.float64)
        getattr(self._module, "rows" + suffix + serial)(*arguments, scalar(scale), loss_out, *outputs)
        if self.reduction == "none":
            loss_value = loss_array
            loss_value[...] = loss_out
        else:
            loss_value = _divide(float(np.sum(loss_out)), scale)
        return self._result(loss_value, grads, hesses)

    def _scale(self, size: int, weight) -> float:
        if self.reduction == "sum":
            return 1.0
        # For the means, an empty input or zero total weight makes the scale 0: results are nan.
        if self.reduction == "weighted_mean" and weight is not None:
            return float(np.sum(weight, dtype=np.float64))
        return float(size)


def _reciprocal_is_normal(magnitude: float, tiny: float) -> bool:
    """Whether x * (1/scale) is as good as x / scale for a scale of this magnitude in a dtype whose
    smallest normal is `tiny`: 1/scale is normal, or the scale is 0, inf or nan, where the
    reciprocal gives what division gives (±inf or nan, 0). Plain float comparisons: per call."""
    return not (0.0 < magnitude < tiny or 1.0 / tiny < magnitude < math.inf)


def _flat(array: np.ndarray) -> np.ndarray:
    return array if array.ndim == 1 else array.reshape(-1)


def _divide(total: float, scale: float) -> float:
    """total / scale with IEEE semantics, as NumPy divides: x/0 is ±inf and 0/0 (an empty input,
    a zero total weight) is nan."""
    if scale:
        return total / scale
    if total == 0 or math.isnan(total):
        return math.nan
    return math.copysign(math.inf, total) * math.copysign(1.0, scale)


def spec_fingerprint(spec) -> tuple[str, ...]:
    """Everything in a LossSpec that shapes its kernel: two specs that differ in any of these
    (a normalizer, a domain that changes a simplification, a role) must never share a cache file."""
    import sympy as sp

    return (
        spec.name, spec.doc, sp.srepr(spec.expr), repr(spec.inputs), repr(spec.wrt),
        repr(sorted(spec.params.items())), f"stabilize={spec.stabilize}",
        repr(sorted((name, sp.srepr(interval)) for name, interval in spec.domain.items())),
        repr(sorted((name, sp.srepr(symbol)) for name, symbol in spec.symbols.items())),
        repr(sorted(spec.roles.items())), repr(spec.class_params),
        sp.srepr(spec.normalizer) if spec.normalizer is not None else "None", repr(spec.transform),
    )


# Target -> (module, class) of the Kernel that calls its kernels. A target's runtime is imported
# when one of its kernels is compiled: the CUDA one needs numba-cuda, an optional extra.
KERNEL_RUNTIMES: dict[str, tuple[str, str]] = {
    "cpu": ("lossgen.runtime", "Kernel"),
    "cuda": ("lossgen.cuda_runtime", "CudaKernel"),
}


def _not_compiled(facts: KernelFacts, exc: Exception) -> CodegenError:
    """numba refused the generated code (it types it at the first call): a one-line CodegenError
    naming the loss, not numba's page of typing output."""
    first = next((line.strip() for line in str(exc).splitlines() if line.strip() and not line.startswith("Failed in")), "")
    return CodegenError(f"{facts.name}: numba could not compile the generated kernel ({type(exc).__name__}: {first[:200]})")


def compile_kernel(loss, target: str = "cpu", dtype: str = "float64", reduction: str = "mean") -> Kernel:
    """Generate, load (from the on-disk cache when possible) and wrap the kernel of a Loss."""
    if target not in KERNEL_RUNTIMES:
        raise CodegenError(f"target must be one of {', '.join(map(repr, KERNEL_RUNTIMES))}, got {target!r}")
    dtype = dtype_name(dtype)
    if reduction not in REDUCTIONS:
        raise CodegenError(f"reduction must be one of {', '.join(REDUCTIONS)}, got {reduction!r}")
    module_name, class_name = KERNEL_RUNTIMES[target]
    kernel_class = getattr(importlib.import_module(module_name), class_name)
    kernel_class.check_target()  # before any import of a kernel module that needs what is missing
    # A catalog loss is keyed by its catalog entry's text, which defines its spec, so a kernel in
    # the cache loads without parsing the formula; any other loss is keyed by its spec.
    parts = loss.source_key or spec_fingerprint(loss.spec)
    key = kernel_key(target, dtype, *parts)
    module = load_kernel_module(key, f"{loss.name}_{target}_{dtype}", lambda: module_source(loss, target, dtype))
    return kernel_class(loss, target, dtype, reduction, module)
