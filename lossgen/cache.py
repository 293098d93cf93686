"""On-disk cache of rendered kernel modules, shared safely by any number of processes.

A kernel's file name is a hash of its source and of the lossgen, numba and Python versions, so a
cache never serves a kernel built for another setup; numba's own cache (cache=True) stores the
machine code beside it, keyed by the CPU. Files are written to a temporary name and renamed into
place, so a reader never sees half a file.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import os
import platform
import sys
import tempfile
import threading
import warnings
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import numba

from . import __version__

_LOADED: dict[str, ModuleType] = {}
_LOCK = threading.Lock()
_FALLBACK_DIR: Path | None = None


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
    change to how kernels are written or loaded never meets an old cache entry), its
    templates and the versions."""
    digest = hashlib.sha256(f"{__version__}|{numba.__version__}|{sys.version}|{platform.machine()}".encode())
    package = Path(__file__).resolve().parent
    for path in sorted(package.glob("*.py")) + sorted((package.parent / "templates").glob("*.jinja")):
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def kernel_key(*parts: str) -> str:
    """Hash naming a kernel file: the parts that define it plus lossgen's code fingerprint.

    Keying by the spec rather than the rendered source means a cache hit needs no SymPy work.
    """
    digest = hashlib.sha256(code_fingerprint().encode())
    for part in parts:
        digest.update(b"\0" + part.encode())
    return digest.hexdigest()[:24]


def _writable_kernel_dir() -> Path:
    global _FALLBACK_DIR
    directory = cache_dir() / "kernels"
    try:
        directory.mkdir(parents=True, exist_ok=True)
        probe = directory / f".probe-{os.getpid()}-{threading.get_ident()}"
        probe.write_bytes(b"")
        probe.unlink()
        return directory
    except OSError as exc:
        if _FALLBACK_DIR is None:
            _FALLBACK_DIR = Path(tempfile.mkdtemp(prefix="lossgen-kernels-"))
            warnings.warn(
                f"lossgen cache directory {directory} is not writable ({exc.strerror}); "
                f"compiling into {_FALLBACK_DIR} for this process only. Set LOSSGEN_CACHE_DIR to fix.",
                RuntimeWarning,
                stacklevel=3,
            )
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


def load_kernel_module(key: str, label: str, make_source: Callable[[], str]) -> ModuleType:
    """Import the kernel module named by `key` from the cache, rendering it with make_source()
    and writing it atomically first when it is not there."""
    with _LOCK:
        module = _LOADED.get(key)
        if module is not None:
            return module
        directory = _writable_kernel_dir()
        path = directory / f"{label}_{key}.py"
        # Files appear only by atomic rename, so one that exists is complete; an unchanged file
        # also keeps numba's own cache (keyed by the file's timestamp) valid.
        if not path.exists():
            _write_atomically(path, make_source())
        module_name = f"lossgen_kernels.{label}_{key}"
        spec = importlib.util.spec_from_file_location(module_name, path)
        module = importlib.util.module_from_spec(spec)
        # numba's cache pickles the module name and re-imports it when loading: it must resolve.
        sys.modules[module_name] = module
        try:
            spec.loader.exec_module(module)
        except BaseException:
            del sys.modules[module_name]
            raise
        _LOADED[key] = module
        return module
