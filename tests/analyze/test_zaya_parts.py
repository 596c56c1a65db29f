"""zaya's parts are facts read from the code's structure, at the line that computes them: its
router (logits from an MLP over a down-projection, with a state handed between layers and a
skip class) is `moe.router_mlp`; the learned per-channel shift and scale of its embeddings
(`embedding.scale` 'learned_affine') and its fp32 residual stream (`block.residual_fp32`) are
facts (its attention's parts: test_zaya_attention_facts), so none is named unsupported; its
experts are counted from the experts, not the router's down-projection. A renamed copy reads
the same; models without them read none."""

from __future__ import annotations

import linecache

import pytest
from analyze_helpers import rename_model

from codegen.analyze.analysis import analyze
from codegen.analyze.locate import model_type_files

pytest.importorskip("transformers.models.zaya")

FINDINGS = (  # the names zaya's parts had while no rule realised them
    "moe.router_logits",
    "embedding.learned_scale",
    "attention.qkv_modules",
    "attention.convolutions",
)


@pytest.fixture(scope="module")
def zaya():
    return analyze("zaya")


def _found(features) -> dict:
    return {u.feature: u for u in features.unsupported}


def _line(evidence: str) -> str:
    name, line = evidence.split(" ", 1)[0].split(":")
    modeling = model_type_files("zaya")[0]
    assert modeling.endswith(name)
    return linecache.getline(modeling, int(line))


def test_no_part_is_named_unsupported(zaya):
    assert not zaya.unsupported, [u.feature for u in zaya.unsupported]


ROUTER = {
    "router": "gate",
    "down": "down_proj",
    "down_bias": True,
    "width": "router_hidden_size",
    "mlp": "router_mlp",
    "norm": "norm",
    "linears": ("fc1", "fc2", "out_proj"),
    "biases": (True, True, False),
    "activation": "gelu",
    "state_scale": "router_states_scale",
    "carried_from": 1,
    "skip_bias_init": -1.0,
    "skip_bias_on_load": -1.0,
}


def test_the_router_mlp_is_a_fact(zaya):
    """The logits of an MLP over a down-projection, the later layers adding the carried
    state times a per-channel vector, 17 rows for 16 experts: `moe.router_mlp`, no longer
    `moe.router_logits`."""
    assert zaya.moe.router_mlp == ROUTER
    assert "torch.softmax(router_logits" in _line(zaya.evidence["moe.router_mlp"])
    assert "moe.router_logits" not in _found(zaya)


def test_the_skip_bias_written_after_loading_is_read_from_init_weights(zaya):
    """`_init_weights` writes the skip class's bias by item assignment, which transformers
    runs after loading its own models' checkpoints (a renamed copy, custom code, is not)."""
    line = _line(zaya.evidence["moe.router_mlp.skip_bias_on_load"])
    assert "module.balancing_biases[-1] = -1.0" in line


def test_the_embeddings_shift_and_scale_is_a_fact(zaya):
    assert zaya.embedding.scale == "learned_affine"
    assert zaya.embedding.learned_affine == {
        "scale": "model.input_hidden_states_scale",
        "bias": "model.input_hidden_states_bias",
    }
    assert "self.input_hidden_states_scale" in _line(zaya.evidence["embedding.scale"])
    assert "embedding.learned_scale" not in _found(zaya)


def test_the_fp32_stream_is_a_fact(zaya):
    """Read at the assignment cast to fp32 (`((x + b) * s).to(torch.float32)`) before the
    layer loop."""
    assert zaya.block.residual_fp32 is True
    evidence = zaya.evidence["block.residual_fp32"]
    assert "hidden_states = ((hidden_states" in _line(evidence), evidence


def test_the_experts_are_counted_by_the_experts(zaya):
    assert zaya.moe.num_experts == 16  # the router's down-projection is 256 wide


def test_a_renamed_copy_names_the_same_parts(tmp_path, zaya):
    path, _ = rename_model("zaya", "zorblax", str(tmp_path))
    renamed = analyze(path)
    assert set(_found(renamed)) == set(_found(zaya))
    assert not set(_found(renamed)) & set(FINDINGS)
    assert renamed.embedding.learned_affine == zaya.embedding.learned_affine
    # custom code: transformers skips `_init_weights` for its modules with every tensor loaded
    assert renamed.moe.router_mlp == ROUTER | {"skip_bias_on_load": None}
    assert renamed.block.residual_fp32 is True


@pytest.mark.parametrize(
    "model_type", ["llama", "qwen3_moe", "deepseek_v3", "deepseek_v32", "deepseek_v4"]
)
def test_models_without_these_parts_get_none(model_type):
    """deepseek_v4's compressor extends the keys (attention.compressed_kv names it)."""
    features = analyze(model_type)
    assert not set(_found(features)) & set(FINDINGS)
    assert features.embedding.learned_affine is None
    assert features.moe is None or features.moe.router_mlp is None
    assert features.block.residual_fp32 is False
