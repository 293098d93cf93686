"""Security: text a user copies from the internet never runs, whichever field it is put in.

Every payload below creates a marker file when Python (or SymPy's sympify) evaluates it; the
control tests prove that, so the checks that the marker never appears can fail. Payloads go
into every field of lg.Loss and of a TOML spec file (and onto the command line): each is refused
with a one-line SpecError naming the field, except the doc, which is kept as inert text and
checked never to run when the kernel that carries it as a comment is compiled and loaded.

tests/test_parse.py has the parser-level injection tests (formula text, helper bodies, domain
strings, a SymPy expression with a hostile symbol name); this file extends them to the other
fields, more kinds of payload, spec files, generated code and the command line.
"""

from __future__ import annotations

import builtins
import dataclasses
import runpy
import subprocess
import sys

import numpy as np
import pytest
import sympy as sp

import lossgen as lg
from lossgen.cli import main as cli_main
from lossgen.runtime import kernel_source

# Each creates the file MARKER when Python evaluates it (with the builtins available).
PYTHON_PAYLOADS = {
    "__import__": "__import__('pathlib').Path('MARKER').touch()",
    "os.system": "__import__('os').system('touch MARKER')",
    "attribute-subclasses": "[c for c in ().__class__.__base__.__subclasses__() if c.__name__ == 'catch_warnings'][0]()._module.__builtins__['open']('MARKER', 'w')",
    "attribute-bases": "().__class__.__bases__[0].__subclasses__() and open('MARKER', 'w')",
    "subscript": "[open][0]('MARKER', 'w')",
    "lambda": "(lambda: open('MARKER', 'w'))()",
    "list-comprehension": "[open('MARKER', 'w') for _ in (1,)]",
    "generator": "list(open('MARKER', 'w') for _ in (1,))",
    "f-string": "f\"{open('MARKER', 'w')}\"",
    "walrus": "(m := open('MARKER', 'w'))",
    "starred": "max(*[1, open('MARKER', 'w').write('x')])",
    "eval": "eval(\"open('MARKER', 'w')\")",
    "exec": "exec(\"open('MARKER', 'w')\")",
    "compile": "eval(compile(\"open('MARKER', 'w')\", 'payload', 'eval'))",
    "getattr": "getattr(__import__('builtins'), 'open')('MARKER', 'w')",
    "dunder-builtins": "(__builtins__['open'] if isinstance(__builtins__, dict) else __builtins__.open)('MARKER', 'w')",
    "string-literal": "'x'.join([open('MARKER', 'w').name])",
    "bytes-literal": "b'x'.join([open('MARKER', 'w').name.encode()])",
}
# Each creates MARKER under sympy.sympify (which evaluates its text): the constructors a
# SymPy-based parser would be tempted to allow.
SYMPY_PAYLOADS = {
    "Symbol": "Symbol(open('MARKER', 'w').name)",
    "Function": "Function(open('MARKER', 'w').name)",
    "Integral": "Integral(len(open('MARKER', 'w').name), p)",
    "sympify": "sympify(str(len(open('MARKER', 'w').name)))",
    "S": "S(str(len(open('MARKER', 'w').name)))",
}
PAYLOADS = {**PYTHON_PAYLOADS, **SYMPY_PAYLOADS}


@pytest.fixture
def marker(tmp_path, monkeypatch):
    """The marker file's path (absent), with the working directory moved next to it."""
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "MARKER"
    assert not path.exists()
    return path


def live(template: str, marker) -> str:
    return template.replace("MARKER", str(marker))


# --- controls: the payloads are live --------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(PYTHON_PAYLOADS))
def test_control_python_payload_creates_the_marker_when_evaluated(name, marker):
    result = eval(live(PYTHON_PAYLOADS[name], marker), {"__builtins__": builtins})  # noqa: S307 - the control
    for item in result if isinstance(result, list) else [result]:
        getattr(item, "close", lambda: None)()
    assert marker.exists()


@pytest.mark.parametrize("name", sorted(SYMPY_PAYLOADS))
def test_control_sympy_payload_creates_the_marker_under_sympify(name, marker):
    sp.sympify(live(SYMPY_PAYLOADS[name], marker))
    assert marker.exists()


