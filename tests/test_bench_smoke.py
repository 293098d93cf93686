"""Smoke test of benchmarks/bench_elementwise.py: its peer formulas agree with lossgen, no timing.

Every elementwise catalog loss, n = 1000, float64 and float32, reduction "mean": the NumPy closed
forms (loss, gradient, Hessian diagonal), and the PyTorch and JAX mean losses with their autograd
gradients where those libraries are installed (skipped otherwise), must match lossgen's kernel to
the benchmark's own tolerance (1e-6 relative in float64, 1e-3 in float32). This keeps the
benchmark's peers part of the test suite: a formula that rots, or a loss added to the catalog
without peers, fails here instead of being silently left out of the timings.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

import lossgen as lg

BENCH_DIR = Path(__file__).resolve().parent.parent / "benchmarks"
N = 1000


def _load_bench():
    if not (BENCH_DIR / "bench_elementwise.py").exists():
        pytest.skip("benchmarks/ is not in this checkout", allow_module_level=True)
    spec = importlib.util.spec_from_file_location("bench_elementwise", BENCH_DIR / "bench_elementwise.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # puts benchmarks/ on sys.path for its _peers
    return module


bench = _load_bench()
LOSSES = bench.elementwise_names()


@pytest.fixture(scope="module")
def peers():
    """{"torch": torch, "jax": (jax, jnp)} for those installed; jax_enable_x64 is restored afterwards."""
    jax_spec = importlib.util.find_spec("jax")
    previous_x64 = None
    if jax_spec is not None:
        import jax

        previous_x64 = bool(jax.config.jax_enable_x64)
    found, _ = bench.load_peers(threads=None)  # leaves torch's thread count alone
    yield found
    if previous_x64 is not None:
        import jax

        jax.config.update("jax_enable_x64", previous_x64)


@pytest.fixture(scope="module")
def lossgen_results():
    """(name, dtype) -> (arrays, lossgen's mean-reduction Result), computed once."""
    cache = {}

    def get(name, dtype):
        if (name, dtype) not in cache:
            arrays = bench.make_inputs(name, N, dtype)
            cache[(name, dtype)] = arrays, lg.get(name).compile(dtype=dtype, reduction="mean")(*arrays)
        return cache[(name, dtype)]

    return get


def test_the_elementwise_losses_are_the_catalogs_and_all_have_peers():
    catalog = lg.catalog()
    assert len(LOSSES) >= 24
    assert {"squared_error", "huber", "poisson", "bce", "focal", "hinge", "elastic_net"} <= set(LOSSES)
    assert not {"cross_entropy", "dice", "kl_div", "rmse"} & set(LOSSES)  # row-wise, or a sqrt of the mean
    assert all(not catalog[name].rowwise for name in LOSSES)
    assert set(bench.NUMPY) == set(LOSSES), "every elementwise catalog loss needs NumPy, torch and JAX peers"


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_inputs_lie_in_each_losss_domain(dtype):
    for name in LOSSES:
        loss = lg.get(name)
        for input_name, values in zip(loss.inputs, bench.make_inputs(name, N, dtype)):
            assert values.dtype == np.dtype(dtype) and values.shape == (N,)
            interval = loss.domain[input_name]
            lo, hi = float(interval.start), float(interval.end)
            values = values.astype(np.float64)
            above = values > lo if interval.left_open else values >= lo
            below = values < hi if interval.right_open else values <= hi
            assert np.all(above & below), f"{name}.{input_name} leaves its domain {interval}"


@pytest.mark.parametrize("method", bench.PEERS)
@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("name", LOSSES)
def test_peer_agrees_with_lossgen(name, dtype, method, peers, lossgen_results):
    if method != "numpy" and method not in peers:
        pytest.skip(f"{method} is not installed")
    arrays, ref = lossgen_results(name, dtype)
    only = {method: peers[method]} if method in peers else {}
    checks, runs = bench.check_peers(name, dtype, arrays, ref, only)
    assert method in checks, f"no {method} peer for {name}"
    assert checks[method]["ok"], bench.describe_check(method, name, dtype, checks[method])
    assert method in runs


def test_kernel_classes_are_read_from_the_generated_code():
    assert bench.kernel_class("squared_error") == ("arithmetic", [])
    assert bench.kernel_class("hinge")[0] == "arithmetic"
    cls, functions = bench.kernel_class("log_cosh")
    assert cls == "transcendental" and functions
    assert bench.kernel_functions("def reduced(x):\n    return math.exp(x) + abs(x)**2 + min(x, 0.0)\n") == {"exp"}
    assert bench.kernel_functions("def reduced(x):\n    return x**-1.5 + math.sqrt(x)\n") == {"pow"}


def test_script_runs_end_to_end_as_lossgen_bench_calls_it(tmp_path, peers):
    """`lossgen bench NAME --n N` passes --losses and --n; a tiny run writes its JSON (and plot)."""
    out = tmp_path / "bench.json"
    argv = ["--losses", "huber", "--n", "1000", "--dtypes", "float64", "--repeat", "1", "--min-time", "0.001",
            "--json", str(out)]
    plot = importlib.util.find_spec("matplotlib") is not None
    if plot:
        argv += ["--plot", str(tmp_path / "bench.png")]
    torch = peers.get("torch")
    threads = torch.get_num_threads() if torch else None
    try:
        assert bench.main(argv) == 0
    finally:
        if torch:
            torch.set_num_threads(threads)  # main() sets torch's threads to the core count
    record = json.loads(out.read_text())
    assert record["sizes"] == [1000]
    (row,) = record["rows"]
    assert row["loss"] == "huber" and row["class"] == "arithmetic" and row["n"] == 1000
    assert {"lossgen", "stream", "stream_alloc", "numpy"} <= set(row["median"])
    assert all(check["ok"] for check in row["check"].values())
    if plot:
        assert 0 < (tmp_path / "bench.png").stat().st_size < 100_000


def test_boosting_benchmark_trains_the_same_models(capsys):
    """benchmarks/bench_boost.py on a tiny problem: every pair of models agrees (no timing checked)."""
    pytest.importorskip("xgboost")
    pytest.importorskip("lightgbm")
    spec = importlib.util.spec_from_file_location("bench_boost", BENCH_DIR / "bench_boost.py")
    bench_boost = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench_boost)
    assert bench_boost.main(["--rows", "3000", "--rounds", "5", "--repeat", "1"]) == 0
    rows = [line.split("|") for line in capsys.readouterr().out.splitlines() if line.startswith("| xgboost") or line.startswith("| lightgbm")]
    assert len(rows) == 5
    gaps = [float(cells[-2]) for cells in rows]
    # XGBoost keeps gradients in float32 and deeper trees meet near-ties that rounding flips
    # (tests/test_boost.py holds the 1e-6 parity on its own setup); a different model would be
    # off by O(1).
    assert max(gaps) < 1e-2, rows


def test_startup_benchmark_runs_and_only_its_render_process_imports_sympy(tmp_path, capsys):
    """benchmarks/bench_startup.py end to end for one loss and one round (its timings are not
    checked, only that every kind ran and that only the render kind, which keeps generated/ out
    of reach, imported SymPy)."""
    spec = importlib.util.spec_from_file_location("bench_startup", BENCH_DIR / "bench_startup.py")
    startup = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(startup)
    out = tmp_path / "startup.json"
    rows = startup.main(["--losses", "huber", "--repeat", "1", "--kinds", "floor,cached,compile,render", "--json", str(out)])
    by_kind = {row["kind"]: row for row in rows}
    assert set(by_kind) == {"floor", "cached", "compile", "render"}
    assert by_kind["cached"]["sympy_imported"] is False
    assert by_kind["compile"]["sympy_imported"] is False
    assert by_kind["render"]["sympy_imported"] is True
    assert by_kind["cached"]["to_result"] > 0 and by_kind["cached"]["vs_floor"] > 0
    assert json.loads(out.read_text()) == rows
    assert "| cached | huber |" in capsys.readouterr().out
