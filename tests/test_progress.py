"""Progress bars: drawn on stderr only when stdout is a terminal, never in pipes or logs."""

import io
import sys

import pytest

from lossgen import progress as progress_module
from lossgen.progress import progress, wanted, write


class Terminal(io.StringIO):
    def isatty(self):
        return True


def test_no_bar_when_stdout_is_not_a_terminal(capsys):
    assert list(progress(range(5), desc="build")) == [0, 1, 2, 3, 4]
    captured = capsys.readouterr()
    assert captured.err == "" and captured.out == ""


def test_a_bar_on_stderr_when_stdout_is_a_terminal(capsys):
    pytest.importorskip("tqdm")
    assert wanted(Terminal())
    seen = []
    for item in progress(range(3), desc="verify", unit="kernel", stream=Terminal()):
        write(f"line {item}", file=sys.stdout)  # printed above the bar, not through it
        seen.append(item)
    captured = capsys.readouterr()
    assert seen == [0, 1, 2]
    assert "verify" in captured.err and "kernel" in captured.err
    assert captured.out.splitlines() == ["line 0", "line 1", "line 2"]
    assert progress_module._active == []  # the bar was closed


def test_without_tqdm_there_is_no_bar(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "tqdm", None)  # import tqdm raises ImportError
    assert not wanted(Terminal())
    assert list(progress("ab", desc="bench", stream=Terminal())) == ["a", "b"]
    assert capsys.readouterr().err == ""


def test_a_closed_stream_counts_as_no_terminal():
    stream = io.StringIO()
    stream.close()  # isatty() now raises ValueError
    assert not wanted(stream)


def test_the_cli_draws_its_bar_when_stdout_is_a_terminal(tmp_path, monkeypatch, capsys):
    pytest.importorskip("tqdm")
    from lossgen.cli import main

    monkeypatch.setattr(sys.stdout, "isatty", lambda: True, raising=False)
    assert main(["build", "squared_error", "-o", str(tmp_path)]) == 0
    captured = capsys.readouterr()
    assert "render" in captured.err
    assert (tmp_path / "cpu" / "squared_error_float64.py").exists()
