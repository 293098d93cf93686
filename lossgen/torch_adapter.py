"""PyTorch adapter: a Loss as a torch.nn.Module that runs the generated kernel once per step.

`Loss.to_torch(reduction, **params)` builds a LossModule. Its forward calls one torch custom op,
`lossgen::loss`, which runs the fused kernel (loss, gradient and Hessian diagonal in one pass)
and returns the loss together with the gradient; autograd saves that gradient, so backward is a
multiplication by the incoming gradient and never evaluates the loss again.

Why a custom op (torch.library.custom_op) rather than an autograd.Function: torch.compile sees
it as one opaque node with a fake (shape-only) implementation and a traceable backward, so a
compiled model neither breaks its graph at the loss nor tries to trace into numba.

The op's schema is fixed, but losses have any number of inputs: it takes the `wrt` tensors and
the other inputs as two tensor lists, and a string key that names the loss and its fixed params
in a module-level registry (_REGISTRY). The key is a hash of the spec and the params, so equal
losses share one entry (and its compiled kernels), and a copied module finds its entry again
in any process.

This is the only lossgen module that imports torch; `import lossgen` never loads it.
"""

from __future__ import annotations

import copy
import hashlib
import threading

import numpy as np
import sympy as sp
import torch

from .errors import CodegenError, InputError
from .runtime import REDUCTIONS

# The float dtypes a kernel exists for, by torch dtype.
_KERNEL_DTYPES = {torch.float32: "float32", torch.float64: "float64"}


class _Entry:
    """What the custom op needs to run one loss: the Loss, its fixed params and its kernels."""

    def __init__(self, loss, params: dict):
        self.loss = loss
        self.params = params
        self.wrt = tuple(loss.wrt)
        self.others = tuple(n for n in loss.inputs if n not in loss.wrt)
        self._kernels = {}  # (target, dtype, reduction) -> Kernel
        self._lock = threading.Lock()

    def kernel(self, target: str, dtype: str, reduction: str):
        """The compiled kernel, compiled (or loaded from lossgen's disk cache) on first use."""
        key = (target, dtype, reduction)
        kernel = self._kernels.get(key)
        if kernel is None:
            with self._lock:
                kernel = self._kernels.get(key)
                if kernel is None:
                    try:
                        kernel = self.loss.compile(target=target, dtype=dtype, reduction=reduction)
                    except CodegenError as exc:
                        if target != "cuda":
                            raise
                        raise InputError(
                            f"{self.loss.name}: the tensors are on a CUDA device, but lossgen cannot build "
                            f"CUDA kernels here ({exc}); move them to the CPU with .cpu()"
                        ) from None
                    self._kernels[key] = kernel
        return kernel

    def run(self, reduction: str, wrt: list, others: list, weight) -> list:
        """[loss, *grads]: one kernel call on the tensors' memory, results wrapped without copies."""
        device = wrt[0].device
        if device.type not in ("cpu", "cuda"):
            raise InputError(f"{self.loss.name}: tensors on device {device} are not supported; move them to the CPU with .cpu()")
        dtype = wrt[0].dtype
        kernel = self.kernel(device.type, _KERNEL_DTYPES[dtype], reduction)
        bound = dict(zip(self.wrt, wrt))
        bound.update(zip(self.others, others))
        convert = _to_numpy if device.type == "cpu" else _to_cuda
        arrays = [convert(bound[name], dtype) for name in self.loss.inputs]
        result = kernel(*arrays, weight=None if weight is None else convert(weight, dtype), **self.params)
        grads = result.grad if len(self.wrt) > 1 else (result.grad,)
        if reduction == "none":
            loss = _from_array(result.loss, device)
        else:
            # The kernel sums in float64; the loss tensor takes the inputs' dtype, as torch's losses do.
            loss = torch.tensor(result.loss, dtype=dtype, device=device)
        return [loss, *(_from_array(g, device) for g in grads)]


# key -> _Entry. Entries are small (a Loss, its params and handles to kernels that lossgen's own
# cache holds anyway) and keyed by content, so this grows with distinct losses, not with modules.
_REGISTRY: dict[str, _Entry] = {}


def _param_key(value) -> str:
    """A short, exact text of a param value (a number, or a per-class array by its hash)."""
    array = np.asarray(value)
    if array.ndim == 0:
        return repr(array.item())
    return f"{array.dtype}{array.shape}:{hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()}"


