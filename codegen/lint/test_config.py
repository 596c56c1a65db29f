"""Tests for `config` and `scope`: what a `codegen lint` run covers."""

import pytest

from codegen.errors import CodegenError
from codegen.lint.config import find_pyproject, load_config
from codegen.lint.scope import default_models, resolve_scope


def test_config_reads_models_and_targets_relative_to_pyproject(tmp_path):
    (tmp_path / "sub").mkdir()
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text(
        '[tool.codegen]\nmodels = "src/models"\n[[tool.codegen.targets]]\ntarget = "atom"\n'
    )
    assert find_pyproject(tmp_path / "sub") == pyproject
    config = load_config(pyproject)
    assert config.models == (tmp_path / "src/models",)
    assert [(t.name, repo) for t, repo in config.targets] == [("atom", tmp_path / ".")]


def test_no_table_means_no_config_and_bad_tables_are_user_errors(tmp_path):
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text("[project]\nname = 'x'\n")
    assert load_config(pyproject) is None
    pyproject.write_text("[tool.codegen]\nmodels = 3\n")
    with pytest.raises(CodegenError, match="models must be a path"):
        load_config(pyproject)
    pyproject.write_text('[[tool.codegen.targets]]\ntarget = "nope"\n')
    with pytest.raises(CodegenError, match="unknown target 'nope'"):
        load_config(pyproject)


def test_default_scope_is_the_repository_references(tmp_path):
    scope = resolve_scope((), (), None, None, tmp_path)
    assert scope.models == [default_models()] and scope.targets == []
    assert (default_models() / "__init__.py").read_text().count("MODEL_SPECS =") == 1


def test_explicit_models_must_be_a_package(tmp_path):
    with pytest.raises(CodegenError, match="not a models package"):
        resolve_scope((), (tmp_path,), None, None, tmp_path)
