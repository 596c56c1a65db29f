"""Parts the facts cannot state are named unsupported, read from the code's structure:
DeepSeek-V4's attention (its compressed entries, pooled and picked by an indexer, its
low-rank query outside MLA, keys equal to values, the output's rotary slice rotated back and
its grouped two-stage output projection are facts, attention.compressed_kv,
attention.low_rank_q, attention.kv_same, attention.output_rotation and
attention.o_low_rank), its routers (sqrtsoftplus scores; their
table picks on the hash layers are a fact, tests/analyze/test_table_routing.py) and clamped
SwiGLU; learned one-element gains. Inkling's shared experts scored by the router, its
router's gain and its dense MLP's gain (built under mlp_layer_types only) are facts
(moe.scored_shared, moe.router_gain, ffn.output_gain), as is its normed embedding table
(tests/analyze/test_residual_convs.py). Each finding points at the line that does it; models
without the part (llama, deepseek_v3, qwen3_moe, gemma3, longcat_flash, jetmoe) get none of
them."""

from __future__ import annotations

import json
import linecache

import pytest
from analyze_helpers import rename_model

from codegen.analyze.analysis import analyze
from codegen.analyze.locate import model_type_files

pytest.importorskip("transformers.models.deepseek_v4")
pytest.importorskip("transformers.models.inkling")

FINDINGS = (
    "attention.compressed_kv",
    "moe.table_picks",  # table picks of another form (moe.table_routing is a fact)
    "moe.router_weights_module",
    "ffn.scalar_gain",
    "embedding.table_forward",
)


def _found(features) -> dict:
    return {u.feature: u for u in features.unsupported}


def _source_line(model_type: str, evidence: str) -> str:
    """The source line an evidence `modeling_x.py:N` points at."""
    name, line = evidence.split(" ", 1)[0].rstrip(",").split(":")
    modeling = model_type_files(model_type)[0]
    assert modeling.endswith(name)
    return linecache.getline(modeling, int(line))


@pytest.fixture(scope="module")
def deepseek_v4():
    return _found(analyze("deepseek_v4"))


@pytest.fixture(scope="module")
def inkling():
    return _found(analyze("inkling_text"))


def test_deepseek_v4_compressed_entries_are_a_fact_cited_where_the_code_does_them(deepseek_v4):
    """Both compressor kinds (the pooled one, and the overlapping one beside an indexer) are
    read (tests/analyze/test_pooled_compressor.py): nothing of the attention is left unread."""
    assert "attention.compressed_kv" not in deepseek_v4
    features = analyze("deepseek_v4")
    pooled = features.attention.compressed_kv
    assert (pooled["kind"], pooled["sparse"]["kind"]) == (
        "heavily_compressed_attention",
        "compressed_sparse_attention",
    )
    evidence = features.evidence["attention.compressed_kv"]
    assert "self.compressor(" in _source_line("deepseek_v4", evidence)


@pytest.mark.parametrize(
    ("feature", "code"),
    [
        ("ffn.clamp", "return self.down_proj(self.act_fn(gate) * up)"),
        ("ffn.experts_clamp", "return self.act_fn(gate) * up"),
    ],
)
def test_deepseek_v4_clamps_are_facts_cited_where_the_code_does_them(feature, code):
    # the shared MLP and the routed experts both clamp to config.swiglu_limit
    features = analyze("deepseek_v4")
    assert features.ffn.kind == "clamped_silu_glu" and features.ffn.source == "shared_expert"
    assert features.ffn.clamp == features.ffn.experts_clamp == "swiglu_limit"
    assert code in _source_line("deepseek_v4", features.evidence[feature])


def test_deepseek_v4_attention_forms_a_rule_builds_are_facts_cited_where_the_code_does_them():
    # the attention output's rotary slice turned back: the product with the negated sin
    features = analyze("deepseek_v4")
    assert features.attention.output_rotation == "inverse"
    evidence = features.evidence["attention.output_rotation"]
    assert "rope.float() * cos" in _source_line("deepseek_v4", evidence)
    # one tensor (kv_proj's, normed and rotated) handed to the attention as keys and values
    assert features.attention.kv_same is True
    assert "attention_interface(" in _source_line(
        "deepseek_v4", features.evidence["attention.kv_same"]
    )
    # the output projected per group of heads (o_a_proj, grouped), then mixed (o_b_proj)
    assert features.attention.o_low_rank == {
        "a": "o_a_proj",
        "b": "o_b_proj",
        "groups": "o_groups",
        "rank": "o_lora_rank",
    }
    assert "self.o_a_proj(grouped)" in _source_line(
        "deepseek_v4", features.evidence["attention.o_low_rank"]
    )
    # the query from a normed latent: q_a_proj -> q_a_norm -> q_b_proj -> weightless q_b_norm
    assert features.attention.low_rank_q == {
        "a": "q_a_proj",
        "a_norm": "q_a_norm",
        "b": "q_b_proj",
        "b_norm": "q_b_norm",
        "rank": "q_lora_rank",
        "eps": "rms_norm_eps",
        "b_norm_rounded": True,  # x * rsqrt(...).to(x.dtype): scaled in the query's dtype
    }
    assert "self.q_a_norm(self.q_a_proj(hidden_states))" in _source_line(
        "deepseek_v4", features.evidence["attention.low_rank_q"]
    )
    forms = {"attention.output_rotation", "attention.kv_same", "attention.o_low_rank"}
    forms |= {"attention.low_rank_q"}
    assert not forms & set(_found(features))


