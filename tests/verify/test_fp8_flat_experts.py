"""FP8 checkpoints whose expert stacks are stored whole, without a `.weight` suffix (DBRX's
flat `ffn.experts.mlp.w1`, `v1`, `w2`): `verify --fp8` quantizes them blockwise as a release
would (fp8 values + `<key>_scale_inv`, transformers' own name for such a scale, or
`<key>.weight_scale_inv`), the adapter dequantizes them, and a loader that skips their scale,
or no longer finds it under one of its names, fails naming the module.

transformers 5.23 cannot load such a checkpoint: it dequantizes `.weight` keys only, loads
the flat stacks' raw fp8 values and reports their scales unexpected. The check sees that
(its weights against its load of the reference dequant) and compares the package with
transformers running the reference-dequantized checkpoint instead."""

from __future__ import annotations

import dataclasses
import sys
from types import SimpleNamespace

import pytest
import torch

from codegen.adapter import FLAT_SCALE_SUFFIXES, SCALE_NAMES, Fp8CheckpointError, StateDictAdapter
from codegen.models import load_spec
from codegen.scaffold.plan import make_plan
from codegen.scaffold.target import load_target
from codegen.scaffold.testing import write_planned
from codegen.verify.cases import base_config
from codegen.verify.fp8 import (
    Layout,
    quantize_blocks,
    quantized,
    reference_dequantize,
    verify_fp8_case,
)
from codegen.verify.run import Case

TYPE = "dbrx"
EXPERTS, ROWS, COLS = 3, 8, 12  # 8 rows an expert: 4-blocks stay in one expert, 16 do not


class Flat(StateDictAdapter):
    from_hf_map = {
        "model.layers.{}.experts.w1": "layers.{}.experts.w1",
        "model.layers.{}.experts.w2": "layers.{}.experts.w2",
    }
    flat_experts = {"model.layers.{}.experts.w1": False, "model.layers.{}.experts.w2": True}


def flat_checkpoint(block: int, scale_suffix: str = "_scale_inv") -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    checkpoint = {}
    for key in ("model.layers.0.experts.w1", "model.layers.0.experts.w2"):
        weight = torch.randn(EXPERTS * ROWS, COLS, generator=generator)
        checkpoint[key], checkpoint[key + scale_suffix] = quantize_blocks(weight, block)
    return checkpoint


def flat(block: int, **kwargs) -> Flat:
    args = SimpleNamespace(n_layers=1, num_experts=EXPERTS)
    return Flat(args, quantization_config={"weight_block_size": [block, block]}, **kwargs)


@pytest.mark.parametrize("scale_suffix", ["_scale_inv", ".weight_scale_inv"])
def test_flat_expert_stacks_are_dequantized_before_they_are_split(scale_suffix):
    checkpoint = flat_checkpoint(4, scale_suffix)
    state = flat(4, dtype=torch.float32).from_hf(checkpoint)
    for key, transposed in Flat.flat_experts.items():
        key = key.format(0)
        whole = reference_dequantize(checkpoint[key], checkpoint[key + scale_suffix], 4)
        blocks = whole.unflatten(0, (EXPERTS, -1))
        want = blocks.transpose(1, 2) if transposed else blocks
        assert torch.equal(state[key.replace("model.", "")], want), key


