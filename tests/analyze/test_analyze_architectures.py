"""The full feature set of 25 real architectures of the installed transformers.

Every expected value below was checked against the HF source (modeling_*.py and the config
class defaults, since no config.json is given). Notes on the less obvious ones:

* attention.kind follows the *default config*: llama/qwen2/qwen3/gemma/olmo2/phi3/stablelm/
  cohere/granite/qwen2_moe/gpt_neox default to num_key_value_heads == num_attention_heads
  (MHA); falcon (multi_query=True) and dbrx (attn_config.kv_n_heads=1) are MQA.
* sliding window: mistral sliding_window=4096 on every layer; qwen2 use_sliding_window=False;
  gemma2/gemma3 alternate via layer_types; gpt_oss alternates sliding/full (window 128).
* glm4: partial_rotary_factor=0.5 set in Glm4Config.__post_init__, rotate_half on [..., 0::2]
  pairs (interleaved), post_self_attn/post_mlp layernorms around both sublayers (sandwich),
  fused gate_up_proj.
* stablelm/gpt_neox: partial_rotary_factor 0.25 from __post_init__ / rotary_pct default.
* cohere: use_qk_norm=False, parallel attention+MLP from one layernorm without bias,
  interleaved rope (repeat_interleave), logits * logit_scale.
* granite: attention_multiplier (custom scale), embedding/residual/logits multipliers.
* minimax: lightning (linear) attention layers mixed with softmax attention (hybrid); the
  residual is taken after the input norm and both adds are alpha/beta scaled (post-norm).
* ernie4_5_moe: softmax router, selection through moe_statics.e_score_correction_bias,
  renormalised by clamp(sum), layer 0 dense, one shared-expert MLP, interleaved rope.
* gpt_oss: top-k on logits then softmax over the k (renormalised), router bias, learned
  sinks (s_aux), experts with biases and an interleaved gate/up (x[..., ::2]) clamped swish
  (`other`), yarn rope, fused on-disk experts (no conversion entry).
* dbrx: Wqkv fused, LayerNorm(bias=False), experts as one GLU over stacked weights, softmax
  router normalised by a p-norm (moe_normalize_expert_weights=1).
"""

from __future__ import annotations

import pytest

from codegen.analyze.analysis import analyze

# feature -> value; `moe` None means dense.
_DENSE_LLAMA = {
    "category": "decoder",
    "attention.kind": "mha",
    "attention.qk_norm": "none",
    "attention.qkv_bias": False,
    "attention.o_bias": False,
    "attention.fused_qkv": False,
    "attention.sliding_window": "none",
    "attention.sinks": False,
    "attention.softcap": False,
    "attention.scale": "default",
    "rope.type": "default",
    "rope.partial_rotary": 1.0,
    "rope.interleaved": False,
    "rope.nope_layers": False,
    "ffn.kind": "swiglu",
    "ffn.bias": False,
    "ffn.fused_gate_up": False,
    "moe": None,
    "norm.kind": "rmsnorm",
    "norm.placement": "pre",
    "embedding.tied": False,
    "embedding.scale": False,
    "head.logit_softcap": False,
    "head.logit_scale": False,
    "head.bias": False,
    "block.residual_scale": False,
}


# the routed / shared experts' activation, HF's ACT2FN entry looked up by the config field
_BY_HIDDEN_ACT = {"activation": "silu", "field": "hidden_act"}


def _like(base: dict, **changes) -> dict:
    out = dict(base)
    for key, value in changes.items():
        out[key.replace("__", ".")] = value
    return out


