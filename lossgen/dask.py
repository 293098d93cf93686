"""Dask: run a compiled Kernel chunk by chunk over dask arrays (needs the [dask] extra).

`evaluate(kernel, *arrays, weight=None, **params)` returns a `Result` whose fields are lazy dask
objects; nothing runs until they are computed. Each chunk is one call of the kernel's generated
code with the arguments the in-memory call would build (the same conversions, and for the means
the same global divisor), and a reduced loss is the tree sum of per-chunk float64 sums. Compute
the fields together, `dask.compute(r.loss, r.grad, r.hess)`, so each chunk's kernel runs once.

Exactly equal to the in-memory `kernel(...)` result, bit for bit, for any chunking:
- reduction "none": the loss, gradient and Hessian diagonal;
- "sum", "mean" (and "weighted_mean" without a weight): the gradient and Hessian, since the
  divisor is the sample (row) count, which both paths hold exactly, and every chunk divides by it
  inside the generated code as the in-memory call does.
Everything is bit-equal when the arrays are a single chunk.

Equal up to float64 rounding (relative differences of order 1e-16):
- the reduced loss: in memory it is one sum over fixed 4096-sample blocks (a numpy sum over rows
  for row-wise losses); here each chunk's sum starts at the chunk's start and the chunk sums are
  added in a tree, so the same terms are added in another order;
- "weighted_mean" with a weight, and "mean" of a row-wise loss with a normalizer (cross_entropy
  with class weights or ignored labels): the divisor is itself such a sum, so the gradient and
  Hessian may differ from the in-memory ones in the last bit;
- losses with a transform (rmse): the gradient and Hessian are the transform's derivatives at the
  reduced loss, so they follow the loss's rounding.
"""

from __future__ import annotations

import hashlib
import math
import pickle
import threading

import numpy as np

from .errors import InputError
from .runtime import Kernel, Result, _divide, compile_kernel
from .spec import Loss
from .transforms import TRANSFORMS, apply_transform

try:
    import dask.array as da
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError("lossgen.dask needs dask: pip install 'lossgen[dask]'") from exc

__all__ = ["evaluate"]

_AXES = "abcdefghijklmnopqrstuvwxyz"


def evaluate(kernel: Kernel, *arrays, weight=None, **params) -> Result:
    """Run `kernel` chunk by chunk over dask arrays; a Result of lazy dask objects.

    Arrays go positionally in the loss's `inputs` order or by name, as for `kernel(...)`; numpy
    arrays are accepted too. The other arrays and `weight` are rechunked to the `wrt` array's
    chunks (a row-wise loss's rows x classes arrays are chunked along rows only). For reduction
    "none", loss, grad and hess are dask arrays; otherwise the loss is a 0-d float64 dask array
    and grad and hess are dask arrays scaled as the kernel scales them. Shapes, dtypes and
    params are checked now (InputError); labels are range-checked as their chunk runs. The
    module docstring says what equals the in-memory result exactly and what to rounding.
    """
    if not isinstance(kernel, Kernel):
        raise InputError(f"evaluate takes a Kernel (from Loss.compile), got {type(kernel).__name__}")
    loss = kernel.loss
    bound, params = kernel._bind(arrays, params)
    wrt = loss.wrt[0]
    dask_arrays = {name: _as_dask(name, value) for name, value in bound.items()}
    weight = None if weight is None else _as_dask("weight", weight)
    if loss.rowwise:
        aligned, weight, out_index, indices = _align_rows(loss, dask_arrays, weight)
        count = aligned[wrt].shape[0]
    else:
        aligned, weight, out_index, indices = _align_samples(loss, dask_arrays, weight)
        count = aligned[wrt].size
    _probe(kernel, loss, aligned, weight, params)

    # The divisor of the means: the count, known now, or a lazy 0-d sum of weights or normalizers.
    scale, lazy_scale = (None if kernel.reduction == "none" else 1.0), None
    if kernel.reduction in ("mean", "weighted_mean"):
        use_weight = kernel.reduction == "weighted_mean" and weight is not None
        if loss.rowwise and loss.spec.normalizer is not None:
            lazy_scale = _normalizer_total(kernel, aligned, weight if use_weight else None, params, indices)
        elif use_weight:
            # As the kernel does: the weight in the kernel's dtype, summed in float64.
            lazy_scale = weight.astype(kernel.dtype).sum(dtype=np.float64)
        else:
            scale = float(count)

    task = _ChunkTask(kernel, params, weight is not None, lazy_scale is not None, scale)
    arguments = []
    for name in loss.inputs:
        arguments += [aligned[name], indices[name]]
    if weight is not None:
        arguments += [weight, out_index]
    if lazy_scale is not None:
        arguments += [lazy_scale, ""]
    # One task per chunk returns (loss, grads, hesses); the fields below pick from it, so
    # computing them together runs each chunk's kernel once.
    base = da.blockwise(task, out_index, *arguments, dtype=object, meta=_meta(len(out_index), object), concatenate=True)

    if kernel.reduction == "none":
        loss_value = base.map_blocks(_pick_loss, dtype=kernel.dtype, meta=_meta(base.ndim, kernel.dtype))
    else:
        partials = base.map_blocks(
            _pick_total, base.ndim, chunks=tuple((1,) * len(c) for c in base.chunks), dtype=np.float64,
            meta=_meta(base.ndim, np.float64),
        )
        divisor = [lazy_scale, ""] if lazy_scale is not None else [None, None]
        reduced = da.blockwise(
            _finish_loss, "", partials.sum(dtype=np.float64), "", *divisor, scale, None, dtype=np.float64, meta=_meta(0, np.float64),
        )
        loss_value = reduced
        if loss.spec.transform:
            name = loss.spec.transform
            loss_value = da.blockwise(_transform_value, "", reduced, "", name, None, dtype=np.float64, meta=_meta(0, np.float64))
            base = da.blockwise(
                _transform_chunk, out_index, base, out_index, reduced, "", name, None, dtype=object,
                meta=_meta(len(out_index), object),
            )
    grads, hesses = [], []
    like = aligned[wrt]
    for k in range(len(loss.wrt)):
        for which, into in ((1, grads), (2, hesses)):
            meta = _meta(like.ndim, kernel.dtype)
            if loss.rowwise:
                into.append(base.map_blocks(_pick, which, k, new_axis=1, chunks=like.chunks, dtype=kernel.dtype, meta=meta))
            else:
                into.append(base.map_blocks(_pick, which, k, dtype=kernel.dtype, meta=meta))
    if len(grads) == 1:
        return Result(loss_value, grads[0], hesses[0])
    return Result(loss_value, tuple(grads), tuple(hesses))