def test_kept_flat_experts_split_their_grid_by_expert_and_write_back_bit_for_bit():
    checkpoint = flat_checkpoint(4)
    keeper = flat(4, keep_fp8=True, dtype=torch.float32)
    kept = keeper.from_hf(checkpoint)
    assert kept["layers.0.experts.w1_scale_inv"].shape == (EXPERTS, ROWS // 4, COLS // 4)
    assert kept["layers.0.experts.w2_scale_inv"].shape == (EXPERTS, COLS // 4, ROWS // 4)
    loaded = flat(4, dtype=torch.float32).from_hf(checkpoint)
    dequantized = keeper.dequantize_state(kept)
    assert all(torch.equal(dequantized[k], loaded[k]) for k in loaded)
    back = keeper.to_hf(kept)
    assert set(back) == set(checkpoint)
    for key, tensor in back.items():
        assert torch.equal(tensor.view(torch.uint8), checkpoint[key].view(torch.uint8)), key


def test_keeping_flat_experts_whose_blocks_span_two_experts_is_refused_naming_them():
    with pytest.raises(Fp8CheckpointError, match=r"^model\.layers\.0\.experts\.w1: .*8 rows each"):
        flat(16, keep_fp8=True).from_hf(flat_checkpoint(16))


def test_a_flat_scale_whose_stack_is_not_fp8_is_one_line_naming_it():
    checkpoint = flat_checkpoint(4)
    checkpoint["model.layers.0.experts.w1"] = checkpoint["model.layers.0.experts.w1"].float()
    message = (
        r"^model\.layers\.0\.experts\.w1_scale_inv: .* model\.layers\.0\.experts\.w1 is not fp8"
    )
    with pytest.raises(Fp8CheckpointError, match=message):
        flat(4).from_hf(checkpoint)


def test_expert_stacks_are_found_by_the_key_table_and_the_house_shapes_not_by_names():
    """A row mapping one checkpoint key to a 3-D house tensor is an expert stack, whatever
    the key ends with; a 2-D non-`.weight` tensor elsewhere (a bias table) is not."""

    class Table(StateDictAdapter):
        from_hf_map = {
            "embed.weight": "tok_embeddings.weight",
            "trunk.{}.ffn.zeta": "layers.{}.moe.experts.w1",
            "trunk.{}.ffn.zeta_bias": "layers.{}.moe.experts.b1",
            "trunk.{}.attn.proj.weight": "layers.{}.attention.wo.weight",
        }

    state = {
        "embed.weight": torch.zeros(8, 4),
        "trunk.0.ffn.zeta": torch.zeros(6, 4),
        "trunk.0.ffn.zeta_bias": torch.zeros(3, 2),
        "trunk.0.attn.proj.weight": torch.zeros(4, 4),
    }
    house = {
        "layers.0.moe.experts.w1": torch.zeros(3, 2, 4),
        "layers.0.moe.experts.b1": torch.zeros(3, 2),
    }
    layout = Layout.of(Table(SimpleNamespace(n_layers=1)), state, house)
    picked = {key for key, tensor in state.items() if quantized(key, tensor, layout)}
    assert picked == {"trunk.0.ffn.zeta", "trunk.0.attn.proj.weight"}
    assert layout.expert_count("trunk.0.ffn.zeta") == 3


# --- verify --fp8 on DBRX ------------------------------------------------------------------


@pytest.fixture(scope="module")
def spec(tmp_path_factory):
    target = load_target(TYPE)
    models, name = write_planned(
        tmp_path_factory.mktemp("fp8") / "models", (target, make_plan(target))
    )
    return load_spec(name, models)


def _run(spec, **kwargs):
    config, _ = base_config(TYPE)
    return verify_fp8_case(spec, Case(TYPE, config), **kwargs)


FLAT = "transformer.blocks.0.ffn.experts.mlp.w1"


def test_dbrx_flat_experts_are_fp8_and_the_package_matches_the_reference_dequant(spec):
    aligned, spanning = _run(spec)
    assert [aligned.passed, spanning.passed] == [True, True], [
        r.to_json() for r in (aligned, spanning)
    ]
    # transformers takes the flat stacks' raw fp8 values: the oracle is its reference load
    for result in (aligned, spanning):
        assert f"{FLAT} (its raw fp8 values, no scale applied)" in result.transformers
        assert result.transformers.endswith("oracle: transformers on the reference dequant")
    # 8-blocks hold one expert's 40 rows each: kept and written back bit for bit
    assert not aligned.straddling and aligned.roundtrip_exact and aligned.keep_matches
    # 16-blocks span two experts: keep_fp8 refuses them, naming the first
    assert FLAT in spanning.straddling and spanning.keep_refused
    assert "transformer.blocks.0.ffn.experts.mlp." in spanning.keep_refused
    # transformers' scale names at the first block size, the others at the second: between
    # them every name the adapter accepts
    assert aligned.scale_names == ["weight_scale_inv", "<stack>_scale_inv"]
    assert spanning.scale_names == ["weight_scale", "scale", "<stack>.weight_scale_inv"]
    accepted = {name for _, name in SCALE_NAMES} | {"<stack>" + s for s in FLAT_SCALE_SUFFIXES}
    assert {*aligned.scale_names, *spanning.scale_names} == accepted


def test_an_adapter_that_skips_the_scale_of_flat_experts_fails_naming_the_module(spec):
    def skip_flat(self, key, weight, scale):
        if not key.endswith("weight"):  # the flat stacks: raw fp8 values
            return weight.to(self.dtype)
        return StateDictAdapter.dequantize(self, key, weight, scale)

    seeded = dataclasses.replace(
        spec, adapter=type("Seeded", (spec.adapter,), {"dequantize": skip_flat})
    )
    (result,) = _run(seeded, block=8)
    assert not result.passed
    assert result.first_mismatch.startswith(f"layers.0.moe.experts.w1 ({FLAT}): max diff")


def test_an_adapter_that_no_longer_reads_a_flat_stacks_other_scale_name_fails_naming_it(
    spec, monkeypatch
):
    """The shared adapter file of the package forgets `<key>.weight_scale_inv`."""
    base = next(c for c in spec.adapter.__mro__ if "_split_scales" in vars(c))
    monkeypatch.setattr(sys.modules[base.__module__], "FLAT_SCALE_SUFFIXES", ("_scale_inv",))
    (result,) = _run(spec, block=16)
    assert not result.passed
    assert "<stack>.weight_scale_inv" in result.scale_names
    assert result.error.startswith("Fp8CheckpointError: transformer.blocks.0.ffn.experts.mlp."), (
        result.error
    )
    assert "weight with no block scale" in result.error
