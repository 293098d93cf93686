"""generated/ as a source of catalog kernels: used only when it is exactly what rendering gives."""

import hashlib
import json
import shutil

import pytest

import lossgen as lg
from lossgen.prebuilt import GENERATED_DIR, MANIFEST_NAME, manifest_text, prerendered_source, renderer_fingerprint
from lossgen.runtime import kernel_source, module_source


@pytest.fixture
def generated_copy(tmp_path):
    """A private copy of generated/ (manifest and the huber and focal kernels) to tamper with."""
    copy = tmp_path / "generated"
    (copy / "cpu").mkdir(parents=True)
    shutil.copy(GENERATED_DIR / MANIFEST_NAME, copy / MANIFEST_NAME)
    for name in ("huber_float64.py", "focal_float32.py"):
        shutil.copy(GENERATED_DIR / "cpu" / name, copy / "cpu" / name)
    return copy


@pytest.mark.parametrize("name,target,dtype", [("huber", "cpu", "float64"), ("focal", "cpu", "float32"),
                                               ("cross_entropy", "cpu", "float64"), ("log_cosh", "cuda", "float32")])
def test_prerendered_source_is_the_rendered_source(name, target, dtype):
    loss = lg.get(name)
    text = prerendered_source(loss, target, dtype)
    assert text is not None and text == kernel_source(loss, target, dtype)
    assert module_source(loss, target, dtype) == text


def test_manifest_names_this_code_and_every_file():
    manifest = json.loads((GENERATED_DIR / MANIFEST_NAME).read_text())
    assert manifest["renderer"] == renderer_fingerprint()
    assert set(manifest["files"]) == {p.relative_to(GENERATED_DIR).as_posix() for p in GENERATED_DIR.glob("*/*.py")}


def test_a_users_loss_of_a_catalog_name_is_rendered_not_read():
    mine = lg.Loss("huber", "(p - y)**4", inputs=["y", "p"], wrt="p")
    assert prerendered_source(mine, "cpu", "float64") is None
    assert module_source(mine, "cpu", "float64") == kernel_source(mine, "cpu", "float64")
    # A catalog entry of another lossgen (an unpickled deferred loss whose entry text differs).
    other = lg.Loss.deferred("huber", lambda: lg.get("huber").spec, ("catalog", "[huber]\nexpr = \"older\"\n"))
    assert prerendered_source(other, "cpu", "float64") is None


def test_copy_in_sync_is_used(generated_copy):
    assert prerendered_source(lg.get("huber"), "cpu", "float64", generated_copy) == kernel_source(lg.get("huber"), "cpu", "float64")
    assert prerendered_source(lg.get("huber"), "cpu", "float32", generated_copy) is None  # file missing


def test_an_edited_file_is_not_used(generated_copy):
    path = generated_copy / "cpu" / "huber_float64.py"
    path.write_text(path.read_text().replace("0.5", "0.25"))
    assert prerendered_source(lg.get("huber"), "cpu", "float64", generated_copy) is None
    assert prerendered_source(lg.get("focal"), "cpu", "float32", generated_copy) is not None


def test_a_manifest_written_by_other_code_disables_the_directory(generated_copy):
    data = json.loads((generated_copy / MANIFEST_NAME).read_text())
    data["renderer"] = "0" * 64  # every file still listed with its right hash
    (generated_copy / MANIFEST_NAME).write_text(json.dumps(data))
    assert prerendered_source(lg.get("huber"), "cpu", "float64", generated_copy) is None


@pytest.mark.parametrize("manifest", ["not json", '["a list"]', "", '{"files": {}}'])
def test_a_damaged_manifest_disables_the_directory(generated_copy, manifest):
    (generated_copy / MANIFEST_NAME).write_text(manifest)
    assert prerendered_source(lg.get("huber"), "cpu", "float64", generated_copy) is None


def test_no_manifest_no_use(generated_copy):
    (generated_copy / MANIFEST_NAME).unlink()
    assert prerendered_source(lg.get("huber"), "cpu", "float64", generated_copy) is None


def test_manifest_text_hashes_each_file():
    data = json.loads(manifest_text({"cpu/a.py": "x = 1\n"}))
    assert data == {"renderer": renderer_fingerprint(), "files": {"cpu/a.py": hashlib.sha256(b"x = 1\n").hexdigest()}}
