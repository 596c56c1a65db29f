"""GuardLayerLists: a field the HF code takes as an int or a per-layer list, read by the
package as one int, is refused as a list in one line."""

from __future__ import annotations

import importlib
import sys
from types import SimpleNamespace

import libcst.matchers as m
import pytest

from codegen.models import references_dir
from codegen.scaffold.source import SourcePackage
from codegen.transforms.edits import findall
from codegen.transforms.guard_layer_lists import GuardLayerLists

_TYPE_TEST = m.Call(func=m.Name("isinstance"))


def test_before_a_list_reaches_the_int_unchecked():
    package = SourcePackage.from_directory(references_dir() / "qwen3_moe")
    assert not findall(package.module("args.py"), _TYPE_TEST)


def test_after_a_read_field_is_refused_as_a_list_and_an_unread_one_left(tmp_path):
    package = SourcePackage.from_directory(references_dir() / "qwen3_moe")
    GuardLayerLists().apply(package, fields=["num_experts", "never_read"])
    args = package.module("args.py")
    checked = m.Arg(m.Attribute(m.Name("hf_config"), m.Name("num_experts")))
    assert findall(args, m.Call(func=m.Name("isinstance"), args=[checked, m.Arg(m.Name("int"))]))
    assert not findall(args, m.Attribute(m.Name("hf_config"), m.Name("never_read")))
    args_module = _load(package, tmp_path, "gen_guard_layer_lists")
    config = _config()
    assert args_module.ModelArgs.from_hf_config(config).num_experts == 4
    # the installed class types the field int; a remote config class need not
    config = SimpleNamespace(**{**config.to_dict(), "num_experts": [4, 2, 4]})
    with pytest.raises(NotImplementedError) as refused:
        args_module.ModelArgs.from_hf_config(config)
    message = str(refused.value)
    assert "\n" not in message
    assert message == "qwen3_moe: num_experts=[4, 2, 4] per layer is not supported: give one int"


def _config():
    transformers = pytest.importorskip("transformers")
    return transformers.Qwen3MoeConfig(
        hidden_size=32,
        intermediate_size=48,
        moe_intermediate_size=16,
        num_hidden_layers=3,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=8,
        vocab_size=64,
        num_experts=4,
        num_experts_per_tok=2,
    )


def _load(package: SourcePackage, tmp_path, name: str):
    folder = tmp_path / name
    folder.mkdir()
    for filename, text in package.render().items():
        (folder / filename).write_text(text)
    sys.path.insert(0, str(tmp_path))
    try:
        return importlib.import_module(f"{name}.args")
    finally:
        sys.path.remove(str(tmp_path))
