"""The lossgen command: outputs, exit codes 0/1/2, one-line errors without tracebacks."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from lossgen.cli import main

REPO = Path(__file__).resolve().parent.parent


def run(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "lossgen.cli", *args], capture_output=True, text=True, cwd=cwd)


def test_list_shows_every_catalog_loss_with_a_verdict(capsys):
    import lossgen as lg

    assert main(["list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines] == list(lg.catalog())
    assert all(line.split()[1] in {"affine", "convex", "concave", "neither", "unknown"} for line in lines)


def test_inspect_prints_expression_gradient_hessian_domain_and_convexity(capsys):
    assert main(["inspect", "huber"]) == 0
    out = capsys.readouterr().out
    for part in ("loss:", "d loss / d p:", "Hessian:", "domain:", "delta in (0, oo)", "convexity:"):
        assert part in out


def test_inspect_latex(capsys):
    assert main(["inspect", "bce_with_logits", "--latex"]) == 0
    assert "\\operatorname{softplus}" in capsys.readouterr().out


def test_inspect_a_spec_file_table(capsys):
    assert main(["inspect", f"{REPO}/examples/quickstart.toml:asymmetric_huber"]) == 0
    assert "asymmetric_huber" in capsys.readouterr().out


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["inspect", "no_such_loss"], "unknown loss 'no_such_loss'"),
        (["inspect", "missing.toml"], "no such spec file"),
        (["frobnicate"], "invalid choice"),
        (["verify"], "required"),
        (["build", "--target", "tpu"], "target 'tpu'"),
    ],
)
def test_bad_input_exits_2_with_one_line_naming_the_problem(args, fragment):
    result = run(*args)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1, result.stderr
    assert fragment in result.stderr
    assert "Traceback" not in result.stderr


def test_malformed_spec_file_exits_2_naming_file_and_field(tmp_path):
    spec = tmp_path / "bad.toml"
    spec.write_text('[l]\nexpr = "p - __import__(\'os\')"\ninputs = ["y", "p"]\nwrt = "p"\n')
    result = run("inspect", str(spec))
    assert result.returncode == 2
    assert "bad.toml" in result.stderr and "[l]" in result.stderr and "expr" in result.stderr
    assert result.stderr.count("\n") == 1


def test_verify_passes_with_exit_0(capsys):
    assert main(["verify", "squared_error", "-n", "50"]) == 0
    out = capsys.readouterr().out
    assert "float64" in out and "float32" in out and "FAIL" not in out


def test_verify_failure_exits_1(tmp_path, capsys):
    spec = tmp_path / "naive.toml"
    spec.write_text('[naive]\nexpr = "exp(p)/(2 + exp(p)) - y"\ninputs = ["y", "p"]\nwrt = "p"\n')
    assert main(["verify", str(spec), "-n", "20", "--dtype", "float64"]) == 1
    assert "FAIL" in capsys.readouterr().out


def test_build_writes_sources_and_check_detects_staleness(tmp_path, capsys):
    out = tmp_path / "kernels"
    assert main(["build", "huber", "-o", str(out)]) == 0
    files = sorted(p.name for p in out.glob("cpu/*.py"))
    assert files == ["huber_float32.py", "huber_float64.py"]
    assert main(["build", "huber", "-o", str(out), "--check"]) == 0
    (out / "cpu" / "huber_float64.py").write_text("# edited by hand\n")
    assert main(["build", "huber", "-o", str(out), "--check"]) == 1
    assert "stale" in capsys.readouterr().err


def test_bench_names_unknown_loss_with_exit_2():
    result = run("bench", "nope")
    assert result.returncode == 2 and "unknown loss" in result.stderr


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["verify", "huber", "-n", "0"], "n must be between 1 and"),
        (["verify", "huber", "-n", "-5"], "n must be between 1 and"),
        (["verify", "huber", "-n", "abc"], "n must be an integer"),
        (["verify", "huber", "--seed", "-1"], "seed must be between 0 and"),
        (["bench", "huber", "--n", "0"], "n must be between 1 and"),
    ],
)
def test_bad_counts_and_seeds_exit_2_naming_the_option(args, fragment, capsys):
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and fragment in err, err


def test_an_output_directory_that_is_a_file_exits_2_in_one_line(tmp_path, capsys):
    target = tmp_path / "a_file"
    target.write_text("not a directory")
    assert main(["build", "squared_error", "-o", str(target)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "cannot use" in err and "a_file" in err and "internal error" not in err, err


def test_python_warnings_about_a_formula_do_not_add_lines_to_stderr(tmp_path):
    # "1if" makes Python's parser warn (SyntaxWarning) before lossgen refuses the formula.
    spec = tmp_path / "warn.toml"
    spec.write_text('[w]\nexpr = "p + 1if"\ninputs = ["y", "p"]\nwrt = "p"\n')
    result = run("inspect", str(spec))
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "Warning" not in result.stderr, result.stderr


def test_a_formula_that_takes_too_long_to_derive_exits_2_naming_the_budget(tmp_path):
    spec = tmp_path / "deep.toml"
    spec.write_text('[deep]\nexpr = "' + "sin(" * 60 + "p" + ")" * 60 + '"\ninputs = ["y", "p"]\nwrt = "p"\n')
    code = (
        "import sys; from lossgen import budget; budget.DERIVE_SECONDS = 0.2; "
        "from lossgen.cli import main; sys.exit(main(sys.argv[1:]))"
    )
    result = subprocess.run([sys.executable, "-c", code, "inspect", str(spec)], capture_output=True, text=True)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "lossgen.budget.DERIVE_SECONDS" in result.stderr, result.stderr


def test_full_build_writes_the_manifest_and_check_detects_a_stale_one(tmp_path, capsys):
    out = tmp_path / "catalog"
    assert main(["build", "-o", str(out), "--target", "cpu"]) == 0
    manifest = json.loads((out / "MANIFEST.json").read_text())
    assert set(manifest["files"]) == {p.relative_to(out).as_posix() for p in out.glob("cpu/*.py")}
    assert main(["build", "-o", str(out), "--target", "cpu", "--check"]) == 0
    (out / "MANIFEST.json").write_text("{}\n")
    assert main(["build", "-o", str(out), "--target", "cpu", "--check"]) == 1
    assert "MANIFEST.json" in capsys.readouterr().err
