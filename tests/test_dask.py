"""lossgen.dask.evaluate: a Kernel chunk by chunk over dask arrays, lazily, equal to the in-memory call.

What is checked bit for bit: reduction "none" (loss, grad, hess) and the gradient and Hessian of
"sum" and "mean" for any chunking, and everything for a single chunk. The reduced loss (added
in another order) and the gradient and Hessian of a weighted mean (whose divisor is a sum too)
are checked to a few float64 ulps.
"""

import subprocess
import sys
import textwrap

import numpy as np
import pytest

da = pytest.importorskip("dask.array")
dask = pytest.importorskip("dask")

import lossgen as lg  # noqa: E402
from lossgen import dask as lgdask  # noqa: E402

N = 50_003
# Even, uneven, smaller than a 4096-sample block, and one chunk.
CHUNKINGS = [12_500, (20_000, 3, 30_000), 3_000, N]
# The reduced loss sums the same float64 terms in another order.
LOSS_RTOL = 1e-14
# The weighted mean's divisor is a float64 sum added in another order; an ulp of it moves a
# gradient by at most an ulp of the kernel's dtype.
WEIGHTED_RTOL = {"float64": 4.5e-16, "float32": 1.2e-7}


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    y = rng.standard_normal(N)
    p = y + rng.standard_normal(N)
    w = rng.random(N) * 2
    return y, p, w


def _compute(result):
    return dask.compute(result.loss, result.grad, result.hess)


def _check(kernel, reference, got, weighted):
    loss, grad, hess = got
    if kernel.reduction == "none":
        assert np.array_equal(loss, reference.loss)
        assert loss.dtype == kernel.dtype
    else:
        assert isinstance(loss, float) and np.ndim(loss) == 0
        assert loss == pytest.approx(reference.loss, rel=LOSS_RTOL, abs=0)
    assert grad.dtype == hess.dtype == kernel.dtype
    if weighted and kernel.reduction == "weighted_mean":
        rtol = WEIGHTED_RTOL[str(kernel.dtype)]
        np.testing.assert_allclose(grad, reference.grad, rtol=rtol, atol=0)
        np.testing.assert_allclose(hess, reference.hess, rtol=rtol, atol=0)
    else:
        assert np.array_equal(grad, reference.grad)
        assert np.array_equal(hess, reference.hess)


@pytest.mark.parametrize("reduction", ["none", "sum", "mean", "weighted_mean"])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("chunks", CHUNKINGS, ids=["even", "uneven", "small", "one"])
def test_equals_in_memory(compiled, data, reduction, dtype, chunks):
    y, p, w = data
    kernel = compiled("huber", dtype, reduction)
    y, p = y.astype(dtype), p.astype(dtype)
    weight = w if reduction != "sum" else None
    reference = kernel(y, p, weight=weight, delta=0.7)
    result = lgdask.evaluate(
        kernel, da.from_array(y, chunks=chunks), da.from_array(p, chunks=chunks),
        weight=None if weight is None else da.from_array(weight, chunks=chunks), delta=0.7,
    )
    got = _compute(result)
    _check(kernel, reference, got, weight is not None)
    if chunks == N and reduction != "none":  # one chunk: the in-memory sum, bit-equal
        assert got[0] == reference.loss


@pytest.mark.parametrize("name", ["bce_with_logits", "rmse"])
def test_other_losses_and_mixed_inputs(compiled, data, name):
    y, p, w = data
    y = (y > 0).astype(np.float64) if name == "bce_with_logits" else y
    kernel = compiled(name, "float64", "mean")
    reference = kernel(y, p)
    # The target as numpy, the weight-free mean, the prediction chunked unevenly: y is rechunked.
    result = lgdask.evaluate(kernel, y, da.from_array(p, chunks=(10_000, 40_003)))
    loss, grad, hess = _compute(result)
    assert loss == pytest.approx(reference.loss, rel=LOSS_RTOL)
    if name == "rmse":  # the root's derivatives are taken at the (rounded) reduced loss
        np.testing.assert_allclose(grad, reference.grad, rtol=1e-14)
        np.testing.assert_allclose(hess, reference.hess, rtol=1e-13, atol=1e-300)
    else:
        assert np.array_equal(grad, reference.grad) and np.array_equal(hess, reference.hess)