EXPECTED: dict[str, dict] = {
    "llama": _like(_DENSE_LLAMA),
    "mistral": _like(_DENSE_LLAMA, attention__kind="gqa", attention__sliding_window="all"),
    "qwen2": _like(_DENSE_LLAMA, attention__qkv_bias=True),
    "qwen3": _like(_DENSE_LLAMA, attention__qk_norm="per_head"),
    "qwen3_moe": _like(
        _DENSE_LLAMA,
        ffn__experts_activation=_BY_HIDDEN_ACT,
        ffn__shared_activation=None,
        attention__kind="gqa",
        attention__qk_norm="per_head",
        moe={
            "num_experts": 128,
            "top_k": 8,
            "router": "softmax_topk",
            "score_func": "softmax",
            "router_bias": False,
            "router_fp32": False,
            "norm_topk_prob": False,
            "shared_experts": 0,
            "shared_expert_gate": False,
            "dense_layers": (),
            "expert_layout": "per_expert",
            "module_layout": "fused",
        },
    ),
    "gemma": _like(
        _DENSE_LLAMA,
        ffn__kind="geglu",
        norm__kind="rmsnorm_offset",
        embedding__tied=True,
        embedding__scale=True,
    ),
    "gemma2": _like(
        _DENSE_LLAMA,
        attention__kind="gqa",
        attention__sliding_window="pattern",
        attention__softcap=True,
        ffn__kind="geglu",
        norm__kind="rmsnorm_offset",
        norm__placement="sandwich",
        embedding__tied=True,
        embedding__scale=True,
        head__logit_softcap=True,
    ),
    "gemma3_text": _like(
        _DENSE_LLAMA,
        attention__kind="gqa",
        attention__qk_norm="per_head",
        attention__sliding_window="pattern",
        ffn__kind="geglu",
        norm__kind="rmsnorm_offset",
        norm__placement="sandwich",
        embedding__tied=True,
        embedding__scale=True,
    ),
    "olmo2": _like(_DENSE_LLAMA, attention__qk_norm="full", norm__placement="post"),
    "phi3": _like(_DENSE_LLAMA, attention__fused_qkv=True, ffn__fused_gate_up=True),
    "stablelm": _like(_DENSE_LLAMA, rope__partial_rotary=0.25, norm__kind="layernorm"),
    "cohere": _like(
        _DENSE_LLAMA,
        rope__interleaved=True,
        norm__kind="layernorm",
        norm__placement="parallel",
        embedding__tied=True,
        head__logit_scale=True,
    ),
    "granite": _like(
        _DENSE_LLAMA,
        attention__scale="custom",
        embedding__scale=True,
        head__logit_scale=True,
        block__residual_scale=True,
    ),
    "mixtral": _like(
        _DENSE_LLAMA,
        ffn__experts_activation=_BY_HIDDEN_ACT,
        ffn__shared_activation=None,
        attention__kind="gqa",
        moe={
            "num_experts": 8,
            "top_k": 2,
            "router": "softmax_topk",
            "router_bias": False,
            "router_fp32": False,
            "norm_topk_prob": True,
            "shared_experts": 0,
            "dense_layers": (),
            "expert_layout": "per_expert",
        },
    ),
    "qwen2_moe": _like(
        _DENSE_LLAMA,
        ffn__experts_activation=_BY_HIDDEN_ACT,
        ffn__shared_activation=_BY_HIDDEN_ACT,
        attention__qkv_bias=True,
        moe={
            "num_experts": 60,
            "top_k": 4,
            "router": "softmax_topk",
            "router_bias": False,
            "router_fp32": False,
            "norm_topk_prob": False,
            "shared_experts": 1,
            "shared_expert_gate": True,
            "dense_layers": (),
            "expert_layout": "per_expert",
        },
    ),
    "deepseek_v2": _like(
        _DENSE_LLAMA,
        attention__kind="mla",
        rope__partial_rotary=pytest.approx(64 / 192),
        rope__interleaved=True,
        moe={
            "num_experts": 64,
            "top_k": "unknown",  # num_experts_per_tok defaults to None in DeepseekV2Config
            "router": "softmax_topk",
            "router_bias": False,
            "router_fp32": True,  # hidden states and weight upcast before F.linear
            "routed_scaling": 1.0,
            "shared_experts": 1,
            "dense_layers": (),
            "expert_layout": "per_expert",
        },
    ),
    "deepseek_v3": _like(
        _DENSE_LLAMA,
        ffn__experts_activation=_BY_HIDDEN_ACT,
        ffn__shared_activation=_BY_HIDDEN_ACT,
        attention__kind="mla",
        rope__partial_rotary=pytest.approx(64 / 192),
        rope__interleaved=True,
        moe={
            "num_experts": 256,
            "top_k": 8,
            "router": "grouped_topk",
            "score_func": "sigmoid",
            "router_bias": True,
            "router_fp32": True,
            "norm_topk_prob": True,
            "routed_scaling": 2.5,
            "shared_experts": 1,
            "shared_expert_gate": False,
            "dense_layers": (0, 1, 2),
            "expert_layout": "per_expert",
        },
    ),
    "gpt_oss": _like(
        _DENSE_LLAMA,
        attention__kind="gqa",
        attention__qkv_bias=True,
        attention__o_bias=True,
        attention__sliding_window="pattern",
        attention__sinks=True,
        rope__type="yarn",
        ffn__kind="clamped_swiglu",
        ffn__bias=True,
        ffn__fused_gate_up=True,
        ffn__gate_up_layout="interleaved",
        ffn__experts_activation=None,  # a clamped sigmoid GLU written out, no lookup
        ffn__shared_activation=None,
        moe={
            "num_experts": 128,
            "top_k": 4,
            "router": "softmax_topk",
            "router_bias": False,
            "router_linear_bias": True,
            "norm_topk_prob": True,
            "shared_experts": 0,
            "expert_layout": "fused",
            "expert_bias": True,
        },
    ),
    "glm4": _like(
        _DENSE_LLAMA,
        attention__kind="gqa",
        attention__qkv_bias=True,
        rope__partial_rotary=0.5,
        rope__interleaved=True,
        ffn__fused_gate_up=True,
        norm__placement="sandwich",
    ),
    "minimax": _like(
        _DENSE_LLAMA,
        category="hybrid",
        attention__kind="gqa",
        norm__placement="post",
        # residual * alpha + sublayer * beta: the stream itself is scaled
        block__residual_scale="scaled_stream",
        moe={
            "num_experts": 8,
            "top_k": 2,
            "router": "softmax_topk",
            "norm_topk_prob": True,
            "shared_experts": 0,
            "expert_layout": "per_expert",
        },
    ),
    "ernie4_5_moe": _like(
        _DENSE_LLAMA,
        attention__kind="gqa",
        rope__interleaved=True,
        embedding__tied=True,
        moe={
            "num_experts": 64,
            "top_k": 6,
            "router": "softmax_topk",
            "router_bias": True,
            "norm_topk_prob": True,
            "shared_experts": 1,
            "dense_layers": (0,),
            "expert_layout": "per_expert",
        },
    ),
    "dbrx": _like(
        _DENSE_LLAMA,
        attention__kind="mqa",
        attention__fused_qkv=True,
        norm__kind="layernorm",
        moe={
            "num_experts": 4,
            "top_k": 1,
            "router": "softmax_topk",
            "norm_topk_prob": True,
            "expert_layout": "flat",  # w1/v1/w2: one [experts * ffn, hidden] matrix each
        },
    ),
    "gpt_neox": _like(
        _DENSE_LLAMA,
        attention__qkv_bias=True,
        attention__o_bias=True,
        attention__fused_qkv=True,
        rope__partial_rotary=0.25,
        ffn__kind="gelu_mlp",
        ffn__bias=True,
        norm__kind="layernorm",
        norm__placement="parallel",
    ),
    "falcon": _like(
        _DENSE_LLAMA,
        attention__kind="mqa",
        attention__fused_qkv=True,
        ffn__kind="gelu_mlp",
        norm__kind="layernorm",
        norm__placement="parallel",
        embedding__tied=True,
    ),
    "starcoder2": _like(
        _DENSE_LLAMA,
        attention__kind="gqa",
        attention__qkv_bias=True,
        attention__o_bias=True,
        ffn__kind="gelu_mlp",
        ffn__bias=True,
        norm__kind="layernorm",
        embedding__tied=True,
    ),
}

