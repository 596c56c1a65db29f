"""FuseExperts: before/after on add_moe's experts and the qwen3_moe reference."""

from __future__ import annotations

import types

import pytest

from codegen.errors import CodegenError
from codegen.models import references_dir
from codegen.scaffold.source import SourcePackage
from codegen.transforms._moe_edits import own_experts
from codegen.transforms.add_moe import AddMoe
from codegen.transforms.edits import EditError
from codegen.transforms.fused_experts import FuseExperts, layout_of, transposed_of
from codegen.transforms.testing import package_of


def moe_package(reference: str = "llama") -> SourcePackage:
    package = SourcePackage.from_directory(references_dir() / reference)
    if reference != "qwen3_moe":
        AddMoe().apply(package, dense_rule="all", norm_topk_prob="always")
    return package


def modeling(tmp_path, source: str):
    path = tmp_path / "modeling_x.py"
    path.write_text(source)
    return types.SimpleNamespace(
        get=lambda dotted: str(path) if dotted == "source.modeling" else None
    )


def test_interleaved_transposed_experts_load_as_stored():
    package = moe_package()
    FuseExperts().apply(package, layout="interleaved", transposed=True)
    files = package.render()
    model = files["model.py"]
    assert "self.w13 = nn.Parameter(torch.empty(num_experts, dim, 2 * hidden_dim))" in model
    assert "self.w2 = nn.Parameter(torch.empty(num_experts, hidden_dim, dim))" in model
    assert "self.w1 " not in model and "self.w3 " not in model
    assert (
        "        gate_up = grouped_mm(rows, self.w13, offs=offsets)\n"
        "        gate, up = gate_up[..., ::2], gate_up[..., 1::2]\n"
        "        hidden = F.silu(gate) * up\n"
        "        out = grouped_mm(hidden, self.w2, offs=offsets) * weights"
    ) in model
    assert "held as stored on disk, [num_experts, in, out]." in model
    adapter = files["state_dict_adapter.py"]
    assert '"model.layers.{}.mlp.experts.gate_up_proj": "layers.{}.moe.experts.w13",' in adapter
    assert '"model.layers.{}.mlp.experts.down_proj": "layers.{}.moe.experts.w2",' in adapter
    assert "experts.{}" not in adapter and 'experts.w1"' not in adapter
    assert "experts.w3" not in adapter


def test_concat_untransposed_on_the_qwen3_moe_reference():
    package = moe_package("qwen3_moe")
    FuseExperts().apply(package, layout="concat", transposed=False)
    model = package.render()["model.py"]
    assert "self.w13 = nn.Parameter(torch.empty(num_experts, 2 * hidden_dim, dim))" in model
    assert "self.w2 = nn.Parameter(torch.empty(num_experts, dim, hidden_dim))" in model
    assert (
        "        gate_up = grouped_mm(rows, self.w13.mT, offs=offsets)\n"
        "        gate, up = gate_up.chunk(2, dim=-1)\n"
        "        hidden = F.silu(gate) * up\n"
    ) in model


def test_transposed_auto_reads_the_experts_decorator(tmp_path):
    decorated = (
        "@use_experts_implementation(is_concatenated=False, is_transposed=True)\nclass E: ..."
    )
    assert transposed_of(modeling(tmp_path, decorated)) is True
    assert transposed_of(modeling(tmp_path, "@use_experts_implementation()\nclass E: ...")) is False
    with pytest.raises(CodegenError, match="no @use_experts_implementation"):
        transposed_of(modeling(tmp_path, "class E: ..."))


def test_refuses_without_experts_or_with_an_unknown_layout():
    dense = SourcePackage.from_directory(references_dir() / "llama")
    with pytest.raises(EditError, match="no Experts class"):
        FuseExperts().apply(dense, layout="interleaved", transposed=True)
    with pytest.raises(ValueError, match="layout"):
        FuseExperts().apply(moe_package(), layout="zigzag", transposed=True)


def _checkpoint(model_type: str, module: tuple, disk: tuple):
    state = types.SimpleNamespace(
        prefix="model.layers", layer_keys=module, checkpoint_layer_keys=disk
    )
    return types.SimpleNamespace(model_type=model_type, state_dict=state, get=lambda dotted: None)