# --- binding, alignment and eager checks -----------------------------------------------------


def _as_dask(name: str, value):
    if isinstance(value, da.Array):
        array = value
    else:
        try:
            array = da.asarray(np.asarray(value))
        except Exception as exc:  # noqa: BLE001 - any failure to become an array is the user's input
            raise InputError(f"array {name!r} cannot be read as an array: {exc}") from None
    if any(math.isnan(c) for chunks in array.chunks for c in chunks):
        raise InputError(f"array {name!r} has unknown chunk sizes; call its .compute_chunk_sizes() first")
    return array


def _align_samples(loss, arrays, weight):
    """Elementwise: every array and the weight in the wrt array's shape and chunks."""
    wrt = loss.wrt[0]
    shape, chunks = arrays[wrt].shape, arrays[wrt].chunks
    for name in loss.inputs:
        if arrays[name].shape != shape:
            raise InputError(f"array {name!r} has shape {arrays[name].shape}, expected {shape} like {wrt!r}")
    if weight is not None and weight.shape != shape:
        raise InputError(f"array 'weight' has shape {weight.shape}, expected {shape}")
    index = _AXES[: len(shape)]
    aligned = {name: arrays[name].rechunk(chunks) for name in loss.inputs}
    weight = None if weight is None else weight.rechunk(chunks)
    return aligned, weight, index, {name: index for name in loss.inputs}


def _align_rows(loss, arrays, weight):
    """Row-wise: rows x classes arrays chunked along rows only; per-row arrays like the rows."""
    wrt = loss.wrt[0]
    roles = loss.roles
    shape = arrays[wrt].shape
    if len(shape) != 2:
        raise InputError(f"array {wrt!r} is a row-wise input and must be 2-D (rows x classes), got shape {shape}")
    rows = shape[0]
    # A row's class loops need the whole row: one chunk along the class axis.
    chunks = (arrays[wrt].chunks[0], (shape[1],))
    aligned, indices = {}, {}
    for name in loss.inputs:
        array = arrays[name]
        if roles[name] == "row":
            if array.shape != shape:
                raise InputError(f"array {name!r} has shape {array.shape}, expected {shape} like {wrt!r}")
            aligned[name], indices[name] = array.rechunk(chunks), "ij"
        else:
            if array.shape != (rows,):
                what = "holds one label per row" if roles[name] == "label" else "has one value per row"
                raise InputError(f"array {name!r} {what} and must have shape ({rows},), got {array.shape}")
            aligned[name], indices[name] = array.rechunk(chunks[:1]), "i"
    if weight is not None:
        if weight.shape != (rows,):
            raise InputError(f"array 'weight' has one value per row and must have shape ({rows},), got {weight.shape}")
        weight = weight.rechunk(chunks[:1])
    return aligned, weight, "i", indices


