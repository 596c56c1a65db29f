"""Qwen3 reference against the real transformers Qwen3ForCausalLM.

Parity runs through the same oracle as `codegen verify`; seeded defects (QK-norm dropped,
sliding window ignored / off by one / on the wrong layers) check that verify catches each.
"""

from __future__ import annotations

import dataclasses
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from transformers import Qwen3Config
from transformers.masking_utils import sliding_window_causal_mask_function

from codegen.layers.rope import apply_rotary
from codegen.verify.cases import default_cases
from codegen.verify.hf_checkpoint import load_checkpoint, random_hf_model, save_checkpoint
from codegen.verify.run import Case, declined, verify_case
from codegen.verify.tiny_config import SEQ_LEN, WINDOW

from .args import ModelArgs
from .model import Attention, Model, sliding_window_mask
from .spec import SPEC

DTYPES = ["fp32", "bf16"]
MIXED = ["sliding_attention", "full_attention", "sliding_attention", "full_attention"]


def window_config(**overrides) -> Qwen3Config:
    """A toy whose window (8) is shorter than the test sequence (32), sliding layers first
    and interleaved with full ones, and head_dim (32) != hidden_size / heads (16)."""
    fields = dict(
        vocab_size=512,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=4,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=32,
        max_position_embeddings=128,
        use_sliding_window=True,
        sliding_window=WINDOW,
        layer_types=MIXED,
    )
    return Qwen3Config(**{**fields, **overrides})


def assert_passed(results) -> None:
    assert [r.dtype for r in results] == DTYPES
    for r in results:
        assert r.error is None, r.error
        assert r.missing_keys == [] and r.unexpected_keys == []
        assert r.roundtrip_exact
        assert r.relative_diff <= r.bound, (r.dtype, r.relative_diff, r.bound)
        assert r.passed, (r.case, r.dtype, r.first_divergence)


def seeded(**changes):
    """SPEC with its args mapped correctly and then changed: a seeded mapping defect."""

    def from_hf_config(hf_config):
        return dataclasses.replace(ModelArgs.from_hf_config(hf_config), **changes)

    return dataclasses.replace(SPEC, args=SimpleNamespace(from_hf_config=from_hf_config))


class AttentionWithoutQKNorm(Attention):
    """Seeded defect: q_norm / k_norm weights load, but forward never applies them."""

    def forward(self, x, rope, mask):
        batch, seq, _ = x.shape
        q = self.wq(x).view(batch, seq, self.n_heads, self.head_dim).transpose(1, 2)
        k = self.wk(x).view(batch, seq, self.n_kv_heads, self.head_dim).transpose(1, 2)
        v = self.wv(x).view(batch, seq, self.n_kv_heads, self.head_dim).transpose(1, 2)
        q, k = apply_rotary(q, *rope), apply_rotary(k, *rope)
        out = F.scaled_dot_product_attention(
            q, k, v, attn_mask=mask, is_causal=mask is None, enable_gqa=True
        )
        return self.wo(out.transpose(1, 2).reshape(batch, seq, -1))


class ModelWithoutQKNorm(Model):
    def __init__(self, args: ModelArgs):
        super().__init__(args)
        for layer in self.layers:
            layer.attention = AttentionWithoutQKNorm(args)


# --- parity -------------------------------------------------------------------------------


def test_default_cases_cover_tied_and_untied():
    assert {case.config.tie_word_embeddings for case in default_cases(SPEC)} == {True, False}


@pytest.mark.parametrize("case", default_cases(SPEC), ids=lambda case: case.label)
def test_parity_default_cases(case):
    results = verify_case(SPEC, case, DTYPES)
    if declined(results):
        pytest.skip(declined(results))
    assert_passed(results)


@pytest.mark.parametrize("bias", [False, True], ids=["no-bias", "attention_bias"])
def test_parity_sliding_window_mixed_layers(bias):
    config = window_config(attention_bias=bias)
    assert WINDOW < SEQ_LEN
    args = ModelArgs.from_hf_config(config)
    assert args.sliding_window == WINDOW and args.layer_types == tuple(MIXED)
    assert args.attention_bias is bias
    assert_passed(verify_case(SPEC, Case("window", config), DTYPES))


def test_dropped_qk_norm_fails_at_first_attention():
    defect = dataclasses.replace(SPEC, model=ModelWithoutQKNorm)
    (result,) = verify_case(defect, Case("window", window_config()), ["fp32"])
    assert not result.passed and result.error is None
    assert result.missing_keys == [] and result.unexpected_keys == []  # the logits fail it
    assert result.first_divergence.split()[0] == "layers.0.attention"


@pytest.mark.parametrize(
    "defect",
    [
        dict(layer_types=("full_attention",) * 4),  # window ignored
        dict(sliding_window=WINDOW + 1),  # i - j <= window instead of < window
        dict(layer_types=tuple(reversed(MIXED))),  # window on the wrong layers
    ],
    ids=["ignored", "one-too-wide", "wrong-layers"],
)
def test_window_defects_fail_verification(defect):
    (result,) = verify_case(seeded(**defect), Case("window", window_config()), ["fp32"])
    assert not result.passed and result.error is None
    assert result.missing_keys == [] and result.unexpected_keys == []
    assert result.first_divergence.split()[0] == "layers.0.attention"  # layer 0 slides


