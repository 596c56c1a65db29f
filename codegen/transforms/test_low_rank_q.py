"""LowRankQ: the query up-projected from a normed latent, each head normed without a scale."""

import pytest

from codegen.models import references_dir
from codegen.scaffold.source import SourcePackage
from codegen.transforms.edits import EditError
from codegen.transforms.low_rank_q import LowRankQ
from codegen.transforms.testing import reference_with_adapter

LOW_RANK = {
    "a": "q_a_proj",
    "a_norm": "q_a_norm",
    "b": "q_b_proj",
    "b_norm": "q_b_norm",
    "rank": "q_lora_rank",
    "eps": "rms_norm_eps",
}


def test_reference_llama_before_and_after():
    package = SourcePackage.from_directory(references_dir() / "llama")
    before = package.render()
    assert "self.wq = nn.Linear" in before["model.py"]
    assert (
        "q = self.wq(x).view(batch, seq, -1, self.head_dim).transpose(1, 2)" in before["model.py"]
    )
    LowRankQ().apply(package, low_rank=LOW_RANK)
    files = package.render()
    model = files["model.py"]
    assert "self.wq = " not in model and "self.wq(" not in model
    assert model.index("class PlainRMSNorm") < model.index("class Attention")
    assert (
        "        self.wq_a = nn.Linear(args.dim, args.q_lora_rank, bias=False)\n"
        "        self.q_a_norm = RMSNorm(args.q_lora_rank, args.q_norm_eps)\n"
        "        self.wq_b = nn.Linear("
        "args.q_lora_rank, args.n_heads * args.head_dim, bias=False)\n"
        "        self.q_b_norm = PlainRMSNorm(args.head_dim, args.q_norm_eps)\n"
    ) in model
    # each head normed after the view to heads, before the transpose
    assert (
        "q = self.q_b_norm(self.wq_b(self.q_a_norm(self.wq_a(x)))"
        ".view(batch, seq, -1, self.head_dim)).transpose(1, 2)"
    ) in model
    args = files["args.py"]
    assert "q_lora_rank: int = 0" in args and "q_norm_eps: float = 1e-6" in args
    assert "q_lora_rank=hf_config.q_lora_rank" in args
    assert "q_norm_eps=hf_config.rms_norm_eps" in args
    adapter = files["state_dict_adapter.py"]
    for hf, ours in (("q_a_proj", "wq_a"), ("q_a_norm", "q_a_norm"), ("q_b_proj", "wq_b")):
        row = f'"model.layers.{{}}.self_attn.{hf}.weight": "layers.{{}}.attention.{ours}.weight"'
        assert row in adapter
    assert "q_proj" not in adapter and "q_b_norm" not in adapter


def test_no_query_projection_row_is_an_error():
    adapter = 'class StateDictAdapter:\n    from_hf_map = {"model.norm.weight": "norm.weight"}\n'
    package = reference_with_adapter(adapter)
    with pytest.raises(EditError, match="maps no attention.wq.weight"):
        LowRankQ().apply(package, low_rank=LOW_RANK)


def test_the_heads_norm_scaled_in_qs_dtype():
    """`b_norm_rounded`: HF multiplies q by its inverse rms rounded to q's dtype
    (`x * torch.rsqrt(...).to(x.dtype)`); in bf16 that rounds otherwise than the fp32 values
    cast last, so the heads' norm is the rounded one."""
    import torch
    from torch import nn

    package = SourcePackage.from_directory(references_dir() / "llama")
    LowRankQ().apply(package, low_rank={**LOW_RANK, "b_norm_rounded": True})
    model = package.render()["model.py"]
    assert "self.q_b_norm = RoundedRMSNorm(args.head_dim, args.q_norm_eps)" in model
    assert "PlainRMSNorm" not in model
    namespace = {"torch": torch, "nn": nn}
    from codegen.transforms.low_rank_q import ROUNDED_RMSNORM

    exec(ROUNDED_RMSNORM, namespace)
    torch.manual_seed(0)
    x = torch.randn(2, 3, 40).bfloat16()
    hf = x * torch.rsqrt(x.float().square().mean(-1, keepdim=True) + 1e-6).to(x.dtype)
    ours = namespace["RoundedRMSNorm"](40, 1e-6)(x)
    assert torch.equal(ours, hf)
