"""On-disk cache of rendered kernel modules, shared safely by any number of processes.

A kernel's file name is a hash of its spec and of lossgen's code, the numba and Python versions
and the host CPU (name and features), so a cache copied to another machine or kept across an
upgrade never serves a kernel built for another setup; numba's own cache (cache=True) stores the
machine code beside it. Faults are survivable:

- files are written to a temporary name and renamed into place, so a reader never sees half a file;
- every kernel file carries a checksum of its source: a truncated or garbage file is rebuilt;
- numba's cache files are guarded too: one that fails to load is flushed and recompiled, and one
  that cannot be saved (disk full) is skipped, each with one warning;
- a cache directory that cannot be written falls back to a temporary directory, and when even
  that fails, to compiling in memory, with one warning.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import os
import types
import platform
import sys
import tempfile
import threading
import warnings
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import numba
from numba.core import config as numba_config
from numba.core.dispatcher import Dispatcher

from . import __version__
from .prebuilt import renderer_fingerprint

_LOADED: dict[str, ModuleType] = {}
_LOCK = threading.Lock()
_FALLBACK_DIR: Path | None = None
_WARNED: set[str] = set()
CHECKSUM_PREFIX = "# lossgen-checksum: "


def _warn_once(topic: str, message: str) -> None:
    """One RuntimeWarning per topic and process: a training loop must not print one per step."""
    if topic not in _WARNED:
        _WARNED.add(topic)
        warnings.warn(message, RuntimeWarning, stacklevel=4)


def cache_dir() -> Path:
    """LOSSGEN_CACHE_DIR if set, else the platform's user cache directory plus 'lossgen'."""
    override = os.environ.get("LOSSGEN_CACHE_DIR")
    if override:
        return Path(override).expanduser()
    if sys.platform == "win32":
        base = Path(os.environ.get("LOCALAPPDATA", Path.home() / "AppData" / "Local"))
    elif sys.platform == "darwin":
        base = Path.home() / "Library" / "Caches"
    else:
        base = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return base / "lossgen"


@functools.lru_cache(maxsize=1)
def code_fingerprint() -> str:
    """Hash of what turns a spec into a kernel: lossgen's modules (this one included, so a
    change to how kernels are written or loaded never meets an old cache entry), its catalog
    and templates (prebuilt.renderer_fingerprint), and the versions and CPU the machine code
    depends on."""
    digest = hashlib.sha256(f"{__version__}|{numba.__version__}|{sys.version}|{platform.machine()}".encode())
    digest.update(host_cpu().encode())
    digest.update(renderer_fingerprint().encode())
    return digest.hexdigest()


@functools.lru_cache(maxsize=1)
def host_cpu() -> str:
    """The CPU name and features numba compiles for (honouring NUMBA_CPU_NAME/NUMBA_CPU_FEATURES):
    machine code built for one CPU may use instructions another lacks."""
    from llvmlite import binding

    name = numba_config.CPU_NAME or binding.get_host_cpu_name()
    features = numba_config.CPU_FEATURES or binding.get_host_cpu_features().flatten()
    return f"{name}|{features}"


def kernel_key(*parts: str) -> str:
    """Hash naming a kernel file: the parts that define it plus lossgen's code fingerprint.

    Keying by the spec rather than the rendered source means a cache hit needs no SymPy work.
    """
    digest = hashlib.sha256(code_fingerprint().encode())
    for part in parts:
        digest.update(b"\0" + part.encode())
    return digest.hexdigest()[:24]


def _writable_kernel_dir() -> Path | None:
    directory = cache_dir() / "kernels"
    try:
        directory.mkdir(parents=True, exist_ok=True)
        probe = directory / f".probe-{os.getpid()}-{threading.get_ident()}"
        probe.write_bytes(b"")
        probe.unlink()
        return directory
    except OSError as exc:
        return _fallback_dir(f"lossgen cache directory {directory} is not writable ({exc.strerror or exc})")


def _fallback_dir(reason: str) -> Path | None:
    """A private temporary directory for this process, or None (compile in memory) if none can be made."""
    global _FALLBACK_DIR
    if _FALLBACK_DIR is None:
        try:
            _FALLBACK_DIR = Path(tempfile.mkdtemp(prefix="lossgen-kernels-"))
        except OSError:
            _warn_once("cache", f"{reason}; no temporary directory either, so kernels are compiled in memory "
                                "for this process only (no caching). Set LOSSGEN_CACHE_DIR to fix.")
            return None
        _warn_once("cache", f"{reason}; compiling into {_FALLBACK_DIR} for this process only. Set LOSSGEN_CACHE_DIR to fix.")
    return _FALLBACK_DIR


