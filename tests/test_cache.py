"""The on-disk kernel cache: reused across processes, safe under concurrent compiles, and a
read-only cache directory still gives correct results."""

import json
import os
import subprocess
import sys
import textwrap

import pytest

SCRIPT = textwrap.dedent(
    """
    import json, sys, numpy as np, lossgen as lg
    loss = lg.Loss("cache_probe", "log(cosh(p - y)) + c*p**2", inputs=["y", "p"], wrt="p", params={"c": 0.25})
    kernel = loss.compile(dtype="float64", reduction="sum")
    rng = np.random.default_rng(0)
    y, p = rng.normal(size=(2, 10_000))
    result = kernel(y, p)
    stats = kernel._module.reduced.stats
    print(json.dumps({"loss": result.loss.hex(), "grad": result.grad.sum().hex(),
                      "hits": stats.cache_hits.__len__(), "misses": len(stats.cache_misses)}))
    """
)


def run_probe(cache_dir, extra_env=None):
    env = dict(os.environ, LOSSGEN_CACHE_DIR=str(cache_dir), **(extra_env or {}))
    done = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1]), done.stderr


def kernel_files(cache_dir):
    return sorted(p.name for p in (cache_dir / "kernels").glob("*.py"))


def test_second_process_loads_the_compiled_kernel_from_disk(tmp_path):
    first, _ = run_probe(tmp_path)
    files = kernel_files(tmp_path)
    second, _ = run_probe(tmp_path)
    assert first["misses"] == 1 and first["hits"] == 0
    assert second["hits"] == 1 and second["misses"] == 0
    assert kernel_files(tmp_path) == files
    assert second["loss"] == first["loss"] and second["grad"] == first["grad"]


def test_concurrent_processes_compiling_the_same_kernel_all_succeed_identically(tmp_path):
    env = dict(os.environ, LOSSGEN_CACHE_DIR=str(tmp_path))
    procs = [subprocess.Popen([sys.executable, "-c", SCRIPT], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env) for _ in range(4)]
    outputs = []
    for proc in procs:
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err
        outputs.append(json.loads(out.strip().splitlines()[-1]))
    assert len({(o["loss"], o["grad"]) for o in outputs}) == 1
    assert len(kernel_files(tmp_path)) == 1


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root can write to read-only directories")
def test_read_only_cache_directory_falls_back_with_one_warning(tmp_path):
    tmp_path.chmod(0o500)
    try:
        result, stderr = run_probe(tmp_path)
    finally:
        tmp_path.chmod(0o700)
    assert "not writable" in stderr


def test_unusable_cache_directory_falls_back_with_one_warning(tmp_path):
    # A file where the cache directory should be: works for root too.
    blocker = tmp_path / "cache"
    blocker.write_text("not a directory")
    baseline, _ = run_probe(tmp_path / "good")
    result, stderr = run_probe(blocker)
    assert stderr.count("not writable") == 1
    assert result["loss"] == baseline["loss"]
