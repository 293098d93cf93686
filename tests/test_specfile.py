"""Spec files: lg.load(path) reads TOML, one table per loss; errors are one line naming file, table, field."""

from __future__ import annotations

import pytest
import sympy as sp

import lossgen as lg

VALID = '''
# Two losses in one file.
[sq]
expr = "(p - y)**2"
inputs = ["y", "p"]
wrt = "p"
doc = "squared error"

[my_huber]
expr = "Piecewise((r**2/2, Abs(r) <= delta), (delta*(Abs(r) - delta/2), True))"
inputs = ["y", "p"]
wrt = "p"
params = { delta = 1.5 }
where = { r = "p - y" }
domain = { delta = "(0, oo)" }
doc = "Huber loss"
'''

GOOD_TABLE = 'expr = "(p - y)**2"\ninputs = ["y", "p"]\nwrt = "p"\n'


def write(tmp_path, text: str, name: str = "losses.toml"):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def load_error(path) -> str:
    """Message of the SpecError lg.load(path) must raise; it names the file and is one line."""
    with pytest.raises(lg.SpecError) as info:
        lg.load(path)
    message = str(info.value)
    assert "\n" not in message, f"message is not one line: {message!r}"
    assert path.name in message, f"message does not name the file: {message!r}"
    return message


# --- valid files ------------------------------------------------------------------------------


def test_valid_file_gives_one_loss_per_table_in_file_order(tmp_path):
    losses = lg.load(write(tmp_path, VALID))
    assert isinstance(losses, dict)
    assert list(losses) == ["sq", "my_huber"]
    assert all(isinstance(loss, lg.Loss) for loss in losses.values())


def test_each_table_becomes_a_loss_named_after_it_with_its_fields(tmp_path):
    losses = lg.load(write(tmp_path, VALID))
    huber = losses["my_huber"]
    assert huber.name == "my_huber"
    assert huber.inputs == ("y", "p")
    assert huber.wrt == ("p",)
    assert dict(huber.params) == {"delta": 1.5}
    assert huber.domain["delta"] == sp.Interval.open(0, sp.oo)
    assert huber.doc == "Huber loss"
    assert losses["sq"].doc == "squared error"


def test_loaded_loss_equals_the_same_loss_built_in_python(tmp_path):
    loaded = lg.load(write(tmp_path, VALID))["my_huber"]
    built = lg.Loss(
        "my_huber",
        "Piecewise((r**2/2, Abs(r) <= delta), (delta*(Abs(r) - delta/2), True))",
        inputs=["y", "p"], wrt="p", params={"delta": 1.5}, where={"r": "p - y"},
        domain={"delta": "(0, oo)"}, doc="Huber loss",
    )
    assert loaded == built


def test_load_accepts_a_string_path(tmp_path):
    assert list(lg.load(str(write(tmp_path, VALID)))) == ["sq", "my_huber"]


def test_wrt_may_be_a_list_and_inputs_a_single_name(tmp_path):
    path = write(tmp_path, '[l]\nexpr = "p**2"\ninputs = "p"\nwrt = ["p"]\n')
    loss = lg.load(path)["l"]
    assert loss.inputs == ("p",) and loss.wrt == ("p",)


def test_integer_param_in_toml_is_accepted_as_float(tmp_path):
    path = write(tmp_path, '[l]\nexpr = "p * s"\ninputs = ["p"]\nwrt = "p"\nparams = { s = 2 }\n')
    assert lg.load(path)["l"].params["s"] == 2.0


# --- malformed files --------------------------------------------------------------------------


def test_toml_syntax_error_names_the_file_and_the_line(tmp_path):
    path = write(tmp_path, '[sq]\nexpr = "(p - y)**2\ninputs = ["y", "p"]\nwrt = "p"\n')
    message = load_error(path)
    assert "invalid TOML" in message
    assert "line 2" in message


def test_unterminated_table_header_is_a_toml_syntax_error(tmp_path):
    assert "invalid TOML" in load_error(write(tmp_path, "[sq\nexpr = 'p'\n"))