def _write_atomically(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def with_checksum(source: str) -> str:
    """The text of a kernel file: a first line holding the SHA-256 of the source, then the source."""
    return f"{CHECKSUM_PREFIX}{hashlib.sha256(source.encode()).hexdigest()}\n{source}"


def checksum_ok(text: str) -> bool:
    """Whether a kernel file's text is whole: its first line is the checksum of the rest."""
    first, _, source = text.partition("\n")
    return first == f"{CHECKSUM_PREFIX}{hashlib.sha256(source.encode()).hexdigest()}"


def _read_text(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None


def _import_file(module_name: str, path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(module_name, path)
    module = importlib.util.module_from_spec(spec)
    # numba's cache pickles the module name and re-imports it when loading: it must resolve.
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[module_name]
        raise
    return module


def _import_in_memory(module_name: str, source: str) -> ModuleType:
    # numba cannot cache a function that has no source file, so caching is switched off here.
    uncached = source.replace("cache=True", "cache=False")
    module = types.ModuleType(module_name)
    exec(compile(uncached, f"<lossgen kernel {module_name}>", "exec"), module.__dict__)  # noqa: S102 - our own rendered code
    return module


def _guard_numba_cache(module: ModuleType) -> None:
    """Make numba's on-disk cache of each kernel function survive faults.

    numba raises out of the first call when an index or data file is corrupt (UnpicklingError,
    EOFError) or cannot be written (disk full); a cache must only ever cost a recompile.
    """
    for value in list(vars(module).values()):
        cache = getattr(value, "_cache", None)
        # Kernel modules import kmath's functions: each dispatcher is wrapped once, not per module.
        if not isinstance(value, Dispatcher) or cache is None or getattr(cache, "_lossgen_guarded", False):
            continue
        load, save = cache.load_overload, cache.save_overload

        def guarded_load(sig, target_context, _load=load, _cache=cache, _name=value.__name__):
            try:
                return _load(sig, target_context)
            except Exception as exc:  # noqa: BLE001 - any unreadable cache entry means: compile again
                _warn_once("numba-load", f"lossgen: numba's cache for {_name} could not be read "
                                         f"({type(exc).__name__}); recompiling and replacing it")
                try:
                    _cache.flush()
                except OSError:
                    pass
                return None

        def guarded_save(sig, data, _save=save, _name=value.__name__):
            try:
                _save(sig, data)
            except Exception as exc:  # noqa: BLE001 - failing to save only costs a compile next time
                _warn_once("numba-save", f"lossgen: numba's cache for {_name} could not be written "
                                         f"({type(exc).__name__}: {exc}); the kernel works but is not cached")

        cache.load_overload, cache.save_overload = guarded_load, guarded_save
        cache._lossgen_guarded = True


@functools.lru_cache(maxsize=1)
def _guard_support_modules() -> None:
    """The functions kernels call (kmath, kreduce) are cached by numba beside lossgen's source."""
    from . import kmath, kreduce

    _guard_numba_cache(kmath)
    _guard_numba_cache(kreduce)


def load_kernel_module(key: str, label: str, make_source: Callable[[], str]) -> ModuleType:
    """Import the kernel module named by `key` from the cache, rendering it with make_source()
    and writing it atomically first when it is missing or damaged."""
    with _LOCK:
        module = _LOADED.get(key)
        if module is not None:
            return module
        module_name = f"lossgen_kernels.{label}_{key}"
        _guard_support_modules()
        directory = _writable_kernel_dir()
        module = None
        if directory is not None:
            module = _load_from_directory(directory, module_name, label, key, make_source)
        if module is None:
            module = _import_in_memory(module_name, make_source())
        _guard_numba_cache(module)
        _LOADED[key] = module
        return module


def _load_from_directory(directory: Path, module_name: str, label: str, key: str,
                         make_source: Callable[[], str]) -> ModuleType | None:
    path = directory / f"{label}_{key}.py"
    # Files appear only by atomic rename, so a complete one is never rewritten: an unchanged file
    # keeps numba's own cache (keyed by the file's timestamp) valid.
    text = _read_text(path)
    if text is not None and not checksum_ok(text):
        _warn_once("corrupt", f"lossgen: cached kernel {path} was damaged (checksum mismatch); rebuilding it")
        text = None
    if text is None:
        try:
            _write_atomically(path, with_checksum(make_source()))
        except OSError as exc:
            fallback = _fallback_dir(f"lossgen cannot write to its cache directory {directory} ({exc.strerror or exc})")
            if fallback is None:
                return None
            if fallback == directory:
                _warn_once("memory", f"lossgen cannot write to {directory} either ({exc.strerror or exc}); "
                                     "compiling kernels in memory for this process only (no caching)")
                return None
            return _load_from_directory(fallback, module_name, label, key, make_source)
    return _import_file(module_name, path)
