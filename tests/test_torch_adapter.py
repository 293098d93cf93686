"""Loss.to_torch: parity with torch's own losses in training, gradcheck, errors, torch.compile."""

import copy
import linecache
import os
import pickle
import re
import subprocess
import sys
import textwrap

import numpy as np
import pytest

torch = pytest.importorskip("torch")
F = torch.nn.functional

import lossgen as lg  # noqa: E402
from lossgen import torch_adapter  # noqa: E402

# The example printed in README.md; test_readme_snippet runs this exact text.
README_SNIPPET = """\
import torch
import lossgen as lg

torch.manual_seed(0)
x, y = torch.randn(200, 5, dtype=torch.float64), torch.randn(200, dtype=torch.float64)
model = torch.nn.Linear(5, 1, dtype=torch.float64)
huber = lg.get("huber").to_torch(reduction="mean", delta=1.0)   # params are fixed here
opt = torch.optim.SGD(model.parameters(), lr=0.1)
for step in range(100):
    opt.zero_grad()
    loss = huber(y, model(x).squeeze(-1))   # tensors in `inputs` order: target, prediction
    loss.backward()                         # the gradient the kernel computed with the loss
    opt.step()

w = torch.rand(200, dtype=torch.float64)
weighted = lg.get("huber").to_torch(reduction="weighted_mean")(y, model(x).squeeze(-1), weight=w)

# Row-wise: integer labels (rows,) and logits (rows, classes), as torch.nn.CrossEntropyLoss.
ce = lg.get("cross_entropy").to_torch(label_smoothing=0.1)
logits = torch.randn(8, 3, requires_grad=True)
ce(torch.randint(0, 3, (8,)), logits).backward()

# torch.compile sees the loss as one custom op, lossgen::loss.
loss_of = torch.compile(lambda x, y: huber(y, model(x).squeeze(-1)), backend="aot_eager")
loss_of(x, y).backward()
"""

N, FEATURES = 200, 5


def test_import_lossgen_does_not_import_torch():
    code = "import lossgen, sys; assert 'torch' not in sys.modules"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr


def _data(dtype):
    generator = torch.Generator().manual_seed(3)
    x = torch.randn(N, FEATURES, generator=generator, dtype=dtype)
    # Outliers, so that both Huber branches are exercised.
    y = x @ torch.arange(1.0, FEATURES + 1, dtype=dtype) + 3 * torch.randn(N, generator=generator, dtype=dtype)
    return x, y


def _train(loss_fn, dtype, steps=100):
    """Weights of a linear model after `steps` of SGD on loss_fn(pred, y)."""
    x, y = _data(dtype)
    torch.manual_seed(0)
    model = torch.nn.Linear(FEATURES, 1, dtype=dtype)
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    for _ in range(steps):
        opt.zero_grad()
        loss_fn(model(x).squeeze(-1), y).backward()
        opt.step()
    return torch.cat([model.weight.detach().ravel(), model.bias.detach()])


@pytest.mark.parametrize(
    "dtype, reduction, tol",
    [
        (torch.float64, "mean", 1e-10),
        (torch.float32, "mean", 1e-5),
        (torch.float64, "sum", 1e-10),
        (torch.float64, "none", 1e-10),
    ],
)
def test_sgd_matches_torch_huber(dtype, reduction, tol):
    ours = lg.get("huber").to_torch(reduction=reduction)
    theirs = torch.nn.HuberLoss(reduction=reduction)
    if reduction == "none":
        ours_fn = lambda pred, y: ours(y, pred).sum()  # noqa: E731
        theirs_fn = lambda pred, y: theirs(pred, y).sum()  # noqa: E731
    else:
        ours_fn = lambda pred, y: ours(y, pred)  # noqa: E731
        theirs_fn = theirs
    if reduction != "mean":
        # A summed loss needs a smaller step to converge the same way.
        ours_fn = (lambda f: lambda pred, y: f(pred, y) / N)(ours_fn)
        theirs_fn = (lambda f: lambda pred, y: f(pred, y) / N)(theirs_fn)
    w_ours, w_theirs = _train(ours_fn, dtype), _train(theirs_fn, dtype)
    assert w_ours.dtype == dtype
    assert (w_ours - w_theirs).abs().max().item() <= tol
    assert (w_theirs - _train(lambda pred, y: theirs(pred, y).sum() * 0, dtype)).abs().max() > 0.1  # it trained


