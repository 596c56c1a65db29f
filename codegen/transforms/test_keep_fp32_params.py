"""KeepFp32Params: the listed parameters stay fp32 through a bf16 cast; the rest is cast."""

import importlib.util
import sys

import pytest
import torch

from codegen.models import references_dir
from codegen.scaffold.source import SourcePackage
from codegen.scaffold.standalone import vendor
from codegen.transforms.attention_sinks import AddAttentionSinks
from codegen.transforms.edits import EditError
from codegen.transforms.keep_fp32_params import KeepFp32Params

KEYS = ("model.layers.{}.self_attn.sinks", "model.layers.{}.mlp.gate_proj.weight")


def _package() -> SourcePackage:
    package = SourcePackage.from_directory(references_dir() / "qwen3")
    AddAttentionSinks().apply(package)
    KeepFp32Params().apply(package, keys=KEYS)
    return package


def test_the_house_names_come_from_the_adapter_rows():
    code = _package().render()["model.py"]
    assert 'FP32_TENSORS = ("layers.*.attention.sinks", "layers.*.feed_forward.w1.weight",)' in (
        code
    )
    assert "    def _apply(self, fn, recurse=True):" in code


def test_a_bf16_cast_keeps_the_listed_parameters_fp32(tmp_path):
    package = _package()
    folder = tmp_path / "qwen3x"
    folder.mkdir()
    for name, text in vendor(package.files, index=package.index).items():
        (folder / name).write_text(text)
    spec = importlib.util.spec_from_file_location(
        "qwen3x", folder / "__init__.py", submodule_search_locations=[str(folder)]
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules["qwen3x"] = module
    try:
        spec.loader.exec_module(module)
        model_module = importlib.import_module("qwen3x.model")
        args_module = importlib.import_module("qwen3x.args")
        args = args_module.ModelArgs(
            dim=32, n_layers=2, n_heads=2, n_kv_heads=1, head_dim=16, hidden_dim=48, vocab_size=64
        )
        model = model_module.Model(args)
        sinks = model.layers[0].attention.sinks.detach().clone()
        model.to(torch.bfloat16)
    finally:
        for name in [n for n in sys.modules if n == "qwen3x" or n.startswith("qwen3x.")]:
            del sys.modules[name]
    dtypes = {name: p.dtype for name, p in model.named_parameters()}
    assert dtypes["layers.0.attention.sinks"] == torch.float32
    assert dtypes["layers.1.feed_forward.w1.weight"] == torch.float32
    assert dtypes["layers.0.attention.wq.weight"] == torch.bfloat16
    assert torch.equal(model.layers[0].attention.sinks, sinks)  # not rounded


def test_a_key_without_an_adapter_row_is_an_error():
    package = SourcePackage.from_directory(references_dir() / "qwen3")
    with pytest.raises(EditError):
        KeepFp32Params().apply(package, keys=("model.layers.{}.mixer.nothing",))


def test_a_router_correction_bias_buffer_is_kept_too():
    """GLM-4-MoE keeps the router's correction bias, a buffer, in fp32: a llama made MoE
    with that router lists it; deepseek_v3's router keeps its own (its `_apply`), so the
    reference gets no second mechanism."""
    from codegen.transforms.add_moe import AddMoe
    from codegen.transforms.moe_router import SetMoeRouter

    key = ("model.layers.{}.mlp.gate.e_score_correction_bias",)
    package = SourcePackage.from_directory(references_dir() / "llama")
    AddMoe().apply(package, dense_rule="first_k", norm_topk_prob="config")
    SetMoeRouter().apply(package, router="grouped_topk", correction_bias=True)
    KeepFp32Params().apply(package, keys=key)
    code = package.render()["model.py"]
    assert 'FP32_TENSORS = ("layers.*.moe.e_score_correction_bias",)' in code
    assert "named = [*self.named_parameters(), *self.named_buffers()]" in code

    reference = SourcePackage.from_directory(references_dir() / "deepseek_v3")
    before = reference.render()["model.py"]
    KeepFp32Params().apply(reference, keys=key)
    assert reference.render()["model.py"] == before


def test_a_key_the_checkpoint_stores_one_level_up_is_found_by_its_name():
    """ExaONE-MoE's module key `mlp.gate.e_score_correction_bias` is stored as
    `mlp.e_score_correction_bias`: the one row ending in the tensor's name is it."""
    from codegen.transforms.keep_fp32_params import _by_suffix

    rows = {
        "model.layers.{}.mlp.e_score_correction_bias": "layers.{}.moe.e_score_correction_bias",
        "model.layers.{}.mlp.gate.weight": "layers.{}.moe.gate.weight",
    }
    key = "model.layers.{}.mlp.gate.e_score_correction_bias"
    assert _by_suffix(rows, key) == "layers.{}.moe.e_score_correction_bias"
    assert _by_suffix(rows, "model.layers.{}.mlp.gate.nothing") is None
    # a checkpoint name of its own (Hunyuan-V3's `expert_bias`): the house kept the module's
    renamed = {"model.layers.{}.mlp.expert_bias": "layers.{}.moe.e_score_correction_bias"}
    assert _by_suffix(renamed, key) == "layers.{}.moe.e_score_correction_bias"


class _Checkpoint:
    """The analysed checkpoint's module keys (`features.state_dict`), as `Features.get` reads."""

    def __init__(self, layer_keys):
        from codegen.analyze.features import StateDict

        self.state_dict = StateDict(
            prefix="model.layers",
            layer_keys=layer_keys,
            other_keys=("model.embed_tokens.weight", "model.norm.weight", "lm_head.weight"),
        )

    def get(self, dotted):
        return getattr(self, dotted, None)


def test_a_row_under_the_reference_name_is_found_as_align_hf_keys_pairs_it():
    """DeepSeek-V4 calls the keys' norm `kv_norm`; the adapter still names it qwen3's `k_norm`
    until align_hf_keys (a later step) renames it: the row it renames to the key is the one."""
    from codegen.transforms.keys_only_norm import KeysOnlyNorm

    package = SourcePackage.from_directory(references_dir() / "qwen3")
    KeysOnlyNorm().apply(package)
    layer_keys = (
        "self_attn.q_proj.weight",
        "self_attn.k_proj.weight",
        "self_attn.v_proj.weight",
        "self_attn.o_proj.weight",
        "self_attn.kv_norm.weight",
        "mlp.gate_proj.weight",
        "mlp.up_proj.weight",
        "mlp.down_proj.weight",
        "input_layernorm.weight",
        "post_attention_layernorm.weight",
    )
    keys = ("model.layers.{}.self_attn.kv_norm.weight",)
    KeepFp32Params().apply(package, _Checkpoint(layer_keys), keys=keys)
    assert 'FP32_TENSORS = ("layers.*.attention.k_norm.weight",)' in package.render()["model.py"]
    # with no checkpoint keys to pair against there is no row for it
    with pytest.raises(EditError, match="no adapter row"):
        fresh = SourcePackage.from_directory(references_dir() / "qwen3")
        KeysOnlyNorm().apply(fresh)
        KeepFp32Params().apply(fresh, keys=keys)


def test_a_nested_module_of_the_same_name_is_not_the_key():
    """DeepSeek-V4's attention `kv_norm` (its row still under the reference's `k_norm`) is
    not its compressor's `compressor.kv_norm`, the one row whose key ends alike."""
    from codegen.transforms.keep_fp32_params import _by_suffix

    rows = {
        "model.layers.{}.self_attn.k_norm.weight": "layers.{}.attention.k_norm.weight",
        "model.layers.{}.self_attn.compressor.kv_norm.weight": (
            "layers.{}.attention.compressor.norm.weight"
        ),
    }
    found = _by_suffix(rows, "model.layers.{}.self_attn.kv_norm.weight")
    assert found == "layers.{}.attention.k_norm.weight"
    key = "model.layers.{}.self_attn.compressor.kv_norm.weight"
    assert _by_suffix(rows, key) == "layers.{}.attention.compressor.norm.weight"
