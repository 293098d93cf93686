"""The on-disk kernel cache: reused across processes, safe under concurrent compiles, and faults
(corrupt files, a read-only or full directory) still give correct results."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

SCRIPT = textwrap.dedent(
    """
    import json, sys, numpy as np, lossgen as lg
    loss = lg.Loss("cache_probe", "log(cosh(p - y)) + c*p**2", inputs=["y", "p"], wrt="p", params={"c": 0.25})
    kernel = loss.compile(dtype="float64", reduction="sum")
    rng = np.random.default_rng(0)
    y, p = rng.normal(size=(2, 10_000))
    result = kernel(y, p)
    # Count over both entry points: which one runs depends on runtime.SERIAL_BELOW.
    dispatchers = [kernel._module.reduced, kernel._module.reduced_serial]
    hits = sum(len(d.stats.cache_hits) for d in dispatchers)
    misses = sum(len(d.stats.cache_misses) for d in dispatchers)
    import hashlib
    print(json.dumps({"loss": result.loss.hex(), "grad": result.grad.sum().hex(),
                      "bits": hashlib.sha256(result.grad.tobytes() + result.hess.tobytes()).hexdigest(),
                      "hits": hits, "misses": misses}))
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
    procs = [subprocess.Popen([sys.executable, "-c", SCRIPT], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env) for _ in range(8)]
    outputs = []
    for proc in procs:
        out, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, err
        assert "Traceback" not in err and "damaged" not in err, err
        outputs.append(json.loads(out.strip().splitlines()[-1]))
    assert len({(o["loss"], o["bits"]) for o in outputs}) == 1
    assert len(kernel_files(tmp_path)) == 1
    assert not list((tmp_path / "kernels").glob("*.tmp")), "a temporary file was left behind"
    # ... and what they left behind serves the next process without compiling.
    after, _ = run_probe(tmp_path)
    assert after["hits"] == 1 and after["misses"] == 0 and after["bits"] == outputs[0]["bits"]


def _damage_every_file(cache_dir, damage):
    files = [f for f in (cache_dir / "kernels").rglob("*") if f.is_file()]
    assert any(f.suffix == ".py" for f in files) and any(f.suffix == ".nbi" for f in files) and any(f.suffix == ".nbc" for f in files)
    for f in files:
        f.write_bytes(damage(f.read_bytes()))
    return files