def _register(loss, params: dict) -> str:
    """The registry key of (loss, params), registering an entry on first sight."""
    spec = loss.spec
    parts = (
        spec.name, sp.srepr(spec.expr), spec.inputs, spec.wrt, tuple(spec.params.items()), spec.stabilize,
        tuple(spec.roles.items()), spec.class_params, sp.srepr(spec.normalizer) if spec.normalizer is not None else None,
        spec.transform, tuple((name, str(interval)) for name, interval in spec.domain.items()),
        tuple((name, _param_key(value)) for name, value in sorted(params.items())),
    )
    key = f"{loss.name}-{hashlib.sha256(repr(parts).encode()).hexdigest()[:20]}"
    if key not in _REGISTRY:
        _REGISTRY[key] = _Entry(loss, params)
    return key


def _host_param(value):
    """A param given as a tensor, as the kernel takes it: a Python number, or a NumPy array per class."""
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu()
        return value.item() if value.ndim == 0 else value.numpy().copy()
    return value


def _to_numpy(tensor: torch.Tensor, dtype: torch.dtype) -> np.ndarray:
    """A NumPy view of a CPU tensor: no copy when it is contiguous (a non-contiguous one is copied once)."""
    tensor = tensor.detach()
    if tensor.dtype == torch.bfloat16:  # NumPy has no bfloat16; the kernel would convert it anyway
        tensor = tensor.to(dtype)
    return tensor.contiguous().numpy()


def _to_cuda(tensor: torch.Tensor, dtype: torch.dtype):
    """A contiguous CUDA tensor, which a CUDA kernel reads through __cuda_array_interface__."""
    # The CUDA Kernel reads any object with __cuda_array_interface__ without a copy and returns
    # device arrays. Tested on the simulator only: no GPU has run this path yet.
    tensor = tensor.detach()
    if tensor.dtype == torch.bfloat16:
        tensor = tensor.to(dtype)
    return tensor.contiguous()


def _from_array(array, device: torch.device) -> torch.Tensor:
    """A tensor on `device` sharing the kernel's output memory (from_numpy on the CPU)."""
    if device.type == "cpu":
        return torch.from_numpy(np.asarray(array))
    return torch.as_tensor(array, device=device)


# --- the custom op ---------------------------------------------------------------------------

@torch.library.custom_op("lossgen::loss", mutates_args=())
def _loss_op(
    key: str, reduction: str, wrt: list[torch.Tensor], others: list[torch.Tensor], weight: torch.Tensor | None
) -> list[torch.Tensor]:
    """[loss, grad of each wrt tensor], computed by the kernel of the loss registered as `key`."""
    return _REGISTRY[key].run(reduction, wrt, others, weight)


@_loss_op.register_fake
def _loss_op_fake(key, reduction, wrt, others, weight):
    """Shapes and dtypes only, for torch.compile: the loss, then one gradient per wrt tensor."""
    first = wrt[0]
    if reduction != "none":
        loss_shape = ()
    elif _REGISTRY[key].loss.rowwise:
        loss_shape = first.shape[:1]  # one loss per row
    else:
        loss_shape = first.shape
    loss = first.new_empty(loss_shape)
    return [loss, *(torch.empty(w.shape, dtype=w.dtype, device=w.device) for w in wrt)]


def _setup_context(ctx, inputs, output):
    """Save the kernel's gradients for backward."""
    _, _, _, others, _ = inputs
    ctx.n_others = len(others)
    ctx.save_for_backward(*output[1:])  # the kernel's gradients: backward needs nothing else


def _backward(ctx, grad_outputs):
    """grad_output times the saved gradient, for the wrt tensors only."""
    # Only the loss (output 0) is returned to users; the gradient outputs are internal. The
    # chain rule is a product with the saved gradient: grad_output is a scalar for the reduced
    # losses, and for "none" one value per sample (or per row), broadcast over the wrt shape.
    grad_loss = grad_outputs[0]
    grads = []
    for saved in ctx.saved_tensors:
        if grad_loss is None:
            grads.append(None)
        else:
            grads.append(grad_loss.reshape(grad_loss.shape + (1,) * (saved.ndim - grad_loss.ndim)) * saved)
    return None, None, grads, [None] * ctx.n_others, None


_loss_op.register_autograd(_backward, setup_context=_setup_context)


# --- the module ------------------------------------------------------------------------------