# --- every field of lg.Loss -----------------------------------------------------------------------

BASE = dict(name="safe", expr="(p - y)**2 + a*p", inputs=["y", "p"], wrt="p", params={"a": 1.0})


def with_field(field: str, payload: str) -> dict:
    """Constructor arguments of a valid loss with `payload` put into one field."""
    kwargs = dict(BASE, params=dict(BASE["params"]))
    if field == "name":
        kwargs["name"] = payload
    elif field == "expr":
        kwargs["expr"] = payload
    elif field == "inputs":
        kwargs["inputs"] = [payload, "y", "p"]
    elif field == "wrt":
        kwargs["wrt"] = payload
    elif field == "params":  # the name of a param
        kwargs["params"] = {payload: 1.0, "a": 1.0}
    elif field == "param value":
        kwargs["params"] = {"a": payload}
    elif field == "where":  # the name of a helper
        kwargs["where"] = {payload: "p - y"}
    elif field == "where body":
        kwargs["where"] = {"r": payload}
        kwargs["expr"] = "r**2 + p"
    elif field == "domain":  # the name a domain is given for
        kwargs["domain"] = {payload: "(0, 1)"}
    elif field == "domain value":
        kwargs["domain"] = {"p": payload}
    elif field == "normalizer":
        kwargs["normalizer"] = payload
    elif field == "transform":
        kwargs["transform"] = payload
    else:
        raise AssertionError(field)
    return kwargs


# The prefix of the SpecError message for each field.
FIELD_PREFIX = {
    "name": "name:", "expr": "expr:", "inputs": "inputs:", "wrt": "wrt:", "params": "params:",
    "param value": "params:", "where": "where:", "where body": "where.r:", "domain": "domain:",
    "domain value": "domain.p:", "normalizer": "normalizer:", "transform": "transform:",
}


@pytest.mark.parametrize("field", sorted(FIELD_PREFIX))
@pytest.mark.parametrize("name", sorted(PAYLOADS))
def test_payload_in_any_loss_field_is_refused_and_never_runs(field, name, marker):
    kwargs = with_field(field, live(PAYLOADS[name], marker))
    loss_name = kwargs.pop("name")
    expr = kwargs.pop("expr")
    with pytest.raises(lg.SpecError) as info:
        lg.Loss(loss_name, expr, **kwargs)
    message = str(info.value)
    assert message.startswith(FIELD_PREFIX[field]), message
    assert "\n" not in message
    assert not marker.exists()


def test_the_valid_base_loss_is_accepted():
    # So that each refusal above is the payload's doing, not the base's.
    kwargs = dict(BASE)
    assert isinstance(lg.Loss(kwargs.pop("name"), kwargs.pop("expr"), **kwargs), lg.Loss)


@pytest.mark.parametrize("name", sorted(PAYLOADS))
def test_payload_as_a_sympy_symbol_name_is_refused_and_never_runs(name, marker):
    # A SymPy expression handed to lg.Loss: its symbols' names are matched, never evaluated.
    hostile = sp.Symbol(live(PAYLOADS[name], marker), real=True)
    with pytest.raises(lg.SpecError, match="unknown name"):
        lg.Loss("evil", sp.Symbol("p") ** 2 + hostile, inputs=["p"], wrt="p")
    assert not marker.exists()


# --- the doc: kept as text, and inert in the generated kernel --------------------------------------


def test_payloads_in_a_doc_are_inert_text_even_in_the_compiled_kernel(marker):
    doc = " | ".join(live(p, marker) for p in PAYLOADS.values())
    loss = lg.Loss("doc_payloads", "(p - y)**2", inputs=["y", "p"], wrt="p", doc=doc)
    assert loss.doc == doc
    assert doc in kernel_source(loss, "cpu", "float64")  # it is there, as a comment
    result = loss.compile(dtype="float64", reduction="none")(np.array([0.0, 1.0]), np.array([1.0, 1.0]))
    assert list(result.loss) == [1.0, 0.0]
    assert not marker.exists()