# Where the reference is unambiguous, the closest one and an empty delta.
EXACT_REFERENCE = {
    "llama": "llama",
    "qwen2": "qwen2",
    "qwen3": "qwen3",
    "qwen3_moe": "qwen3_moe",
    "deepseek_v3": "deepseek_v3",
}


@pytest.fixture(scope="module")
def analysed() -> dict:
    return {}


def _features(cache: dict, model_type: str):
    if model_type not in cache:
        cache[model_type] = analyze(model_type)
    return cache[model_type]


@pytest.mark.parametrize("model_type", sorted(EXPECTED))
def test_feature_set(model_type: str, analysed: dict) -> None:
    features = _features(analysed, model_type)
    expected = EXPECTED[model_type]
    got = {}
    for key, value in expected.items():
        if key == "moe":
            if value is None:
                got[key] = features.moe
            else:
                assert features.moe is not None, f"{model_type}: expected MoE"
                got[key] = {k: getattr(features.moe, k) for k in value}
        else:
            got[key] = features.get(key)
    assert got == expected


@pytest.mark.parametrize("model_type", sorted(EXPECTED))
def test_every_field_has_evidence(model_type: str, analysed: dict) -> None:
    features = _features(analysed, model_type)
    for key in EXPECTED[model_type]:
        if key == "moe":
            continue
        where = features.evidence.get(key)
        assert where, f"{model_type}: no evidence for {key}"
        assert ".py:" in where or where.startswith("config:"), where