class LossModule(torch.nn.Module):
    """A lossgen Loss as a torch.nn.Module: `module(*tensors, weight=None)` -> loss tensor.

    Tensors come in the loss's `inputs` order, or by name as keywords. The result is a 0-d tensor
    for "sum", "mean" and "weighted_mean", and the per-sample (per-row) losses for "none"; its
    backward gives the kernel's gradient to the `wrt` tensors, from the same kernel call as the
    loss. Params are fixed when the module is built (`loss.to_torch(delta=2.0)`); build another
    module for other values. Only the `wrt` tensors are differentiated: another input, or the
    weight, that requires grad raises an InputError instead of silently getting no gradient.
    The backward is differentiable once (no double backward: the kernel gives only the Hessian
    diagonal). The `wrt` tensors must be float32 or float64 and share a dtype and device; other
    inputs of another real dtype (integer labels, say) are converted by the kernel.
    """

    def __init__(self, loss, reduction: str = "mean", **params):
        """Wrap `loss` with `reduction` ("none", "sum", "mean", "weighted_mean") and fixed params."""
        super().__init__()
        if reduction not in REDUCTIONS:
            raise InputError(f"reduction must be one of {', '.join(REDUCTIONS)}, got {reduction!r}")
        for name in params:
            if name not in loss.params:
                raise InputError(f"unknown param {name!r} of {loss.name}; params: {', '.join(loss.params) or 'none'}")
        # Tensor params (class_weight, say) are fixed values: keep them as NumPy arrays on the host.
        params = {n: _host_param(v) for n, v in params.items()}
        self.loss = loss
        self.reduction = reduction
        self.params = params
        self._key = _register(loss, params)

    def __setstate__(self, state):
        """Restoring a copy (in another process, say) registers the loss again."""
        super().__setstate__(state)
        self._key = _register(self.loss, self.params)

    def __deepcopy__(self, memo):
        """A copy sharing the Loss, which is immutable (and whose SymPy state does not deep-copy)."""
        memo[id(self.loss)] = self.loss
        new = type(self).__new__(type(self))
        memo[id(self)] = new
        new.__setstate__(copy.deepcopy(self.__dict__, memo))
        return new

    def extra_repr(self) -> str:
        """Shown by print(module)."""
        params = "".join(f", {n}={v!r}" for n, v in self.params.items())
        return f"{self.loss.name}, reduction={self.reduction!r}{params}"

    def forward(self, *tensors, weight=None, **named):
        """The loss of `tensors` (in `inputs` order or by name); see the class docstring."""
        loss = self.loss
        bound = self._bind(tensors, named)
        wrt = [bound[n] for n in loss.wrt]
        for name, tensor in zip(loss.wrt, wrt):
            if not isinstance(tensor, torch.Tensor):
                raise InputError(f"array {name!r} must be a torch.Tensor, got {type(tensor).__name__}")
            if tensor.dtype not in _KERNEL_DTYPES:
                raise InputError(
                    f"array {name!r} has dtype {tensor.dtype}; {loss.name} runs on float32 or float64 tensors: "
                    f"convert it with .float() or .double()"
                )
            if tensor.dtype != wrt[0].dtype or tensor.device != wrt[0].device:
                raise InputError(f"array {name!r} has dtype {tensor.dtype} on {tensor.device}, but {loss.wrt[0]!r} has {wrt[0].dtype} on {wrt[0].device}")
        device = wrt[0].device
        others = []
        for name in loss.inputs:
            if name not in loss.wrt:
                others.append(self._other(name, bound[name], device))
        if weight is not None:
            weight = self._other("weight", weight, device)
        return _loss_op(self._key, self.reduction, wrt, others, weight)[0]

    def _bind(self, tensors, named) -> dict:
        """Input name -> tensor, from positions and keywords, as Kernel binds arrays."""
        inputs = self.loss.inputs
        if len(tensors) > len(inputs):
            raise InputError(f"{self.loss.name} takes {len(inputs)} tensors ({', '.join(inputs)}), got {len(tensors)}")
        bound = dict(zip(inputs, tensors))
        for name, value in named.items():
            if name not in inputs:
                hint = " (params are fixed in to_torch(...))" if name in self.loss.params else ""
                raise InputError(f"unknown argument {name!r}; tensors: {', '.join(inputs)}{hint}")
            if name in bound:
                raise InputError(f"tensor {name!r} given both by position and by name")
            bound[name] = value
        missing = [n for n in inputs if n not in bound]
        if missing:
            raise InputError(f"missing tensor {missing[0]!r} ({self.loss.name} takes {', '.join(inputs)})")
        return bound

    def _other(self, name: str, value, device) -> torch.Tensor:
        """A non-wrt input (or the weight) as a tensor on `device`, refusing one that needs a gradient."""
        if not isinstance(value, torch.Tensor):
            value = torch.as_tensor(value, device=device)
        if value.requires_grad and torch.is_grad_enabled():
            # Silently returning no gradient would train a model wrongly; say so instead.
            raise InputError(
                f"array {name!r} requires grad, but {self.loss.name} is differentiated only in "
                f"{', '.join(self.loss.wrt)}; pass {name}.detach()"
            )
        if value.device != device:
            raise InputError(f"array {name!r} is on {value.device}, but {self.loss.wrt[0]!r} is on {device}")
        return value
