"""KeysAsValues: with attention_k_eq_v a full-attention layer builds no wv and its values are
the keys' projection (before k_norm and the rotation); sliding layers keep their wv."""

import pytest

from codegen.models import references_dir
from codegen.scaffold.source import SourcePackage
from codegen.transforms.edits import EditError
from codegen.transforms.keys_as_values import KeysAsValues
from codegen.transforms.testing import package_of


def _qwen3() -> SourcePackage:
    return SourcePackage.from_directory(references_dir() / "qwen3")


def test_values_come_from_the_key_projection_before_its_norm():
    package = _qwen3()
    before = package.render()["model.py"]
    assert "keys_as_values" not in before and "keys = self.wk(x)" not in before
    KeysAsValues().apply(package)
    files = package.render()
    model = files["model.py"]
    lines = [line.strip() for line in model.splitlines()]
    # the block hands the attention its index: the layer's type decides
    assert "self.attention = Attention(args, layer_id)" in lines
    assert (
        "keys_as_values = args.attention_k_eq_v"
        ' and args.layer_types[layer_id] != "sliding_attention"' in lines
    )
    assert "self.wv = None if keys_as_values else nn.Linear(" in model
    # the key projection runs once; k's norm reads it, and so do the values where wv is None
    at = lines.index("keys = self.wk(x)")
    assert lines[at + 1].startswith("k = self.k_norm(keys.view(")
    assert "(keys if self.wv is None else self.wv(x))" in lines[at + 2]
    assert model.count("self.wk(x)") == 1
    assert "attention_k_eq_v: bool = False" in files["args.py"]
    assert "attention_k_eq_v=hf_config.attention_k_eq_v," in files["args.py"]
    compile(model, "model.py", "exec")


def test_a_built_full_layer_attends_over_its_keys_projection(tmp_path):
    import importlib
    import sys

    import torch

    package = _qwen3()
    KeysAsValues().apply(package)
    folder = tmp_path / "gen_keys_as_values"
    folder.mkdir()
    for name, text in package.render().items():
        (folder / name).write_text(text)
    sys.path.insert(0, str(tmp_path))
    try:
        args_module = importlib.import_module("gen_keys_as_values.args")
        model_module = importlib.import_module("gen_keys_as_values.model")
    finally:
        sys.path.remove(str(tmp_path))
    args = args_module.ModelArgs(
        dim=16, n_layers=2, n_heads=2, n_kv_heads=1, head_dim=8, vocab_size=32, hidden_dim=12,
        sliding_window=4, layer_types=("sliding_attention", "full_attention"),
        attention_k_eq_v=True,
    )  # fmt: skip
    torch.manual_seed(0)
    model = model_module.Model(args)
    sliding, full = (layer.attention for layer in model.layers)
    assert sliding.wv is not None and full.wv is None
    assert "wv" not in dict(full.named_children())
    # values = the keys' projection, normed as values are: the same attention as one whose
    # wv is a copy of wk
    twin = model_module.Attention(
        args_module.ModelArgs(**{**vars(args), "attention_k_eq_v": False}), 1
    )
    twin.load_state_dict(full.state_dict(), strict=False)
    twin.wv.load_state_dict(full.wk.state_dict())
    x = torch.randn(1, 5, 16)
    rope = model.rotary(torch.arange(5).unsqueeze(0))
    with torch.no_grad():
        torch.testing.assert_close(full(x, rope, None), twin(x, rope, None))
        other = torch.nn.Linear(16, 8, bias=False)
        twin.wv.load_state_dict(other.state_dict())
        assert not torch.allclose(full(x, rope, None), twin(x, rope, None))


def test_no_value_projection_to_drop_is_an_error():
    package = package_of(
        {
            "model.py": (
                "class Attention:\n"
                "    def __init__(self, args, layer_id):\n"
                "        super().__init__()\n"
                "        self.wk = nn.Linear(1, 1)\n"
                "    def forward(self, x):\n"
                "        k = self.wk(x)\n"
            ),
            "args.py": (
                "from dataclasses import dataclass\n\n"
                "@dataclass\nclass ModelArgs:\n    dim: int = 1\n"
            ),
        }
    )
    with pytest.raises(EditError):
        KeysAsValues().apply(package)
