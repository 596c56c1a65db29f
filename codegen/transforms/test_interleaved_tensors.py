"""InterleavedTensors: the adapter names the interleaved checkpoint tensors, and the base
adapter regroups them on load as transformers' `Interleave` does and back on save."""

import pytest
import torch

from codegen.adapter import Fp8CheckpointError, StateDictAdapter
from codegen.scaffold.source import SourcePackage
from codegen.transforms.edits import EditError
from codegen.transforms.interleaved_tensors import InterleavedTensors
from codegen.transforms.testing import package_of

ADAPTER = """
from .adapter_base import StateDictAdapter as _KeyMapAdapter


class StateDictAdapter(_KeyMapAdapter):
    from_hf_map = {
        "model.layers.{}.mlp.experts.w13_weight": "layers.{}.moe.experts.w13",
        "model.layers.{}.mlp.experts.w2_weight": "layers.{}.moe.experts.w2",
    }
"""


def _package() -> SourcePackage:
    return package_of({"state_dict_adapter.py": ADAPTER})


def test_the_table_follows_the_key_table():
    package = _package()
    InterleavedTensors().apply(package, tensors=[("mlp.experts.w13_weight", 1)])
    adapter = package.render()["state_dict_adapter.py"]
    assert (
        '        "model.layers.{}.mlp.experts.w2_weight": "layers.{}.moe.experts.w2",\n'
        "    }\n"
        "    # stored with its two halves alternating along the dim (gate, up, gate, up...):\n"
        "    # regrouped into [first half | second half] on load, interleaved again on save\n"
        '    interleaved = {"mlp.experts.w13_weight": 1}\n'
    ) in adapter


def test_a_tensor_no_row_reads_is_refused():
    with pytest.raises(EditError, match="gate_up_proj"):
        InterleavedTensors().apply(_package(), tensors=[("mlp.experts.gate_up_proj", 1)])
    with pytest.raises(EditError):
        InterleavedTensors().apply(_package(), tensors=[])


class _Adapter(StateDictAdapter):
    from_hf_map = {
        "m.layers.{}.experts.w13_weight": "layers.{}.experts.w13",
        "m.layers.{}.experts.w2_weight": "layers.{}.experts.w2",
    }
    interleaved = {"experts.w13_weight": 1}


def test_rows_load_as_transformers_loads_them_and_round_trip_bit_for_bit():
    from transformers.core_model_loading import Interleave

    # 3 experts, gate rows g0..g3 and up rows u0..u3 stored g0, u0, g1, u1...
    gate, up = torch.randn(3, 4, 5), torch.randn(3, 4, 5)
    stored = torch.stack([gate, up], dim=2).flatten(1, 2)
    down = torch.randn(3, 5, 4)
    adapter = _Adapter(args=None)
    house = adapter.from_hf(
        {"m.layers.0.experts.w13_weight": stored, "m.layers.0.experts.w2_weight": down}
    )
    w13 = house["layers.0.experts.w13"]
    assert torch.equal(w13, torch.cat([gate, up], dim=1)) and w13.is_contiguous()
    hf = Interleave(dim=1).convert({"w13": stored}, ["w13"], ["gate_up_proj"])["gate_up_proj"]
    assert torch.equal(w13, hf)  # as transformers loads it
    assert torch.equal(house["layers.0.experts.w2"], down)  # other tensors as stored
    back = adapter.to_hf(house)
    assert torch.equal(back["m.layers.0.experts.w13_weight"], stored)
    assert torch.equal(back["m.layers.0.experts.w2_weight"], down)


def test_an_odd_size_or_a_kept_fp8_weight_is_refused():
    adapter = _Adapter(args=None)
    with pytest.raises(ValueError, match="do not interleave"):
        adapter.from_hf({"m.layers.0.experts.w13_weight": torch.randn(2, 3, 4)})
    fp8 = _Adapter(args=None, quantization_config={"weight_block_size": [2, 2]}, keep_fp8=True)
    weight = torch.randn(2, 4, 4).to(torch.float8_e4m3fn)
    with pytest.raises(Fp8CheckpointError, match="interleaved"):
        fp8.from_hf(
            {
                "m.layers.0.experts.w13_weight": weight,
                "m.layers.0.experts.w13_weight_scale": torch.ones(2, 2, 2),
            }
        )