@pytest.mark.parametrize("model_type", sorted({*EXPECTED, "dots3_note_text", "qwen2_moe"}))
def test_every_delta_feature_has_evidence(model_type: str, analysed: dict) -> None:
    """What the package's docstring cites for each rule it applies: a file:line or config
    field, never "?" (dots3's MoE layer condition and shared width had none)."""
    from codegen.scaffold.plan import _lookup

    features = _features(analysed, model_type)
    for key in features.reference.delta:
        where = _lookup(features.evidence, key)  # a section (`moe`): its first field's
        assert where and (".py:" in where or where.startswith("config:")), (key, where)


@pytest.mark.parametrize("model_type", sorted(EXACT_REFERENCE))
def test_reference_models_match_themselves(model_type: str, analysed: dict) -> None:
    features = _features(analysed, model_type)
    assert features.reference.closest == EXACT_REFERENCE[model_type]
    assert features.reference.delta == ()
    assert features.unsupported == ()


def test_unsupported_follows_the_rule_table(analysed: dict) -> None:
    """gpt_oss's sinks, expert biases and router bias are outside every reference but each
    has a rule, so nothing is unsupported; a value no rule realises (longrope) is listed,
    with its evidence and the reason rules/unsupported.py gives."""
    import dataclasses

    from codegen.analyze import support

    gpt_oss = _features(analysed, "gpt_oss")
    assert gpt_oss.unsupported == ()
    longrope = dataclasses.replace(gpt_oss, rope=dataclasses.replace(gpt_oss.rope, type="longrope"))
    (item,) = support.unsupported(longrope, [])
    assert item.feature == "rope.type"
    assert "longrope" in item.detail and "no rule yet" in item.detail
    assert item.evidence and item.evidence != "?"


def test_moe_dense_rule_and_evidence(analysed: dict) -> None:
    ds = _features(analysed, "deepseek_v3")
    assert ds.moe.dense_rule == "layer_idx >= config.first_k_dense_replace"
    assert ds.evidence["moe.router_bias"].startswith("modeling_deepseek_v3.py:")
    # the qwen3_moe rule combines mlp_only_layers and decoder_sparse_step
    q = _features(analysed, "qwen3_moe")
    assert "decoder_sparse_step" in q.moe.dense_rule and "mlp_only_layers" in q.moe.dense_rule


def test_router_fp32_cites_the_upcast_projection(analysed: dict) -> None:
    """The evidence of an fp32 router is the line projecting the upcast input; a router
    projecting in the model's dtype cites its router, not a cast elsewhere."""
    import linecache

    import transformers

    ds = _features(analysed, "deepseek_v2")
    name, line = ds.evidence["moe.router_fp32"].split(":")
    path = f"{transformers.__path__[0]}/models/deepseek_v2/{name}"
    assert "linear(" in linecache.getline(path, int(line)), linecache.getline(path, int(line))
    assert "float32" in linecache.getline(path, int(line))
    mixtral = _features(analysed, "mixtral")
    assert mixtral.evidence["moe.router_fp32"].startswith("modeling_mixtral.py:")


def test_checkpoint_keys_follow_transformers_conversion(analysed: dict) -> None:
    q = _features(analysed, "qwen3_moe")
    assert "mlp.experts.gate_up_proj" in q.state_dict.layer_keys
    assert "mlp.experts.{}.gate_proj.weight" in q.state_dict.checkpoint_layer_keys
    assert "mlp.experts.{}.up_proj.weight" in q.state_dict.checkpoint_layer_keys
    mixtral = _features(analysed, "mixtral")
    assert "block_sparse_moe.experts.{}.w1.weight" in mixtral.state_dict.checkpoint_layer_keys
    ds = _features(analysed, "deepseek_v3")
    assert "mlp.gate_proj.weight [layers 0-2]" in ds.state_dict.layer_keys
    assert "mlp.gate.e_score_correction_bias [layers 3-60]" in ds.state_dict.layer_keys
    assert ds.state_dict.prefix == "model.layers"