def test_unknown_key_names_the_table_and_the_key(tmp_path):
    message = load_error(write(tmp_path, "[sq]\n" + GOOD_TABLE + 'link = "x"\n'))
    assert "[sq]" in message
    assert "'link'" in message


def test_wrong_type_names_the_table_and_the_field(tmp_path):
    message = load_error(write(tmp_path, '[sq]\nexpr = "(p - y)**2"\ninputs = 3\nwrt = "p"\n'))
    assert "[sq].inputs" in message
    assert "int" in message


@pytest.mark.parametrize(
    "field, line",
    [
        ("expr", "expr = 3"),
        ("wrt", "wrt = 1.5"),
        ("params", "params = 3"),
        ("where", 'where = "r"'),
        ("domain", 'domain = ["(0, 1)"]'),
        ("doc", "doc = 7"),
    ],
)
def test_each_field_of_the_wrong_type_is_named(tmp_path, field, line):
    table = {"expr": 'expr = "(p - y)**2"', "inputs": 'inputs = ["y", "p"]', "wrt": 'wrt = "p"'}
    table[field] = line
    message = load_error(write(tmp_path, "[sq]\n" + "\n".join(table.values()) + "\n"))
    assert f"[sq].{field}" in message


@pytest.mark.parametrize("missing", ["expr", "inputs", "wrt"])
def test_missing_required_key_names_the_table_and_the_key(tmp_path, missing):
    lines = [line for line in GOOD_TABLE.splitlines() if not line.startswith(missing)]
    message = load_error(write(tmp_path, "[sq]\n" + "\n".join(lines) + "\n"))
    assert "[sq]" in message
    assert repr(missing) in message


def test_bad_expr_inside_a_table_names_the_table_and_the_field(tmp_path):
    text = "[good]\n" + GOOD_TABLE + '\n[bad]\nexpr = "p.real + y"\ninputs = ["y", "p"]\nwrt = "p"\n'
    message = load_error(write(tmp_path, text))
    assert "[bad].expr" in message
    assert "attribute access" in message


def test_undeclared_name_in_expr_names_the_table_field_and_name(tmp_path):
    message = load_error(write(tmp_path, '[sq]\nexpr = "(p - q)**2"\ninputs = ["y", "p"]\nwrt = "p"\n'))
    assert "[sq].expr" in message
    assert "'q'" in message


def test_bad_helper_names_the_table_and_the_helper(tmp_path):
    message = load_error(write(tmp_path, "[sq]\n" + GOOD_TABLE + 'where = { r = "p +* y" }\n'))
    assert "[sq].where.r" in message


def test_bad_domain_names_the_table_and_the_domain_entry(tmp_path):
    text = '[sq]\nexpr = "p * s"\ninputs = ["p"]\nwrt = "p"\nparams = { s = 1.0 }\ndomain = { s = "(0 1)" }\n'
    assert "[sq].domain.s" in load_error(write(tmp_path, text))


def test_bad_param_default_names_the_table_and_the_param(tmp_path):
    text = '[sq]\nexpr = "p * s"\ninputs = ["p"]\nwrt = "p"\nparams = { s = "one" }\n'
    message = load_error(write(tmp_path, text))
    assert "[sq].params" in message
    assert "'s'" in message


def test_bad_input_name_names_the_table_and_the_field(tmp_path):
    message = load_error(write(tmp_path, '[sq]\nexpr = "p"\ninputs = ["np", "p"]\nwrt = "p"\n'))
    assert "[sq].inputs" in message
    assert "'np'" in message


def test_bad_table_name_is_refused_naming_it(tmp_path):
    message = load_error(write(tmp_path, '["bad name"]\n' + GOOD_TABLE))
    assert "[bad name]" in message


def test_top_level_key_outside_a_table_is_refused(tmp_path):
    message = load_error(write(tmp_path, 'expr = "p"\n'))
    assert "[expr]" in message
    assert "table" in message


def test_nonexistent_file_is_refused_naming_it(tmp_path):
    message = load_error(tmp_path / "missing.toml")
    assert "no such" in message


def test_directory_instead_of_a_file_is_refused_naming_it(tmp_path):
    folder = tmp_path / "folder.toml"
    folder.mkdir()
    load_error(folder)


