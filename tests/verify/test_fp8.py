"""FP8 block-scaled checkpoints: the adapter base loads them (or keeps them) faithfully, and
`verify --fp8` has teeth: seeded loader bugs fail it, naming the tensor."""

from __future__ import annotations

import dataclasses
import json
import math
import re
import sys
from types import SimpleNamespace

import pytest
import torch

from codegen.adapter import Fp8CheckpointError, StateDictAdapter, dequantize_fp8
from codegen.cli import main
from codegen.models import load_spec
from codegen.verify.cases import base_config
from codegen.verify.fp8 import quantize_blocks, reference_dequantize, verify_fp8_case
from codegen.verify.run import Case

QCONFIG = {"quant_method": "fp8", "weight_block_size": [4, 4]}


class Tiny(StateDictAdapter):
    from_hf_map = {
        "model.layers.{}.proj.weight": "layers.{}.proj.weight",
        "model.layers.{}.experts.{}.w.weight": "layers.{}.experts.w",
        "model.layers.{}.unused.weight": None,
        "model.norm.weight": "norm.weight",
    }


def tiny_checkpoint(scale_name="weight_scale_inv"):
    """Layer 0 (a 6x10 projection: ragged 4-blocks, two experts), an MTP layer 1."""
    generator = torch.Generator().manual_seed(0)
    weights = {
        "model.layers.0.proj.weight": torch.randn(6, 10, generator=generator),
        "model.layers.0.experts.0.w.weight": torch.randn(6, 10, generator=generator),
        "model.layers.0.experts.1.w.weight": torch.randn(6, 10, generator=generator),
        "model.layers.0.unused.weight": torch.randn(6, 10, generator=generator),
        "model.layers.1.proj.weight": torch.randn(6, 10, generator=generator),
    }
    checkpoint = {"model.norm.weight": torch.ones(10), "model.layers.1.enorm.weight": torch.ones(4)}
    for key, weight in weights.items():
        values, scale = quantize_blocks(weight, 4)
        checkpoint[key] = values
        checkpoint[key[: -len("weight")] + scale_name] = scale
    return checkpoint


def adapter(**kwargs):
    return Tiny(SimpleNamespace(n_layers=1), quantization_config=QCONFIG, **kwargs)


def test_dequantizes_ragged_blocks_before_stacking_and_lists_what_it_ignored():
    checkpoint = tiny_checkpoint()
    state = adapter(dtype=torch.float32).from_hf(checkpoint)
    for index in (0, 1):
        key = f"model.layers.0.experts.{index}.w.weight"
        scale = checkpoint[f"model.layers.0.experts.{index}.w.weight_scale_inv"]
        want = reference_dequantize(checkpoint[key], scale, 4)
        assert torch.equal(state["layers.0.experts.w"][index], want)
    loader = adapter()
    loader.from_hf(checkpoint)
    assert loader.ignored == [
        "model.layers.0.unused.weight_scale_inv",  # the scale of a weight the table drops
        "model.layers.1.enorm.weight",
        "model.layers.1.proj.weight",
        "model.layers.1.proj.weight_scale_inv",
    ]


@pytest.mark.parametrize("scale_name", ["weight_scale_inv", "weight_scale", "scale"])
def test_keep_fp8_writes_the_checkpoint_back_bit_for_bit_under_its_names(scale_name):
    checkpoint = tiny_checkpoint(scale_name)
    keeper = adapter(keep_fp8=True)
    kept = keeper.from_hf(checkpoint)
    assert kept["layers.0.experts.w"].dtype == torch.float8_e4m3fn
    assert kept["layers.0.experts.w_scale_inv"].shape == (2, 2, 3)
    back = keeper.to_hf(kept)
    dropped = {k for k in checkpoint if ".layers.1." in k or "unused" in k}
    assert set(back) == set(checkpoint) - dropped
    for key, tensor in back.items():
        assert torch.equal(tensor.view(torch.uint8), checkpoint[key].view(torch.uint8)), key


def test_a_missing_scale_is_one_line_naming_the_weight():
    checkpoint = tiny_checkpoint()
    del checkpoint["model.layers.0.experts.1.w.weight_scale_inv"]
    with pytest.raises(Fp8CheckpointError, match=r"^model\.layers\.0\.experts\.1\.w\.weight: "):
        adapter().from_hf(checkpoint)