def test_window_mask_is_hf_mask_function():
    seq, window = 12, 5
    hf = sliding_window_causal_mask_function(window)
    index = torch.arange(seq)
    expected = hf(0, 0, index[:, None], index[None, :])  # HF's own (q_idx, kv_idx) -> bool
    assert torch.equal(sliding_window_mask(seq, window, torch.device("cpu")), expected)
    assert sliding_window_mask(window, window, torch.device("cpu")) is None  # nothing cut


def test_explicit_positions_match_hf_position_ids(tmp_path):
    config = window_config()
    hf_model = random_hf_model(config)
    save_checkpoint(hf_model, tmp_path)
    args, model, adapter = SPEC.build(config)
    model.load_state_dict(adapter.from_hf(load_checkpoint(tmp_path)), strict=True)
    model.eval()
    tokens = torch.randint(0, config.vocab_size, (2, SEQ_LEN), generator=torch.Generator())
    positions = torch.arange(SEQ_LEN).expand(2, -1) + 7  # offset: rope must use positions
    with torch.no_grad():
        expected = hf_model(input_ids=tokens, position_ids=positions).logits
        got = model(tokens, positions)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


# --- args mapping -------------------------------------------------------------------------


def test_args_from_real_config():
    config = Qwen3Config(
        vocab_size=1000,
        hidden_size=256,
        intermediate_size=512,
        num_hidden_layers=6,
        num_attention_heads=8,
        num_key_value_heads=2,
        head_dim=64,
        rms_norm_eps=1e-5,
        max_position_embeddings=4096,
        rope_parameters={"rope_type": "linear", "factor": 2.0, "rope_theta": 1e6},
        attention_bias=True,
        use_sliding_window=True,
        sliding_window=512,
        max_window_layers=4,
        tie_word_embeddings=True,
    )
    args = ModelArgs.from_hf_config(config)
    assert (args.dim, args.n_layers, args.n_heads, args.n_kv_heads) == (256, 6, 8, 2)
    assert (args.head_dim, args.hidden_dim, args.vocab_size) == (64, 512, 1000)
    assert args.norm_eps == 1e-5 and args.tie_word_embeddings and args.attention_bias
    assert (args.rope.rope_type, args.rope.theta, args.rope.factor) == ("linear", 1e6, 2.0)
    assert args.rope.max_position_embeddings == 4096
    assert args.sliding_window == 512
    assert args.layer_types == ("full_attention",) * 4 + ("sliding_attention",) * 2


def test_args_window_off_unless_use_sliding_window():
    args = ModelArgs.from_hf_config(Qwen3Config(num_hidden_layers=3, sliding_window=16))
    assert args.sliding_window is None and args.layer_types == ("full_attention",) * 3


PARTIAL_ROPE = dict(rope_type="linear", factor=2.0, rope_theta=1e4, partial_rotary_factor=0.5)


@pytest.mark.parametrize(
    "fields, error",
    [
        (dict(hidden_act="gelu"), NotImplementedError),
        (dict(num_hidden_layers=2, layer_types=["chunked_attention"] * 2), NotImplementedError),
        (dict(num_hidden_layers=2, layer_types=["sliding_attention"] * 2), ValueError),
        (dict(rope_parameters=PARTIAL_ROPE), NotImplementedError),
    ],
    ids=["hidden_act", "chunked-layer", "sliding-without-window", "partial-rotary"],
)
def test_args_unsupported_config_raises(fields, error):
    with pytest.raises(error):
        ModelArgs.from_hf_config(Qwen3Config(**fields))


# --- state-dict adapter -------------------------------------------------------------------


@pytest.mark.parametrize("tied", [False, True], ids=["untied", "tied"])
def test_adapter_round_trip(tmp_path, tied):
    config = window_config(tie_word_embeddings=tied, attention_bias=True)
    save_checkpoint(random_hf_model(config), tmp_path)
    checkpoint = load_checkpoint(tmp_path)
    assert ("lm_head.weight" in checkpoint) is not tied
    assert "model.layers.3.self_attn.o_proj.bias" in checkpoint
    assert "model.layers.3.self_attn.k_norm.weight" in checkpoint
    args, model, adapter = SPEC.build(config)
    house = adapter.from_hf(checkpoint)
    assert set(house) == set(model.state_dict())
    back = adapter.to_hf(house)
    assert set(back) == set(checkpoint)
    assert all(torch.equal(back[key], checkpoint[key]) for key in checkpoint)


def test_a_scaled_partial_rope_is_refused_in_one_line_naming_the_values():
    from codegen.verify.tiny_config import tiny_config

    rope = {"rope_type": "linear", "factor": 2.0, "rope_theta": 1e4, "partial_rotary_factor": 0.5}
    with pytest.raises(NotImplementedError) as refused:
        ModelArgs.from_hf_config(tiny_config("qwen3", rope_parameters=rope))
    message = str(refused.value)
    assert "\n" not in message and message.startswith("qwen3: rope_parameters {")
    assert "'partial_rotary_factor': 0.5" in message and "'linear'" in message
