"""CUDA target: call CUDA kernels on NumPy arrays or on arrays that already live on the GPU.

CudaKernel is called like the CPU Kernel, with the same checks and the same one-line errors.
NumPy inputs are copied to the device and the outputs copied back. Device arrays (numba's own,
and CuPy arrays, torch CUDA tensors or anything else with __cuda_array_interface__) are read in
place, and the outputs stay on the device, as numba device arrays. Launches are sized from the
device's properties; a reduction leaves one float64 partial sum per block, added here in a fixed
order. Importing this module needs no numba-cuda: `require_cuda` says when it is missing.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from .errors import CodegenError, InputError
from .runtime import Kernel, Result, _divide

# Threads per block at most: the size of block_sum's shared-memory buffer (8 bytes a thread).
# 256 keeps a memory-bound loop's blocks small enough for several to share a multiprocessor.
MAX_BLOCK_THREADS = 256
# The device properties a launch is sized by. numba's CUDA simulator has none of them, and runs
# every thread as a Python thread: there, small stand-ins keep a test run fast.
LAUNCH_PROPERTIES = ("MULTIPROCESSOR_COUNT", "MAX_THREADS_PER_BLOCK", "MAX_THREADS_PER_MULTI_PROCESSOR")
SIMULATOR_PROPERTIES = {"MULTIPROCESSOR_COUNT": 2, "MAX_THREADS_PER_BLOCK": 16, "MAX_THREADS_PER_MULTI_PROCESSOR": 16}


def require_cuda():
    """numba.cuda, when numba-cuda is installed and a GPU (or numba's simulator) is there.

    Raises CodegenError naming what is missing: the [cuda] extra, or a device.
    """
    try:
        import numba_cuda  # noqa: F401 - NVIDIA's maintained CUDA target for numba (the [cuda] extra)
    except ImportError:
        raise CodegenError("CUDA kernels need NVIDIA's numba-cuda package: pip install 'lossgen[cuda]'") from None
    try:
        from numba import cuda
    except ImportError as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CodegenError(f"numba-cuda is installed but cannot be imported ({reason}); reinstall it: pip install 'lossgen[cuda]'") from None
    if not _available(cuda):
        raise CodegenError(
            "no CUDA GPU is available to numba-cuda; to run CUDA kernels without one, set "
            "NUMBA_ENABLE_CUDASIM=1 (numba's CUDA simulator) before numba.cuda is imported"
        )
    return cuda


@functools.lru_cache(maxsize=1)
def _available(cuda) -> bool:
    # Asking the driver costs milliseconds; the answer does not change within a process.
    return bool(cuda.is_available())


def simulated(cuda) -> bool:
    """Whether numba.cuda is numba's CUDA simulator (NUMBA_ENABLE_CUDASIM=1) rather than a GPU."""
    return bool(getattr(cuda.config, "ENABLE_CUDASIM", 0))


@dataclass(frozen=True)
class LaunchConfig:
    """A kernel launch: blocks in the grid, threads per block (a power of two)."""

    blocks: int
    threads: int


def launch_config(properties: Mapping[str, int], work: int) -> LaunchConfig:
    """The launch of a grid-stride loop over `work` items (samples, or rows) on a device with these
    properties (see LAUNCH_PROPERTIES).

    Threads per block: the largest power of two the device and block_sum's buffer allow (the
    block sum's tree halves the block). Blocks: as many as the device holds at once, one block
    per multiprocessor slot, and no more than the work fills; always at least one.
    """
    limit = max(1, min(int(properties["MAX_THREADS_PER_BLOCK"]), MAX_BLOCK_THREADS))
    threads = 1 << (limit.bit_length() - 1)
    per_multiprocessor = max(1, int(properties["MAX_THREADS_PER_MULTI_PROCESSOR"]) // threads)
    resident = max(1, int(properties["MULTIPROCESSOR_COUNT"]) * per_multiprocessor)
    blocks = max(1, min(resident, -(-int(work) // threads)))
    return LaunchConfig(blocks, threads)


def device_properties(cuda) -> dict[str, int]:
    """The launch properties of the current device (the simulator's stand-ins under the simulator)."""
    if simulated(cuda):
        return dict(SIMULATOR_PROPERTIES)
    device = cuda.get_current_device()
    return _read_properties(device)


def _read_properties(device) -> dict[str, int]:
    # numba's Device reads an attribute from the driver once and keeps it.
    return {name: int(getattr(device, name)) for name in LAUNCH_PROPERTIES}


def _on_device(value) -> bool:
    # numba's device arrays (the simulator's too) say __cuda_ndarray__; other libraries export
    # __cuda_array_interface__ (a CPU torch tensor raises AttributeError for it: False).
    return bool(getattr(value, "__cuda_ndarray__", False)) or hasattr(value, "__cuda_array_interface__")


def _address_range(array) -> tuple[int, int]:
    # The simulator's arrays forward __array_interface__ to the NumPy array they wrap.
    interface = getattr(array, "__cuda_array_interface__", None) or array.__array_interface__
    start = int(interface["data"][0])
    return start, start + array.size * array.dtype.itemsize


class CudaKernel(Kernel):
    """A compiled loss for a CUDA device. Call it like the CPU Kernel:
    kernel(*arrays, weight=None, out=None, **params) -> Result.

    Inputs are NumPy arrays (copied to the device; the Result holds NumPy arrays) or device arrays
    (used in place; the Result holds numba device arrays on that device). Where the outputs live
    follows the array the derivatives are taken in; other arrays are moved to it. Device arrays
    must be C-contiguous; targets and weights of another real dtype are converted on the device.
    """

    def __init__(self, loss, target: str, dtype: str, reduction: str, module):
        super().__init__(loss, target, dtype, reduction, module)
        from . import cuda_device

        self._cuda = require_cuda()
        self._device = cuda_device

    @classmethod
    def check_target(cls) -> None:
        """Raise CodegenError when CUDA kernels cannot run here (see require_cuda)."""
        require_cuda()

    # --- launches ------------------------------------------------------------------------------

    def _launch(self, function, work: int, *arguments) -> LaunchConfig:
        config = launch_config(device_properties(self._cuda), work)
        function[config.blocks, config.threads](*arguments)
        return config

    def _reduce(self, function, work: int, *arguments) -> float:
        """Launch a kernel whose last argument before the outputs is a per-block partial-sum
        array (inserted at `arguments`' None), and add the partial sums on the host in float64."""
        config = launch_config(device_properties(self._cuda), work)
        partial = self._cuda.device_array(config.blocks, np.float64)
        function[config.blocks, config.threads](*(partial if a is None else a for a in arguments))
        # np.sum's pairwise order is fixed by the block count, so a sum is the same every run.
        return float(np.sum(partial.copy_to_host()))

    # --- inputs --------------------------------------------------------------------------------

    def _device_input(self, name: str, value, is_wrt: bool, convert: bool = True):
        """A C-contiguous device array of the kernel's dtype holding one input (a view where the
        input is a device array of that dtype already; a copy where it is a NumPy array)."""
        cuda = self._cuda
        if not _on_device(value):
            return cuda.to_device(self._array(name, value, is_wrt))
        array = self._view(value)
        if not convert:
            return self._contiguous(name, array)
        self._check_dtype(name, array.dtype, is_wrt)
        array = self._contiguous(name, array)
        if array.dtype != self.dtype:
            converted = cuda.device_array(array.shape, self.dtype)
            if array.size:
                self._launch(self._device.convert, array.size, array.reshape(array.size), converted.reshape(array.size))
            array = converted
        return array

    @staticmethod
    def _contiguous(name: str, array):
        if not array.is_c_contiguous():
            raise InputError(f"array {name!r} is a non-contiguous device array; make it contiguous on the device first "
                             "(.contiguous() in torch, cupy.ascontiguousarray)")
        return array

    def _device_labels(self, name: str, value, rows: int, classes: int, ignore):
        """A device array of integer class labels, checked as the CPU kernel checks them."""
        if not _on_device(value):
            return self._cuda.to_device(self._labels(name, value, rows, classes, ignore))
        labels = self._device_input(name, value, False, convert=False)
        if labels.dtype.kind not in "iu":
            raise InputError(f"array {name!r} holds class labels and must be integers, got dtype {labels.dtype}")
        if labels.shape != (rows,):
            raise InputError(f"array {name!r} has shape {labels.shape}, expected ({rows},): one label per row")
        if rows:
            # The check runs where the labels are: one index comes back, not the labels.
            first = self._cuda.to_device(np.array([rows], dtype=np.int64))
            use_ignore = ignore is not None
            self._launch(self._device.first_bad_label, rows, labels, classes, ignore if use_ignore else 0, use_ignore, first)
            index = int(first.copy_to_host()[0])
            if index < rows:
                label = int(labels[index:index + 1].copy_to_host()[0])
                raise InputError(f"array {name!r} has label {label} outside 0..{classes - 1}"
                                 + (f" (ignore_index is {ignore})" if use_ignore else ""))
        return labels

    def _host_param(self, value):
        """A per-class param given as a device array, on the host (it is checked there, and small)."""
        return self._view(value).copy_to_host() if _on_device(value) else value

    # --- outputs -------------------------------------------------------------------------------

    def allocate(self, shape, on_device: bool = True) -> Result:
        """Empty outputs for inputs whose wrt array has `shape`, to pass as `out=` on every call:
        numba device arrays (for device inputs), or NumPy arrays with on_device=False (for NumPy
        inputs). For row-wise losses `shape` is (rows, classes)."""
        host = super().allocate(shape)
        if not on_device:
            return host
        empty = self._cuda.device_array
        loss = None if host.loss is None else empty(host.loss.shape, self.dtype)
        grads = host.grad if isinstance(host.grad, tuple) else (host.grad,)
        return self._result(loss, tuple(empty(g.shape, self.dtype) for g in grads),
                            tuple(empty(g.shape, self.dtype) for g in grads), transform=False)

    def _outputs_for(self, out, on_device: bool, shape, loss_shape):
        """(user-facing outputs, device arrays the kernel writes): the loss array (reduction "none",
        else None), grads and hesses. Device mode writes into `out` (or new device arrays) in place;
        NumPy mode writes into new device arrays, copied back into `out` (or new NumPy arrays)."""
        n = len(self._wrt)
        empty = self._cuda.device_array
        if out is not None and not on_device:
            if any(_on_device(a) for a in _out_arrays(out)):
                raise InputError("out holds device arrays, but the inputs are NumPy arrays; "
                                 "use kernel.allocate(shape, on_device=False) or pass device inputs")
            host = self._outputs(out, shape, loss_shape)
        elif out is not None:
            host = self._check_device_outputs(out, shape, loss_shape)
        else:
            host = None
        if on_device and host is not None:
            views = (None if host[0] is None else self._view(host[0]),
                     tuple(self._view(g) for g in host[1]), tuple(self._view(h) for h in host[2]))
            return host, views
        loss = empty(loss_shape, self.dtype) if self.reduction == "none" else None
        views = (loss, tuple(empty(shape, self.dtype) for _ in range(n)), tuple(empty(shape, self.dtype) for _ in range(n)))
        return host, views

    def _view(self, value):
        """A numba device array of a device array's memory: itself, or a view through
        __cuda_array_interface__ (no copy)."""
        return value if getattr(value, "__cuda_ndarray__", False) else self._cuda.as_cuda_array(value)

    def _check_device_outputs(self, out, shape, loss_shape):
        n = len(self._wrt)
        loss, grads, hesses = _out_fields(out, n, self._wrt)
        labelled = [(f"out.grad[{k}]" if n > 1 else "out.grad", g, shape) for k, g in enumerate(grads)]
        labelled += [(f"out.hess[{k}]" if n > 1 else "out.hess", h, shape) for k, h in enumerate(hesses)]
        if self.reduction == "none":
            labelled.append(("out.loss", loss, loss_shape))
        ranges = []
        for label, value, expected in labelled:
            if not _on_device(value):
                raise InputError(f"{label} must be a device array like the inputs, got {type(value).__name__}; "
                                 "see kernel.allocate(shape)")
            array = self._view(value)
            interface = getattr(value, "__cuda_array_interface__", None)
            if array.dtype != self.dtype or tuple(array.shape) != tuple(expected):
                raise InputError(f"{label} has dtype {array.dtype} and shape {tuple(array.shape)}; expected {self.dtype} and {tuple(expected)}")
            if not array.is_c_contiguous() or (interface is not None and interface["data"][1]):
                raise InputError(f"{label} must be C-contiguous and writeable")
            ranges.append(_address_range(array))
        for i, (start, stop) in enumerate(ranges):
            for other_start, other_stop in ranges[i + 1:]:
                if start < other_stop and other_start < stop and start < stop and other_start < other_stop:
                    raise InputError("out: the output arrays overlap; each needs its own memory")
        return (loss if self.reduction == "none" else None), tuple(grads), tuple(hesses)

    def _finish(self, loss_value, host, views, on_device: bool, shape, loss_shape) -> Result:
        """The Result: the transform (if any) applied where the derivatives are, outputs in the
        caller's place and shape."""
        loss_array, grads, hesses = views
        if on_device:
            if self.reduction == "none":
                loss_value = loss_array.reshape(loss_shape) if host is None else host[0]
            if self._transform:
                loss_value = self._device_transform(loss_value, grads, hesses)
            if host is not None:
                return self._result(loss_value, host[1], host[2], transform=False)
            return self._result(loss_value, tuple(g.reshape(shape) for g in grads),
                                tuple(h.reshape(shape) for h in hesses), transform=False)
        if host is None:
            host = (np.empty(loss_shape, self.dtype) if self.reduction == "none" else None,
                    tuple(np.empty(shape, self.dtype) for _ in grads), tuple(np.empty(shape, self.dtype) for _ in hesses))
        for device, target in zip((*grads, *hesses), (*host[1], *host[2])):
            device.copy_to_host(target.reshape(device.shape))
        if self.reduction == "none":
            loss_array.copy_to_host(host[0].reshape(loss_array.shape))
            loss_value = host[0]
        return self._result(loss_value, host[1], host[2])

    def _device_transform(self, loss_value: float, grads, hesses) -> float:
        from .transforms import TRANSFORMS

        transform = TRANSFORMS[self._transform]
        scalar = self.dtype.type
        first, second = scalar(transform.first(loss_value)), scalar(transform.second(loss_value))
        for g, h in zip(grads, hesses):
            if g.size:
                self._launch(self._device.chain_rule, g.size, g.reshape(g.size), h.reshape(h.size), first, second)
        return transform.value(loss_value)

    # --- calls ---------------------------------------------------------------------------------

    def __call__(self, *arrays, weight=None, out=None, **named) -> Result:
        """Evaluate loss, gradient and Hessian diagonal on the device; see Result for shapes.

        out: optional preallocated outputs (see allocate), device arrays for device inputs and
        NumPy arrays for NumPy inputs; the returned Result holds those arrays.
        """
        bound, given_params = self._bind(arrays, named)
        on_device = _on_device(bound[self._wrt[0]])
        if self._rowwise:
            return self._call_rows_on_device(bound, given_params, weight, out, on_device)
        inputs = [self._device_input(n, bound[n], is_wrt) for n, is_wrt in zip(self._inputs, self._is_wrt)]
        shape = tuple(inputs[self._inputs.index(self._wrt[0])].shape)
        for name, array in zip(self._inputs, inputs):
            if tuple(array.shape) != shape:
                raise InputError(f"array {name!r} has shape {tuple(array.shape)}, expected {shape} like {self._wrt[0]!r}")
        if weight is not None:
            weight = self._device_input("weight", weight, False)
            if tuple(weight.shape) != shape:
                raise InputError(f"array 'weight' has shape {tuple(weight.shape)}, expected {shape}")
        scalar = self.dtype.type
        params = [scalar(check.value(given_params.get(name, check.default))) for name, check in self._params.items()]
        host, views = self._outputs_for(out, on_device, shape, shape)
        size = math.prod(shape)
        flat = lambda a: a.reshape(size)  # noqa: E731 - C-contiguous: a view
        arguments = [flat(a) for a in inputs] + params
        if weight is not None:
            arguments.append(flat(weight))
        outputs = []
        for grad, hess in zip(views[1], views[2]):
            outputs += [flat(grad), flat(hess)]
        suffix = "_weighted" if weight is not None else ""
        if self.reduction == "none":
            if size:
                self._launch(getattr(self._module, "per_sample" + suffix), size, *arguments, flat(views[0]), *outputs)
            loss_value = None
        else:
            scale = self._device_scale(size, weight)
            total = 0.0
            if size:
                total = self._reduce(getattr(self._module, "reduced" + suffix), size, *arguments, scalar(scale), None, *outputs)
            loss_value = _divide(total, scale)
        return self._finish(loss_value, host, views, on_device, shape, shape)

    def _device_scale(self, size: int, weight) -> float:
        """What a mean divides by, as the CPU Kernel's _scale, with the weights summed on the device."""
        if self.reduction == "weighted_mean" and weight is not None:
            return self._reduce(self._device.block_sums, size, weight.reshape(size), None) if size else 0.0
        return self._scale(size, None)

    def _call_rows_on_device(self, bound, given_params, weight, out, on_device: bool) -> Result:
        roles = self.facts.roles
        wrt0 = self._wrt[0]
        row_arrays = {n: self._device_input(n, bound[n], n in self._wrt) for n in self._inputs if roles[n] == "row"}
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
                arguments.append(self._device_labels(name, bound[name], rows, classes, ignore))
            else:
                array = self._device_input(name, bound[name], False)
                if tuple(array.shape) != (rows,):
                    raise InputError(f"array {name!r} has one value per row and must have shape ({rows},), got {tuple(array.shape)}")
                arguments.append(array)
        for name in self._params:
            if name not in class_params:
                arguments.append(scalar(self._params[name].value(given_params.get(name, self._params[name].default))))
        for name in self.facts.class_params:
            given = self._host_param(given_params.get(name))
            arguments.append(self._cuda.to_device(self._class_param(name, given, classes)))
        unweighted = list(arguments)
        suffix = ""
        if weight is not None:
            weight = self._device_input("weight", weight, False)
            if tuple(weight.shape) != (rows,):
                raise InputError(f"array 'weight' has one value per row and must have shape ({rows},), got {tuple(weight.shape)}")
            arguments.append(weight)
            suffix = "_weighted"
        scale = 1.0
        if self.reduction in ("mean", "weighted_mean"):
            use_weight = self.reduction == "weighted_mean" and weight is not None
            if hasattr(self._module, "normalizers"):
                function = getattr(self._module, "normalizers_weighted" if use_weight else "normalizers")
                scale = self._reduce(function, rows, *(arguments if use_weight else unweighted), None) if rows else 0.0
            elif use_weight:
                scale = self._reduce(self._device.block_sums, rows, weight, None) if rows else 0.0
            else:
                scale = float(rows)
        host, views = self._outputs_for(out, on_device, shape, (rows,))
        outputs = []
        for grad, hess in zip(views[1], views[2]):
            outputs += [grad, hess]
        if self.reduction == "none":
            if rows:
                self._launch(getattr(self._module, "per_row" + suffix), rows, *arguments, scalar(scale), views[0], *outputs)
            loss_value = None
        else:
            total = self._reduce(getattr(self._module, "reduced_rows" + suffix), rows, *arguments, scalar(scale), None, *outputs) if rows else 0.0
            loss_value = _divide(total, scale)
        return self._finish(loss_value, host, views, on_device, shape, (rows,))


def _out_fields(out, n: int, wrt):
    """(loss, grads, hesses) of an out= argument: a Result or a (loss, grad, hess) tuple."""
    if isinstance(out, Result):
        loss, grads, hesses = out.loss, out.grad, out.hess
    elif isinstance(out, (tuple, list)) and len(out) == 3:
        loss, grads, hesses = out
    else:
        raise InputError("out must be a Result (see Kernel.allocate) or a (loss, grad, hess) tuple")
    if n == 1:
        return loss, (grads,), (hesses,)
    if not (isinstance(grads, tuple) and isinstance(hesses, tuple) and len(grads) == len(hesses) == n):
        raise InputError(f"out: grad and hess must be tuples of {n} arrays, one per wrt ({', '.join(wrt)})")
    return loss, grads, hesses


def _out_arrays(out) -> list:
    """Every array an out= argument holds, for a first look at where they live."""
    try:
        loss, grads, hesses = (out.loss, out.grad, out.hess) if isinstance(out, Result) else out
    except (TypeError, ValueError):
        return []
    arrays = [loss]
    for field in (grads, hesses):
        arrays.extend(field if isinstance(field, tuple) else (field,))
    return [a for a in arrays if a is not None]
