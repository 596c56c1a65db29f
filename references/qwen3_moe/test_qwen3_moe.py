"""Qwen3-MoE reference against the real transformers model.

Parity through the verify protocol (fp32 and bf16, tied and untied, both `norm_topk_prob`
settings, HF's dense/sparse layer pattern), seeded MoE defects that must fail and be
located, the HF config mapping, and a check that the experts run batched.
"""

from __future__ import annotations

import dataclasses

import pytest
import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode
from transformers import Qwen3MoeConfig
from transformers.models.qwen3_moe.modeling_qwen3_moe import Qwen3MoeSparseMoeBlock

from codegen.layers.lifecycle import init_module_weights
from codegen.layers.rope import RopeScaling
from codegen.verify.cases import default_cases
from codegen.verify.run import Case, declined, verify_case
from codegen.verify.tiny_config import SEQ_LEN, tiny_config

from .args import ModelArgs
from .model import MoE
from .spec import SPEC

DTYPES = ["fp32", "bf16"]


def toy(**changes) -> Qwen3MoeConfig:
    """The verify toy config rebuilt through the config class with `changes` applied."""
    base = tiny_config("qwen3_moe").to_dict()
    for derived in ("transformers_version", "model_type", "_name_or_path"):
        base.pop(derived, None)
    return Qwen3MoeConfig(**{**base, **changes})


def run(config, spec=SPEC, dtypes=("fp32",)):
    return verify_case(spec, Case("test", config), list(dtypes))


def assert_passed(results):
    for result in results:
        assert result.error is None, result.error
        assert result.passed, result
        assert result.relative_diff <= result.bound
        assert result.missing_keys == [] and result.unexpected_keys == []
        assert result.roundtrip_exact is True


def first_moe_layer(config) -> int:
    args = ModelArgs.from_hf_config(config)
    return next(i for i in range(args.n_layers) if args.is_moe_layer(i))


# --- parity -------------------------------------------------------------------------------


@pytest.mark.parametrize("case", default_cases(SPEC), ids=lambda case: case.label)
def test_default_cases_pass_fp32_and_bf16(case):
    results = verify_case(SPEC, case, DTYPES)
    if declined(results):
        pytest.skip(declined(results))
    assert [r.dtype for r in results] == DTYPES
    assert_passed(results)


def test_default_cases_cover_tied_and_untied():
    ties = {case.config.tie_word_embeddings for case in default_cases(SPEC)}
    assert ties == {True, False}


@pytest.mark.parametrize("norm_topk_prob", [True, False])
def test_norm_topk_prob_both_settings_pass(norm_topk_prob):
    config = toy(norm_topk_prob=norm_topk_prob)
    assert config.norm_topk_prob is norm_topk_prob
    assert_passed(run(config, dtypes=DTYPES))


def test_toy_has_dense_and_moe_layers_and_a_short_window():
    config = tiny_config("qwen3_moe")
    _, model, _ = SPEC.build(config)
    kinds = [layer.is_moe for layer in model.layers]
    assert True in kinds and False in kinds
    for layer in model.layers:  # exactly one of the two feed-forwards per block
        assert hasattr(layer, "moe") != hasattr(layer, "feed_forward")
    assert model.args.sliding_window is not None and model.args.sliding_window < SEQ_LEN


@pytest.mark.parametrize(
    "changes",
    [
        {"num_hidden_layers": 6, "decoder_sparse_step": 2, "mlp_only_layers": [3]},
        {"num_hidden_layers": 4, "decoder_sparse_step": 3, "mlp_only_layers": []},
        {"num_hidden_layers": 4, "decoder_sparse_step": 1, "mlp_only_layers": [0, 2]},
    ],
)
def test_layer_pattern_matches_hf(changes):
    from transformers import AutoModelForCausalLM

    config = toy(**changes)
    hf = AutoModelForCausalLM.from_config(config)
    hf_kinds = [isinstance(layer.mlp, Qwen3MoeSparseMoeBlock) for layer in hf.model.layers]
    _, model, _ = SPEC.build(config)
    assert [layer.is_moe for layer in model.layers] == hf_kinds
    assert True in hf_kinds and False in hf_kinds


