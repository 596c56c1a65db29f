"""SetClampedSwiglu: before/after on gpt_oss-style experts, and its source check."""

from __future__ import annotations

import types

import pytest
import torch

from codegen.errors import CodegenError
from codegen.models import references_dir
from codegen.scaffold.source import SourcePackage
from codegen.transforms.add_moe import AddMoe
from codegen.transforms.clamped_swiglu import CLAMPED_SWIGLU, SetClampedSwiglu, config_fields_of
from codegen.transforms.fused_experts import FuseExperts

GPT_OSS_EXPERTS = '''
class Experts(nn.Module):
    def __init__(self, config):
        self.alpha = config.swiglu_alpha
        self.limit = config.swiglu_limit

    def _apply_gate(self, gate_up):
        """The activation."""
        gate, up = gate_up[..., ::2], gate_up[..., 1::2]
        gate = gate.clamp(min=None, max=self.limit)
        up = up.clamp(min=-self.limit, max=self.limit)
        glu = gate * torch.sigmoid(gate * self.alpha)
        gated_output = (up + 1) * glu
        return gated_output
'''


def features_of(tmp_path, source: str):
    path = tmp_path / "modeling_x.py"
    path.write_text(source)
    return types.SimpleNamespace(
        get=lambda dotted: str(path) if dotted == "source.modeling" else None
    )


def test_experts_use_the_clamped_swiglu(tmp_path):
    package = SourcePackage.from_directory(references_dir() / "llama")
    AddMoe().apply(package, dense_rule="all", norm_topk_prob="always")
    FuseExperts().apply(package, layout="interleaved", transposed=True)
    SetClampedSwiglu().apply(package, features_of(tmp_path, GPT_OSS_EXPERTS))
    files = package.render()
    model = files["model.py"]
    assert "hidden = clamped_swiglu(gate, up, self.alpha, self.limit)" in model
    assert "F.silu" not in model
    assert model.index("def clamped_swiglu(") < model.index("class Experts")
    assert (
        "def __init__(self, num_experts: int, dim: int, hidden_dim: int, alpha: float, limit"
        in (model)
    )
    assert "Experts(args.num_experts, args.dim, args.moe_hidden_dim, args.swiglu_alpha, " in model
    assert "`num_experts` clamped-SwiGLU experts" in model
    args = files["args.py"]
    assert "swiglu_alpha: float = 1.702  #" in args and "swiglu_limit: float = 7.0  #" in args
    assert "swiglu_alpha=hf_config.swiglu_alpha," in args
    assert "swiglu_limit=hf_config.swiglu_limit," in args


def test_reads_the_config_fields_and_refuses_other_maths(tmp_path):
    renamed = GPT_OSS_EXPERTS.replace("glu =", "act =").replace("* glu", "* act")
    renamed = renamed.replace("swiglu_limit", "clip")
    assert config_fields_of(features_of(tmp_path, renamed)) == ("swiglu_alpha", "clip")
    no_shift = GPT_OSS_EXPERTS.replace("(up + 1) * glu", "up * glu")
    with pytest.raises(CodegenError, match="no method computes"):
        config_fields_of(features_of(tmp_path, no_shift))
    no_clamp = GPT_OSS_EXPERTS.replace(
        "        up = up.clamp(min=-self.limit, max=self.limit)\n", ""
    )
    with pytest.raises(CodegenError, match="no method computes"):
        config_fields_of(features_of(tmp_path, no_clamp))


CHUNKED_EXPERTS = """
class Experts(nn.Module):
    def __init__(self, config):
        self.swiglu_limit = config.limit_field
        self.swiglu_alpha = config.alpha_field

    def _apply_gate(self, gate_up):
        # not interleaved: gate and up are the two halves
        gate, up = gate_up.chunk(2, dim=-1)
        gate = gate.clamp(max=self.swiglu_limit)
        up = up.clamp(-self.swiglu_limit, self.swiglu_limit)
        glu = gate * torch.sigmoid(gate * self.swiglu_alpha)
        return (up + 1.0) * glu
"""


def test_the_same_maths_spelt_otherwise_is_recognised(tmp_path):
    # positional clamp bounds, no `min=None`, `1.0`, the product returned directly
    assert config_fields_of(features_of(tmp_path, CHUNKED_EXPERTS)) == (
        "alpha_field",
        "limit_field",
    )
    other = CHUNKED_EXPERTS.replace("(up + 1.0) * glu", "(up + 2.0) * glu")
    with pytest.raises(CodegenError, match="no method computes"):
        config_fields_of(features_of(tmp_path, other))


def test_snippet_matches_hf_gpt_oss_maths():
    from transformers import GptOssConfig
    from transformers.models.gpt_oss.modeling_gpt_oss import GptOssExperts

    namespace = {"torch": torch}
    exec(CLAMPED_SWIGLU, namespace)
    config = GptOssConfig(
        hidden_size=8, intermediate_size=16, num_local_experts=2, swiglu_limit=0.5
    )
    gate_up = torch.randn(5, 32, generator=torch.Generator().manual_seed(0))
    expected = GptOssExperts(config)._apply_gate(gate_up)
    got = namespace["clamped_swiglu"](gate_up[..., ::2], gate_up[..., 1::2], 1.702, 0.5)
    assert torch.equal(got, expected)


def test_a_clamped_shared_expert_and_dense_ffn_too(tmp_path):
    """The analysed clamped SwiGLU is the shared expert's (minimax_m3): FeedForward, fused by
    an earlier rule, computes it too, and the shared expert's rows read its gate_up_proj."""
    from codegen.transforms._ffn_edits import adapter_rows
    from codegen.transforms.fused_gate_up import FuseGateUp
    from codegen.transforms.shared_experts import AddSharedExperts

    package = SourcePackage.from_directory(references_dir() / "llama")
    FuseGateUp().apply(package, layout="concat")
    AddMoe().apply(package, dense_rule="first_k", norm_topk_prob="always")
    AddSharedExperts().apply(package, size="n_shared_experts")
    FuseExperts().apply(package, layout="concat", transposed=False)
    path = tmp_path / "modeling_x.py"
    path.write_text(GPT_OSS_EXPERTS)
    values = {"source.modeling": str(path), "ffn.source": "shared_expert"}
    SetClampedSwiglu().apply(package, types.SimpleNamespace(get=values.get))
    model = package.render()["model.py"]
    assert "return self.w2(clamped_swiglu(gate, up, self.alpha, self.limit))" in model
    assert "hidden = clamped_swiglu(gate, up, self.alpha, self.limit)" in model
    assert "F.silu" not in model
    assert "FeedForward(args.dim, args.hidden_dim, args.swiglu_alpha, args.swiglu_limit, bias=" in (
        model
    )
    assert "hidden_dim: int, alpha: float, limit: float, bias: bool = False):" in model
    # the shared expert is biased as the dense one (llama's block passes args.mlp_bias)
    assert (
        "FeedForward(args.dim, args.shared_hidden_dim, args.swiglu_alpha, args.swiglu_limit, bias="
        in (model)
    )
    assert '"""w2(clamped_swiglu(gate, up)); gate (first half)' in model
    rows = dict(adapter_rows(package))
    assert rows["model.layers.{}.mlp.shared_experts.gate_up_proj.weight"] == (
        "layers.{}.moe.shared_experts.w13.weight"
    )
    assert "model.layers.{}.mlp.shared_experts.up_proj.weight" not in rows