def test_tied_head_is_absent_from_the_checkpoint(analysed: dict) -> None:
    gemma = _features(analysed, "gemma")
    assert gemma.state_dict.tied_keys == ("lm_head.weight",)
    assert "lm_head.weight" not in gemma.state_dict.checkpoint_other_keys
    llama = _features(analysed, "llama")
    assert "lm_head.weight" in llama.state_dict.checkpoint_other_keys


def test_a_biased_output_head_is_found(analysed: dict) -> None:
    features = _features(analysed, "phi")
    assert features.head.bias is True
    assert features.evidence["head.bias"].startswith("modeling_phi.py:")


@pytest.mark.parametrize(("model_type", "on"), [("cohere", "logits"), ("minicpm3", "input")])
def test_the_logit_scale_site_is_the_one_hf_scales(analysed, model_type, on) -> None:
    """cohere scales the logits; MiniCPM3 scales the hidden states going into the head."""
    features = _features(analysed, model_type)
    assert (features.head.logit_scale, features.head.logit_scale_on) == (True, on)


@pytest.mark.parametrize(
    ("model_type", "kind", "evidence"),
    [
        ("minimax_m3_vl_text", "clamped_swiglu", ""),
        ("apertus", "xielu_mlp", ""),
        ("bitnet", "glu", ""),  # gated, relu2 on the gate
    ],
)
def test_an_ffn_no_rule_names_says_what_it_is(analysed, model_type, kind, evidence):
    features = _features(analysed, model_type)
    assert features.ffn.kind == kind
    assert features.evidence["ffn.kind"].endswith(evidence)


def test_an_ungated_mlp_with_a_plain_activation_is_an_mlp(analysed) -> None:
    features = _features(analysed, "opt")
    assert (features.ffn.kind, features.ffn.activation) == ("mlp", "relu")
    assert features.norm.eps == 1e-5  # nn.LayerNorm built without eps: torch's default


@pytest.mark.parametrize(
    ("model_type", "positions", "offset", "table"),
    [
        ("gpt2", "learned", 0, "transformer.wpe"),
        ("opt", "learned", 2, "model.decoder.embed_positions"),
        ("xglm", "sinusoidal", 2, ""),
        ("ctrl", "sinusoidal_pow", 0, ""),
        ("llama", "none", 0, ""),
    ],
)
def test_absolute_positions(analysed, model_type, positions, offset, table) -> None:
    embedding = _features(analysed, model_type).embedding
    assert (embedding.positions, embedding.position_offset) == (positions, offset)
    assert embedding.position_table == table


def test_a_sequential_ffn_keeps_its_indices_and_names_its_projections(analysed) -> None:
    """CTRL's FFN is nn.Sequential(Linear, ReLU, Linear): items 0 and 2 are two weights (not
    one per repeat), the first called is the up projection; its input norm is named by where
    it sits."""
    features = _features(analysed, "ctrl")
    assert "ffn.0.weight" in features.state_dict.checkpoint_layer_keys
    assert "ffn.2.weight" in features.state_dict.checkpoint_layer_keys
    assert not any("{}" in k for k in features.state_dict.checkpoint_layer_keys)
    assert features.ffn.block_names == (("up_proj", "ffn.0"), ("down_proj", "ffn.2"))
    assert dict(features.norm.block_names)["attention_norm"] == "layernorm1"


def test_conv1d_projections_are_stored_transposed_and_init_is_gpt2s(analysed) -> None:
    features = _features(analysed, "gpt2")
    assert features.state_dict.transposed_keys == (
        "attn.c_attn.weight",
        "attn.c_proj.weight",
        "mlp.c_fc.weight",
        "mlp.c_proj.weight",
    )
    assert features.block.scaled_residual_init is True
    assert features.block.scaled_residual_projections == ("attention", "ffn")
    assert _features(analysed, "opt").state_dict.transposed_keys == ()
    assert _features(analysed, "llama").block.scaled_residual_init is False