@pytest.mark.parametrize(
    "damage",
    [lambda b: b[: len(b) // 2], lambda b: b"", lambda b: bytes(reversed(b)), lambda b: b"\x80garbage\x00" * 7],
    ids=["truncated", "empty", "scrambled", "garbage"],
)
def test_cache_with_every_file_damaged_still_gives_the_same_numbers_and_heals(tmp_path, damage):
    baseline, _ = run_probe(tmp_path)
    _damage_every_file(tmp_path, damage)
    damaged, stderr = run_probe(tmp_path)
    assert damaged["bits"] == baseline["bits"] and damaged["loss"] == baseline["loss"]
    assert "Traceback" not in stderr
    # The damaged entry was replaced: the next process loads it without compiling or warning.
    healed, stderr = run_probe(tmp_path)
    assert healed["hits"] == 1 and healed["misses"] == 0, stderr
    assert healed["bits"] == baseline["bits"] and "RuntimeWarning" not in stderr


def test_damaged_numba_index_alone_is_flushed_with_one_warning(tmp_path):
    baseline, _ = run_probe(tmp_path)
    for index in (tmp_path / "kernels").rglob("*.nbi"):
        index.write_bytes(b"\xe0 not a pickle")
    damaged, stderr = run_probe(tmp_path)
    assert damaged["bits"] == baseline["bits"]
    assert stderr.count("could not be read") == 1, stderr


def test_kernel_file_with_a_bad_checksum_is_rebuilt(tmp_path):
    baseline, _ = run_probe(tmp_path)
    (source,) = (tmp_path / "kernels").glob("*.py")
    # Valid Python that computes something else: only the checksum can tell.
    source.write_text(source.read_text().replace("_loss = ", "_loss = 2*", 1))
    rebuilt, stderr = run_probe(tmp_path)
    assert rebuilt["bits"] == baseline["bits"] and rebuilt["loss"] == baseline["loss"]
    assert "checksum" in stderr


FULL_DISK = textwrap.dedent(
    """
    import errno, os, tempfile
    import lossgen.cache as cache
    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    write = cache._write_atomically
    def write_unless_full(path, text):
        # The cache directory is full; the temporary directory is not (unless we say so).
        if str(path).startswith(os.environ["LOSSGEN_CACHE_DIR"]):
            full()
        write(path, text)
    cache._write_atomically = write_unless_full
    if os.environ.get("LOSSGEN_TEST_NO_TMP"):
        tempfile.mkdtemp = full
    """
)


@pytest.mark.parametrize("no_tmp", [False, True], ids=["tmp-fallback", "in-memory"])
def test_full_disk_falls_back_with_one_warning(tmp_path, no_tmp):
    baseline, _ = run_probe(tmp_path / "good")
    env = dict(os.environ, LOSSGEN_CACHE_DIR=str(tmp_path / "full"), **({"LOSSGEN_TEST_NO_TMP": "1"} if no_tmp else {}))
    done = subprocess.run([sys.executable, "-c", FULL_DISK + SCRIPT], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["bits"] == baseline["bits"]
    assert done.stderr.count("RuntimeWarning") == 1, done.stderr
    assert ("in memory" in done.stderr) == no_tmp


def test_key_depends_on_the_cpu(monkeypatch):
    from lossgen import cache

    key = cache.kernel_key("cpu", "float64", "probe")
    cache.code_fingerprint.cache_clear()
    cache.host_cpu.cache_clear()
    try:
        monkeypatch.setattr(cache.numba_config, "CPU_NAME", "generic")
        monkeypatch.setattr(cache.numba_config, "CPU_FEATURES", "-avx2")
        assert cache.kernel_key("cpu", "float64", "probe") != key
    finally:
        monkeypatch.undo()
        cache.code_fingerprint.cache_clear()
        cache.host_cpu.cache_clear()
    assert cache.kernel_key("cpu", "float64", "probe") == key


def test_checksum_detects_any_change():
    from lossgen.cache import checksum_ok, with_checksum

    text = with_checksum("x = 1\n")
    assert checksum_ok(text)
    assert not checksum_ok(text.replace("1", "2"))
    assert not checksum_ok(text[:-1])
    assert not checksum_ok("x = 1\n")


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root can write to read-only directories")
def test_read_only_cache_directory_falls_back_with_one_warning(tmp_path):
    tmp_path.chmod(0o500)
    try:
        result, stderr = run_probe(tmp_path)
    finally:
        tmp_path.chmod(0o700)
    assert "not writable" in stderr


# A read-only mount, as root sees it too (chmod does not stop root): every write, create, rename
# or mkdir under the cache directory fails with EACCES; reads work.
READ_ONLY = textwrap.dedent(
    """
    import builtins, errno, io, os
    root = os.path.realpath(os.environ["LOSSGEN_CACHE_DIR"])
    def inside(path):
        return isinstance(path, (str, bytes, os.PathLike)) and os.path.realpath(os.fsdecode(path)).startswith(root)
    def denied(path):
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), os.fsdecode(path))
    _open, _os_open, _mkdir, _replace, _rename, _unlink = builtins.open, os.open, os.mkdir, os.replace, os.rename, os.unlink
    def open_(file, mode="r", *args, **kwargs):
        if inside(file) and any(flag in mode for flag in "wax+"):
            denied(file)
        return _open(file, mode, *args, **kwargs)
    def os_open(path, flags, *args, **kwargs):
        if inside(path) and flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT):
            denied(path)
        return _os_open(path, flags, *args, **kwargs)
    def mkdir(path, *args, **kwargs):
        if inside(path):
            if os.path.exists(path):
                raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), os.fsdecode(path))
            denied(path)
        return _mkdir(path, *args, **kwargs)
    def move(real):
        def moved(src, dst, *args, **kwargs):
            if inside(dst) or inside(src):
                denied(dst)
            return real(src, dst, *args, **kwargs)
        return moved
    def unlink(path, *args, **kwargs):
        if inside(path):
            denied(path)
        return _unlink(path, *args, **kwargs)
    builtins.open = io.open = open_
    os.open, os.mkdir, os.replace, os.rename, os.unlink = os_open, mkdir, move(_replace), move(_rename), unlink
    """
)


@pytest.mark.parametrize("populated", [False, True], ids=["empty", "populated"])
def test_read_only_cache_gives_the_same_numbers_with_one_warning_even_for_root(tmp_path, populated):
    baseline, _ = run_probe(tmp_path / "good")
    cache = tmp_path / "ro"
    cache.mkdir()
    if populated:
        run_probe(cache)
    before = sorted((p.relative_to(cache), p.stat().st_mtime_ns) for p in cache.rglob("*"))
    env = dict(os.environ, LOSSGEN_CACHE_DIR=str(cache))
    done = subprocess.run([sys.executable, "-c", READ_ONLY + SCRIPT], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["bits"] == baseline["bits"] and result["loss"] == baseline["loss"]
    assert done.stderr.count("not writable") == 1, done.stderr
    assert sorted((p.relative_to(cache), p.stat().st_mtime_ns) for p in cache.rglob("*")) == before


def test_unusable_cache_directory_falls_back_with_one_warning(tmp_path):
    # A file where the cache directory should be: works for root too.
    blocker = tmp_path / "cache"
    blocker.write_text("not a directory")
    baseline, _ = run_probe(tmp_path / "good")
    result, stderr = run_probe(blocker)
    assert stderr.count("not writable") == 1
    assert result["loss"] == baseline["loss"]


def test_numba_cache_guard_wraps_each_dispatcher_once():
    from lossgen import cache, kmath

    cache._guard_support_modules()
    load = kmath.exp_f64._cache.load_overload
    cache._guard_numba_cache(kmath)
    assert kmath.exp_f64._cache.load_overload is load
    assert kmath.exp_f64._cache._lossgen_guarded


def test_kernel_key_tells_apart_specs_that_differ_only_in_domain_normalizer_or_params():
    import lossgen as lg
    from lossgen.runtime import spec_fingerprint

    base = dict(inputs=["y", "p"], wrt="p", params={"c": 1.0})
    a = lg.Loss("same", "c*(p - y)**2", **base)
    b = lg.Loss("same", "c*(p - y)**2", **base, domain={"p": "(0, oo)"})
    c = lg.Loss("same", "c*(p - y)**2", inputs=["y", "p"], wrt="p", params={"c": 2.0})
    keys = {spec_fingerprint(x.spec) for x in (a, b, c)}
    assert len(keys) == 3
    assert spec_fingerprint(lg.Loss("same", "c*(p - y)**2", **base).spec) == spec_fingerprint(a.spec)


CATALOG_SCRIPT = textwrap.dedent(
    """
    import hashlib, json, sys, numpy as np
    import lossgen as lg
    import lossgen.prebuilt
    if sys.argv[2] == "render":  # no usable generated/: the kernel is derived and rendered
        lossgen.prebuilt.GENERATED_DIR = lossgen.prebuilt.GENERATED_DIR / "absent"
    imported_with_lossgen = sorted(m for m in ("sympy", "mpmath", "numba", "jinja2") if m in sys.modules)
    kernel = lg.get(sys.argv[1]).compile(dtype="float32", reduction="mean")
    rng = np.random.default_rng(1)
    y, p = rng.uniform(0.05, 0.95, size=(2, 3000)).astype(np.float32)
    result = kernel(y, p)
    print(json.dumps({"with_lossgen": imported_with_lossgen, "after_call": "sympy" in sys.modules,
                      "loss": float(result.loss).hex(),
                      "bits": hashlib.sha256(result.grad.tobytes() + result.hess.tobytes()).hexdigest()}))
    """
)


def _catalog_run(name: str, cache: Path, source: str) -> dict:
    env = dict(os.environ, LOSSGEN_CACHE_DIR=str(cache))
    done = subprocess.run([sys.executable, "-c", CATALOG_SCRIPT, name, source], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_catalog_kernel_is_compiled_and_called_without_importing_sympy(tmp_path, name="huber"):
    """A fresh process never parses a catalog formula: with an empty cache it takes the kernel's
    source from generated/, and the next process finds the kernel in the cache; SymPy (half a
    second of import) is not even loaded. A process without generated/ derives and renders the
    kernel, and all three agree bit for bit."""
    first = _catalog_run(name, tmp_path / "shared", "generated")
    second = _catalog_run(name, tmp_path / "shared", "generated")
    rendered = _catalog_run(name, tmp_path / "own", "render")
    assert first["with_lossgen"] == second["with_lossgen"] == rendered["with_lossgen"] == []
    assert first["after_call"] is False and second["after_call"] is False
    assert rendered["after_call"] is True  # rendering the kernel needs the derivatives
    assert (second["loss"], second["bits"]) == (first["loss"], first["bits"]) == (rendered["loss"], rendered["bits"])


def test_kernel_facts_read_back_from_every_catalog_kernel_module_match_the_spec():
    import lossgen as lg
    from lossgen.runtime import KernelFacts, kernel_source

    for name, loss in lg.catalog().items():
        facts = KernelFacts.of_spec(loss.spec)
        assert KernelFacts.from_json(facts.to_json()) == facts, name
        namespace = {}
        source = kernel_source(loss, "cpu", "float32")
        facts_line = next(line for line in source.splitlines() if line.startswith("KERNEL_FACTS = "))
        exec(facts_line, namespace)  # noqa: S102 - one constant of our own generated module
        assert KernelFacts.from_json(namespace["KERNEL_FACTS"]) == facts, name
        assert facts.rowwise == loss.rowwise


def test_catalog_losses_defer_their_formula_and_equal_the_parsed_loss():
    import pickle

    import lossgen as lg
    from lossgen.catalog import _spec_of

    loss = lg.Loss.deferred("huber", lambda: _spec_of("huber"), ("test", "huber"))
    assert loss.name == "huber" and "_spec" not in vars(loss)
    assert loss.source_key == ("test", "huber")
    assert loss == lg.Loss.from_spec(_spec_of("huber")) and "_spec" in vars(loss)
    catalog_loss = lg.get("quantile")
    again = pickle.loads(pickle.dumps(catalog_loss))
    assert again.source_key == catalog_loss.source_key and again.name == "quantile"
    assert again == catalog_loss and again.grad == catalog_loss.grad
    assert lg.Loss("own", "(p - y)**2", inputs=["y", "p"], wrt="p").source_key is None


def test_verify_stays_the_function_after_its_module_is_imported():
    import importlib

    import lossgen as lg

    importlib.import_module("lossgen.verify")
    assert callable(lg.verify) and lg.verify.__module__ == "lossgen"