def test_params_are_fixed_at_construction():
    p = torch.randn(50, dtype=torch.float64) * 4
    y = torch.zeros(50, dtype=torch.float64)
    out = lg.get("huber").to_torch(delta=2.0)(y, p)
    assert out.item() == pytest.approx(torch.nn.HuberLoss(delta=2.0)(p, y).item(), rel=1e-13)
    with pytest.raises(lg.InputError, match="fixed in to_torch"):
        lg.get("huber").to_torch()(y, p, delta=2.0)
    with pytest.raises(lg.InputError, match="unknown param 'gamma'"):
        lg.get("huber").to_torch(gamma=2.0)
    with pytest.raises(lg.InputError, match="reduction"):
        lg.get("huber").to_torch(reduction="average")


def _target(name, shape, generator):
    if name == "bce_with_logits":
        return torch.rand(shape, generator=generator, dtype=torch.float64)
    return torch.randn(shape, generator=generator, dtype=torch.float64)


@pytest.mark.parametrize("name", ["huber", "log_cosh", "bce_with_logits"])
@pytest.mark.parametrize("reduction", ["mean", "none"])
def test_gradcheck_elementwise(name, reduction):
    generator = torch.Generator().manual_seed(1)
    y = _target(name, 30, generator)
    p = (2 * torch.randn(30, generator=generator, dtype=torch.float64)).requires_grad_()
    module = lg.get(name).to_torch(reduction=reduction)
    assert torch.autograd.gradcheck(lambda p: module(y, p), (p,))


def test_bce_with_logits_matches_torch():
    generator = torch.Generator().manual_seed(2)
    y = torch.rand(40, generator=generator, dtype=torch.float64)
    p = (5 * torch.randn(40, generator=generator, dtype=torch.float64)).requires_grad_()
    ours = lg.get("bce_with_logits").to_torch()(y, p)
    theirs = F.binary_cross_entropy_with_logits(p, y)
    torch.testing.assert_close(ours, theirs, rtol=1e-13, atol=0)
    torch.testing.assert_close(torch.autograd.grad(ours, p)[0], torch.autograd.grad(theirs, p)[0], rtol=1e-12, atol=1e-16)


CE_OPTIONS = [
    {},
    {"label_smoothing": 0.1, "ignore_index": 2},
    {"class_weight": [0.5, 1.0, 2.0, 1.5], "label_smoothing": 0.2},
]