def _probe(kernel, loss, aligned, weight, params):
    """Call the kernel on empty arrays of the real dtypes: its own dtype and param checks, now."""
    empties = [np.empty((0,) + aligned[n].shape[1:], aligned[n].dtype) for n in loss.inputs]
    kernel(*empties, weight=None if weight is None else np.empty((0,), weight.dtype), **params)


def _meta(ndim: int, dtype):
    return np.empty((0,) * ndim, dtype)


# --- what runs in the workers ---------------------------------------------------------------------


# Kernels this process has built for tasks: a worker compiles (or loads) each one once.
_KERNELS: dict = {}
_KERNELS_LOCK = threading.Lock()


def _kernel_from(loss: Loss, token: str, target: str, dtype: str, reduction: str) -> Kernel:
    key = (token, target, dtype, reduction)
    with _KERNELS_LOCK:
        kernel = _KERNELS.get(key)
        if kernel is None:
            kernel = _KERNELS[key] = compile_kernel(loss, target, dtype, reduction)
    return kernel


class _KernelTask:
    """A picklable callable holding a kernel: the kernel itself in this process; in another, the
    Loss travels (it pickles as its spec) and the kernel is rebuilt from the on-disk cache, since
    compiled modules do not pickle. The token names the loss in the worker's kernel table."""

    def __init__(self, kernel: Kernel):
        self.loss, self.target, self.dtype, self.reduction = kernel.loss, kernel.target, str(kernel.dtype), kernel.reduction
        self.token = hashlib.sha256(pickle.dumps(kernel.loss.spec)).hexdigest()
        self._kernel = kernel

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_kernel"] = None
        return state

    def kernel(self) -> Kernel:
        if self._kernel is None:
            self._kernel = _kernel_from(self.loss, self.token, self.target, self.dtype, self.reduction)
        return self._kernel


class _ChunkTask(_KernelTask):
    """One chunk: (loss, grads, hesses), where loss is the per-sample array for "none" and the
    chunk's float64 sum otherwise, with the gradient and Hessian divided by the global scale."""

    def __init__(self, kernel, params, weighted, lazy_scale, scale):
        super().__init__(kernel)
        self.params, self.weighted, self.lazy_scale, self.scale = dict(params), weighted, lazy_scale, scale

    def __call__(self, *blocks):
        kernel = self.kernel()
        count = len(kernel.loss.inputs)
        arrays = dict(zip(kernel.loss.inputs, blocks[:count]))
        weight = blocks[count] if self.weighted else None
        if self.reduction == "none":
            result = kernel(**arrays, weight=weight, **self.params)
            return result.loss, _tuple(result.grad), _tuple(result.hess)
        scale = float(np.asarray(blocks[-1])) if self.lazy_scale else self.scale
        if kernel.loss.rowwise:
            return _reduce_rows(kernel, arrays, weight, self.params, scale)
        return _reduce_samples(kernel, arrays, weight, self.params, scale)


# The chunk functions below call the generated entry points with the arguments Kernel.__call__
# and Kernel._call_rows build (through the kernel's own conversions and checks), except that the
# divisor is the whole array's, not the chunk's: then the gradient and Hessian are computed by the
# same code with the same operands as in memory. Dividing a scale-1 result afterwards would not do:
# some kernels compute in float64 and round to float32 only after the division.


def _reduce_samples(kernel: Kernel, arrays: dict, weight, given: dict, scale: float):
    loss = kernel.loss
    converted = [kernel._array(n, arrays[n], n in loss.wrt) for n in loss.inputs]
    shape = converted[loss.inputs.index(loss.wrt[0])].shape
    scalar = kernel.dtype.type
    arguments = [a.reshape(-1) for a in converted]
    arguments += [scalar(check.value(given.get(name, check.default))) for name, check in kernel._params.items()]
    if weight is not None:
        arguments.append(kernel._array("weight", weight, False).reshape(-1))
    arguments.append(scalar(scale))
    grads = tuple(np.empty(shape, kernel.dtype) for _ in loss.wrt)
    hesses = tuple(np.empty(shape, kernel.dtype) for _ in loss.wrt)
    for grad, hess in zip(grads, hesses):
        arguments += [grad.reshape(-1), hess.reshape(-1)]
    # The single-threaded entry: dask runs chunks in parallel already (it gives the same bits).
    total = kernel._entries[weight is not None, True](*arguments)
    return np.float64(total), grads, hesses


