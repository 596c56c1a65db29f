"""RopeGroup: before/after on the llama and deepseek_v3 references."""

import pytest

from codegen.models import references_dir
from codegen.scaffold.source import SourcePackage
from codegen.transforms.edits import EditError
from codegen.transforms.rope_group import RopeGroup


def _package(reference: str) -> SourcePackage:
    return SourcePackage.from_directory(references_dir() / reference)


def test_llama_reads_the_group():
    package = _package("llama")
    RopeGroup().apply(package, group="main")
    args = package.render()["args.py"]
    assert 'RopeScaling.from_hf(hf_config.rope_parameters["main"], ' in args
    assert args.count("hf_config.rope_parameters") == 1


def test_every_read_is_the_groups_and_a_second_run_changes_nothing():
    package = _package("deepseek_v3")  # reads the parameters twice (rope, mscale check)
    RopeGroup().apply(package, group="compress")
    once = package.render()["args.py"]
    assert once.count('hf_config.rope_parameters["compress"]') == 2
    assert once.count("hf_config.rope_parameters") == 2
    with pytest.raises(EditError):  # nothing left to pick
        RopeGroup().apply(package, group="compress")
    assert package.render()["args.py"] == once