def test_two_dimensional_elementwise(compiled):
    rng = np.random.default_rng(1)
    y, p = rng.standard_normal((2, 300, 70))
    for reduction in ("none", "mean"):
        kernel = compiled("squared_error", "float64", reduction)
        reference = kernel(y, p)
        result = lgdask.evaluate(kernel, da.from_array(y, chunks=(100, 30)), da.from_array(p, chunks=(64, 70)))
        loss, grad, hess = _compute(result)
        assert grad.shape == p.shape and result.grad.chunks == ((64, 64, 64, 64, 44), (70,))
        assert np.array_equal(grad, reference.grad) and np.array_equal(hess, reference.hess)
        if reduction == "none":
            assert np.array_equal(loss, reference.loss)
        else:
            assert loss == pytest.approx(reference.loss, rel=LOSS_RTOL)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("reduction", ["none", "sum", "mean", "weighted_mean"])
def test_rowwise_cross_entropy(compiled, dtype, reduction):
    rng = np.random.default_rng(2)
    rows, classes = 5_003, 7
    logits = rng.standard_normal((rows, classes)).astype(dtype)
    labels = rng.integers(0, classes, rows)
    weight = rng.random(rows)
    kernel = compiled("cross_entropy", dtype, reduction)
    # Logits chunked across classes too: rows are rechunked to one chunk of classes.
    dlogits = da.from_array(logits, chunks=(1_500, 3))
    dlabels = da.from_array(labels, chunks=1_000)
    for params in ({}, {"label_smoothing": 0.1}):
        reference = kernel(labels, logits, weight=weight, **params)
        result = lgdask.evaluate(kernel, dlabels, dlogits, weight=da.from_array(weight, chunks=700), **params)
        assert result.grad.chunks == ((1_500, 1_500, 1_500, 503), (classes,))
        _check(kernel, reference, _compute(result), weighted=True)
    # Class weights and ignored labels: the mean divides by a sum of normalizers.
    labels = labels.copy()
    labels[::11] = -100
    class_weight = rng.random(classes) + 0.5
    reference = kernel(labels, logits, weight=weight, class_weight=class_weight)
    result = lgdask.evaluate(kernel, da.from_array(labels, chunks=1_000), dlogits, weight=weight, class_weight=class_weight)
    loss, grad, hess = _compute(result)
    if reduction == "none":
        assert np.array_equal(loss, reference.loss)
    else:
        assert loss == pytest.approx(reference.loss, rel=LOSS_RTOL)
    rtol = 0 if reduction in ("none", "sum") else WEIGHTED_RTOL[dtype]
    np.testing.assert_allclose(grad, reference.grad, rtol=rtol, atol=0)
    np.testing.assert_allclose(hess, reference.hess, rtol=rtol, atol=0)


def test_lazy_until_computed(compiled, data, monkeypatch):
    y, p, w = data
    kernel = compiled("huber", "float64", "weighted_mean")
    reads, calls = [], []

    def counted(block):
        reads.append(block.shape)
        return block

    task_call = lgdask._ChunkTask.__call__

    def counting_call(self, *blocks):
        calls.append(1)
        return task_call(self, *blocks)

    monkeypatch.setattr(lgdask._ChunkTask, "__call__", counting_call)
    dy = da.from_array(y, chunks=10_000).map_blocks(counted, meta=np.empty(0))
    dp = da.from_array(p, chunks=10_000).map_blocks(counted, meta=np.empty(0))
    dw = da.from_array(w, chunks=10_000).map_blocks(counted, meta=np.empty(0))
    result = lgdask.evaluate(kernel, dy, dp, weight=dw)
    assert reads == [] and calls == []  # building the graph reads and runs nothing
    assert all(isinstance(x, da.Array) for x in (result.loss, result.grad, result.hess))
    assert result.loss.shape == () and result.grad.shape == (N,)
    loss, grad, hess = _compute(result)
    assert len(calls) == dp.numblocks[0] == 6  # one kernel call per chunk for all three fields
    reference = kernel(y, p, weight=w)
    assert loss == pytest.approx(reference.loss, rel=LOSS_RTOL)