@pytest.mark.parametrize("newline", ["\n", "\r", "\r\n", "\x0b", "\x0c", "\x85", "\u2028", "\x00"])
def test_a_doc_that_would_end_the_generated_comment_is_refused(newline, marker):
    payload = "innocent" + newline + live(PYTHON_PAYLOADS["__import__"], marker)
    with pytest.raises(lg.SpecError, match=r"^doc: must be one line"):
        lg.Loss("evil", "(p - y)**2", inputs=["y", "p"], wrt="p", doc=payload)
    assert not marker.exists()


def test_control_a_doc_with_a_line_break_would_run_in_the_generated_kernel(marker):
    # Why the check above matters: the doc is written into the kernel source as a comment, and
    # a line break ends the comment. Bypass the check, render, and load the module as lossgen does.
    loss = lg.Loss("control", "(p - y)**2", inputs=["y", "p"], wrt="p", doc="ok")
    spec = dataclasses.replace(loss.spec, doc="innocent\n" + live(PYTHON_PAYLOADS["__import__"], marker))
    module = marker.parent / "control_kernel.py"
    module.write_text(kernel_source(lg.Loss.from_spec(spec), "cpu", "float64"), encoding="utf-8")
    runpy.run_path(str(module))  # what importing the generated kernel does
    assert marker.exists()


# --- every field of a spec file ---------------------------------------------------------------------


def toml_string(text: str) -> str:
    """A TOML basic string holding `text`."""
    escaped = text.replace("\\", "\\\\").replace('"', '\\"')
    return '"' + "".join(c if ord(c) >= 0x20 else f"\\u{ord(c):04x}" for c in escaped) + '"'


SPEC_FIELDS = {
    "table name": lambda x: f"[{toml_string(x)}]\nexpr = \"(p - y)**2\"\ninputs = [\"y\", \"p\"]\nwrt = \"p\"\n",
    "expr": lambda x: f"[t]\nexpr = {toml_string(x)}\ninputs = [\"y\", \"p\"]\nwrt = \"p\"\n",
    "inputs": lambda x: f"[t]\nexpr = \"(p - y)**2\"\ninputs = [\"y\", {toml_string(x)}, \"p\"]\nwrt = \"p\"\n",
    "wrt": lambda x: f"[t]\nexpr = \"(p - y)**2\"\ninputs = [\"y\", \"p\"]\nwrt = {toml_string(x)}\n",
    "params": lambda x: f"[t]\nexpr = \"(p - y)**2\"\ninputs = [\"y\", \"p\"]\nwrt = \"p\"\nparams = {{ {toml_string(x)} = 1.0 }}\n",
    "param value": lambda x: f"[t]\nexpr = \"(p - y)**2*a\"\ninputs = [\"y\", \"p\"]\nwrt = \"p\"\nparams = {{ a = {toml_string(x)} }}\n",
    "where": lambda x: f"[t]\nexpr = \"(p - y)**2\"\ninputs = [\"y\", \"p\"]\nwrt = \"p\"\nwhere = {{ {toml_string(x)} = \"p\" }}\n",
    "where body": lambda x: f"[t]\nexpr = \"r**2\"\ninputs = [\"y\", \"p\"]\nwrt = \"p\"\nwhere = {{ r = {toml_string(x)} }}\n",
    "domain": lambda x: f"[t]\nexpr = \"(p - y)**2\"\ninputs = [\"y\", \"p\"]\nwrt = \"p\"\ndomain = {{ {toml_string(x)} = \"(0, 1)\" }}\n",
    "domain value": lambda x: f"[t]\nexpr = \"(p - y)**2\"\ninputs = [\"y\", \"p\"]\nwrt = \"p\"\ndomain = {{ p = {toml_string(x)} }}\n",
    "normalizer": lambda x: f"[t]\nexpr = \"(p - y)**2\"\ninputs = [\"y\", \"p\"]\nwrt = \"p\"\nnormalizer = {toml_string(x)}\n",
    "transform": lambda x: f"[t]\nexpr = \"(p - y)**2\"\ninputs = [\"y\", \"p\"]\nwrt = \"p\"\ntransform = {toml_string(x)}\n",
    "unknown key": lambda x: f"[t]\nexpr = \"(p - y)**2\"\ninputs = [\"y\", \"p\"]\nwrt = \"p\"\n{toml_string(x)} = 1\n",
    "unknown key's value": lambda x: f"[t]\nexpr = \"(p - y)**2\"\ninputs = [\"y\", \"p\"]\nwrt = \"p\"\nlink = {toml_string(x)}\n",
}


