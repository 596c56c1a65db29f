"""Generated packages read as written for the target: no codegen module paths outside the
registry glue, no word about the scaffold's own work, a shard plan described as built, and
one implementation of each helper."""

from __future__ import annotations

import ast
import re

import pytest

from codegen.cli import main

# cohere2: rope.py from the interleaved-RoPE rule; deepseek_v3 and mixtral: references with
# their own rope.py or an empty settings table; gpt2: fused q/k/v and a GELU MLP
TARGETS = ("cohere2", "deepseek_v3", "mixtral", "gpt2")
GLUE = ("spec.py",)  # the registry's own interface, and the parity test, import codegen


@pytest.fixture(scope="module")
def packages(tmp_path_factory):
    models = tmp_path_factory.mktemp("models")
    for name in TARGETS:
        assert main(["scaffold", name, "--out", str(models)]) == 0
    return models


@pytest.mark.parametrize("name", TARGETS)
def test_no_codegen_paths_or_scaffold_words_in_the_standalone_files(packages, name):
    for path in sorted((packages / name).glob("*.py")):
        if path.name in GLUE or path.name.startswith("test_"):
            continue
        for number, line in enumerate(path.read_text().splitlines(), 1):
            where = f"{name}/{path.name}:{number}: {line.strip()}"
            assert not re.search(r"\bcodegen\.\w", line), where  # a module path
            assert "Scaffold" not in line, where


def test_the_shard_plan_docstring_names_the_fused_projection(packages):
    text = " ".join((packages / "gpt2" / "parallelize.py").read_text().split())
    assert "gate/up" not in text
    assert "Column-wise fused q/k/v and up, row-wise o and down" in text


@pytest.mark.parametrize("name", TARGETS)
def test_no_function_is_written_twice_in_a_package(packages, name):
    """Two top-level functions with the same body (a reference's copy of a shared helper,
    deepseek_v3's `yarn_mscale`) are one helper written twice."""
    seen: dict[str, str] = {}
    for path in sorted((packages / name).glob("*.py")):
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.FunctionDef):
                body = ast.dump(ast.Module(body=node.body, type_ignores=[]))
                where = f"{path.name}:{node.lineno} {node.name}"
                assert body not in seen, f"{where} repeats {seen[body]}"
                seen[body] = where


def test_the_summary_says_no_rope_and_names_the_mlp_once(packages):
    """gpt2 has learned positions and a GELU MLP: the summary says so in words, not as the
    feature table's values ("none RoPE", "gelu_mlp MLP")."""
    summary = " ".join((packages / "gpt2" / "__init__.py").read_text().split())
    assert "no RoPE" in summary and "none RoPE" not in summary
    assert "gelu MLP" in summary and "gelu_mlp MLP" not in summary
