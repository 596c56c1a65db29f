"""SyncShardPlan: before/after on reference packages."""

from __future__ import annotations

import ast

from codegen.models import references_dir
from codegen.scaffold.source import SourcePackage
from codegen.scaffold.table import load_sharding
from codegen.transforms.add_moe import AddMoe
from codegen.transforms.qk_norm import SetQkNorm
from codegen.transforms.shard_plan import SyncShardPlan


def _tables(package) -> tuple[dict, set]:
    """PLAN and OPTIONAL as the rendered parallelize.py defines them."""
    values = {}
    for node in ast.parse(package.render()["parallelize.py"]).body:
        target = getattr(node, "target", None) or (
            node.targets[0] if hasattr(node, "targets") else None
        )
        if isinstance(target, ast.Name) and target.id in ("PLAN", "OPTIONAL"):
            values[target.id] = node.value
    optional = values["OPTIONAL"]
    strings = {n.value for n in ast.walk(optional) if isinstance(n, ast.Constant)}
    return ast.literal_eval(values["PLAN"]), strings


def _sync(package, steps) -> None:
    adds, optional = {}, []
    for transform, params in steps:
        for row in load_sharding().shards_of(transform, params):
            adds.update(row.entries(params))
            optional += row.optional
    SyncShardPlan().apply(package, adds=adds, optional=optional)


def test_entries_of_removed_modules_are_dropped():
    package = SourcePackage.from_directory(references_dir() / "qwen3")
    before, _ = _tables(package)
    assert before["layers.*.attention.q_norm"] == "per_head_norm"
    SetQkNorm().apply(package, kind="none")
    _sync(package, [("set_qk_norm", {"kind": "none"})])
    after, optional = _tables(package)
    dropped = ("layers.*.attention.q_norm", "layers.*.attention.k_norm")
    assert after == {key: style for key, style in before.items() if key not in dropped}
    assert optional == set()


def test_a_rule_adding_modules_brings_their_styles():
    package = SourcePackage.from_directory(references_dir() / "llama")
    params = {"dense_rule": "sparse_step", "norm_topk_prob": "config"}
    AddMoe().apply(package, **params)
    _sync(package, [("add_moe", params)])
    plan, optional = _tables(package)
    assert plan["layers.*.moe.experts"] == "experts"
    assert plan["layers.*.moe.experts.w2"] == "expert_rowwise"
    assert plan["layers.*.moe.gate"] == "replicate"
    assert plan["layers.*.feed_forward.w1"] == "colwise"  # dense layers keep theirs
    assert "layers.*.feed_forward.w1" in optional


def test_full_qk_norm_is_sharded_with_its_projection():
    package = SourcePackage.from_directory(references_dir() / "llama")
    SetQkNorm().apply(package, kind="full")
    _sync(package, [("set_qk_norm", {"kind": "full"})])
    plan, _ = _tables(package)
    assert plan["layers.*.attention.q_norm"] == "sharded_norm"


def test_a_package_without_a_plan_is_left_alone():
    package = SourcePackage.from_directory(references_dir() / "llama")
    del package.files["parallelize.py"]
    SyncShardPlan().apply(package, adds={"layers.*.x": "replicate"})
    assert "parallelize.py" not in package.files


def test_entries_are_pruned_by_the_class_that_builds_them():
    # fused experts hold w13: the experts' w1/w3 entries go, the dense FeedForward's w1 stays
    from codegen.transforms.fused_experts import FuseExperts

    package = SourcePackage.from_directory(references_dir() / "qwen3_moe")
    FuseExperts().apply(package, layout="concat", transposed=False)
    _sync(package, [])
    plan, optional = _tables(package)
    assert "layers.*.moe.experts.w1" not in plan and "layers.*.moe.experts.w3" not in plan
    assert plan["layers.*.moe.experts.w2"] == "expert_rowwise"
    assert plan["layers.*.feed_forward.w1"] == "colwise"
    assert "layers.*.feed_forward.w1" in optional