def _reduce_rows(kernel: Kernel, arrays: dict, weight, given: dict, scale: float):
    arguments = _row_arguments(kernel, arrays, given)
    if weight is not None:
        arguments.append(kernel._array("weight", weight, False))
    shape = np.shape(arrays[kernel.loss.wrt[0]])
    grads = tuple(np.empty(shape, kernel.dtype) for _ in kernel.loss.wrt)
    hesses = tuple(np.empty(shape, kernel.dtype) for _ in kernel.loss.wrt)
    outputs = [a for pair in zip(grads, hesses) for a in pair]
    losses = np.empty(shape[0], np.float64)
    function = kernel._module.rows_weighted if weight is not None else kernel._module.rows
    function(*arguments, kernel.dtype.type(scale), losses, *outputs)
    return np.float64(np.sum(losses)), grads, hesses


def _row_arguments(kernel: Kernel, bound: dict, given: dict) -> list:
    """A row-wise kernel's arguments for one chunk, as Kernel._call_rows builds them: labels are
    range-checked before any generated code indexes with them."""
    loss = kernel.loss
    rows, classes = np.shape(bound[loss.wrt[0]])
    class_params = set(loss.spec.class_params)
    checks = kernel._params
    ignore = None
    if "ignore_index" in checks and "ignore_index" not in class_params:
        ignore = int(checks["ignore_index"].value(given.get("ignore_index", checks["ignore_index"].default)))
    arguments = []
    for name in loss.inputs:
        if loss.roles[name] == "label":
            arguments.append(kernel._labels(name, bound[name], rows, classes, ignore))
        else:
            arguments.append(kernel._array(name, bound[name], name in loss.wrt))
    scalar = kernel.dtype.type
    arguments += [scalar(check.value(given.get(name, check.default))) for name, check in checks.items() if name not in class_params]
    arguments += [kernel._class_param(name, given.get(name), classes) for name in loss.spec.class_params]
    return arguments


class _NormalizerTask(_KernelTask):
    """One chunk's sum of a row-wise loss's normalizers (what its "mean" divides by)."""

    def __init__(self, kernel, params, weighted):
        super().__init__(kernel)
        self.params, self.weighted = dict(params), weighted

    def __call__(self, *blocks):
        kernel = self.kernel()
        count = len(kernel.loss.inputs)
        arguments = _row_arguments(kernel, dict(zip(kernel.loss.inputs, blocks[:count])), self.params)
        if self.weighted:
            arguments.append(kernel._array("weight", blocks[count], False))
        norms = np.empty(arguments[0].shape[0], np.float64)
        module = kernel._module
        (module.normalizers_weighted if self.weighted else module.normalizers)(*arguments, norms)
        return np.full((1,), np.sum(norms), np.float64)


def _normalizer_total(kernel, aligned, weight, params, indices):
    """A lazy 0-d float64: the sum over all rows of the normalizer (times the weight)."""
    task = _NormalizerTask(kernel, params, weight is not None)
    arguments = []
    for name in kernel.loss.inputs:
        arguments += [aligned[name], indices[name]]
    if weight is not None:
        arguments += [weight, "i"]
    partials = da.blockwise(
        task, "i", *arguments, dtype=np.float64, meta=_meta(1, np.float64), concatenate=True, adjust_chunks={"i": 1},
    )
    return partials.sum(dtype=np.float64)


# --- small block functions (module level, so they pickle by name) ----------------------------------


def _tuple(value) -> tuple:
    return value if isinstance(value, tuple) else (value,)


def _pick(block, which: int, k: int):
    return block[which][k]


def _pick_loss(block):
    return block[0]


def _pick_total(block, ndim: int):
    # One chunk's float64 sum as a 1-element block: the partials form a dask array whose tree
    # sum is the total.
    return np.full((1,) * ndim, block[0], np.float64)


def _finish_loss(total, lazy_scale, scale):
    """The reduced loss: total / scale by the kernel's IEEE rules (0/0 is nan)."""
    if lazy_scale is not None:
        scale = float(np.asarray(lazy_scale))
    return np.float64(_divide(float(np.asarray(total)), scale))


def _transform_value(reduced, name: str):
    return np.float64(TRANSFORMS[name].value(float(np.asarray(reduced))))


def _transform_chunk(block, reduced, name: str):
    total, grads, hesses = block
    # Copies: apply_transform works in place, and dask may hand the same block to another task.
    grads, hesses = tuple(g.copy() for g in grads), tuple(h.copy() for h in hesses)
    apply_transform(name, float(np.asarray(reduced)), grads, hesses)
    return total, grads, hesses