@pytest.mark.parametrize("field", sorted(SPEC_FIELDS))
@pytest.mark.parametrize("name", sorted(PAYLOADS))
def test_payload_in_any_spec_file_field_is_refused_and_never_runs(field, name, marker, tmp_path):
    path = tmp_path / "evil.toml"
    path.write_text(SPEC_FIELDS[field](live(PAYLOADS[name], marker)), encoding="utf-8")
    with pytest.raises(lg.SpecError) as info:
        lg.load(path)
    message = str(info.value)
    assert str(path) in message and "\n" not in message, message
    assert not marker.exists()


def test_the_valid_spec_file_fields_are_accepted(tmp_path):
    # The same templates with harmless values load, so each refusal above is the payload's.
    harmless = {"table name": "t", "expr": "(p - y)**2", "inputs": "q", "wrt": "p", "params": "b", "param value": "2.0",
                "where": "r", "where body": "p - y", "domain": "p", "domain value": "(0, 1)"}
    for field, value in harmless.items():
        text = SPEC_FIELDS[field](value).replace('a = "2.0"', "a = 2.0")
        path = tmp_path / f"{field.replace(' ', '_')}.toml"
        path.write_text(text, encoding="utf-8")
        assert all(isinstance(loss, lg.Loss) for loss in lg.load(path).values()), field


def test_payloads_in_a_spec_file_doc_are_kept_as_text_and_never_run(marker, tmp_path):
    path = tmp_path / "doc.toml"
    docs = {name: live(p, marker) for name, p in PAYLOADS.items()}
    path.write_text("".join(
        f"[loss_{i}]\nexpr = \"(p - y)**2\"\ninputs = [\"y\", \"p\"]\nwrt = \"p\"\ndoc = {toml_string(doc)}\n"
        for i, doc in enumerate(docs.values())
    ), encoding="utf-8")
    losses = lg.load(path)
    assert [loss.doc for loss in losses.values()] == list(docs.values())
    assert not marker.exists()


def test_a_spec_file_doc_with_a_line_break_is_refused(marker, tmp_path):
    path = tmp_path / "doc.toml"
    payload = "innocent\n" + live(PYTHON_PAYLOADS["__import__"], marker)
    path.write_text(f'[t]\nexpr = "(p - y)**2"\ninputs = ["y", "p"]\nwrt = "p"\ndoc = {toml_string(payload)}\n')
    with pytest.raises(lg.SpecError, match=r"\[t\]\.doc: must be one line"):
        lg.load(path)
    assert not marker.exists()


# --- the command line --------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(PAYLOADS))
def test_payload_as_a_command_line_argument_never_runs(name, marker, capsys):
    payload = live(PAYLOADS[name], marker)
    for argv in (["inspect", payload], ["verify", payload, "-n", "5"], ["build", payload, "-o", str(marker.parent / "out")],
                 ["inspect", payload + ".toml"], ["inspect", f"{marker.parent / 'x.toml'}:{payload}"]):
        assert cli_main(argv) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "Traceback" not in err, err
    assert not marker.exists()


def test_a_payload_spec_file_through_the_lossgen_command_never_runs(marker, tmp_path):
    path = tmp_path / "evil.toml"
    path.write_text(
        "".join(f"[t{i}]\nexpr = {toml_string(live(p, marker))}\ninputs = [\"y\", \"p\"]\nwrt = \"p\"\n"
                for i, p in enumerate(PAYLOADS.values())),
        encoding="utf-8",
    )
    for command in ("inspect", "verify", "build"):
        result = subprocess.run([sys.executable, "-m", "lossgen.cli", command, str(path)], capture_output=True, text=True,
                                cwd=tmp_path)
        assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr
        assert "[t0].expr" in result.stderr
    assert not marker.exists()
