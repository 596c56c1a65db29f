"""DynamicMask: the attention's scores take a per-key bias computed from its values."""

import pytest

from codegen.models import references_dir
from codegen.scaffold.source import SourcePackage
from codegen.transforms.dynamic_mask import DynamicMask
from codegen.transforms.edits import EditError

DOGE = {"proj": "dt_proj", "scale": "A", "window": "keep_window_size"}


def test_qwen3_attention_takes_the_bias_as_sdpa_mask():
    package = SourcePackage.from_directory(references_dir() / "qwen3")
    DynamicMask().apply(package, mask=DOGE)
    files = package.render()
    model = files["model.py"]
    assert "self.keep_window = args.keep_window_size" in model
    assert (
        "self.bias_proj = nn.Linear(args.n_kv_heads * args.head_dim, args.n_kv_heads,"
        " bias=args.attention_bias)"
    ) in model
    assert "self.bias_scale = nn.Parameter(torch.zeros(args.n_kv_heads))" in model
    assert "attn_mask=self.dynamic_bias(v, mask)," in model
    assert "is_causal" not in model
    assert "dt = F.softplus(self.bias_proj(v.transpose(1, 2).flatten(2)))" in model
    assert "bias = torch.exp(self.bias_scale * dt).transpose(1, 2)[:, :, None, :]" in model
    assert "bias = bias.masked_fill(hidden if mask is None else ~mask, lowest)" in model
    assert "if seq > self.keep_window:" in model
    assert "kept = bias.topk(self.keep_window, dim=-1, sorted=False).indices" in model
    assert "return bias.repeat_interleave(self.n_heads // self.n_kv_heads, dim=1)" in model
    assert "nn.init.zeros_(self.bias_scale)" in model
    compile(model, "model.py", "exec")
    assert "keep_window_size=hf_config.keep_window_size," in files["args.py"]
    adapter = files["state_dict_adapter.py"]
    for row in (
        '"model.layers.{}.self_attn.dt_proj.weight": "layers.{}.attention.bias_proj.weight"',
        '"model.layers.{}.self_attn.dt_proj.bias": "layers.{}.attention.bias_proj.bias"',
        '"model.layers.{}.self_attn.A": "layers.{}.attention.bias_scale"',
    ):
        assert row in adapter


def test_without_a_window_no_top_k_and_llama_causal_only():
    package = SourcePackage.from_directory(references_dir() / "llama")
    DynamicMask().apply(package, mask={**DOGE, "window": None})
    files = package.render()
    model = files["model.py"]
    assert "topk" not in model and "keep_window" not in model
    assert "bias = bias.masked_fill(hidden, lowest)" in model
    assert "attn_mask=self.dynamic_bias(v, None)" in model
    assert "is_causal" not in model
    # the bias projection's bias switches with the output projection's
    assert "args.n_kv_heads, bias=args.attention_bias)" in model
    assert "dt_proj.bias" in files["state_dict_adapter.py"]
    compile(model, "model.py", "exec")


def test_without_names_it_refuses():
    package = SourcePackage.from_directory(references_dir() / "qwen3")
    with pytest.raises(EditError, match="projection and scale"):
        DynamicMask().apply(package, mask="other")