def test_fused_qkv_entries_follow_the_row_layout():
    from codegen.transforms.fused_qkv import FuseQkv

    for layout, style in (("contiguous", "colwise_qkv"), ("grouped", "colwise_qkv_grouped")):
        package = SourcePackage.from_directory(references_dir() / "llama")
        FuseQkv().apply(package, layout=layout)
        _sync(package, [("fuse_qkv", {"layout": layout})])
        plan, _ = _tables(package)
        assert plan["layers.*.attention.wqkv"] == style
        assert not {"layers.*.attention.wq", "layers.*.attention.wk"} & set(plan)


def test_expert_biases_follow_the_weights_the_experts_hold():
    from codegen.transforms.expert_bias import SetExpertBias
    from codegen.transforms.fused_experts import FuseExperts

    package = SourcePackage.from_directory(references_dir() / "qwen3_moe")
    FuseExperts().apply(package, layout="interleaved", transposed=True)
    SetExpertBias().apply(package)
    steps = [("fuse_experts", {"layout": "interleaved"}), ("set_expert_bias", {})]
    _sync(package, steps)
    plan, optional = _tables(package)
    assert plan["layers.*.moe.experts.w13"] == "expert_colwise"
    biases = {key for key in plan if key.endswith("_bias")}
    assert biases == {"layers.*.moe.experts.w13_bias", "layers.*.moe.experts.w2_bias"}
    assert biases <= optional  # a config may keep no MoE layer


def test_entries_through_a_module_list_index_it():
    """LongCat-Flash's listed sublayers: `layers.*.attention.wq_b` names no module of a block
    whose `attention` is an nn.ModuleList; the entry (and its OPTIONAL twin) gets the `*`."""
    from codegen.transforms.shortcut_sublayers import ShortcutSublayers
    from codegen.transforms.test_shortcut_sublayers import SUBLAYERS

    package = SourcePackage.from_directory(references_dir() / "deepseek_v3")
    before, _ = _tables(package)
    ShortcutSublayers().apply(package, sublayers=SUBLAYERS)
    _sync(package, [])
    plan, optional = _tables(package)
    assert plan["layers.*.attention.*.wq_b"] == before["layers.*.attention.wq_b"] == "colwise"
    assert plan["layers.*.attention_norm.*"] == "replicate"
    assert plan["layers.*.feed_forward.*.w2"] == "rowwise"
    assert plan["layers.*.moe.experts.w2"] == "expert_rowwise"  # not listed: as it was
    assert plan["layers.*.moe.gate"] == "replicate" and plan["tok_embeddings"] == "vocab_embedding"
    assert "layers.*.attention.wq_b" not in plan
    assert "layers.*.attention.*.wq_a" in optional and "layers.*.attention.wq_a" not in optional


def test_side_tables_are_replicated_under_the_names_the_transform_gives_them():
    """A row's `each_of` parameter lists modules by HF path: each joins the plan under its
    last segment (RoCBert's side tables), next to the row's fixed entries."""
    from codegen.transforms.embedding_module import EmbeddingModule
    from codegen.transforms.side_tables import SideTables

    tables = tuple(
        (f"roc_bert.embeddings.{name}_embed", f"{name}_vocab_size", f"{name}_embed_dim", "", "")
        for name in ("shape", "pronunciation")
    )
    params = {"tables": tables, "projection": "roc_bert.embeddings.map_inputs_layer"}
    (row,) = load_sharding().shards_of("side_tables", params)
    assert row.entries(params) == {
        "concat_proj": "replicate",
        "shape_embed": "replicate",
        "pronunciation_embed": "replicate",
    }
    package = SourcePackage.from_directory(references_dir() / "llama")
    EmbeddingModule().apply(package, word_table="roc_bert.embeddings.word_embeddings")
    with_ids = tuple((*t[:4], f"input_{t[0].rsplit('.', 1)[-1]}_ids") for t in tables)
    SideTables().apply(package, **{**params, "tables": with_ids})
    _sync(package, [("side_tables", params)])
    plan, optional = _tables(package)
    assert {k: plan[k] for k in row.entries(params)} == row.entries(params)
    assert "concat_proj" in optional