@pytest.mark.parametrize(
    ("feature", "code"),
    [
        ("moe.scored_shared", "self.shared_experts("),
        ("moe.router_gain", "self.global_scale.float()"),
    ],
)
def test_inkling_routing_parts_are_facts_cited_where_the_code_does_them(feature, code):
    features = analyze("inkling_text")
    assert not _found(features)
    assert code in _source_line("inkling_text", features.evidence[feature])


def test_inkling_scored_shared_experts_and_router_gain_are_read_from_structure():
    features = analyze("inkling_text")
    assert features.moe.scored_shared == {
        "module": "shared_experts",
        "count": "config.n_shared_experts",
        "gate": "gate_proj",
        "up": "up_proj",
        "down": "down_proj",
    }
    assert features.moe.num_experts == 256  # the router's last two rows score the shared
    assert features.moe.router_gain == "global_scale"
    # no layer builds the dense MLP as configured; mlp_layer_types can: its gain is read
    assert features.ffn.output_gain == "global_scale"


def test_a_dense_inkling_layer_reads_its_mlp_gain_and_the_routers(tmp_path):
    config = tmp_path / "config.json"
    config.write_text(
        json.dumps(
            {
                "model_type": "inkling_text",
                "num_hidden_layers": 2,
                "mlp_layer_types": ["dense", "sparse"],
                "layer_types": ["hybrid_sliding", "hybrid"],
            }
        )
    )
    features = analyze("inkling_text", str(config))
    assert not _found(features)
    assert features.ffn.output_gain == "global_scale"
    assert features.moe.router_gain == "global_scale"


@pytest.mark.parametrize(
    ("model_type", "expected"),
    [("deepseek_v4", set()), ("inkling_text", set())],
)
def test_a_renamed_copy_names_the_same_parts(tmp_path, model_type, expected):
    path, _ = rename_model(model_type, "zorblax", str(tmp_path))
    found = set(_found(analyze(path)))
    assert expected <= found
    assert found == set(_found(analyze(model_type)))


@pytest.mark.parametrize(
    "model_type",
    ["llama", "deepseek_v3", "qwen3_moe", "gemma3_text", "longcat_flash", "jetmoe"],
)
def test_models_without_these_parts_get_none(model_type):
    features = analyze(model_type)
    assert not set(_found(features)) & set(FINDINGS)
    assert features.ffn.kind != "clamped_silu_glu"
    attention = features.attention
    assert (attention.output_rotation, attention.kv_same, attention.o_low_rank) == (
        "none",
        False,
        None,
    )
    assert attention.low_rank_q is None  # deepseek_v3's latent query is MLA's


def test_a_clamp_to_a_finite_bound_on_a_later_layer_is_read(tmp_path):
    # Step-3.5 clamps only the layers its config bounds (the rest clamp at inf: no-ops)
    assert analyze("step3p5").ffn.kind == "swiglu"
    config = tmp_path / "config.json"
    config.write_text(
        json.dumps(
            {"model_type": "step3p5", "num_hidden_layers": 2, "swiglu_limits_shared": [0, 16]}
        )
    )
    features = analyze("step3p5", str(config))
    assert features.ffn.kind == "clamped_silu_glu"
    assert ".clamp(max=self.limit)" in _source_line("step3p5", features.evidence["ffn.kind"])
    # clamped after the silu, to a bound per layer: not DeepSeek-V4's form, named unsupported
    assert features.ffn.clamp is None
    assert "ffn.clamp" in _found(features)


def test_inkling_stacked_shared_experts_are_not_projections_of_the_routed():
    """Its shared experts (three stacked weights) are a whole set of experts, so the all-MoE
    config reads its FFN kind from the routed experts, not a product in the block itself."""
    features = analyze("inkling_text")
    assert features.ffn.kind == "swiglu"
