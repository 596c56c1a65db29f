"""DescribeShardPlan: parallelize.py's prose before/after rules change the plan."""

from __future__ import annotations

import ast

from codegen.models import references_dir
from codegen.scaffold.source import SourcePackage
from codegen.scaffold.table import load_sharding
from codegen.transforms.add_moe import AddMoe
from codegen.transforms.ffn_kind import SetFfnKind
from codegen.transforms.fused_qkv import FuseQkv
from codegen.transforms.plan_docstring import DescribeShardPlan, describe
from codegen.transforms.shard_plan import SyncShardPlan


def _planned(reference: str, steps) -> tuple[str, str]:
    """The reference with `steps` (transform, params) applied, its plan synced and described:
    parallelize.py's module docstring and `parallelize`'s."""
    package = SourcePackage.from_directory(references_dir() / reference)
    adds, optional = {}, []
    for transform, params in steps:
        transform.apply(package, **params)
        for row in load_sharding().shards_of(transform.name, params):
            adds.update(row.entries(params))
            optional += row.optional
    SyncShardPlan().apply(package, adds=adds, optional=optional)
    DescribeShardPlan().apply(package)
    return _docstrings(package.render()["parallelize.py"])


def _docstrings(text: str) -> tuple[str, str]:
    tree = ast.parse(text)
    function = next(n for n in tree.body if isinstance(n, ast.FunctionDef))
    return ast.get_docstring(tree, clean=False), ast.get_docstring(function, clean=False)


def _prose(text: str) -> str:
    return " ".join(text.split())


def test_a_plan_the_reference_sentence_fits_is_left_as_written():
    reference = (references_dir() / "llama" / "parallelize.py").read_text()
    assert _planned("llama", []) == _docstrings(reference)


def test_fused_qkv_and_a_gelu_mlp_are_described_as_built():
    gelu = {"kind": "gelu_mlp", "activation": "gelu_pytorch_tanh"}
    text = _prose(
        _planned("llama", [(FuseQkv(), {"layout": "contiguous"}), (SetFfnKind(), gelu)])[0]
    )
    assert "Column-wise q/k/v and gate/up" not in text
    assert "Column-wise fused q/k/v and up, row-wise o and down, the embedding" in text
    assert "FSDP2 shards each block, then the root." in text  # the rest of the paragraph kept


def test_routed_experts_name_the_ep_dim():
    params = {"dense_rule": "sparse_step", "norm_topk_prob": "config"}
    module, function = _planned("llama", [(AddMoe(), params)])
    assert module.startswith("The llama shard plan over a DeviceMesh (`tp`, `dp_shard`, `ep`).")
    text = _prose(module)
    # said once, in the MoE paragraph, not again in the sentence on the other splits
    assert text.count("routed experts") == 1, text
    assert "the stacked routed experts are split over `ep` by expert" in text
    assert "the router replicated" not in text
    assert "gate/up and gate/up" not in text
    assert max(len(line) for line in module.splitlines()) <= 92
    assert (
        function
        == "Shard `model` in place over `mesh` (dims `tp`, `dp_shard`, `ep`; absent = 1), returned."
    )


def test_parts_without_a_word_are_named_with_their_module():
    plan = {
        "layers.*.attention": "replicate",
        "layers.*.attention.wq": "replicate",
        "layers.*.attention.router": "replicate",
        "layers.*.attention_norm": "replicate",
        "layers.*.moe.gate": "replicate",
        "pos_embeddings": "replicate",
    }
    assert describe(plan) == (
        "The router, the attention's `router`/`wq` and `pos_embeddings` replicated,"
        " norms replicated"
    )
