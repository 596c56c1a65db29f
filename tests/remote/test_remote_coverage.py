"""The renamed remote-code sweep helper (`python -m codegen.verify.remote_fixture`): what
`scripts/coverage.py` reports as "passes as a renamed remote-code folder"."""

from __future__ import annotations

import pytest

from codegen.verify.remote_fixture import check_remote, main, neutral_name


def test_neutral_names_are_new_letters_only_and_stable() -> None:
    names = {mt: neutral_name(mt) for mt in ("llama", "qwen3", "qwen3_moe", "mixtral")}
    assert len(set(names.values())) == len(names)
    for model_type, name in names.items():
        assert name.isalpha() and name.islower() and model_type not in name
        assert neutral_name(model_type) == name


def test_an_architecture_the_builder_cannot_copy_is_a_finding(tmp_path) -> None:
    assert check_remote("no_such_model_type", tmp_path).startswith("fixture: CodegenError")


@pytest.mark.slow
def test_the_sweep_counts_passing_folders(tmp_path, capsys) -> None:
    assert main(["llama", "no_such_model_type"]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["llama", "pass"]
    assert lines[1].startswith("no_such_model_type") and "fixture:" in lines[1]
    assert lines[-1] == "1/2 pass as renamed remote-code folders"
