"""PartialRotary: before/after on the llama and qwen2 references."""

import pytest

from codegen.models import references_dir
from codegen.scaffold.source import SourcePackage
from codegen.transforms.edits import EditError
from codegen.transforms.partial_rotary import PartialRotary


def _package(reference: str) -> SourcePackage:
    return SourcePackage.from_directory(references_dir() / reference)


def test_rotary_tables_cover_the_rotary_dim_and_the_llama_guard_goes():
    package = _package("llama")
    PartialRotary().apply(package)
    files = package.render()
    assert "RotaryEmbedding(args.rope, args.rope.rotary_dim(args.head_dim))" in files["model.py"]
    assert "RotaryEmbedding(args.rope, args.head_dim)" not in files["model.py"]
    assert "__post_init__" not in files["args.py"]
    assert "partial_rotary_factor" not in files["args.py"]
    # the factor still comes from rope_parameters through RopeScaling.from_hf
    assert "RopeScaling.from_hf(hf_config.rope_parameters" in files["args.py"]


def test_qwen_guard_in_from_hf_config_goes_but_the_rope_read_stays():
    package = _package("qwen2")
    PartialRotary().apply(package)
    args = package.render()["args.py"]
    assert "partial" not in args
    assert "rope = hf_config.rope_parameters" in args
    assert "def __post_init__" in args  # qwen2's other checks are untouched


def test_a_factor_outside_rope_parameters_is_merged_in():
    package = _package("llama")
    PartialRotary().apply(package, factor="hf_config.partial_rotary_factor")
    args = package.render()["args.py"]
    merged = (
        '{**hf_config.rope_parameters, "partial_rotary_factor": hf_config.partial_rotary_factor}'
    )
    assert f"RopeScaling.from_hf({merged}" in args


def test_applying_twice_is_an_error_not_a_nested_rotary_dim():
    package = _package("llama")
    PartialRotary().apply(package)
    with pytest.raises(EditError):
        PartialRotary().apply(package)