def test_nanochat_scales_only_the_attention_output_and_norms_the_embeddings(analysed) -> None:
    features = _features(analysed, "nanochat")
    # _init_weights: `if isinstance(module, NanoChatAttention): ... sqrt(2 * layers)` only
    assert features.block.scaled_residual_init is True
    assert features.block.scaled_residual_projections == ("attention",)
    assert features.embedding.norm is True
    assert features.evidence["embedding.norm"].startswith("modeling_nanochat.py:")
    assert _features(analysed, "llama").embedding.norm is False
    # its rotate_half returns cat((x2, -x1)): q/k turn the other way
    assert features.rope.reversed is True
    assert features.evidence["rope.reversed"].startswith("modeling_nanochat.py:")
    assert _features(analysed, "llama").rope.reversed is False


def test_an_activation_with_tensors_has_checkpoint_keys(analysed: dict) -> None:
    keys = _features(analysed, "apertus").state_dict.layer_keys
    assert {f"mlp.act_fn.{t}" for t in ("alpha_p", "alpha_n", "beta", "eps")} <= set(keys)


def test_sub_norms_before_the_output_projections_are_found(analysed: dict) -> None:
    features = _features(analysed, "bitnet")
    assert features.attention.sub_norm is True
    assert features.ffn.sub_norm is True
    assert features.ffn.activation == "relu2"
    assert features.evidence["attention.sub_norm"].startswith("modeling_bitnet.py:")
    assert features.evidence["ffn.sub_norm"].startswith("modeling_bitnet.py:")
    # QK-norms and block norms are not these, nor the pre-norm of a layer holding its
    # feed-forward inline (biogpt's final_layer_norm before fc1)
    for model_type in ("llama", "qwen3", "olmo2", "biogpt"):
        others = _features(analysed, model_type)
        assert (others.attention.sub_norm, others.ffn.sub_norm) == (False, False)


def test_a_first_layer_without_its_attention_norm_is_named(analysed: dict) -> None:
    # modernbert-decoder builds nn.Identity for layer 0's attention norm: the placement is
    # read from layer 1, the sublayer layer 0 leaves unnormed named
    features = _features(analysed, "modernbert-decoder")
    assert features.norm.placement == "pre"
    assert features.norm.first_layer_bare == ("attention",)
    assert features.evidence["norm.first_layer_bare"].startswith("modeling_modernbert_decoder.py:")
    assert _features(analysed, "llama").norm.first_layer_bare == ()


def test_differential_attention_reads_its_lambdas(analysed: dict) -> None:
    features = _features(analysed, "diffllama")
    assert not features.unsupported
    found = features.attention.differential
    # lambda_init_fn(layer_idx) inlined as an expression of the layer index
    assert found["lambda_init"] == "0.8 - 0.6 * math.exp(-0.3 * layer_id)"
    assert tuple(found["lambdas"]) == ("lambda_q1", "lambda_k1", "lambda_q2", "lambda_k2")
    assert found["init_std"] == "lambda_std_dev"
    assert features.attention.sub_norm is False  # its per-pair norm belongs to it
    assert features.evidence["attention.differential"].startswith("modeling_diffllama.py:")
    assert _features(analysed, "llama").attention.differential is None


def test_multimodal_follows_the_text_model(analysed: dict) -> None:
    f = analyze("gemma3")
    assert f.category == "multimodal"
    assert f.attention.qk_norm == "per_head"
    assert f.attention.sliding_window == "pattern"
    assert f.norm.placement == "sandwich"
    llava = analyze("llava")  # language_model = AutoModel.from_config(config.text_config)
    assert llava.category == "multimodal"
    assert llava.ffn.kind == "swiglu" and llava.norm.kind == "rmsnorm"
    assert any("followed statically into modeling_llama.py" in n for n in llava.notes)


@pytest.mark.parametrize(
    ("model_type", "category"),
    [
        ("mamba", "hybrid"),
        ("jamba", "hybrid"),
        ("falcon_h1", "hybrid"),  # a mamba mixer beside the attention in every layer
        # RG-LRU blocks (3-D gate weights run by a scan: a mixer, not experts) between attentions
        ("recurrent_gemma", "hybrid"),
        # the causal LM class takes image_pixel_values and audio_input_features
        ("phi4_multimodal", "multimodal"),
        ("bert", "encoder"),
        ("t5", "other"),
        ("vit", "other"),
    ],
)
def test_categories(model_type: str, category: str) -> None:
    assert analyze(model_type).category == category
