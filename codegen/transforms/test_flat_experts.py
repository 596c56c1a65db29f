"""FlatExperts: roles read from the forward, the adapter rows before/after, and the base
adapter's split/flatten of flat expert matrices (exact round trip)."""

from __future__ import annotations

import types

import pytest
import torch

from codegen.adapter import StateDictAdapter
from codegen.errors import CodegenError
from codegen.models import references_dir
from codegen.scaffold.source import SourcePackage
from codegen.transforms.add_moe import AddMoe
from codegen.transforms.flat_experts import FlatExperts, flat_roles

GLU = """
class Glu(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.a = nn.Parameter(torch.empty(config.n * config.ffn, config.hidden))
        self.b = nn.Parameter(torch.empty(config.n * config.ffn, config.hidden))
        self.c = nn.Parameter(torch.empty(config.n * config.ffn, config.hidden))

    def forward(self, x, expert_a, expert_b, expert_c):
        one = x.matmul(expert_{first}.T)
        two = x.matmul(expert_{second}.T)
        one = self.act(one)
        mixed = one * two
        return mixed.matmul(expert_c)
"""


def _features(tmp_path, source: str):
    path = tmp_path / "modeling_x.py"
    path.write_text(source)
    keys = ("ffn.experts.glu.a", "ffn.experts.glu.b", "ffn.experts.glu.c [layers 0-1]")
    state = types.SimpleNamespace(prefix="stack", layer_keys=keys)
    return types.SimpleNamespace(
        get=lambda dotted: str(path) if dotted == "source.modeling" else None, state_dict=state
    )


def test_the_activated_product_is_the_gate_and_a_plain_block_is_stored_in_out():
    assert flat_roles(GLU.format(first="a", second="b")) == {
        "a": ("gate", False),
        "b": ("up", False),
        "c": ("down", True),
    }
    # the same class with the first two swapped in the forward: the roles follow the code
    assert flat_roles(GLU.format(first="b", second="a"))["b"] == ("gate", False)


def test_a_forward_without_three_roles_is_refused():
    source = GLU.format(first="a", second="b").replace("one = self.act(one)", "one = one + 1")
    with pytest.raises(CodegenError, match="not gate, up, down"):
        flat_roles(source)


def test_adapter_rows_become_the_flat_matrices(tmp_path):
    package = SourcePackage.from_directory(references_dir() / "llama")
    AddMoe().apply(package, dense_rule="all", norm_topk_prob="always")
    before = package.render()["state_dict_adapter.py"]
    assert '"model.layers.{}.mlp.experts.{}.gate_proj.weight": "layers.{}.moe.experts.w1"' in before
    FlatExperts().apply(package, _features(tmp_path, GLU.format(first="a", second="b")))
    after = package.render()["state_dict_adapter.py"]
    assert "experts.{}." not in after
    assert '"stack.{}.ffn.experts.glu.a": "layers.{}.moe.experts.w1"' in after
    assert '"stack.{}.ffn.experts.glu.b": "layers.{}.moe.experts.w3"' in after
    assert '"stack.{}.ffn.experts.glu.c": "layers.{}.moe.experts.w2"' in after
    namespace: dict = {}
    exec(compile(after, "a", "exec"), namespace)
    # the down blocks are stored [in, out] (`mixed.matmul(expert_c)`): held as stored, so no
    # block is transposed on load, and the experts multiply by w2 as it is
    assert namespace["StateDictAdapter"].flat_experts == {
        "stack.{}.ffn.experts.glu.a": False,
        "stack.{}.ffn.experts.glu.b": False,
        "stack.{}.ffn.experts.glu.c": False,
    }
    model = package.render()["model.py"]
    assert "self.w2 = nn.Parameter(torch.empty(num_experts, hidden_dim, dim))" in model
    assert "grouped_mm(hidden, self.w2, offs=offsets)" in model
    assert "self.w1.mT" in model and "self.w2.mT" not in model
    assert "w2 (down) is [num_experts, in, out]" in model


def test_a_down_projection_used_transposed_keeps_the_house_layout(tmp_path):
    package = SourcePackage.from_directory(references_dir() / "llama")
    AddMoe().apply(package, dense_rule="all", norm_topk_prob="always")
    source = GLU.format(first="a", second="b").replace("matmul(expert_c)", "matmul(expert_c.T)")
    FlatExperts().apply(package, _features(tmp_path, source))
    model = package.render()["model.py"]
    assert "class Experts" not in model  # the shared experts, unchanged


class _Adapter(StateDictAdapter):
    from_hf_map = {"h.{}.w1": "layers.{}.experts.w1", "h.{}.w2": "layers.{}.experts.w2"}
    flat_experts = {"h.{}.w1": False, "h.{}.w2": True}


def test_flat_matrices_split_per_expert_and_round_trip_bit_for_bit():
    experts, ffn, hidden = 3, 5, 4
    w1 = torch.randn(experts * ffn, hidden)  # expert e: rows e*ffn:(e+1)*ffn, [out, in]
    w2 = torch.randn(experts * ffn, hidden)  # expert e's block is [in (ffn), out (hidden)]
    adapter = _Adapter(args=types.SimpleNamespace(num_experts=experts))
    house = adapter.from_hf({"h.0.w1": w1, "h.0.w2": w2})
    assert house["layers.0.experts.w1"].shape == (experts, ffn, hidden)
    assert house["layers.0.experts.w2"].shape == (experts, hidden, ffn)
    for e in range(experts):
        rows = slice(e * ffn, (e + 1) * ffn)
        assert torch.equal(house["layers.0.experts.w1"][e], w1[rows])
        assert torch.equal(house["layers.0.experts.w2"][e], w2[rows].t())
    assert house["layers.0.experts.w2"].is_contiguous()
    back = adapter.to_hf(house)
    assert torch.equal(back["h.0.w1"], w1) and torch.equal(back["h.0.w2"], w2)


def test_flat_matrices_split_by_each_layers_own_count():
    """A per-layer expert count (`num_experts` a list): layer 1's matrix holds 2 experts'
    rows, layer 0's 3, each split by its own count."""
    ffn, hidden = 5, 4
    w1 = {0: torch.randn(3 * ffn, hidden), 1: torch.randn(2 * ffn, hidden)}
    w2 = {0: torch.randn(3 * ffn, hidden), 1: torch.randn(2 * ffn, hidden)}
    adapter = _Adapter(args=types.SimpleNamespace(num_experts=[3, 2]))
    hf = {f"h.{i}.w{n}": w[i] for i in (0, 1) for n, w in ((1, w1), (2, w2))}
    house = adapter.from_hf(hf)
    assert house["layers.0.experts.w1"].shape == (3, ffn, hidden)
    assert house["layers.1.experts.w1"].shape == (2, ffn, hidden)
    assert house["layers.1.experts.w2"].shape == (2, hidden, ffn)
    assert torch.equal(house["layers.1.experts.w1"][1], w1[1][ffn:])
    back = adapter.to_hf(house)
    assert all(torch.equal(back[key], tensor) for key, tensor in hf.items())
