"""RoutedAttention: before/after on the qwen3_moe reference, and the routed maths on one
layer against a per-token loop over the picked experts."""

import pytest
import torch
import torch.nn.functional as F

from codegen.layers.grouped_mm import grouped_mm
from codegen.models import references_dir
from codegen.scaffold.source import SourcePackage
from codegen.transforms.edits import EditError
from codegen.transforms.routed_attention import RoutedAttention

FOUND = {
    "router": "experts.router.layer",
    "query": "experts.input_linear",
    "output": "experts.output_linear",
    "kv": "kv_proj",
    "bias": "experts.bias",
}


def _qwen3_moe():
    return SourcePackage.from_directory(references_dir() / "qwen3_moe")


def test_before_dense_projections():
    model = _qwen3_moe().render()["model.py"]
    assert "self.wq = nn.Linear(" in model
    assert "expert_linear" not in model


def test_after_experts_own_query_and_output_projections():
    package = _qwen3_moe()
    RoutedAttention().apply(package, routed=FOUND)
    files = package.render()
    model = files["model.py"]
    assert "def expert_linear(" in model
    assert "self.router = nn.Linear(args.dim, args.num_experts, bias=False)" in model
    assert "self.wq = nn.Parameter(" in model and "self.wo = nn.Parameter(" in model
    assert "self.wk =" not in model and "self.wv =" not in model
    assert "enable_gqa" not in model  # keys/values tiled over the slots instead
    assert "return out + self.bias" in model
    adapter = files["state_dict_adapter.py"]
    rows = {
        "model.layers.{}.self_attn.kv_proj.weight": "layers.{}.attention.wkv.weight",
        "model.layers.{}.self_attn.experts.output_linear.weight": "layers.{}.attention.wo",
    }
    for hf, house in rows.items():
        assert f'"{hf}": "{house}"' in adapter
    # a row too long for one line is parenthesised, for ruff to wrap it
    router = '"model.layers.{}.self_attn.experts.router.layer.weight": (\n'
    assert router + '"layers.{}.attention.router.weight"\n),' in adapter.replace("    ", "")
    assert "q_proj" not in adapter and "o_proj" not in adapter
    # the head-count comment no longer speaks of GQA's query heads per key/value head
    assert "each shared by n_heads" in _qwen3_moe().render()["args.py"]
    comment = "n_kv_heads: int = 4  # also each picked expert's query heads (top_k * n_kv_heads"
    assert comment in files["args.py"] and "n_heads //" not in files["args.py"]


def test_without_a_bias_the_merged_output_is_returned():
    package = _qwen3_moe()
    RoutedAttention().apply(package, routed={**FOUND, "bias": None})
    files = package.render()
    assert "self.bias" not in files["model.py"]
    assert "return out\n" in files["model.py"]
    assert "experts.bias" not in files["state_dict_adapter.py"]


def test_a_malformed_finding_is_refused():
    with pytest.raises(EditError):
        RoutedAttention().apply(_qwen3_moe(), routed={**FOUND, "kv": None})


def test_expert_linear_multiplies_each_slot_by_its_expert():
    package = _qwen3_moe()
    RoutedAttention().apply(package, routed=FOUND)
    source = package.render()["model.py"]
    start = source.index("def expert_linear(")
    end = source.index("\nclass ", start)
    scope = {"torch": torch, "F": F, "grouped_mm": grouped_mm}
    exec(source[start:end], scope)
    torch.manual_seed(0)
    x, weight = torch.randn(3, 5, 2, 8), torch.randn(4, 12, 8)  # rows of 16-byte multiples
    indices = torch.randint(0, 4, (3, 5, 2))
    out = scope["expert_linear"](x, weight, indices)
    expected = torch.einsum("bski,bskoi->bsko", x, weight[indices])
    torch.testing.assert_close(out, expected)
