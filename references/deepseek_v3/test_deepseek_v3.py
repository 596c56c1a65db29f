"""DeepSeek-V3 reference: parity with transformers for every MLA / MoE variant it claims, and
seeded defects (router bias, yarn scaling, partial rotary, grouped top-k) that must fail."""

from __future__ import annotations

import dataclasses
import tempfile
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM

from codegen.layers.rope import RotaryEmbedding, apply_rotary
from codegen.models import load_spec
from codegen.verify.cases import default_cases
from codegen.verify.compare import compare
from codegen.verify.hf_checkpoint import load_checkpoint, random_hf_model, save_checkpoint
from codegen.verify.run import BATCH, Case, declined, verify_case
from codegen.verify.tiny_config import ORIGINAL_CONTEXT, SEQ_LEN, hf_config_class, tiny_config

SPEC = load_spec("deepseek_v3")
YARN = {
    "rope_type": "yarn",
    "rope_theta": 10000.0,
    "factor": 4.0,
    "original_max_position_embeddings": ORIGINAL_CONTEXT,  # shorter than SEQ_LEN
    "mscale": 1.0,
    "mscale_all_dim": 0.5,  # != mscale, so yarn's cos/sin attention factor is not 1
    "beta_fast": 32.0,
    "beta_slow": 1.0,
}


def yarn_config():
    return variant(rope_parameters=dict(YARN), max_position_embeddings=4 * ORIGINAL_CONTEXT)


def variant(**changes):
    """The toy deepseek_v3 config with `changes`, rebuilt through the config class."""
    toy = tiny_config("deepseek_v3").to_dict()
    for derived in ("transformers_version", "model_type", "qk_head_dim"):
        toy.pop(derived, None)
    return hf_config_class("deepseek_v3")(**{**toy, **changes})


def passes(config, label, dtypes=("fp32", "bf16")):
    results = verify_case(SPEC, Case(label, config), list(dtypes))
    for result in results:
        assert result.passed, result
        assert result.relative_diff <= result.bound
        assert not result.missing_keys and not result.unexpected_keys
        assert result.roundtrip_exact
    return results


def fails(spec, config):
    (result,) = verify_case(spec, Case("seeded", config), ["fp32"])
    assert not result.passed and result.error is None, result
    assert not result.missing_keys and not result.unexpected_keys  # a numeric defect
    return result.first_divergence


# ---- parity ---------------------------------------------------------------------------


@pytest.mark.parametrize("case", default_cases(SPEC), ids=lambda case: case.label)
def test_parity_default_cases(case):
    results = verify_case(SPEC, case, ["fp32", "bf16"])
    if declined(results):
        pytest.skip(declined(results))
    for result in results:
        assert result.passed, result


def test_default_cases_cover_tied_heads_dense_and_moe_layers():
    cases = default_cases(SPEC)
    assert {case.config.tie_word_embeddings for case in cases} == {True, False}
    config = cases[0].config
    assert 0 < config.first_k_dense_replace < config.num_hidden_layers
    assert config.q_lora_rank is not None and config.rope_interleave
    assert config.n_group > config.topk_group > 0 and config.num_experts_per_tok > 1
    dense = config.first_k_dense_replace
    expected = ["dense"] * dense + ["moe"] * (config.num_hidden_layers - dense)
    model = SPEC.model(SPEC.args.from_hf_config(config))
    assert ["moe" if hasattr(layer, "moe") else "dense" for layer in model.layers] == expected
    hf_layers = AutoModelForCausalLM.from_config(config).model.layers
    assert ["moe" if hasattr(layer.mlp, "gate") else "dense" for layer in hf_layers] == expected


def test_plain_q_proj_when_q_lora_rank_is_none():
    config = variant(q_lora_rank=None)
    passes(config, "q_lora_rank=None")
    attention = SPEC.model(SPEC.args.from_hf_config(config)).layers[0].attention
    assert hasattr(attention, "wq") and not hasattr(attention, "wq_a")


def test_half_split_rope_when_not_interleaved():
    passes(variant(rope_interleave=False), "rope_interleave=False")