@pytest.mark.parametrize("options", CE_OPTIONS)
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_cross_entropy_matches_torch(options, reduction):
    generator = torch.Generator().manual_seed(4)
    logits = (3 * torch.randn(16, 4, generator=generator, dtype=torch.float64)).requires_grad_()
    labels = torch.randint(0, 4, (16,), generator=generator)
    torch_options = {
        "label_smoothing": options.get("label_smoothing", 0.0),
        "ignore_index": options.get("ignore_index", -100),
        "weight": torch.tensor(options["class_weight"], dtype=torch.float64) if "class_weight" in options else None,
    }
    params = dict(options)
    if "class_weight" in params:
        params["class_weight"] = torch.tensor(params["class_weight"])  # a tensor param works too
    module = lg.get("cross_entropy").to_torch(reduction=reduction, **params)
    ours = module(labels, logits)
    theirs = F.cross_entropy(logits, labels, reduction=reduction, **torch_options)
    torch.testing.assert_close(ours, theirs, rtol=1e-12, atol=1e-14)
    upstream = torch.linspace(0.5, 2.0, 16, dtype=torch.float64) if reduction == "none" else torch.tensor(1.0, dtype=torch.float64)
    ours_grad = torch.autograd.grad(ours, logits, upstream)[0]
    theirs_grad = torch.autograd.grad(theirs, logits, upstream)[0]
    torch.testing.assert_close(ours_grad, theirs_grad, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("reduction", ["mean", "none"])
def test_gradcheck_cross_entropy(reduction):
    # Small: row-wise kernels run threaded, and gradcheck calls the loss twice per logit.
    generator = torch.Generator().manual_seed(8)
    logits = (2 * torch.randn(5, 3, generator=generator, dtype=torch.float64)).requires_grad_()
    labels = torch.tensor([0, 2, 1, 2, 0])
    module = lg.get("cross_entropy").to_torch(reduction=reduction, class_weight=[0.5, 1.0, 2.0], label_smoothing=0.1, ignore_index=1)
    assert torch.autograd.gradcheck(lambda z: module(labels, z), (logits,))


def test_weight_matches_torch_weighted_reductions():
    generator = torch.Generator().manual_seed(5)
    y = torch.randn(60, generator=generator, dtype=torch.float64)
    p = (3 * torch.randn(60, generator=generator, dtype=torch.float64)).requires_grad_()
    w = torch.rand(60, generator=generator, dtype=torch.float64)
    per_sample = torch.nn.HuberLoss(reduction="none")(p, y)
    expected = {"weighted_mean": (w * per_sample).sum() / w.sum(), "mean": (w * per_sample).mean(), "sum": (w * per_sample).sum()}
    for reduction, theirs in expected.items():
        ours = lg.get("huber").to_torch(reduction=reduction)(y, p, weight=w)
        torch.testing.assert_close(ours, theirs, rtol=1e-13, atol=0)
        torch.testing.assert_close(torch.autograd.grad(ours, p)[0], torch.autograd.grad(theirs, p, retain_graph=True)[0], rtol=1e-12, atol=1e-16)
    none = lg.get("huber").to_torch(reduction="none")(y, p, weight=w)
    torch.testing.assert_close(none, w * per_sample, rtol=1e-13, atol=0)


def test_only_wrt_inputs_get_gradients():
    y = torch.randn(10, dtype=torch.float64)
    p = torch.randn(10, dtype=torch.float64, requires_grad=True)
    module = lg.get("huber").to_torch()
    module(y, p).backward()
    assert p.grad is not None and y.grad is None
    # A target or weight that needs a gradient would silently get none: refused with a hint.
    with pytest.raises(lg.InputError, match=r"'y' requires grad.*y\.detach\(\)"):
        module(y.clone().requires_grad_(), p)
    with pytest.raises(lg.InputError, match="'weight' requires grad"):
        module(y, p, weight=torch.ones(10, dtype=torch.float64, requires_grad=True))
    with torch.no_grad():  # nothing is differentiated: fine
        module(y.clone().requires_grad_(), p)


def _one_line_input_error(call, match):
    with pytest.raises(lg.InputError, match=match) as info:
        call()
    assert "\n" not in str(info.value)


def test_bad_inputs_give_one_line_input_errors():
    module = lg.get("huber").to_torch()
    y = torch.randn(10, dtype=torch.float64)
    p = torch.randn(10, dtype=torch.float64)
    _one_line_input_error(lambda: module(y.half(), p.half()), r"'p' has dtype torch.float16.*\.float\(\) or \.double\(\)")
    _one_line_input_error(lambda: module(y, p.long()), "'p' has dtype torch.int64")
    _one_line_input_error(lambda: module(y, p.numpy()), "'p' must be a torch.Tensor")
    _one_line_input_error(lambda: module(y[:5], p), r"'y' has shape \(5,\)")
    _one_line_input_error(lambda: module(y, p, weight=torch.ones(3)), "'weight' has shape")
    _one_line_input_error(lambda: module(y), "missing tensor 'p'")
    _one_line_input_error(lambda: module(y, p, p), "takes 2 tensors")
    _one_line_input_error(lambda: module(y, p, q=p), "unknown argument 'q'")
    ce = lg.get("cross_entropy").to_torch()
    logits = torch.randn(4, 3, dtype=torch.float64)
    _one_line_input_error(lambda: ce(torch.tensor([0, 1, 2, 3]), logits), "label 3 outside 0..2")
    _one_line_input_error(lambda: ce(torch.tensor([0.0, 1, 2, 1]), logits), "must be integers")


def test_mixed_dtypes_keywords_and_non_contiguous_tensors():
    module = lg.get("huber").to_torch(reduction="none")
    base = torch.randn(8, 6, dtype=torch.float64)
    p = base.t()[::2]  # non-contiguous
    assert not p.is_contiguous()
    y = torch.randn(3, 8, dtype=torch.float32)  # a float32 target is converted
    p_leaf = p.clone().requires_grad_()
    p_view = p_leaf.t().contiguous().t()  # the same values, non-contiguous, in the graph
    ours = module(p=p_view, y=y)
    expected = torch.nn.HuberLoss(reduction="none")(p.contiguous(), y.double())
    torch.testing.assert_close(ours, expected, rtol=0, atol=0)
    ours.sum().backward()
    torch.testing.assert_close(p_leaf.grad, (p - y.double()).clamp(-1, 1), rtol=0, atol=1e-15)


def test_contiguous_cpu_tensors_are_not_copied(monkeypatch):
    module = lg.get("huber").to_torch()
    entry = torch_adapter._REGISTRY[module._key]
    seen = []
    real = entry.kernel

    def spy(*args):
        kernel = real(*args)

        def call(*arrays, **named):
            seen.extend(arrays)
            return kernel(*arrays, **named)

        return call

    monkeypatch.setattr(entry, "kernel", spy)
    y = torch.randn(10, dtype=torch.float64)
    p = torch.randn(10, dtype=torch.float64, requires_grad=True)
    module(y, p)
    assert np.shares_memory(seen[0], y.numpy()) and np.shares_memory(seen[1], p.detach().numpy())


def test_several_wrt_inputs():
    gauss = lg.Loss("gauss_nll_t", "(y - mu)**2*exp(-2*s)/2 + s", inputs=["y", "mu", "s"], wrt=["mu", "s"])
    generator = torch.Generator().manual_seed(6)
    y, mu, s = (torch.randn(20, generator=generator, dtype=torch.float64) for _ in range(3))
    mu.requires_grad_()
    s.requires_grad_()
    module = gauss.to_torch(reduction="mean")
    assert torch.autograd.gradcheck(lambda mu, s: module(y, mu, s), (mu, s))
    expected = ((y - mu) ** 2 * torch.exp(-2 * s) / 2 + s).mean()
    torch.testing.assert_close(module(y, mu, s), expected, rtol=1e-13, atol=0)


class _Fit(torch.nn.Module):
    """A linear model with its loss, compiled as one graph."""

    def __init__(self, loss):
        super().__init__()
        self.linear = torch.nn.Linear(FEATURES, 1, dtype=torch.float64)
        self.loss = loss

    def forward(self, x, y):
        return self.loss(y, self.linear(x).squeeze(-1))


def test_torch_compile_trains_like_eager():
    # aot_eager traces the op's fake implementation and its autograd formula into one forward
    # and one backward graph (fullgraph: no graph break at the loss), without inductor's C++ build.
    x, y = _data(torch.float64)
    torch.manual_seed(0)
    eager = _Fit(lg.get("huber").to_torch())
    model = copy.deepcopy(eager)
    compiled = torch.compile(model, backend="aot_eager", fullgraph=True)
    eager_opt = torch.optim.SGD(eager.parameters(), lr=0.05)
    compiled_opt = torch.optim.SGD(model.parameters(), lr=0.05)
    for _ in range(5):
        for fit, opt in ((eager, eager_opt), (compiled, compiled_opt)):
            opt.zero_grad()
            fit(x, y).backward()
            opt.step()
        torch.testing.assert_close(compiled(x, y), eager(x, y), rtol=1e-14, atol=0)
    torch.testing.assert_close(model.linear.weight, eager.linear.weight, rtol=1e-13, atol=0)


def test_torch_compile_row_wise_with_dynamic_shapes():
    # The fake implementation sizes the per-row losses from symbolic shapes: one graph serves
    # every batch size.
    module = lg.get("cross_entropy").to_torch(reduction="none", label_smoothing=0.1)
    compiled = torch.compile(module, backend="aot_eager", fullgraph=True, dynamic=True)
    for rows in (5, 9):
        logits = torch.randn(rows, 4, dtype=torch.float64, requires_grad=True)
        labels = torch.randint(0, 4, (rows,))
        ours = compiled(labels, logits)
        theirs = F.cross_entropy(logits, labels, reduction="none", label_smoothing=0.1)
        torch.testing.assert_close(ours, theirs, rtol=1e-12, atol=1e-14)
        upstream = torch.rand(rows, dtype=torch.float64)
        torch.testing.assert_close(
            torch.autograd.grad(ours, logits, upstream)[0], torch.autograd.grad(theirs, logits, upstream)[0], rtol=1e-12, atol=1e-14
        )


def test_custom_op_registration_passes_opcheck():
    module = lg.get("cross_entropy").to_torch(reduction="none")
    logits = torch.randn(6, 3, dtype=torch.float64, requires_grad=True)
    labels = torch.randint(0, 3, (6,))
    torch.library.opcheck(torch_adapter._loss_op, (module._key, "none", [logits], [labels], None))


def test_module_survives_deepcopy():
    module = lg.get("huber").to_torch(reduction="sum", delta=0.5)
    y, p = torch.randn(2, 12, dtype=torch.float64)
    clone = copy.deepcopy(module)
    assert clone.loss is module.loss and clone._key == module._key
    torch.testing.assert_close(clone(y, p), module(y, p), rtol=0, atol=0)
    assert "huber, reduction='sum', delta=0.5" in repr(module)


def test_module_survives_pickle():
    module = lg.get("huber").to_torch(reduction="sum", delta=0.5)
    y, p = torch.randn(2, 12, dtype=torch.float64)
    clone = pickle.loads(pickle.dumps(module))
    torch.testing.assert_close(clone(y, p), module(y, p), rtol=0, atol=0)


def test_cuda_tensors_get_a_clear_error_where_no_gpu_runs_them():
    # In a process without the CUDA simulator: with no GPU, CUDA tensors get a one-line error
    # that says what to do; with one, the CUDA kernel is built.
    code = textwrap.dedent("""
        import lossgen as lg
        from lossgen import torch_adapter
        from numba import cuda
        entry = torch_adapter._REGISTRY[lg.get("huber").to_torch()._key]
        try:
            kernel = entry.kernel("cuda", "float64", "mean")
        except lg.InputError as exc:
            print("ERROR", exc)
        else:
            print("KERNEL", kernel.target, cuda.is_available())
    """)
    env = dict(os.environ, NUMBA_ENABLE_CUDASIM="0")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    line = done.stdout.strip().splitlines()[-1]
    if line.startswith("KERNEL"):
        assert line == "KERNEL cuda True"
    else:
        assert re.search(r"^ERROR huber: the tensors are on a CUDA device.*\.cpu\(\)$", line), line


def test_readme_snippet():
    # torch.compile reads the source of the lambda it compiles through linecache: give it the
    # snippet under a name of its own (the README's own lines move whenever the README changes).
    filename = "<README.md torch example>"
    linecache.cache[filename] = (len(README_SNIPPET), None, README_SNIPPET.splitlines(keepends=True), filename)
    scope = {}
    exec(compile(README_SNIPPET, filename, "exec"), scope)
    x, y, model = scope["x"], scope["y"], scope["model"]
    with torch.no_grad():
        torch.testing.assert_close(scope["loss"], torch.nn.HuberLoss()(model(x).squeeze(-1), y), rtol=1e-4, atol=0)
    assert scope["weighted"].ndim == 0 and scope["logits"].grad.shape == (8, 3)
