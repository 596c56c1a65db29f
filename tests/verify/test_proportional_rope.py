"""Proportional RoPE (lfm3, gemma4): the table entry equals transformers' frequencies, and
verify catches a package that computes it as the plain default rope.

The toy keeps the real configs' partial factor (0.5 of a 40-wide head for lfm3) and lowers
the base: the default rope would turn the tail frequencies that the proportional table holds
at zero by radians over the test sequence, in fp32 and bf16 alike.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from codegen.cli import main
from codegen.layers import rope as rope_module
from codegen.layers.rope import RopeScaling, inverse_frequencies
from codegen.models import load_spec
from codegen.verify.run import Case, verify_case
from codegen.verify.tiny_config import PROPORTIONAL_THETA, tiny_config

PROPORTIONAL_ENTRY = '"proportional": _proportional,'


@pytest.mark.parametrize(
    ("partial", "factor", "head_dim"),
    [(0.5, None, 128), (0.25, 2.0, 256), (0.3, None, 40), (1.0, None, 16)],
)
def test_frequencies_equal_transformers(partial, factor, head_dim):
    from transformers import LlamaConfig
    from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS

    params = {"rope_type": "proportional", "rope_theta": 1e6, "partial_rotary_factor": partial}
    if factor is not None:
        params["factor"] = factor
    config = LlamaConfig(head_dim=head_dim, rope_parameters=params)
    expected, expected_factor = ROPE_INIT_FUNCTIONS["proportional"](config)
    got, got_factor = inverse_frequencies(RopeScaling.from_hf(params, 64), head_dim, 8)
    assert torch.equal(got, expected) and got_factor == expected_factor


def test_the_table_spans_the_whole_head():
    rope = RopeScaling.from_hf(
        {"rope_type": "proportional", "rope_theta": 1e4, "partial_rotary_factor": 0.25}, 64
    )
    assert rope.rotary_dim(40) == 40  # no partial_rotary shrinking of the table
    inv_freq, _ = inverse_frequencies(rope, 40, 8)
    assert inv_freq[:5].gt(0).all() and inv_freq[5:].eq(0).all()


def test_the_toy_makes_the_partial_factor_observable():
    config = tiny_config("lfm3")
    full = config.rope_parameters["full_attention"]
    assert full["rope_type"] == "proportional" and full["partial_rotary_factor"] < 1
    assert full["rope_theta"] == PROPORTIONAL_THETA  # the zeroed tail would turn by radians
    assert "full_attention" in config.layer_types


def test_reference_refuses_nothing_and_catches_a_default_table(monkeypatch):
    """A llama with a proportional rope verifies; the same with the entry computed as the
    default rope fails in the attention."""
    llama = load_spec("llama")
    config = tiny_config("llama")
    config.rope_parameters = {
        "rope_type": "proportional",
        "rope_theta": 10000.0,
        "partial_rotary_factor": 0.5,
    }
    (control,) = verify_case(llama, Case("proportional", config), ["fp32"])
    assert control.passed
    monkeypatch.setitem(rope_module.FREQUENCY_RULES, "proportional", rope_module._default)
    (result,) = verify_case(llama, Case("seeded", config), ["fp32"])
    assert not result.passed and result.first_divergence.startswith("layers.0.attention")


@pytest.fixture(scope="module")
def lfm3_package(tmp_path_factory) -> Path:
    models = tmp_path_factory.mktemp("proportional") / "models"
    assert main(["scaffold", "lfm3", "--out", str(models)]) == 0
    return models


def test_scaffolded_package_verifies(lfm3_package):
    spec = load_spec("lfm3", lfm3_package)
    results = verify_case(spec, Case("lfm3", tiny_config("lfm3")), ["fp32", "bf16"])
    assert all(result.passed for result in results)


def test_scaffolded_package_with_a_default_table_fails_in_the_attention(lfm3_package, tmp_path):
    models = tmp_path / "models"
    shutil.copytree(lfm3_package, models)
    rope = models / "lfm3" / "rope.py"
    source = rope.read_text()
    assert PROPORTIONAL_ENTRY in source
    rope.write_text(source.replace(PROPORTIONAL_ENTRY, '"proportional": _default,'))
    spec = load_spec("lfm3", models)
    config = tiny_config("lfm3")
    first_attention = config.layer_types.index("full_attention")
    for result in verify_case(spec, Case("seeded", config), ["fp32", "bf16"]):
        assert not result.passed, result.dtype
        assert result.first_divergence.startswith(f"layers.{first_attention}.attention"), (
            result.dtype,
            result.first_divergence,
        )
