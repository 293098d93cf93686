"""The README's integration examples are the ones the adapter tests execute: they cannot drift."""

import ast
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
README = (TESTS.parent / "README.md").read_text()


def snippet_constants(module: str) -> list[str]:
    """The string constants named README_* or *_SNIPPET in a test module (read with ast: the module's own
    imports need extras that may be absent)."""
    tree = ast.parse((TESTS / f"{module}.py").read_text())
    found = []
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and (t.id.startswith("README_") or t.id.endswith("_SNIPPET")) for t in node.targets):
            value = ast.literal_eval(node.value)
            found += list(value.values()) if isinstance(value, dict) else [value]
    return found


@pytest.mark.parametrize("module", ["test_torch_adapter", "test_dask", "test_plot", "test_boost"])
def test_readme_shows_exactly_the_snippets_the_tests_run(module):
    snippets = snippet_constants(module)
    assert snippets, f"{module} defines no README snippet"
    for snippet in snippets:
        assert snippet.strip() in README, f"README.md does not show {module}'s snippet verbatim: {snippet[:60]!r}"
