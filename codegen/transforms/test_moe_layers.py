"""SetMoeLayers and add_moe's `condition` rule: before/after on the real references."""

from __future__ import annotations

import pytest

from codegen.models import references_dir
from codegen.scaffold.source import SourcePackage
from codegen.transforms.add_moe import AddMoe
from codegen.transforms.edits import EditError
from codegen.transforms.moe_layers import SetMoeLayers, config_reads


def reference(name: str) -> SourcePackage:
    return SourcePackage.from_directory(references_dir() / name)


def _is_moe_layer(args_source: str, **fields):
    """Evaluate the package's ModelArgs.is_moe_layer over `fields` (a plain namespace)."""
    import libcst as cst
    import libcst.matchers as m

    module = cst.parse_module(args_source)
    (method,) = m.findall(module, m.FunctionDef(name=m.Name("is_moe_layer")))
    namespace: dict = {}
    exec(cst.Module([]).code_for_node(method).replace("-> bool", ""), namespace)  # noqa: S102
    this = type("Args", (), fields)()
    return [namespace["is_moe_layer"](this, i) for i in range(4)]


def test_per_layer_type_list_replaces_the_sparse_step_rule():
    package = reference("qwen3_moe")
    before = package.render()["args.py"]
    assert "(layer_id + 1) % self.decoder_sparse_step == 0" in before
    SetMoeLayers().apply(package, condition='config.mlp_layer_types[layer_idx] == "sparse"')
    files = package.render()
    args = files["args.py"]
    assert args.count("def is_moe_layer") == 1
    assert 'return self.mlp_layer_types[layer_id] == "sparse"' in args
    assert "mlp_layer_types: tuple[str, ...] = ()" in args
    assert "mlp_layer_types=tuple(hf_config.mlp_layer_types)," in args
    assert "self.is_moe = args.is_moe_layer(layer_id)" in files["model.py"]
    types = ("dense", "sparse", "sparse", "dense")
    assert _is_moe_layer(args, mlp_layer_types=types) == [False, True, True, False]


def test_interval_with_start_and_end_on_a_dense_reference():
    condition = (
        "((layer_idx + 1) % config.moe_layer_interval == 0) and layer_idx >= "
        "config.moe_layer_start_index and layer_idx <= config.moe_layer_end_index"
    )
    package = reference("llama")
    assert "is_moe" not in package.render()["model.py"]
    AddMoe().apply(package, dense_rule="condition", norm_topk_prob="config", condition=condition)
    files = package.render()
    args, model = files["args.py"], files["model.py"]
    for name in ("moe_layer_interval", "moe_layer_start_index", "moe_layer_end_index"):
        assert f"    {name}: int = 0\n" in args and f"{name}=hf_config.{name}," in args
    assert "self.is_moe = args.is_moe_layer(layer_id)" in model
    assert "TransformerBlock(args, i) for i in range(args.n_layers)" in model
    fields = {"moe_layer_interval": 1, "moe_layer_start_index": 1, "moe_layer_end_index": 2}
    assert _is_moe_layer(args, **fields) == [False, True, True, False]


def test_field_kinds_follow_how_the_condition_reads_them():
    import libcst as cst

    reads = config_reads(
        cst.parse_expression(
            "config.moe_enabled and layer_idx not in config.mlp_only_layers"
            " and config.kinds[layer_idx] == 'x' and layer_idx >= config.first"
        )
    )
    assert reads == {
        "moe_enabled": "bool",
        "mlp_only_layers": "ints",
        "kinds": "strings",
        "first": "int",
    }


def test_refusals():
    with pytest.raises(EditError):
        SetMoeLayers().apply(reference("llama"), condition="layer_idx >= config.k")
    with pytest.raises(ValueError, match="cannot be evaluated"):
        SetMoeLayers().apply(reference("qwen3_moe"), condition="unknown")
    with pytest.raises(ValueError, match="reads no config field"):
        SetMoeLayers().apply(reference("qwen3_moe"), condition="layer_idx > 2")