def test_rows_follow_the_checkpoints_conversion():
    """granitemoe keeps its router as `router.layer` and its fused experts as
    `input_linear` / `output_linear` on disk (transformers renames them on load)."""
    module = (
        "block_sparse_moe.router.weight",
        "block_sparse_moe.experts.gate_up_proj",
        "block_sparse_moe.experts.down_proj",
    )
    disk = (
        "block_sparse_moe.router.layer.weight",
        "block_sparse_moe.input_linear.weight",
        "block_sparse_moe.output_linear.weight",
    )
    package = moe_package("qwen3_moe")
    features = _checkpoint("granitemoe", module, disk)
    FuseExperts().apply(package, features, layout="concat", transposed=False)
    adapter = package.render()["state_dict_adapter.py"]
    for key, house in (
        ("block_sparse_moe.router.layer.weight", "moe.gate.weight"),
        ("block_sparse_moe.input_linear.weight", "moe.experts.w13"),
        ("block_sparse_moe.output_linear.weight", "moe.experts.w2"),
    ):
        assert f'"model.layers.{{}}.{key}": "layers.{{}}.{house}",' in adapter
    # a renamed copy of the code has no conversion: the module keys are the checkpoint's
    renamed = moe_package("qwen3_moe")
    FuseExperts().apply(
        renamed, _checkpoint("renamed_x", module, module), layout="concat", transposed=False
    )
    assert '"model.layers.{}.mlp.gate.weight"' in renamed.render()["state_dict_adapter.py"]


def test_a_separate_layout_resolves_from_the_experts_module_for_the_shard_plan(tmp_path):
    """A dense FFN beside the experts (`separate`) leaves the experts' own split to the source;
    the shard plan is keyed on what the transform settles on, so the fused weight is covered
    (aria_text's tp=2 plan missed `experts.w13`)."""
    from codegen.scaffold.build import Step, _shard_params

    features = modeling(
        tmp_path,
        "@use_experts_implementation()\nclass E:\n    def f(self, x):\n        return x.chunk(2)",
    )
    step = Step("fuse_experts", {"layout": "separate", "transposed": "auto"})
    assert FuseExperts().resolved_params(step.params, features)["layout"] == "concat"
    adds = _shard_params([step], features)["adds"]
    assert adds["layers.*.moe.experts.w13"] == "expert_colwise_gate_up"


UNDECORATED = """
class Experts(nn.Module):
    def __init__(self, config):
        self.gate_up_proj = nn.Parameter(torch.zeros(self.num_experts, self.hidden, 2 * self.dim))
        self.down_proj = nn.Parameter(torch.empty((self.num_experts, self.dim, self.hidden)))

    def forward(self, x):
        gate, up = torch.bmm(x, self.gate_up_proj).chunk(2, dim=-1)
"""


def test_undecorated_experts_read_from_their_fused_parameter(tmp_path):
    # no decorator (Llama4): the doubled axis of the one fused 3-D parameter says transposed
    features = modeling(tmp_path, UNDECORATED)
    assert transposed_of(features) is True
    assert layout_of(features) == "concat"
    untransposed = UNDECORATED.replace("self.hidden, 2 * self.dim", "2 * self.dim, self.hidden")
    assert transposed_of(modeling(tmp_path, untransposed)) is False


PARALLEL_EXPERTS = """
class ParallelExperts(nn.Module):
    def __init__(self, num_experts, input_size, output_size):
        self.weight = nn.Parameter(torch.empty(num_experts, output_size, input_size))

    def forward(self, inputs, expert_size):
        rows = inputs.split(expert_size, dim=0)
        return torch.cat([F.linear(rows[i], self.weight[i]) for i in range(len(rows))])
"""


def test_experts_multiplied_by_f_linear_are_stored_out_by_in(tmp_path):
    # JetMoE's parallel experts: no decorator, no doubled axis; F.linear takes [out, in]
    assert transposed_of(modeling(tmp_path, PARALLEL_EXPERTS)) is False
    plain = PARALLEL_EXPERTS.replace("F.linear(rows[i], self.weight[i])", "rows[i]")
    with pytest.raises(CodegenError):
        transposed_of(modeling(tmp_path, plain))


SILU_BLOCK = (
    "        hidden = F.silu(grouped_mm(rows, self.w1.mT, offs=offsets), inplace=True)\n"
    "        hidden *= grouped_mm(rows, self.w3.mT, offs=offsets)\n"
)


def experts_with(block: str, *, rows: str = "rows") -> SourcePackage:
    """The llama MoE package whose own Experts.forward computes gate and up as `block` says
    (in place of the shared experts' SwiGLU lines), its rows named `rows`."""
    package = moe_package()
    own_experts(package)
    files = package.render()
    model = files["model.py"]
    assert SILU_BLOCK in model
    model = model.replace(SILU_BLOCK, block).replace(
        "        rows = x[order // top_k]\n", f"        {rows} = x[order // top_k]\n"
    )
    return package_of({**files, "model.py": model})


