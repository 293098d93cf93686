"""The committed generated/ directory as a source of catalog kernels.

`lossgen build` renders every catalog kernel into generated/ and writes generated/MANIFEST.json:
a hash of everything that renders a kernel (lossgen's modules and catalog, the templates, the
version) and the sha256 of each file. When a catalog kernel is missing from the on-disk cache,
the runtime takes its source from generated/ instead of deriving and rendering it, so the first
compile of a catalog kernel neither imports SymPy nor derives anything: numba's compile is all
that is left. A file is used only when the manifest's hash matches this installation's code and
the file's own hash matches the manifest; after any change to lossgen's code, catalog or
templates (until `lossgen build` runs again), or to the file itself, the kernel is rendered as
for any other loss, so a stale file is never loaded.
"""

from __future__ import annotations

import functools
import hashlib
import json
from pathlib import Path

from . import __version__

PACKAGE_DIR = Path(__file__).resolve().parent
GENERATED_DIR = PACKAGE_DIR.parent / "generated"
TEMPLATE_DIR = PACKAGE_DIR.parent / "templates"
MANIFEST_NAME = "MANIFEST.json"


@functools.lru_cache(maxsize=1)
def renderer_fingerprint() -> str:
    """Hash of what turns a catalog entry into kernel source: lossgen's modules, its catalog,
    its templates and its version (not numba's or the CPU's: the source does not depend on them)."""
    digest = hashlib.sha256(__version__.encode())
    files = sorted(PACKAGE_DIR.glob("*.py")) + sorted(PACKAGE_DIR.glob("*.toml")) + sorted(TEMPLATE_DIR.glob("*.jinja"))
    for path in files:
        digest.update(b"\0" + path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def _text_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def manifest_text(files: dict[Path, str]) -> str:
    """MANIFEST.json for rendered files (relative path -> source), as `lossgen build` writes it."""
    entries = {Path(rel).as_posix(): _text_hash(text) for rel, text in sorted(files.items(), key=lambda kv: str(kv[0]))}
    return json.dumps({"renderer": renderer_fingerprint(), "files": entries}, indent=1, sort_keys=True) + "\n"


@functools.lru_cache(maxsize=4)
def _current_entries(directory: Path) -> dict[str, str]:
    """The directory's file hashes when its manifest was written by this installation's code,
    else nothing (missing, unreadable, damaged or stale manifest)."""
    try:
        manifest = json.loads((directory / MANIFEST_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if not isinstance(manifest, dict) or manifest.get("renderer") != renderer_fingerprint():
        return {}
    files = manifest.get("files")
    return dict(files) if isinstance(files, dict) else {}


def prerendered_source(loss, target: str, dtype: str, directory: Path | None = None) -> str | None:
    """The source of a catalog kernel from generated/ (or `directory`), or None where it cannot be
    trusted to be what rendering would give now (not a current catalog loss, stale manifest,
    edited file)."""
    from .catalog import catalog_source_key

    directory = GENERATED_DIR if directory is None else Path(directory)
    if loss.source_key is None or loss.source_key != catalog_source_key(loss.name):
        return None  # a user's loss, or a catalog entry from another lossgen (e.g. unpickled)
    rel = f"{target}/{loss.name}_{dtype}.py"
    expected = _current_entries(directory).get(rel)
    if expected is None:
        return None
    try:
        text = (directory / rel).read_text(encoding="utf-8")
    except OSError:
        return None
    return text if _text_hash(text) == expected else None