def test_groups_of_four_are_scored_by_their_top_two():
    """The toy's groups hold 2 experts, where "sum of the top 2" and "sum of the group" agree;
    groups of 4 tell them apart. (bf16 of this case: see the from_pretrained test below.)"""
    passes(variant(n_group=2, topk_group=1), "groups of 4", dtypes=("fp32",))


def test_attention_bias_variant():
    passes(variant(attention_bias=True), "attention_bias", dtypes=("fp32",))


def test_yarn_with_mscale_beyond_the_original_context():
    config = yarn_config()
    assert SEQ_LEN > config.rope_parameters["original_max_position_embeddings"]
    passes(config, "yarn")
    model = SPEC.model(SPEC.args.from_hf_config(config))
    qk_head_dim = config.qk_nope_head_dim + config.qk_rope_head_dim
    assert model.layers[0].attention.scale > qk_head_dim**-0.5  # softmax mscale**2 is on
    cos, _ = model.rotary(torch.zeros(1, 1, dtype=torch.long))
    assert cos.max().item() > 1.01  # the cos/sin attention factor mscale / mscale_all_dim is on


@pytest.mark.parametrize("changes", [{}, {"n_group": 2, "topk_group": 1}], ids=["toy", "groups4"])
def test_bf16_matches_hf_loaded_the_usual_way(changes):
    """HF keeps e_score_correction_bias (and its rope frequencies) in fp32 when loading in
    bf16 (`_keep_in_fp32_modules_strict`); so does the house model after `.to(bf16)`.
    verify's bf16 reference is `hf_model.to(bf16)` instead, which also rounds HF's rope
    inv_freq buffer to bf16; against the model users actually load, bf16 is exact."""
    config = variant(**changes)
    with tempfile.TemporaryDirectory() as directory:
        save_checkpoint(random_hf_model(config), Path(directory))
        checkpoint = load_checkpoint(Path(directory))
        hf_model = AutoModelForCausalLM.from_pretrained(directory, dtype=torch.bfloat16).eval()
    args, model, adapter = SPEC.build(config)
    model.load_state_dict(adapter.from_hf(checkpoint), strict=True)
    model.eval().to(torch.bfloat16)
    hf_gate, gate = hf_model.model.layers[1].mlp.gate, model.layers[1].moe.gate
    assert hf_gate.e_score_correction_bias.dtype == torch.float32
    assert gate.e_score_correction_bias.dtype == torch.float32
    assert gate.weight.dtype == torch.bfloat16
    assert torch.equal(gate.e_score_correction_bias, hf_gate.e_score_correction_bias)
    tokens = torch.randint(0, config.vocab_size, (BATCH, SEQ_LEN))
    with torch.no_grad():
        comparison = compare(model(tokens), hf_model(input_ids=tokens).logits)
    assert comparison.cosine >= 0.99999, comparison


# ---- args -----------------------------------------------------------------------------


def test_args_map_every_structural_field():
    config = variant(
        hidden_size=96,
        num_hidden_layers=5,
        num_attention_heads=6,
        vocab_size=1000,
        rms_norm_eps=1e-5,
        tie_word_embeddings=True,
        q_lora_rank=24,
        kv_lora_rank=12,
        qk_nope_head_dim=10,
        qk_rope_head_dim=4,
        v_head_dim=6,
        attention_bias=True,
        rope_parameters=dict(YARN),
        rope_interleave=False,
        intermediate_size=200,
        first_k_dense_replace=2,
        n_routed_experts=12,
        num_experts_per_tok=3,
        moe_intermediate_size=20,
        n_shared_experts=2,
        n_group=3,
        topk_group=2,
        norm_topk_prob=False,
        routed_scaling_factor=1.5,
    )
    args = SPEC.args.from_hf_config(config)
    assert (args.dim, args.n_layers, args.n_heads, args.vocab_size) == (96, 5, 6, 1000)
    assert (args.norm_eps, args.tie_word_embeddings) == (1e-5, True)
    assert (args.q_lora_rank, args.kv_lora_rank) == (24, 12)
    assert (args.qk_nope_head_dim, args.qk_rope_head_dim, args.v_head_dim) == (10, 4, 6)
    assert args.attention_bias and not args.rope_interleave
    assert (args.rope.rope_type, args.rope.factor, args.rope.mscale_all_dim) == ("yarn", 4.0, 0.5)
    assert (args.hidden_dim, args.n_dense_layers, args.moe_hidden_dim) == (200, 2, 20)
    assert (args.n_routed_experts, args.n_activated_experts, args.n_shared_experts) == (12, 3, 2)
    assert (args.n_expert_groups, args.n_limited_groups) == (3, 2)
    assert (args.norm_topk_prob, args.route_scale) == (False, 1.5)


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"hidden_act": "gelu"}, "hidden_act"),
        ({"n_group": 3}, "n_group"),  # 16 experts do not split into 3 groups
        ({"n_group": 16, "topk_group": 2}, "groups of >= 2"),  # HF scores a group by its top 2
        ({"rope_parameters": {**YARN, "factor": None}}, "factor"),
    ],
)
def test_unsupported_settings_fail_loudly(changes, message):
    with pytest.raises(NotImplementedError, match=message):
        SPEC.args.from_hf_config(variant(**changes))


