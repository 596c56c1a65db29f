"""The oracle's former blind spots, each closed and proven by a seeded defect.

Each test seeds one realistic onboarding bug into a reference or a freshly scaffolded
package and checks that verify fails in the dtypes where the bug is visible (fp32 and bf16
unless the bug is a bf16 rounding) and names the stage that carries it. The blind spots:
symmetric toy sizes, activations below every cap, one sequence length from position 0,
loose fixed thresholds, divergence names paired by checkpoint key, forward-only checks
(gradients), and the import-only direction of the adapter (export).
"""

from __future__ import annotations

import dataclasses
import math
import shutil
import sys
from pathlib import Path

import pytest
import torch

from codegen.adapter import StateDictAdapter
from codegen.cli import main
from codegen.layers import rope as rope_module
from codegen.models import load_spec
from codegen.verify.run import Case, verify_case
from codegen.verify.tiny_config import ORIGINAL_CONTEXT, tiny_config

LLAMA = load_spec("llama")
BOTH = ("fp32", "bf16")


def run(spec, config, dtypes=BOTH, **kwargs):
    return verify_case(spec, Case("seeded", config), list(dtypes), **kwargs)


def assert_caught(results, where: str) -> None:
    """Every dtype fails; every dtype whose logits show the bug names `where` (in bf16 a
    small bug can sit under rounding noise and fail through the fp32 gradient check)."""
    for result in results:
        assert not result.passed, (result.dtype, "passed")
        shown = result.relative_diff > result.bound or result.dtype == "fp32"
        if shown:
            assert result.first_divergence and where in result.first_divergence, (
                result.dtype,
                result.first_divergence,
            )


def _patch_house_sdpa(monkeypatch, spec, **forced) -> None:
    """Force keyword arguments of the package's SDPA calls (HF's own calls untouched)."""
    module = sys.modules[spec.model.__module__]
    real = torch.nn.functional.scaled_dot_product_attention

    class Functional:
        def __getattr__(self, name):
            return getattr(torch.nn.functional, name)

        @staticmethod
        def scaled_dot_product_attention(*args, **kwargs):
            return real(*args, **{**kwargs, **forced})

    monkeypatch.setattr(module, "F", Functional())


# --- symmetric toy sizes -------------------------------------------------------------


