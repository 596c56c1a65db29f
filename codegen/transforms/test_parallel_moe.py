"""ParallelMoe: with enable_moe_block, a routed MoE runs beside the dense MLP, each branch
normed after, the experts normed before; the router reads the layer's input unnormed. Before/
after on the qwen3 reference, the built MoE against transformers' Gemma 4 router and experts,
and the adapter rows the analysis named."""

from __future__ import annotations

import importlib
import sys

import pytest
import torch

from codegen.models import references_dir
from codegen.scaffold.source import SourcePackage
from codegen.transforms.edits import EditError
from codegen.transforms.parallel_moe import ParallelMoe

FOUND = {
    "field": "enable_moe_block",
    "router": "router",
    "experts": "experts",
    "moe_norm": "pre_feedforward_layernorm_2",
    "post_dense_norm": "post_feedforward_layernorm_1",
    "post_moe_norm": "post_feedforward_layernorm_2",
    "post_ffn_norm": "post_feedforward_layernorm",
    "router_norm": "norm",
    "router_proj": "proj",
    "router_scale": "scale",
    "expert_scale": "per_expert_scale",
    "gate_up": "gate_up_proj",
    "down": "down_proj",
    "activation": "silu",
    "fields": {
        "num_experts": "num_experts",
        "top_k": "top_k_experts",
        "moe_hidden": "moe_intermediate_size",
    },
}


def _package() -> SourcePackage:
    package = SourcePackage.from_directory(references_dir() / "qwen3")
    ParallelMoe().apply(package, parallel_moe=FOUND)
    return package


def _load(package, tmp_path, name: str):
    folder = tmp_path / name
    folder.mkdir()
    for file, text in package.render().items():
        (folder / file).write_text(text)
    sys.path.insert(0, str(tmp_path))
    try:
        return (
            importlib.import_module(f"{name}.args"),
            importlib.import_module(f"{name}.model"),
        )
    finally:
        sys.path.remove(str(tmp_path))


def test_before_the_reference_has_no_moe():
    model = SourcePackage.from_directory(references_dir() / "qwen3").render()["model.py"]
    assert "class MoE" not in model and "class Router" not in model and "self.moe" not in model


def test_block_runs_the_moe_beside_the_dense_mlp_when_switched_on():
    files = _package().render()
    model = files["model.py"]
    lines = [line.strip() for line in model.splitlines()]
    for name in ("Router", "Experts", "MoE", "PlainRMSNorm"):
        assert f"class {name}(nn.Module):" in lines
    assert "self.moe = MoE(args) if args.enable_moe_block else None" in lines
    for norm in ("moe_norm", "post_dense_norm", "post_moe_norm"):
        assert f"self.{norm} = RMSNorm(args.dim, args.norm_eps)" in lines
    # the dense output and the experts' are each normed and summed where the dense one was
    at = lines.index("ffn = self.feed_forward(self.ffn_norm(h))")
    assert lines[at + 1] == "if self.moe is not None:"
    assert lines[at + 2] == (
        "ffn = self.post_dense_norm(ffn) + self.post_moe_norm(self.moe(h, self.moe_norm(h)))"
    )
    assert lines[at + 3] == "return h + ffn"
    # the experts apply the dense MLP's activation to the gate half of the fused product
    assert "hidden = F.silu(gate) * up" in lines
    args = files["args.py"]
    assert "enable_moe_block: bool = False" in args
    assert "enable_moe_block=hf_config.enable_moe_block," in args
    assert "top_k=hf_config.top_k_experts or 0," in args
    assert "moe_hidden_dim=hf_config.moe_intermediate_size or 0," in args
    adapter = files["state_dict_adapter.py"]
    for hf, house in (
        ("router.proj.weight", "moe.router.proj.weight"),
        ("router.scale", "moe.router.scale"),
        ("router.per_expert_scale", "moe.router.expert_scale"),
        ("experts.gate_up_proj", "moe.experts.w13"),
        ("experts.down_proj", "moe.experts.w2"),
        ("pre_feedforward_layernorm_2.weight", "moe_norm.weight"),
        ("post_feedforward_layernorm_1.weight", "post_dense_norm.weight"),
        ("post_feedforward_layernorm_2.weight", "post_moe_norm.weight"),
    ):
        assert f'"model.layers.{{}}.{hf}": "layers.{{}}.{house}"' in adapter
    compile(model, "model.py", "exec")


def test_switched_off_builds_no_moe(tmp_path):
    args_module, model_module = _load(_package(), tmp_path, "gen_moe_off")
    args = args_module.ModelArgs(
        dim=16, n_layers=1, n_heads=2, n_kv_heads=1, head_dim=8, vocab_size=32, hidden_dim=12
    )
    model = model_module.Model(args)
    assert model.layers[0].moe is None
    assert not any("moe" in name for name, _ in model.named_parameters())


def test_built_moe_is_transformers_gemma4_router_and_experts(tmp_path):
    gemma4 = pytest.importorskip("transformers.models.gemma4.modeling_gemma4")
    from transformers.models.gemma4.configuration_gemma4 import Gemma4TextConfig

    args_module, model_module = _load(_package(), tmp_path, "gen_parallel_moe")
    args = args_module.ModelArgs(
        dim=16, n_layers=1, n_heads=2, n_kv_heads=1, head_dim=8, vocab_size=32, hidden_dim=12,
        enable_moe_block=True, num_experts=6, top_k=2, moe_hidden_dim=8,
    )  # fmt: skip
    torch.manual_seed(0)
    moe = model_module.MoE(args)
    for p in moe.parameters():
        p.data.normal_(0.0, 0.5)
    config = Gemma4TextConfig(
        hidden_size=16, num_experts=6, top_k_experts=2, moe_intermediate_size=8,
        hidden_activation="silu", rms_norm_eps=args.norm_eps, enable_moe_block=True,
    )  # fmt: skip
    router, experts = gemma4.Gemma4TextRouter(config), gemma4.Gemma4TextExperts(config)
    router.proj.weight.data.copy_(moe.router.proj.weight)
    router.scale.data.copy_(moe.router.scale)
    router.per_expert_scale.data.copy_(moe.router.expert_scale)
    experts.gate_up_proj.data.copy_(moe.experts.w13)
    experts.down_proj.data.copy_(moe.experts.w2)
    x, normed = torch.randn(2, 5, 16), torch.randn(2, 5, 16)
    with torch.no_grad():
        _, weights, indices = router(x.view(-1, 16))
        expected = experts(normed.view(-1, 16), indices, weights).view(2, 5, 16)
        torch.testing.assert_close(moe(x, normed), expected)
        # the router reads x itself, the experts the normed copy
        assert not torch.allclose(moe(normed, normed), expected)


def test_without_the_analysis_the_switch_is_an_error():
    package = SourcePackage.from_directory(references_dir() / "qwen3")
    with pytest.raises(EditError):
        ParallelMoe().apply(package, parallel_moe=None)