def test_a_separate_gate_and_up_become_the_fused_product_and_its_split():
    """`gate = ..w1..` / `up = ..w3..` beside a SwiGLU reading them: the two products become
    one and its split; the SwiGLU line, which reads neither weight, stays as written."""
    separate = (
        "        gate = grouped_mm(picked, self.w1.mT, offs=offsets)\n"
        "        up = grouped_mm(picked, self.w3.mT, offs=offsets)\n"
        "        hidden = F.silu(gate) * up\n"
    )
    package = experts_with(separate, rows="picked")
    FuseExperts().apply(package, layout="concat", transposed=False)
    assert (
        "        gate_up = grouped_mm(picked, self.w13.mT, offs=offsets)\n"
        "        gate, up = gate_up.chunk(2, dim=-1)\n"
        "        hidden = F.silu(gate) * up\n"
        "        out = grouped_mm(hidden, self.w2.mT, offs=offsets)"
    ) in package.render()["model.py"]


def test_the_swiglu_target_is_read_from_the_silu_statement():
    """`act = F.silu(grouped_mm(.. w1 ..)) * 1.0` then `act *= ..w3..`: the silu of the
    product is the first operand; `act` is what the fused split's SwiGLU assigns."""
    named = (
        "        act = F.silu(grouped_mm(rows, self.w1.mT, offs=offsets)) * 1.0\n"
        "        act *= grouped_mm(rows, self.w3.mT, offs=offsets)\n"
        "        hidden = act\n"
    )
    package = experts_with(named)
    FuseExperts().apply(package, layout="interleaved", transposed=True)
    assert (
        "        gate_up = grouped_mm(rows, self.w13, offs=offsets)\n"
        "        gate, up = gate_up[..., ::2], gate_up[..., 1::2]\n"
        "        act = F.silu(gate) * up\n"
        "        hidden = act\n"
    ) in package.render()["model.py"]


def test_anchors_are_read_from_the_tree_not_the_rendered_lines():
    """The gate product wrapped over lines (as ruff wraps a long call) is still found, and
    a comment naming `self.w1` does not make the down projection part of the gate block."""
    wrapped = (
        "        hidden = F.silu(\n"
        "            grouped_mm(\n"
        "                rows,\n"
        "                self.w1.mT,\n"
        "                offs=offsets,\n"
        "            ),\n"
        "        )\n"
        "        hidden *= grouped_mm(rows, self.w3.mT, offs=offsets)\n"
    )
    package = experts_with(wrapped)
    model = package.render()["model.py"].replace(
        "* weights.flatten()[order, None]\n",
        "* weights.flatten()[order, None]  # after self.w1 and self.w3\n",
    )
    package = package_of({**package.render(), "model.py": model})
    FuseExperts().apply(package, layout="concat", transposed=False)
    assert (
        "        gate_up = grouped_mm(rows, self.w13.mT, offs=offsets)\n"
        "        gate, up = gate_up.chunk(2, dim=-1)\n"
        "        hidden = F.silu(gate) * up\n"
        "        out = grouped_mm(hidden, self.w2.mT, offs=offsets) * weights.flatten()"
    ) in package.render()["model.py"]


@pytest.mark.parametrize(
    "block, error",
    [
        (  # a statement between the gate's and the up's products
            "        hidden = F.silu(grouped_mm(rows, self.w1.mT, offs=offsets))\n"
            "        rows = rows.clone()\n"
            "        hidden *= grouped_mm(rows, self.w3.mT, offs=offsets)\n",
            "not one block",
        ),
        (  # the gate multiplied otherwise than by grouped_mm
            "        hidden = F.silu(torch.bmm(rows, self.w1.mT))\n"
            "        hidden *= grouped_mm(rows, self.w3.mT, offs=offsets)\n",
            "does not multiply its rows by self.w1",
        ),
        (  # no `up` and no SwiGLU over the products
            "        hidden = F.gelu(grouped_mm(rows, self.w1.mT, offs=offsets))\n"
            "        hidden *= grouped_mm(rows, self.w3.mT, offs=offsets)\n",
            "not SwiGLU",
        ),
    ],
)
def test_experts_it_cannot_fuse_are_refused_by_name(block, error):
    with pytest.raises(EditError, match=error):
        FuseExperts().apply(experts_with(block), layout="concat", transposed=False)


def test_a_w13_already_there_is_not_read_as_w1():
    """`self.w13` is another attribute than `self.w1`: experts already fused have no w1
    block to fuse."""
    fused = (
        "        gate_up = grouped_mm(rows, self.w13.mT, offs=offsets)\n"
        "        hidden = F.silu(gate_up[..., ::2]) * gate_up[..., 1::2]\n"
    )
    with pytest.raises(EditError, match="not one block"):
        FuseExperts().apply(experts_with(fused), layout="concat", transposed=False)
