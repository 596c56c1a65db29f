"""Renamed remote-code folders import their own files as siblings, however the installed file
spells the import (llama4's modeling file imports its configuration module absolutely)."""

from __future__ import annotations

import ast

from codegen.verify.remote_fixture import remote_folder


def _imported_modules(path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return [(n.level, n.module or "") for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]


def test_an_absolute_import_of_the_own_package_becomes_a_sibling_import(tmp_path) -> None:
    folder = remote_folder("llama4_text", tmp_path, name="zephmodel")
    modeling = folder / "modeling_zephmodel.py"
    imports = _imported_modules(modeling)
    assert (1, "configuration_zephmodel") in imports
    assert not [m for _, m in imports if m.startswith("transformers.models.")]
    assert "llama4" not in modeling.read_text(encoding="utf-8").lower()  # nor Llama4Config


def test_relative_imports_into_transformers_become_absolute(tmp_path) -> None:
    folder = remote_folder("qwen3", tmp_path, name="zephmodel")
    imports = _imported_modules(folder / "modeling_zephmodel.py")
    assert (0, "transformers.modeling_utils") in imports
    assert all(level in (0, 1) for level, _ in imports)


def test_a_type_running_another_types_modeling_file_imports_its_own_configuration(
    tmp_path,
) -> None:
    """internlm3 ships a configuration only and runs llama's modeling file: the copy of the
    modeling file is configured by the folder's configuration (transformers checks that a
    model's config_class is the config it is given), and keeps neither old name."""
    folder = remote_folder("internlm3", tmp_path, name="zephmodel")
    names = sorted(p.name for p in folder.iterdir())
    assert names == ["config.json", "configuration_zephmodel.py", "modeling_zephmodel_base.py"]
    modeling = folder / "modeling_zephmodel_base.py"
    text = modeling.read_text(encoding="utf-8")
    assert "llama" not in text.lower() and "internlm" not in text.lower()
    assert (1, "configuration_zephmodel") in _imported_modules(modeling)
    assert "ZephmodelConfig" in text and "ZephmodelBaseConfig" not in text
    assert "class ZephmodelConfig(" in (folder / "configuration_zephmodel.py").read_text()