def test_a_misnamed_scale_is_one_line_naming_the_weight():
    checkpoint = tiny_checkpoint()
    checkpoint["model.layers.0.proj.weight_scales"] = checkpoint.pop(
        "model.layers.0.proj.weight_scale_inv"
    )
    with pytest.raises(Fp8CheckpointError, match=r"^model\.layers\.0\.proj\.weight: .*no block"):
        adapter().from_hf(checkpoint)


def test_a_grid_that_does_not_fit_the_block_size_names_the_scale():
    loader = Tiny(SimpleNamespace(n_layers=1), quantization_config={"weight_block_size": [2, 2]})
    with pytest.raises(Fp8CheckpointError, match=r"proj\.weight_scale_inv: scale grid \(2, 3\)"):
        loader.from_hf(tiny_checkpoint())


def test_scales_are_not_unmapped_keys_but_a_scale_without_its_weight_is_an_error():
    checkpoint = tiny_checkpoint()
    assert adapter().unmapped_keys(checkpoint) == []
    checkpoint["model.layers.0.gone.weight_scale_inv"] = torch.ones(2, 3)
    assert adapter().unmapped_keys(checkpoint) == ["model.layers.0.gone.weight_scale_inv"]
    with pytest.raises(
        Fp8CheckpointError, match=r"^model\.layers\.0\.gone\.weight_scale_inv: .*not in"
    ):
        adapter().from_hf(checkpoint)


def test_fp8_without_a_block_size_is_refused():
    with pytest.raises(Fp8CheckpointError, match="no weight_block_size"):
        Tiny(SimpleNamespace(n_layers=1)).from_hf(tiny_checkpoint())


# --- verify --fp8 --------------------------------------------------------------------------


def run(name, spec=None, block=None, mutate=None):
    config, _ = base_config(name)
    return verify_fp8_case(spec or load_spec(name), Case(name, config), block, mutate=mutate)


@pytest.mark.parametrize("name", ["qwen3", "qwen3_moe", "deepseek_v3"])
def test_references_load_fp8_checkpoints(name):
    results = run(name)
    assert [r.passed for r in results] == [True, True], [r.to_json() for r in results]
    divisible, ragged = results
    assert divisible.transformers.startswith("dequantized")  # transformers is the oracle
    assert ragged.ragged and "cannot load it" in ragged.transformers
    assert all(r.cosine_vs_unquantized >= 0.99 for r in results)
    assert all(r.ignored and all(".layers.4." in k for k in r.ignored) for r in results)
    # transformers' scale name at the first block size, the adapter's others at the second
    assert [r.scale_names for r in results] == [["weight_scale_inv"], ["weight_scale", "scale"]]


def test_cli_fp8_passes_and_prints_one_line_per_block(capsys):
    assert main(["verify", "qwen3", "--fp8"]) == 0
    lines = capsys.readouterr().out.splitlines()
    verdicts = [line.split()[:3] for line in lines if not line.startswith(" ")]
    assert verdicts == [["PASS", "qwen3", "fp8"], ["PASS", "qwen3", "fp8"]]


def test_cli_fp8_refuses_a_config_file_in_one_line(capsys, tmp_path):
    assert main(["verify", "qwen3", "--fp8", "--config", str(tmp_path / "c.json")]) == 2
    assert "--fp8" in capsys.readouterr().err


def with_adapter(name, **methods):
    spec = load_spec(name)
    return dataclasses.replace(spec, adapter=type("Seeded", (spec.adapter,), methods))


def test_a_dropped_scale_in_the_checkpoint_fails_naming_the_weight():
    def drop(release):
        del release["model.layers.0.self_attn.o_proj.weight_scale_inv"]

    (result,) = run("qwen3", block=16, mutate=drop)
    assert not result.passed
    assert result.error.startswith("Fp8CheckpointError: model.layers.0.self_attn.o_proj.weight:")


