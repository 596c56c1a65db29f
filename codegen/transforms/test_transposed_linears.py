"""TransposedLinears: the adapter names the Conv1D keys, and the base adapter transposes them."""

import pytest
import torch

from codegen.adapter import StateDictAdapter
from codegen.models import references_dir
from codegen.scaffold.source import SourcePackage
from codegen.transforms.edits import EditError
from codegen.transforms.transposed_linears import TransposedLinears


def _llama() -> SourcePackage:
    return SourcePackage.from_directory(references_dir() / "llama")


def test_the_set_follows_the_key_table():
    package = _llama()
    TransposedLinears().apply(package, keys=["attn.c_attn.weight"], prefix="transformer.h")
    adapter = package.render()["state_dict_adapter.py"]
    assert (
        '        "lm_head.weight": "output.weight",\n    }\n'
        "    # stored [in, out] (Conv1D) in the checkpoint: transposed on load and on save\n"
        '    transposed = frozenset({"transformer.h.{}.attn.c_attn.weight"})\n'
    ) in adapter


def test_no_keys_is_refused():
    with pytest.raises(EditError):
        TransposedLinears().apply(_llama(), keys=[], prefix="transformer.h")


class _Adapter(StateDictAdapter):
    from_hf_map = {"h.{}.c_attn.weight": "layers.{}.wqkv.weight", "h.{}.ln.weight": "layers.{}.n"}
    transposed = frozenset({"h.{}.c_attn.weight"})


def test_listed_keys_load_transposed_and_round_trip_bit_for_bit():
    conv = torch.randn(4, 6)  # [in, out]
    norm = torch.randn(4)
    adapter = _Adapter(args=None)
    house = adapter.from_hf({"h.0.c_attn.weight": conv, "h.0.ln.weight": norm})
    assert torch.equal(house["layers.0.wqkv.weight"], conv.t())
    assert house["layers.0.wqkv.weight"].is_contiguous()
    assert torch.equal(house["layers.0.n"], norm)
    back = adapter.to_hf(house)
    assert torch.equal(back["h.0.c_attn.weight"], conv)
    assert torch.equal(back["h.0.ln.weight"], norm)
