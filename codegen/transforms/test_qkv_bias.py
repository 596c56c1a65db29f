"""SetQkvBias / SetOutputBias: fixed biases, or the target's own config switch read."""

import pytest

from codegen.models import references_dir
from codegen.scaffold.source import SourcePackage
from codegen.transforms.o_bias import SetOutputBias
from codegen.transforms.qkv_bias import SetQkvBias

ROW = '"model.layers.{}.self_attn.k_proj.bias": "layers.{}.attention.wk.bias"'
O_ROW = '"model.layers.{}.self_attn.o_proj.bias": "layers.{}.attention.wo.bias"'


def _llama() -> SourcePackage:
    return SourcePackage.from_directory(references_dir() / "llama")


@pytest.mark.parametrize("enabled", [True, False])
def test_a_fixed_setting_replaces_the_references_switch(enabled):
    package = _llama()
    SetQkvBias().apply(package, enabled=enabled)
    files = package.render()
    assert (
        f"self.wk = nn.Linear(args.dim, args.n_kv_heads * args.head_dim, bias={enabled})"
        in (files["model.py"])
    )
    assert (
        "self.wo = nn.Linear(args.n_heads * args.head_dim, args.dim, bias=args.attention_bias)"
        in (files["model.py"])
    )
    assert (ROW in files["state_dict_adapter.py"]) is enabled


def test_a_config_switch_of_another_name_is_read():
    package = _llama()
    SetQkvBias().apply(package, enabled="use_qkv_bias")
    SetOutputBias().apply(package, enabled=False)
    files = package.render()
    model, args = files["model.py"], files["args.py"]
    assert (
        "self.wq = nn.Linear(args.dim, args.n_heads * args.head_dim, bias=args.use_qkv_bias)"
        in (model)
    )
    assert "self.wo = nn.Linear(args.n_heads * args.head_dim, args.dim, bias=False)" in model
    assert "use_qkv_bias: bool = False  # q/k/v biases" in args
    assert "use_qkv_bias=hf_config.use_qkv_bias," in args
    assert ROW in files["state_dict_adapter.py"] and O_ROW not in files["state_dict_adapter.py"]


def test_a_switch_field_is_added_once():
    package = _llama()
    SetQkvBias().apply(package, enabled="bias")
    SetOutputBias().apply(package, enabled="bias")
    args = package.render()["args.py"]
    assert args.count("\n    bias: bool = False") == 1
    assert args.count("=hf_config.bias,") == 1
