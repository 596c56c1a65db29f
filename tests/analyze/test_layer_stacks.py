"""Models with more than one stack of decoder layers are reported unsupported, one line each,
instead of being planned from one of their stacks (and crashing later in verify), unless
they are two alike stacks run in nested cycles (`block.recurrent_stacks`, HRM)."""

from __future__ import annotations

from pathlib import Path

import pytest
from analyze_helpers import rename_model

from codegen.analyze.analysis import analyze
from codegen.scaffold.plan import make_plan
from codegen.scaffold.target import load_target


def _stacks(features):
    return [u for u in features.unsupported if u.feature == "block.stacks"]


def test_several_stacks_are_one_unsupported_line() -> None:
    # byte latent: local encoder, global transformer, local decoder, entropy patcher
    features = analyze("blt")
    assert features.category == "decoder"  # still counted among the decoders
    (gap,) = _stacks(features)
    assert (
        "model.local_encoder.layers, model.global_transformer.layers, "
        "model.local_decoder.layers, model.patcher.layers"
    ) in gap.detail
    assert gap.evidence.startswith("modeling_blt.py:")


HRM_STACKS = {
    "backbone": "model",
    "inner": "L_module",
    "outer": "H_module",
    "layers": "layers",
    "norm": "final_norm",
    "layer_count": "num_layers_per_stack",
    "cycles": "H_cycles",
    "inner_cycles": "L_cycles",
    "grad_cycles": "L_bp_cycles",
    "init": "z_L_init",
}


def test_two_stacks_run_in_nested_cycles_are_read() -> None:
    features = analyze("hrm_text")
    assert not _stacks(features)
    assert features.block.recurrent_stacks == HRM_STACKS
    assert features.evidence["block.recurrent_stacks"].startswith("modeling_hrm_text.py:489 ")
    # the embeddings are found on the backbone above the stacks, with their scale
    assert features.embedding.scale is True
    # the checkpoint's fused tensors, split on load
    assert dict(features.state_dict.chunked)["attn.gqkv_proj.weight"] == (
        "self_attn.gate_proj.weight",
        "self_attn.q_proj.weight",
        "self_attn.k_proj.weight",
        "self_attn.v_proj.weight",
    )


def test_a_renamed_copy_is_read_too(tmp_path) -> None:
    copy_path, _ = rename_model("hrm_text", "zorblax", str(tmp_path))
    features = analyze(copy_path)
    assert not _stacks(features)
    assert features.block.recurrent_stacks["cycles"] == "H_cycles"


def test_another_schedule_stays_unsupported_with_what_differs(tmp_path) -> None:
    # every inner run with gradients: no no-grad schedule the rule realises
    copy_path, _ = rename_model("hrm_text", "zorblax", str(tmp_path))
    path = Path(copy_path)
    source = path.read_text()
    old = "ctx = nullcontext() if low_cycle_idx >= grad_threshold else torch.no_grad()"
    assert source.count(old) == 1
    path.write_text(source.replace(old, "ctx = nullcontext()"))
    (gap,) = _stacks(analyze(copy_path))
    assert "not cut from gradients by a padded config list" in gap.detail


@pytest.mark.parametrize("model_type", ["llama", "qwen3_moe", "jamba"])
def test_one_stack_is_no_finding(model_type: str) -> None:
    assert not _stacks(analyze(model_type))


def test_the_plan_stops_on_the_gap() -> None:
    plan = make_plan(load_target("blt"))
    assert not plan.complete
    assert any(g.feature == "block.stacks" for g in plan.gaps)


LONGCAT_SUBLAYERS = {
    "count": 2,
    "moe": "mlp",
    "moe_input": 0,
    "names": {
        "attention": "self_attn",
        "feed_forward": "mlps",
        "attention_norm": "input_layernorm",
        "ffn_norm": "post_attention_layernorm",
    },
}


def test_a_list_of_attention_sublayers_is_read_with_its_shortcut_moe() -> None:
    # LongCat-Flash: two attention sublayers (each with its own MLP and norms, items of module
    # lists) and a MoE reading the first MLP's normed input, added to the last residual sum
    features = analyze("longcat_flash")
    assert features.block.sublayers == LONGCAT_SUBLAYERS
    assert features.evidence["block.sublayers"].startswith("modeling_longcat_flash.py:444 ")
    assert not [u for u in features.unsupported if u.feature == "block.sublayers"]
    # the listed MLPs and norms are read too: no feature is left undetermined
    assert features.ffn.kind == "swiglu" and features.ffn.bias is False
    assert features.norm.kind == "rmsnorm" and features.norm.placement == "pre"
    assert "block.sublayers" in features.reference.delta
    assert not features.reference.unknown
    assert analyze("llama").block.sublayers is None


def test_a_renamed_copy_reads_the_same_sublayers(tmp_path) -> None:
    copy_path, _ = rename_model("longcat_flash", "zorblax", str(tmp_path))
    assert analyze(copy_path).block.sublayers == LONGCAT_SUBLAYERS


def test_the_moe_read_from_the_second_sublayer_is_read_so(tmp_path) -> None:
    copy_path, _ = rename_model("longcat_flash", "zorblax", str(tmp_path))
    source = Path(copy_path).read_text()
    moved = source.replace("        shortcut_mlp_output = self.mlp(hidden_states)\n", "").replace(
        "        hidden_states = self.mlps[1](hidden_states)\n",
        "        shortcut_mlp_output = self.mlp(hidden_states)\n"
        "        hidden_states = self.mlps[1](hidden_states)\n",
    )
    assert moved != source
    Path(copy_path).write_text(moved)
    assert analyze(copy_path).block.sublayers == {**LONGCAT_SUBLAYERS, "moe_input": 1}


def test_a_moe_output_a_later_sublayer_reads_is_one_unsupported_line(tmp_path) -> None:
    # the MoE's output joins the first sublayer's residual sum, so the second sublayer reads
    # it: not a shortcut to the layer's last sum
    copy_path, _ = rename_model("longcat_flash", "zorblax", str(tmp_path))
    source = Path(copy_path).read_text()
    moved = source.replace(
        "        hidden_states = self.mlps[0](hidden_states)\n",
        "        hidden_states = self.mlps[0](hidden_states) + shortcut_mlp_output\n",
    ).replace(
        "hidden_states = residual + hidden_states + shortcut_mlp_output",
        "hidden_states = residual + hidden_states",
    )
    assert moved.count("shortcut_mlp_output") == 2
    Path(copy_path).write_text(moved)
    features = analyze(copy_path)
    assert features.block.sublayers is None
    (gap,) = [u for u in features.unsupported if u.feature == "block.sublayer_wiring"]
    assert "2 attention sublayers per layer (self_attn.0, self_attn.1)" in gap.detail
    assert "MoE output is not added to the layer's last residual sum only" in gap.detail