# ---- seeded defects: verify must fail and name the module that carries the bug --------


def seeded(mutate):
    """SPEC whose model is mutated by `mutate(model)` once its checkpoint is loaded."""

    def build(args):
        model = SPEC.model(args)
        model.register_load_state_dict_post_hook(lambda module, _: mutate(module))
        return model

    return dataclasses.replace(SPEC, model=build)


def modules(model, kind):
    return [module for module in model.modules() if type(module).__name__ == kind]


def drop_correction_bias(model):
    for gate in modules(model, "Gate"):
        gate.e_score_correction_bias.zero_()


def ignore_expert_groups(model):
    for gate in modules(model, "Gate"):
        gate.topk_groups = gate.n_groups


def ignore_yarn_attention_factor(model):
    model.rotary.rope = dataclasses.replace(model.rotary.rope, attention_factor=1.0)


def ignore_softmax_mscale(model):
    for attention in modules(model, "Attention"):
        attention.scale = (attention.nope_dim + attention.rope_dim) ** -0.5


def rope_on_the_whole_head(model):
    """Partial rotary ignored: RoPE turns all qk_head_dim dims of q and k (half-split)."""

    def forward(self, x, rope):
        batch, seq, _ = x.shape
        q = self.wq_b(self.q_norm(self.wq_a(x))).view(batch, seq, self.n_heads, -1)
        kv, k_pe = self.wkv_a(x).split([self.kv_lora_rank, self.rope_dim], dim=-1)
        kv = self.wkv_b(self.kv_norm(kv)).view(batch, seq, self.n_heads, -1).transpose(1, 2)
        k_nope, v = kv.split([self.nope_dim, self.v_head_dim], dim=-1)
        k = torch.cat((k_nope, k_pe[:, None].expand(-1, self.n_heads, -1, -1)), dim=-1)
        q, k = apply_rotary(q.transpose(1, 2), *rope), apply_rotary(k, *rope)
        out = torch.nn.functional.scaled_dot_product_attention(
            q, k, v, is_causal=True, scale=self.scale
        )
        return self.wo(out.transpose(1, 2).reshape(batch, seq, -1))

    model.rotary = RotaryEmbedding(model.rotary.rope, model.args.qk_head_dim)
    for attention in modules(model, "Attention"):
        attention.forward = forward.__get__(attention)


def test_dropped_router_correction_bias_fails_in_the_moe():
    assert fails(seeded(drop_correction_bias), tiny_config("deepseek_v3")).startswith(
        "layers.1.moe"
    )


def test_ignored_expert_groups_fail_in_the_moe():
    assert fails(seeded(ignore_expert_groups), tiny_config("deepseek_v3")).startswith(
        "layers.1.moe"
    )


@pytest.mark.parametrize("defect", [ignore_yarn_attention_factor, ignore_softmax_mscale])
def test_ignored_yarn_scaling_fails_in_attention(defect):
    config = yarn_config()
    assert fails(seeded(defect), config).startswith("layers.0.attention ")


def test_rope_on_the_whole_qk_head_fails_in_attention():
    divergence = fails(seeded(rope_on_the_whole_head), tiny_config("deepseek_v3"))
    assert divergence.startswith("layers.0.attention ")