def test_entries_are_pruned_through_a_picked_class():
    """A block picking its attention class per layer (`(A if sliding else B)(args)`) builds
    both: an entry naming a parameter neither builds is dropped (the k clip without a
    learned scale, where q's has one)."""
    from codegen.transforms.testing import package_of

    model = """
import torch.nn as nn


class Clip(nn.Module):
    def __init__(self):
        super().__init__()
        self.threshold = 1.0


class ScaledClip(Clip):
    def __init__(self):
        super().__init__()
        self.scale = nn.Parameter(torch.ones(2))


class Attention(nn.Module):
    def __init__(self, args):
        super().__init__()
        self.q_clip = ScaledClip()
        self.k_clip = Clip()


class Block(nn.Module):
    def __init__(self, args, sliding):
        super().__init__()
        self.attention = (Attention if sliding else Attention)(args)


class Model(nn.Module):
    def __init__(self, args):
        super().__init__()
        self.layers = nn.ModuleList(Block(args, True) for _ in range(2))
"""
    plan = """PLAN = {
    "layers.*.attention.q_clip.scale": "head_param",
    "layers.*.attention.k_clip.scale": "head_param",
}
OPTIONAL: frozenset[str] = frozenset()
"""
    package = package_of({"model.py": model, "parallelize.py": plan})
    SyncShardPlan().apply(package)
    after, _ = _tables(package)
    assert after == {"layers.*.attention.q_clip.scale": "head_param"}


def test_a_subclass_builds_the_parts_its_base_assigns():
    """An attribute built by a subclass of a class in model.py keeps the entries of the
    parts the base class assigns (the subclass assigns none of its own)."""
    from codegen.scaffold.source import parse_source

    package = SourcePackage.from_directory(references_dir() / "llama")
    before, _ = _tables(package)
    assert before["layers.*.attention.wq"] == "colwise"
    code = package.render()["model.py"]
    code = code.replace("self.attention = Attention(args)", "self.attention = Narrow(args)")
    code += '\n\nclass Narrow(Attention):\n    """The attention, as it is."""\n'
    package.files["model.py"] = parse_source(code)
    SyncShardPlan().apply(package)
    after, _ = _tables(package)
    assert after == before


def _docstrings(package) -> tuple[str, str]:
    """The module docstring of parallelize.py and its parallelize function's."""
    tree = ast.parse(package.render()["parallelize.py"])
    function = next(n for n in tree.body if isinstance(n, ast.FunctionDef))
    return tuple(" ".join(ast.get_docstring(n).split()) for n in (tree, function))


def test_a_plan_given_experts_says_how_it_splits_them():
    package = SourcePackage.from_directory(references_dir() / "llama")
    assert "expert" not in _docstrings(package)[0]
    params = {"dense_rule": "sparse_step", "norm_topk_prob": "config"}
    AddMoe().apply(package, **params)
    _sync(package, [("add_moe", params)])
    module, function = _docstrings(package)
    assert "(`tp`, `dp_shard`, `ep`)" in module
    assert "the stacked routed experts are split over `ep` by expert" in module
    assert "shared expert" not in module  # AddMoe builds none
    assert "(dims `tp`, `dp_shard`, `ep`; absent = 1)" in function


def test_a_plan_left_without_experts_says_nothing_of_them():
    from codegen.transforms.drop_moe import DropMoe

    package = SourcePackage.from_directory(references_dir() / "qwen3_moe")
    assert "routed experts are split over `ep`" in _docstrings(package)[0]
    DropMoe().apply(package)
    _sync(package, [])
    module, function = _docstrings(package)
    for text in (module, function):
        assert "expert" not in text and "router" not in text and "`ep`" not in text
    assert "(`tp`, `dp_shard`)" in module