@pytest.mark.parametrize("forgotten", ["weight_scale", "scale"])
def test_an_adapter_that_no_longer_reads_a_scale_name_fails_naming_the_weight(
    forgotten, monkeypatch
):
    """The adapter forgets one name of a `.weight`'s scale; the release at the second block
    size writes it."""
    spec = load_spec("qwen3")
    base = next(c for c in spec.adapter.__mro__ if "_split_scales" in vars(c))
    module = sys.modules[base.__module__]
    names = tuple(pair for pair in module.SCALE_NAMES if pair[1] != forgotten)
    monkeypatch.setattr(module, "SCALE_NAMES", names)
    (result,) = run("qwen3", spec, block=32)
    assert not result.passed
    assert re.match(
        r"Fp8CheckpointError: model\.layers\.0\.\S+\.weight: torch\.float8_e4m3fn weight with "
        r"no block scale",
        result.error,
    ), result.error


def test_raw_fp8_values_used_as_weights_fail_naming_the_tensor():
    spec = with_adapter("qwen3", dequantize=lambda self, key, weight, scale: weight.float())
    (result,) = run("qwen3", spec, block=16)
    assert not result.passed
    assert result.first_mismatch.startswith(
        "layers.0.attention.wq.weight (model.layers.0.self_attn.q_proj.weight)"
    )


def test_a_transposed_block_scale_fails_naming_the_tensor():
    def transposed(self, key, weight, scale):
        scale = scale.transpose(-2, -1).reshape(scale.shape)  # read column-major
        return StateDictAdapter.dequantize(self, key, weight, scale)

    (result,) = run("qwen3_moe", with_adapter("qwen3_moe", dequantize=transposed), block=8)
    assert not result.passed
    assert result.first_mismatch.startswith(
        "layers.0.attention.wq.weight (model.layers.0.self_attn.q_proj.weight)"
    )


def test_expert_scales_applied_after_stacking_in_the_wrong_order_fail_naming_the_expert():
    def from_hf(self, hf_state_dict):
        """Stack fp8 experts, then their scales in key-string order (10 before 2)."""
        self.keep_fp8, keep = True, self.keep_fp8
        state = StateDictAdapter.from_hf(self, hf_state_dict)
        self.keep_fp8 = keep
        for name, scale in state.items():
            if name.endswith("_scale_inv") and scale.dim() == 3:
                state[name] = scale[sorted(range(len(scale)), key=str)]
        return state if keep else self.dequantize_state(state)

    (result,) = run("deepseek_v3", with_adapter("deepseek_v3", from_hf=from_hf), block=8)
    assert not result.passed
    assert result.first_mismatch.startswith(
        "layers.1.moe.experts.w1 (model.layers.1.mlp.experts.2.gate_proj.weight)"
    )


def test_a_block_size_read_from_the_grid_fails_on_ragged_blocks_naming_the_tensor():
    """transformers' CPU dequantize derives the block from the grid: right while blocks
    divide the shape, wrong on the ragged last blocks real releases have."""

    def from_grid(self, key, weight, scale):
        rows, cols = weight.shape[-2:]
        block = (math.ceil(rows / scale.shape[-2]), math.ceil(cols / scale.shape[-1]))
        return dequantize_fp8(weight, scale, block, self.dtype)

    spec = with_adapter("qwen3", dequantize=from_grid)
    divisible, ragged = run("qwen3", spec)
    assert divisible.passed
    assert not ragged.passed
    assert ragged.first_mismatch.startswith(
        "layers.0.attention.wk.weight (model.layers.0.self_attn.k_proj.weight)"
    )


def test_the_wrong_block_size_is_one_line_naming_the_tensor():
    def real_release_block(self, args, quantization_config=None, **kwargs):
        StateDictAdapter.__init__(self, args, {"weight_block_size": [128, 128]}, **kwargs)

    (result,) = run("qwen3", with_adapter("qwen3", __init__=real_release_block), block=16)
    assert not result.passed
    assert re.match(
        r"Fp8CheckpointError: model\.layers\.0\.\S+\.weight_scale_inv: scale grid \(\d+, \d+\) "
        r"does not fit weight \(\d+, \d+\) with weight_block_size \[128, 128\]",
        result.error,
    ), result.error