def test_irregular_layer_pattern_passes():
    assert_passed(run(toy(num_hidden_layers=6, decoder_sparse_step=2, mlp_only_layers=[3])))


def test_head_dim_other_than_hidden_over_heads_passes():
    config = toy(head_dim=32)  # real checkpoints: 2048 hidden, 32 heads, head_dim 128
    assert config.head_dim != config.hidden_size // config.num_attention_heads
    assert_passed(run(config))


def test_without_sliding_window_passes():
    config = toy(use_sliding_window=False)
    assert config.sliding_window is None
    assert_passed(run(config))


# --- seeded defects -----------------------------------------------------------------------


class SwappedExpertsAdapter(SPEC.adapter):
    """Stacks experts 0 and 1 in the wrong order (a classic MoE onboarding bug)."""

    def from_hf(self, hf_state_dict):
        state_dict = super().from_hf(hf_state_dict)
        for key, tensor in state_dict.items():
            if ".moe.experts." in key:
                state_dict[key] = tensor[[1, 0, *range(2, tensor.shape[0])]]
        return state_dict


def test_swapped_experts_fail_in_the_experts():
    config = tiny_config("qwen3_moe")
    (result,) = run(config, spec=dataclasses.replace(SPEC, adapter=SwappedExpertsAdapter))
    assert not result.passed
    assert result.first_divergence.startswith(f"layers.{first_moe_layer(config)}.moe.experts ")


def _topk_before_softmax(self, logits):
    weights, indices = logits.topk(self.top_k, dim=-1)
    return F.softmax(weights, dim=-1, dtype=torch.float32).to(logits.dtype), indices


def _norm_topk_prob_ignored(self, logits):
    weights, indices = F.softmax(logits, dim=-1, dtype=torch.float32).topk(self.top_k, dim=-1)
    return weights.to(logits.dtype), indices


@pytest.mark.parametrize(
    "route, norm_topk_prob",
    [
        # top-k then softmax equals softmax, top-k, renormalise: only visible without it
        (_topk_before_softmax, False),
        (_norm_topk_prob_ignored, True),
    ],
    ids=["topk-before-softmax", "norm-topk-prob-ignored"],
)
def test_router_defects_fail_in_the_moe_block(monkeypatch, route, norm_topk_prob):
    config = toy(norm_topk_prob=norm_topk_prob)
    monkeypatch.setattr(MoE, "route", route)
    (result,) = run(config)
    assert not result.passed and result.relative_diff > result.bound
    # The gate's logits still agree and the experts are handed other routing weights than
    # HF's (so they are no culprit): the defect is the MoE block's own routing code.
    assert result.first_divergence.startswith(f"layers.{first_moe_layer(config)}.moe (HF ")


def test_dropped_sliding_window_fails_in_the_first_attention():
    class NoWindowArgs(ModelArgs):
        @classmethod
        def from_hf_config(cls, hf_config):
            return dataclasses.replace(super().from_hf_config(hf_config), sliding_window=None)

    (result,) = run(tiny_config("qwen3_moe"), spec=dataclasses.replace(SPEC, args=NoWindowArgs))
    assert not result.passed
    assert result.first_divergence.startswith("layers.0.attention")


# --- args mapping ---------------------------------------------------------------------------