def test_attention_scale_from_hidden_over_heads_instead_of_head_dim(monkeypatch):
    """A port that scales scores by 1/sqrt(hidden/heads): identical while head_dim equals
    hidden/heads (every symmetric toy), wrong on the checkpoints where it does not."""
    config = tiny_config("llama")
    assert config.head_dim != config.hidden_size // config.num_attention_heads
    derived = 1 / math.sqrt(config.hidden_size // config.num_attention_heads)
    _patch_house_sdpa(monkeypatch, LLAMA, scale=derived)
    assert_caught(run(LLAMA, config), "layers.0.attention")


def test_experts_stacked_in_string_order(monkeypatch):
    """With 16 experts, stacking by the key's text order ("10" < "2") swaps experts."""
    import codegen.adapter as adapter_module

    def stack(key, by_index):
        return torch.stack([by_index[i] for i in sorted(by_index, key=str)])

    spec = load_spec("qwen3_moe")
    config = tiny_config("qwen3_moe")
    monkeypatch.setattr(adapter_module, "_stack_experts", stack)
    results = run(spec, config)
    for result in results:
        assert not result.passed
        assert ".moe" in result.first_divergence, result.first_divergence


# --- one sequence length, positions from 0 -----------------------------------------------


def dynamic_config():
    config = tiny_config("llama")
    config.rope_parameters = {"rope_type": "dynamic", "rope_theta": 10000.0, "factor": 32.0}
    config.max_position_embeddings = ORIGINAL_CONTEXT
    return config


def test_positions_ignored():
    """A port that always counts positions from 0. Pure RoPE is relative, so an offset is
    invisible to it; where the absolute position matters (dynamic NTK sizes its base from
    the largest position) the long input, whose positions start at 5, shows it."""

    class NoPositions(LLAMA.model):
        def forward(self, tokens, positions=None):
            return super().forward(tokens)

    results = run(dataclasses.replace(LLAMA, model=NoPositions), dynamic_config())
    assert_caught(results, "layers.0.attention")
    assert all("long@" in r.first_divergence for r in results if r.first_divergence)


def test_dynamic_ntk_applied_inside_the_original_context(monkeypatch):
    """Dynamic NTK grows the base only beyond max_position_embeddings; a port that always
    grows it passes every test sequence longer than the context, and fails the short one."""
    config = dynamic_config()
    assert all(r.passed for r in run(LLAMA, config))  # control

    dynamic = rope_module.FREQUENCY_RULES["dynamic"]

    def always(rope, dim, seq_len):
        return dynamic(rope, dim, max(seq_len, rope.max_position_embeddings + 1))

    monkeypatch.setitem(rope_module.FREQUENCY_RULES, "dynamic", always)
    results = run(LLAMA, config, ["fp32"])  # under bf16 rounding noise on 6 tokens
    assert_caught(results, "layers.0.attention")
    assert all("short" in r.first_divergence for r in results)


# --- loose comparisons ------------------------------------------------------------------


def test_dropped_causal_mask_fails_in_bf16_too(monkeypatch):
    _patch_house_sdpa(monkeypatch, LLAMA, is_causal=False)
    assert_caught(run(LLAMA, tiny_config("llama")), "layers.0.attention")


def test_thresholds_come_from_hf_noise_and_stay_tight():
    (fp32, bf16) = run(LLAMA, tiny_config("llama"), gradients=False, export=False)
    assert fp32.passed and bf16.passed
    assert 0 < fp32.hf_noise < 1e-5 and fp32.bound <= 1e-5
    assert bf16.hf_noise < 0.05 and bf16.bound <= 2 * bf16.hf_noise + 1e-12


# --- gradients and export ---------------------------------------------------------------


def test_detached_branch_fails_gradient_parity_only():
    """Forward identical, backward not: the attention branch is cut from the graph."""
    attention = type(LLAMA.model(LLAMA.args.from_hf_config(tiny_config("llama"))).layers[0])

    class Detached(attention):
        def forward(self, x, rope):
            h = x + self.attention(self.attention_norm(x), rope).detach()
            return h + self.feed_forward(self.ffn_norm(h))

    class Model(LLAMA.model):
        def __init__(self, args):
            super().__init__(args)
            self.layers[0].__class__ = Detached

    (result,) = run(dataclasses.replace(LLAMA, model=Model), tiny_config("llama"), ["fp32"])
    assert result.first_divergence is None and result.relative_diff <= result.bound
    assert not result.passed and result.gradients_match is False
    assert result.first_gradient_divergence.startswith("model.layers.0.self_attn.")


def test_tied_head_counted_once_in_backward():
    """A tied head fed a detached copy of the embedding: same logits, but the embedding's
    gradient misses the head's share."""

    class Model(LLAMA.model):
        def forward(self, tokens, positions=None):
            weight = self.output.weight
            self.output.weight = torch.nn.Parameter(weight.detach(), requires_grad=False)
            try:
                return super().forward(tokens, positions)
            finally:
                self.output.weight = weight

    config = tiny_config("llama", tie_word_embeddings=True)
    (result,) = run(dataclasses.replace(LLAMA, model=Model), config, ["fp32"])
    assert result.relative_diff <= result.bound
    assert not result.passed
    assert result.first_gradient_divergence.startswith("model.embed_tokens.weight")


def test_scale_folded_at_load_and_not_unfolded_on_export():
    """A port that folds a scale into a stored weight when loading (and divides it out in
    forward) computes the right logits, and its round trip through the adapter alone is
    exact; exporting its own weights back to HF is not."""

    class Model(LLAMA.model):
        def __init__(self, args):
            super().__init__(args)
            self._register_load_state_dict_pre_hook(self._fold)

        def _fold(self, state_dict, prefix, *args):
            key = prefix + "norm.weight"
            if key in state_dict:
                state_dict[key] = state_dict[key] * 2

        def forward(self, tokens, positions=None):
            with torch.no_grad():
                self.norm.weight.div_(2)
            try:
                return super().forward(tokens, positions)
            finally:
                with torch.no_grad():
                    self.norm.weight.mul_(2)

    (result,) = run(
        dataclasses.replace(LLAMA, model=Model), tiny_config("llama"), ["fp32"], gradients=False
    )
    assert result.roundtrip_exact and result.relative_diff <= result.bound
    assert result.export_matches is False and not result.passed


# --- generated packages: caps, embedding scale, names paired by structure -----------------


@pytest.fixture(scope="module")
def generated(tmp_path_factory) -> Path:
    models = tmp_path_factory.mktemp("teeth") / "models"
    for model_type in ("gemma", "gemma2", "mixtral", "gpt_oss", "qwen2_moe"):
        assert main(["scaffold", model_type, "--out", str(models)]) == 0
    return models


def seeded(generated: Path, tmp_path: Path, name: str, text: str, replacement: str):
    models = tmp_path / "models"
    shutil.copytree(generated, models)
    path = models / name / "model.py"
    source = path.read_text()
    assert text in source, f"{name}/model.py no longer contains {text!r}"
    path.write_text(source.replace(text, replacement))
    return load_spec(name, models)


def test_embedding_scale_not_rounded_to_the_dtype(generated, tmp_path):
    """HF Gemma multiplies by sqrt(hidden) rounded to the hidden dtype; sqrt(96) is not a
    bf16 number, so a port using the Python float differs in bf16 (and nowhere else), and
    the embedding stage is named although HF scales inside its embedding module."""
    spec = seeded(
        generated,
        tmp_path,
        "gemma",
        "h * torch.tensor(self.args.dim**0.5, dtype=h.dtype)",
        "h * self.args.dim**0.5",
    )
    fp32, bf16 = run(spec, tiny_config("gemma"), gradients=False, export=False)
    assert fp32.passed
    assert not bf16.passed and bf16.first_divergence.startswith("embedding")


def test_gelu_instead_of_tanh_gelu_fails_in_fp32(generated, tmp_path):
    """Within bf16 rounding (~1e-2) in bf16, but far above HF's own fp32 noise."""
    spec = seeded(
        generated,
        tmp_path,
        "gemma",
        "self.act(self.w1(x))",  # the config's gelu_pytorch_tanh, through activations.py
        "F.gelu(self.w1(x))",
    )
    (result,) = run(spec, tiny_config("gemma"), ["fp32"], gradients=False, export=False)
    assert not result.passed and "feed_forward" in result.first_divergence


@pytest.mark.parametrize(
    ("text", "replacement", "where"),
    [
        ("(scores / self.softcap).tanh_()", "scores / self.softcap", "attention"),
        ("self.softcap = args.attn_softcap", "self.softcap = 2 * args.attn_softcap", "attention"),
        ("logits.div_(cap).tanh_().mul_(cap)", "logits", "post-processing"),
    ],
    ids=["attention-softcap-dropped", "attention-softcap-wrong", "final-softcap-dropped"],
)
def test_softcaps(generated, tmp_path, text, replacement, where):
    spec = seeded(generated, tmp_path, "gemma2", text, replacement)
    assert_caught(run(spec, tiny_config("gemma2"), gradients=False, export=False), where)


def test_final_softcap_dropped_under_autograd_fails_the_gradients(generated, tmp_path):
    """The cap runs out of place where autograd records it (its in-place form is what the
    logits check runs): a defect there shows in the fp32 gradients."""
    spec = seeded(generated, tmp_path, "gemma2", "(logits / cap).tanh_()", "logits / cap")
    (result,) = run(spec, tiny_config("gemma2"), ["fp32"], export=False)
    assert not result.passed and result.gradients_match is False


def test_gemma_failures_are_not_blamed_on_the_embedding(generated, tmp_path):
    spec = seeded(
        generated,
        tmp_path,
        "gemma2",
        ".tanh_().mul_(cap)",
        ".tanh_().mul_(cap * 1.01)",
    )
    fp32, bf16 = run(spec, tiny_config("gemma2"), gradients=False, export=False)
    assert not fp32.passed and fp32.first_divergence.startswith("output head post-processing")
    assert not (bf16.first_divergence or "").startswith("embedding")


def test_dropped_swiglu_clamp(generated, tmp_path):
    spec = seeded(generated, tmp_path, "gpt_oss", "up = up.clamp(-limit, limit)", "up = up")
    results = run(spec, tiny_config("gpt_oss"), gradients=False, export=False)
    assert_caught(results, "experts")


def test_mixtral_moe_block_is_paired_with_its_hf_module(generated, tmp_path):
    """Mixtral's checkpoint says `block_sparse_moe`, its HF module is `mlp`: pairing by
    weights finds it anyway."""
    spec = seeded(
        generated,
        tmp_path,
        "mixtral",
        "weights, indices = probs.topk(self.top_k, dim=-1)",
        "weights, indices = logits.softmax(dim=-1).topk(self.top_k + 1, dim=-1)\n"
        "        weights, indices = weights[..., 1:], indices[..., 1:]",
    )
    for result in run(spec, tiny_config("mixtral"), gradients=False, export=False):
        assert not result.passed
        assert "HF model.layers.0.mlp" in result.first_divergence, result.first_divergence


def test_stacking_in_string_order_is_what_the_adapter_avoids():
    """Control for the seeded adapter defect above: the real stacking is numeric."""
    tensors = {i: torch.full((1,), float(i)) for i in range(16)}
    stacked = StateDictAdapter.__module__  # the module whose _stack_experts is patched above
    from codegen.adapter import _stack_experts

    assert stacked == "codegen.adapter"
    assert _stack_experts("k", tensors).flatten().tolist() == [float(i) for i in range(16)]


# --- the pitfall list of ARCHITECTURE.md, on generated packages ---------------------------


@pytest.mark.parametrize(
    ("name", "text", "replacement", "where"),
    [
        (  # norm weight offset (1 + w) missed
            "gemma",
            "(normed * (1.0 + self.weight.float())).type_as(x)",
            "(normed * self.weight.float()).type_as(x)",
            "layers.0.attention_norm",
        ),
        (  # embedding scaling missed
            "gemma",
            "h = h * torch.tensor(self.args.dim**0.5, dtype=h.dtype)",
            "h = h",
            "embedding",
        ),
        (  # shared-expert gate missing
            "qwen2_moe",
            "out = out + F.sigmoid(self.shared_expert_gate(x)) * self.shared_experts(x)",
            "out = out + self.shared_experts(x)",
            "moe",
        ),
        (  # fused gate/up read concatenated where the checkpoint interleaves them
            "gpt_oss",
            "gate, up = gate_up[..., ::2], gate_up[..., 1::2]",
            "gate, up = gate_up.chunk(2, dim=-1)",
            "experts",
        ),
    ],
    ids=["norm-offset", "embedding-scale", "shared-expert-gate", "gate-up-interleaved"],
)
def test_pitfalls(generated, tmp_path, name, text, replacement, where):
    spec = seeded(generated, tmp_path, name, text, replacement)
    results = run(spec, tiny_config(name), gradients=False, export=False)
    assert_caught(results, where)


def test_empty_tensors_agree():
    """A zero-size parameter (dots1's toy has one) compares as equal, not as a crash."""
    from codegen.verify.divergence import relative_diff

    assert relative_diff(torch.zeros(0, 4), torch.zeros(0, 4)) == 0.0
    assert relative_diff(torch.zeros(0, 4), torch.zeros(4, 0)) == float("inf")