@pytest.mark.parametrize("dtype", [torch.float8_e4m3fn, torch.float8_e5m2])
def test_the_fp8_code_table_gives_torchs_own_values_for_all_256_codes(dtype):
    codes = torch.arange(256, dtype=torch.uint8).view(dtype).reshape(16, 16)
    got = dequantize_fp8(codes, torch.ones(1, 1), (16, 16), torch.float32)
    want = codes.to(torch.float32)
    assert torch.equal(got.isnan(), want.isnan())
    assert torch.equal(got[~got.isnan()], want[~want.isnan()])


def test_cli_fp8_json_has_a_result_per_block(capsys):
    assert main(["verify", "qwen3", "--fp8", "--json"]) == 0
    results = json.loads(capsys.readouterr().out)
    assert [(r["model"], r["status"]) for r in results] == [("qwen3", "pass")] * 2
    assert results[1]["ragged"] and results[1]["ignored"]


def test_a_transposed_weight_kept_in_fp8_keeps_its_scale_grid_transposed_with_it():
    """Conv1D checkpoints (GPT-2) store [in, out]: the kept weight and its grid transpose
    together, so dequantizing the kept state gives the dequantizing load."""

    class Conv(Tiny):
        transposed = frozenset({"model.layers.{}.proj.weight"})

    checkpoint = tiny_checkpoint()
    loaded = Conv(SimpleNamespace(n_layers=1), QCONFIG, dtype=torch.float32).from_hf(checkpoint)
    keeper = Conv(SimpleNamespace(n_layers=1), QCONFIG, keep_fp8=True, dtype=torch.float32)
    kept = keeper.from_hf(checkpoint)
    assert torch.equal(
        keeper.dequantize_state(kept)["layers.0.proj.weight"], loaded["layers.0.proj.weight"]
    )
    back = keeper.to_hf(kept)
    for key in ("model.layers.0.proj.weight", "model.layers.0.proj.weight_scale_inv"):
        assert torch.equal(back[key].view(torch.uint8), checkpoint[key].view(torch.uint8))


def test_a_key_table_without_decoder_layers_is_one_line():
    spec = load_spec("qwen3")
    table = {"model.embed_tokens.weight": "tok_embeddings.weight"}
    spec = dataclasses.replace(
        spec, adapter=type("NoLayers", (spec.adapter,), {"from_hf_map": table})
    )
    (result,) = run("qwen3", spec, block=16)
    assert not result.passed
    assert result.error.startswith("Fp8LayoutError: NoLayers.from_hf_map maps no decoder layer")


def test_layer_prefixes_the_checkpoint_does_not_have_are_one_line():
    spec = load_spec("qwen3")
    table = {
        "model.embed_tokens.weight": "tok_embeddings.weight",
        "decoder.block.{}.proj.weight": "layers.{}.proj.weight",
    }
    spec = dataclasses.replace(
        spec, adapter=type("Elsewhere", (spec.adapter,), {"from_hf_map": table})
    )
    (result,) = run("qwen3", spec, block=16)
    assert not result.passed
    assert result.error == (
        "Fp8LayoutError: no 2-D weight of the checkpoint lies under the decoder-layer prefixes"
        " Elsewhere.from_hf_map gives (decoder.block.): nothing to quantize"
    )


def test_routers_stay_high_precision_by_the_package_key_table_not_by_hf_names():
    """A router is the row the package keys as its MoE gate, whatever the checkpoint calls
    it (granitemoe's `router.layer`); a dense projection the checkpoint calls `gate` is a
    projection and is quantized."""
    from codegen.verify.fp8 import Layout, quantized

    class Table(StateDictAdapter):
        from_hf_map = {
            "model.embed_tokens.weight": "tok_embeddings.weight",
            "model.layers.{}.block_sparse_moe.router.layer.weight": "layers.{}.moe.gate.weight",
            "model.layers.{}.mlp.gate.weight": "layers.{}.feed_forward.w1.weight",
        }

    state = {
        "model.embed_tokens.weight": torch.zeros(8, 4),
        "model.layers.0.block_sparse_moe.router.layer.weight": torch.zeros(3, 4),
        "model.layers.0.mlp.gate.weight": torch.zeros(8, 4),
    }
    layout = Layout.of(Table(SimpleNamespace(n_layers=1)), state)
    picked = {key for key, tensor in state.items() if quantized(key, tensor, layout)}
    assert picked == {"model.layers.0.mlp.gate.weight"}
