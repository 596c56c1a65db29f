"""GatedNorm: before/after on the deepseek_v3 reference (every layer, MoE layers only), the
adapter rows under the checkpoint's names, refusals; the generated norm against HF's
AXK2GatedRMSNorm, and a seeded defect (the gate's matrices swapped in order) that does not
match."""

import sys
from types import SimpleNamespace

import pytest
import torch

from codegen.models import load_spec, references_dir
from codegen.scaffold.build import Step
from codegen.scaffold.pipeline import scaffold_into
from codegen.scaffold.source import SourcePackage
from codegen.transforms.edits import EditError
from codegen.transforms.gated_norm import GatedNorm

PARTS = {
    "norm": "norm",
    "layers": {"input_layernorm": "all", "post_attention_layernorm": "moe"},
    "gate": "mlp",
    "linears": ("fc1", "fc2"),
    "rank": 16,
    "rank_field": "gated_norm_rank",
    "act": "silu",
    "fp32": True,
}
# the analysis pairs the model's keys with the checkpoint's (A.X-K2 renames fc1/fc2)
STATE = SimpleNamespace(
    state_dict=SimpleNamespace(
        prefix="model.layers",
        layer_keys=[
            f"{n}.{k}"
            for n in ("input_layernorm", "post_attention_layernorm")
            for k in ("norm.weight", "mlp.fc1.weight", "mlp.fc2.weight")
        ],
        checkpoint_layer_keys=[
            f"{n}.{k}"
            for n in ("input_layernorm", "post_attention_layernorm")
            for k in ("norm.weight", "W_down.weight", "W_up.weight")
        ],
    )
)


def _reference():
    return SourcePackage.from_directory(references_dir() / "deepseek_v3")


def test_norms_gated_on_every_layer_and_on_moe_layers():
    package = _reference()
    before = package.render()
    assert "GatedRMSNorm" not in before["model.py"]
    assert '"model.layers.{}.input_layernorm.weight"' in before["state_dict_adapter.py"]
    GatedNorm().apply(package, STATE, parts=PARTS)
    files = package.render()
    model = " ".join(files["model.py"].split())
    assert "class GatedRMSNorm(nn.Module):" in model
    assert "(y * torch.sigmoid(self.w2(F.silu(self.w1(y))).float())).to(y.dtype)" in model
    assert "self.attention_norm = GatedRMSNorm(args.dim, args.gated_norm_rank, args.norm_eps)" in (
        model
    )
    moe_gated = (
        "self.is_moe = layer_id >= args.n_dense_layers self.ffn_norm = GatedRMSNorm(args.dim,"
        " args.gated_norm_rank, args.norm_eps) if self.is_moe else RMSNorm(args.dim, args.norm_eps)"
    )
    assert moe_gated in model
    assert "gated_norm_rank: int = 16" in files["args.py"]
    assert "gated_norm_rank=hf_config.gated_norm_rank" in files["args.py"]
    adapter = files["state_dict_adapter.py"]
    rows = [
        '"model.layers.{}.input_layernorm.norm.weight": "layers.{}.attention_norm.norm.weight"',
        '"model.layers.{}.input_layernorm.W_down.weight": "layers.{}.attention_norm.w1.weight"',
        '"model.layers.{}.input_layernorm.W_up.weight": "layers.{}.attention_norm.w2.weight"',
        '"model.layers.{}.post_attention_layernorm.weight": "layers.{}.ffn_norm.weight"',
        '"model.layers.{}.post_attention_layernorm.W_up.weight": "layers.{}.ffn_norm.w2.weight"',
    ]
    for row in rows:
        assert row in adapter, row
    assert '"model.layers.{}.input_layernorm.weight"' not in adapter  # every layer gated


def test_plain_sigmoid_and_refusals():
    package = _reference()
    GatedNorm().apply(package, STATE, parts={**PARTS, "fp32": False, "act": "gelu"})
    assert "return y * torch.sigmoid(self.w2(F.gelu(self.w1(y))))" in package.render()["model.py"]
    with pytest.raises(EditError, match="activation 'tanh'"):
        GatedNorm().apply(_reference(), STATE, parts={**PARTS, "act": "tanh"})
    layers = {"input_layernorm": "unknown"}
    with pytest.raises(EditError, match="gated on layers 'unknown'"):
        GatedNorm().apply(_reference(), STATE, parts={**PARTS, "layers": layers})


def test_generated_norm_matches_hf_axk2_and_swapped_matrices_do_not(tmp_path):
    from transformers.models.axk2.modeling_axk2 import AXK2GatedRMSNorm

    from codegen.verify.tiny_config import tiny_config

    config = tiny_config("axk2")
    torch.manual_seed(0)
    hf = AXK2GatedRMSNorm(config).eval()
    for parameter in hf.parameters():
        torch.nn.init.normal_(parameter, std=0.5)
    scaffold_into(
        tmp_path, "deepseek_v3", "gated", ["axk2"], [Step("gated_norm", {"parts": PARTS})]
    )
    module = sys.modules[load_spec("gated", tmp_path).model.__module__]
    ours = module.GatedRMSNorm(config.hidden_size, config.gated_norm_rank, config.rms_norm_eps)
    state = {"norm.weight": hf.norm.weight, "w1.weight": hf.mlp.fc1.weight}
    ours.load_state_dict({**state, "w2.weight": hf.mlp.fc2.weight}, strict=True)
    x = torch.randn(2, 5, config.hidden_size)
    with torch.no_grad():
        expected = hf(x)
        torch.testing.assert_close(ours(x), expected)
        half = torch.bfloat16  # the gate in fp32, cast back, as HF does
        torch.testing.assert_close(ours.to(half)(x.to(half)), hf.to(half)(x.to(half)))
        ours.float()
        w1 = ours.w1.weight.clone()
        ours.w1.weight.copy_(ours.w2.weight.T)  # seeded defect: up and down swapped
        ours.w2.weight.copy_(w1.T)
        assert not torch.allclose(ours(x), expected, atol=1e-3)