def test_errors(compiled, data):
    y, p, w = data
    kernel = compiled("huber", "float64", "mean")
    dy, dp = da.from_array(y, chunks=10_000), da.from_array(p, chunks=10_000)
    cases = [
        (lambda: lgdask.evaluate(kernel, dy[:-1], dp), "array 'y' has shape (50002,), expected (50003,) like 'p'"),
        (lambda: lgdask.evaluate(kernel, dy, dp, weight=w[:10]), "array 'weight' has shape (10,)"),
        (lambda: lgdask.evaluate(kernel, dy, dp.astype(np.float32)), "array 'p' has dtype float32"),
        (lambda: lgdask.evaluate(kernel, dy, dp, delta=-1.0), "param 'delta' = -1.0 lies outside its domain"),
        (lambda: lgdask.evaluate(kernel, dy, dp, delat=1.0), "unknown argument 'delat'"),
        (lambda: lgdask.evaluate(kernel, dy), "missing array 'p'"),
        (lambda: lgdask.evaluate(kernel, dy, dp, y=dy), "given both by position and by name"),
        (lambda: lgdask.evaluate(lg.get("huber"), dy, dp), "evaluate takes a Kernel"),
        (lambda: lgdask.evaluate(kernel, dy, dp[dp > 0]), "unknown chunk sizes"),
    ]
    ce = compiled("cross_entropy", "float64", "mean")
    logits = da.zeros((100, 4), chunks=(30, 4))
    cases += [
        (lambda: lgdask.evaluate(ce, da.zeros(99, dtype=int, chunks=30), logits), "array 'y' holds one label per row and must have shape (100,)"),
        (lambda: lgdask.evaluate(ce, da.zeros(100, dtype=int, chunks=30), logits[:, 0]), "must be 2-D (rows x classes)"),
        (lambda: lgdask.evaluate(ce, da.zeros(100, chunks=30), logits), "must be integers"),
        (lambda: lgdask.evaluate(ce, da.zeros(100, dtype=int, chunks=30), logits, class_weight=np.ones(3)), "param 'class_weight' has shape (3,)"),
    ]
    for call, message in cases:
        with pytest.raises(lg.InputError) as info:
            call()
        assert message in str(info.value) and "\n" not in str(info.value)
    # Labels are range-checked when their chunk runs, before the kernel indexes with them.
    bad = da.from_array(np.array([0, 1, 9] + [0] * 97), chunks=30)
    result = lgdask.evaluate(ce, bad, logits)
    with pytest.raises(lg.InputError, match="label 9 outside 0..3"):
        result.grad.compute()


def test_import_lossgen_imports_no_dask_or_matplotlib():
    code = textwrap.dedent("""
        import sys
        import lossgen
        lossgen.get("huber").compile(reduction="mean")
        print(sorted(m for m in ("dask", "distributed", "matplotlib") if m in sys.modules))
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_distributed_local_cluster(compiled, data):
    distributed = pytest.importorskip("distributed")
    y, p, w = data
    kernel = compiled("huber", "float64", "weighted_mean")
    reference = kernel(y, p, weight=w, delta=2.0)
    # Worker processes: the chunk tasks are pickled, and each worker loads the kernel from the
    # on-disk cache (LOSSGEN_CACHE_DIR is inherited).
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        with distributed.Client(cluster):
            result = lgdask.evaluate(
                kernel, da.from_array(y, chunks=12_500), da.from_array(p, chunks=12_500),
                weight=da.from_array(w, chunks=12_500), delta=2.0,
            )
            got = _compute(result)
    _check(kernel, reference, got, weighted=True)


README_SNIPPET = """\
import dask
import dask.array as da
import numpy as np
import lossgen as lg
from lossgen.dask import evaluate

rng = np.random.default_rng(0)
y = da.from_array(rng.standard_normal(1_000_000), chunks=250_000)
p = y + da.from_array(rng.standard_normal(1_000_000), chunks=250_000)
kernel = lg.get("huber").compile(reduction="mean")
result = evaluate(kernel, y, p, delta=2.0)          # lazy dask objects: nothing has run yet
loss, grad, hess = dask.compute(result.loss, result.grad, result.hess)   # one kernel call per chunk
in_memory = kernel(*dask.compute(y, p), delta=2.0)
assert np.array_equal(grad, in_memory.grad)          # bit-equal; the loss to float64 rounding
assert abs(loss - in_memory.loss) <= 1e-14 * in_memory.loss
"""


def test_readme_snippet():
    exec(compile(README_SNIPPET, "README-dask", "exec"), {})