def test_args_from_real_hf_config():
    config = Qwen3MoeConfig(
        vocab_size=1000,
        hidden_size=256,
        intermediate_size=768,
        moe_intermediate_size=96,
        num_hidden_layers=5,
        num_attention_heads=8,
        num_key_value_heads=2,
        head_dim=64,  # deliberately != hidden_size // num_attention_heads
        rms_norm_eps=1e-5,
        max_position_embeddings=4096,
        rope_parameters={"rope_type": "default", "rope_theta": 1e6},
        attention_bias=True,
        use_sliding_window=True,
        sliding_window=512,
        tie_word_embeddings=True,
        num_experts=16,
        num_experts_per_tok=4,
        norm_topk_prob=True,
        decoder_sparse_step=2,
        mlp_only_layers=[3],
    )
    args = ModelArgs.from_hf_config(config)
    assert args == ModelArgs(
        dim=256,
        n_layers=5,
        n_heads=8,
        n_kv_heads=2,
        head_dim=64,
        hidden_dim=768,
        vocab_size=1000,
        norm_eps=1e-5,
        rope=RopeScaling(theta=1e6, max_position_embeddings=4096),
        attention_bias=True,
        sliding_window=512,
        tie_word_embeddings=True,
        num_experts=16,
        top_k=4,
        moe_hidden_dim=96,
        norm_topk_prob=True,
        decoder_sparse_step=2,
        mlp_only_layers=(3,),
    )
    assert [args.is_moe_layer(i) for i in range(5)] == [False, True, False, False, False]


def test_args_from_hf_defaults():
    config = Qwen3MoeConfig()
    args = ModelArgs.from_hf_config(config)
    assert args.head_dim == config.hidden_size // config.num_attention_heads
    assert args.sliding_window is None  # use_sliding_window defaults to False
    assert args.num_experts == config.num_experts == 128
    assert args.norm_topk_prob is False and args.mlp_only_layers == ()
    assert all(args.is_moe_layer(i) for i in range(args.n_layers))


def test_unsupported_activation_raises():
    with pytest.raises(NotImplementedError, match="hidden_act"):
        ModelArgs.from_hf_config(Qwen3MoeConfig(hidden_act="gelu"))


# --- batched experts ------------------------------------------------------------------------

_MATMULS = {"grouped_mm", "_grouped_mm", "linear", "matmul", "mm", "bmm", "__matmul__", "einsum"}


class _CountMatmuls(TorchFunctionMode):
    def __init__(self):
        super().__init__()
        self.calls: list[str] = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        name = getattr(func, "__name__", "")
        if name in _MATMULS:
            self.calls.append(name)
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize("tokens", [16, 256])
def test_experts_run_as_three_grouped_gemms_whatever_the_token_count(tokens):
    args = ModelArgs(dim=32, num_experts=8, top_k=2, moe_hidden_dim=16, norm_topk_prob=True)
    moe = MoE(args).eval()
    x = torch.randn(2, tokens // 2, args.dim, generator=torch.Generator().manual_seed(0))
    with torch.no_grad(), _CountMatmuls() as counter:
        moe(x)
    # the router's linear plus one grouped GEMM per weight (w1, w3, w2): no loop over
    # tokens, and not even over experts (F.grouped_mm shows up as torch._grouped_mm)
    assert counter.calls.count("linear") == 1
    grouped = [name for name in counter.calls if name != "linear"]
    assert len(grouped) == 3 and set(grouped) <= {"grouped_mm", "_grouped_mm"}, counter.calls


def test_batched_experts_equal_a_per_token_loop():
    args = ModelArgs(dim=32, num_experts=8, top_k=3, moe_hidden_dim=16, norm_topk_prob=False)
    moe = MoE(args).eval()
    torch.manual_seed(0)
    init_module_weights(moe, std=0.1)  # __init__ leaves the expert stacks uninitialised
    x = torch.randn(40, args.dim, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        weights, indices = moe.route(moe.gate(x))
        batched = moe.experts(x, indices, weights)
        experts = moe.experts
        expected = torch.stack(
            [
                sum(
                    weights[t, s]
                    * (F.silu(x[t] @ experts.w1[e].T) * (x[t] @ experts.w3[e].T))
                    @ experts.w2[e].T
                    for s, e in enumerate(indices[t].tolist())
                )
                for t in range(x.shape[0])
            ]
        )
    torch.testing.assert_close(batched, expected, rtol=1e-5, atol=1e-6)
