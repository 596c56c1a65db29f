"""DropMoe: before/after on the deepseek_v3 reference."""

import pytest

from codegen.models import references_dir
from codegen.scaffold.source import SourcePackage
from codegen.transforms.drop_moe import DropMoe
from codegen.transforms.edits import EditError


def _package(reference):
    return SourcePackage.from_directory(references_dir() / reference)


def test_deepseek_v3_becomes_dense_on_every_layer():
    before = _package("deepseek_v3").render()
    assert "self.is_moe = layer_id >= args.n_dense_layers" in before["model.py"]
    assert "class MoE(" in before["model.py"] and "class Gate(" in before["model.py"]
    package = _package("deepseek_v3")
    DropMoe().apply(package)
    files = package.render()
    model = files["model.py"]
    assert "is_moe" not in model and "self.moe" not in model
    assert "class MoE(" not in model and "class Gate(" not in model
    assert "class FeedForward(" in model  # the dense SwiGLU stays
    assert "self.feed_forward = FeedForward(args.dim, args.hidden_dim)" in model
    assert "ffn = self.feed_forward" in model
    adapter = files["state_dict_adapter.py"]
    assert ".moe." not in adapter and "layers.{}.feed_forward.w1.weight" in adapter
    checks = files["args.py"].split("def _check_supported", 1)[1]
    # the refusals of MoE-only fields go (a dense config has none of them), the rest stay
    for gone in ("n_routed_experts", "n_group", "topk_group", "num_experts_per_tok"):
        assert gone not in checks
    assert "experts % groups" not in checks
    assert "hidden_act" in checks and "partial_rotary_factor" in checks


def _prose(source: str) -> str:
    """The docstrings and comments of `source`, lower-cased."""
    import ast
    import io
    import tokenize

    tree = ast.parse(source)
    nodes = [tree, *(n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef | ast.ClassDef))]
    docs = [ast.get_docstring(n) or "" for n in nodes]
    tokens = tokenize.generate_tokens(io.StringIO(source).readline)
    comments = [t.string for t in tokens if t.type == tokenize.COMMENT]
    return "\n".join(docs + comments).lower()


def test_the_prose_about_experts_goes_with_them():
    package = _package("deepseek_v3")
    before = package.render()
    assert "one tensor per routed expert" in before["state_dict_adapter.py"]
    assert "routed experts are split" in before["parallelize.py"]
    DropMoe().apply(package)
    files = package.render()
    for name in ("state_dict_adapter.py", "parallelize.py", "args.py"):
        prose = _prose(files[name])
        assert "expert" not in prose and "router" not in prose and "moe" not in prose, name
    plan = files["parallelize.py"]
    assert "(`tp`, `dp_shard`)" in plan and "`ep`" not in _prose(plan)
    # what still holds for the dense package stays
    assert "The attention biases exist only with attention_bias" in files["state_dict_adapter.py"]
    assert "Dense SwiGLUs are column-wise gate/up, row-wise down" in plan


def test_a_package_without_a_moe_choice_is_an_error():
    with pytest.raises(EditError):
        DropMoe().apply(_package("llama"))