def test_file_that_is_not_utf8_is_refused_naming_it(tmp_path):
    path = tmp_path / "binary.toml"
    path.write_bytes(b"\xff\xfe[sq]\n")
    load_error(path)


@pytest.mark.parametrize("text", ["", "\n\n", "# only a comment\n"], ids=["empty", "blank", "comment"])
def test_file_without_tables_is_refused_naming_it(tmp_path, text):
    assert "no loss tables" in load_error(write(tmp_path, text))


def test_message_stays_one_line_when_the_table_name_has_a_newline(tmp_path):
    load_error(write(tmp_path, '["a\\nb"]\n' + GOOD_TABLE))


def test_first_bad_table_fails_the_whole_file(tmp_path):
    text = "[good]\n" + GOOD_TABLE + '\n[bad]\nexpr = "p"\ninputs = ["y", "p"]\nwrt = "q"\n'
    message = load_error(write(tmp_path, text))
    assert "[bad].wrt" in message


# --- hostile files: bounded reads, one-line messages ----------------------------------------------


def test_file_larger_than_the_limit_is_refused_naming_the_limit(tmp_path):
    from lossgen import specfile

    path = write(tmp_path, "# " + "x" * specfile.MAX_SPEC_BYTES + "\n[sq]\n" + GOOD_TABLE)
    message = load_error(path)
    assert "(limit lossgen.specfile.MAX_SPEC_BYTES; raise it with lossgen.specfile.MAX_SPEC_BYTES = N)" in message


def test_raising_the_file_size_limit_admits_the_file(tmp_path, monkeypatch):
    from lossgen import specfile

    path = write(tmp_path, "# " + "x" * 2_000 + "\n[sq]\n" + GOOD_TABLE)
    monkeypatch.setattr(specfile, "MAX_SPEC_BYTES", 1_000)
    assert "MAX_SPEC_BYTES" in load_error(path)
    monkeypatch.setattr(specfile, "MAX_SPEC_BYTES", 10_000)
    assert list(lg.load(path)) == ["sq"]


def test_a_path_with_a_nul_byte_is_a_spec_error():
    with pytest.raises(lg.SpecError, match="cannot read spec file") as info:
        lg.load("bad\x00name.toml")
    assert "\n" not in str(info.value) and "\\x00" in str(info.value)


def test_a_path_with_a_newline_is_named_on_one_line(tmp_path):
    with pytest.raises(lg.SpecError, match="no such spec file") as info:
        lg.load(tmp_path / "two\nlines.toml")
    assert "\n" not in str(info.value) and "two\\nlines.toml" in str(info.value)


def test_non_utf8_bytes_are_named_with_their_position(tmp_path):
    path = tmp_path / "latin1.toml"
    path.write_bytes(b'[sq]\nexpr = "(p - y)**2"\ndoc = "caf\xe9"\n')
    assert "not UTF-8" in load_error(path) and "at byte 35" in load_error(path)  # the byte after doc = "caf


@pytest.mark.parametrize("nested", ["a = " + "[" * 5_000 + "]" * 5_000, "a = " + "{ b = " * 3_000 + "1" + " }" * 3_000])
def test_deeply_nested_toml_is_a_spec_error(tmp_path, nested):
    assert "nest too deeply" in load_error(write(tmp_path, nested + "\n"))


def test_windows_line_endings_are_read(tmp_path):
    path = tmp_path / "crlf.toml"
    path.write_bytes(VALID.replace("\n", "\r\n").encode())
    assert list(lg.load(path)) == ["sq", "my_huber"]


def test_a_long_unprintable_table_name_is_shortened_and_escaped(tmp_path):
    message = load_error(write(tmp_path, '["' + "\\u0007" * 200 + '"]\n' + GOOD_TABLE))
    assert "\\x07" in message and len(message) < 400


def test_a_doc_with_a_line_break_is_refused_naming_the_table(tmp_path):
    text = '[sq]\n' + GOOD_TABLE + 'doc = """first line\nsecond line"""\n'
    assert "[sq].doc: must be one line" in load_error(write(tmp_path, text))
