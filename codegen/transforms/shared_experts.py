"""Add an always-on shared SwiGLU expert to the MoE block."""

from __future__ import annotations

import libcst as cst
import libcst.matchers as m

from codegen.transforms import _moe_edits as moe_edits
from codegen.transforms._ffn_edits import _method_body as method_body
from codegen.transforms._ffn_edits import self_assignment
from codegen.transforms.base import Transform
from codegen.transforms.edits import EditError, assigns, code_of

# where HF reads the shared expert's inner size
SIZES = {
    # qwen2_moe-style: its own config field
    "shared_expert_intermediate_size": "hf_config.shared_expert_intermediate_size",
    # deepseek-style: n_shared_experts experts fused into one wider SwiGLU
    "n_shared_experts": "hf_config.n_shared_experts * hf_config.moe_intermediate_size",
}
FIELD = "shared_hidden_dim: int = 1408  # SwiGLU inner size of the always-on shared expert"

FEED_FORWARD = '''
class FeedForward(nn.Module):
    """SwiGLU: w2(silu(w1(x)) * w3(x))."""

    def __init__(self, dim: int, hidden_dim: int):
        super().__init__()
        self.w1 = nn.Linear(dim, hidden_dim, bias=False)
        self.w2 = nn.Linear(hidden_dim, dim, bias=False)
        self.w3 = nn.Linear(dim, hidden_dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.w2(F.silu(self.w1(x)) * self.w3(x))
'''

BUILD = "self.shared_experts = FeedForward(args.dim, args.shared_hidden_dim)"
ADD = "out = out + self.shared_experts(x)"
# where HF builds the shared expert only under a config condition: no module, no keys
BUILD_OPTIONAL = """
# no shared expert (and no checkpoint keys) where the config sizes it 0
self.shared_experts = (
    FeedForward(args.dim, args.shared_hidden_dim) if args.shared_hidden_dim > 0 else None
)
"""
ADD_OPTIONAL = f"if self.shared_experts is not None:\n    {ADD}"
ROUTED = assigns("out", calling="self.experts")
# `return self.experts(...).view(...)` (qwen3_moe): the routed output is named first
RETURN_ROUTED = m.Return(
    value=m.Call(
        func=m.Attribute(value=m.Call(func=m.Attribute(m.Name("self"), m.Name("experts"))))
    )
)
PROJECTIONS = (("gate_proj", "w1"), ("up_proj", "w3"), ("down_proj", "w2"))
FUSED_PROJECTIONS = (("gate_up_proj", "w13"), ("down_proj", "w2"))


class AddSharedExperts(Transform):
    """The MoE block adds a shared SwiGLU expert every token runs (`shared_experts`),
    biased as the block's dense FeedForward where a config switch passes it `bias=`.

    `size`: the config field HF sizes it from (`shared_expert_intermediate_size`, or
    `n_shared_experts` x moe_intermediate_size as deepseek; `auto`: whichever the target's
    config class has). `hf_name`: the checkpoint's module name (`shared_experts` deepseek,
    `shared_expert` qwen2_moe). `optional`: HF builds it only under a config condition
    (ernie's `moe_num_shared_experts > 0`), so a config sizing it 0 has no module and no
    keys (default: the analysed `moe.shared_optional`).
    """

    name = "add_shared_experts"

    def apply(
        self,
        package,
        features=None,
        *,
        size: str = "auto",
        hf_name: str = "shared_experts",
        optional: bool | None = None,
    ) -> None:
        if optional is None:
            optional = bool(features is not None and features.get("moe.shared_optional"))
        if size == "auto":
            size = size_of(features)
        if size in SIZES:
            mapping = SIZES[size]
        elif size.startswith("config."):
            mapping = code_of(cst.parse_expression(size).visit(_OverHfConfig()))
        else:
            raise ValueError(f"size {size!r}: one of {sorted(SIZES)} or an expression over config")
        if not moe_edits.has_class(package, "model.py", "MoE"):
            raise EditError("model.py has no MoE class (run add_moe first)")
        moe_edits.add_args_fields(package, FIELD)
        moe_edits.add_config_kwargs(package, {"shared_hidden_dim": mapping})
        if not moe_edits.has_class(package, "model.py", "FeedForward"):
            moe_edits.insert_before_class(package, "model.py", "MoE", FEED_FORWARD)
        _name_routed_output(package)
        build, add = (BUILD_OPTIONAL, ADD_OPTIONAL) if optional else (BUILD, ADD)
        bias = _switched_bias(package)
        if bias is not None:
            built = "FeedForward(args.dim, args.shared_hidden_dim"
            build = build.replace(built, f"{built}, bias={bias}")
        moe_edits.insert_statements(package, "MoE", "__init__", assigns("self.experts"), build)
        moe_edits.insert_statements(package, "MoE", "forward", ROUTED, add)
        rows = [
            moe_edits.row(
                f"model.layers.{{}}.mlp.{hf_name}.{hf}.{kind}",
                f"layers.{{}}.moe.shared_experts.{w}.{kind}",
            )
            for hf, w in _projections(package)
            for kind in (("weight", "bias") if bias is not None else ("weight",))
        ]
        moe_edits.insert_rows_after(package, "layers.{}.moe.experts.w2", rows)


def _switched_bias(package) -> str | None:
    """The `bias=` the block passes its dense FeedForward (a config switch, llama's
    `args.mlp_bias`), which the shared expert, the same MLP, passes too; None where the
    block passes none (FeedForward fixes its biases)."""
    block = m.ClassDef(name=m.Name("TransformerBlock"))
    call = m.Call(func=m.Name("FeedForward"))
    for found in m.findall(package.module("model.py"), block):
        for node in m.findall(found, call):
            for arg in node.args:
                if arg.keyword is not None and arg.keyword.value == "bias":
                    return code_of(arg.value)
    return None


def _projections(package) -> tuple[tuple[str, str], ...]:
    """(HF projection, house weight) pairs of the FeedForward the shared expert is built
    from: gate and up in one `w13` where an earlier rule fused them (the checkpoint's
    `gate_up_proj`)."""
    if self_assignment(package, "model.py", "FeedForward", "__init__", "w13") is not None:
        return FUSED_PROJECTIONS
    return PROJECTIONS


def size_of(features) -> str:
    """How HF sizes the shared expert: the analysed expression over `config`
    (`Features.moe.shared_size`), else the config field the target's config class has."""
    if features is None or not features.model_type:
        raise ValueError("size='auto' needs the target's Features")
    analysed = features.get("moe.shared_size")
    if analysed and analysed != "unknown":
        return analysed
    from codegen.transforms.add_moe import _config_declares

    for field in SIZES:
        if _config_declares(features, field):
            return field
    config_class = features.source.config_class or features.model_type
    raise ValueError(f"{config_class} has none of {sorted(SIZES)}")


class _OverHfConfig(cst.CSTTransformer):
    """`config.X` -> `hf_config.X`."""

    def leave_Attribute(self, original, updated):
        if m.matches(updated.value, m.Name("config")):
            return updated.with_changes(value=cst.Name("hf_config"))
        return updated


def _name_routed_output(package) -> None:
    """`return self.experts(...).view(...)` becomes `out = self.experts(...)` and
    `return out.view(...)`, so the shared output can join `out`."""
    body = method_body(package.module("model.py"), "MoE", "forward")
    if any(ROUTED(statement) for statement in body):
        return
    for statement in body:
        node = _returned(statement)
        if node is not None:
            routed = node.value.func.value
            view = node.value.with_changes(func=node.value.func.with_changes(value=cst.Name("out")))
            code = f"out = {code_of(routed)}\nreturn {code_of(view)}"
            moe_edits.replace_statement(
                package, "model.py", "MoE", "forward", lambda s: _returned(s) is not None, code
            )
            return
    raise EditError("MoE.forward neither names the routed output `out` nor returns it")


def _returned(statement):
    """The `return self.experts(...).view(...)` node of `statement`, if it is one."""
    node = statement.body[0] if isinstance(statement, cst.SimpleStatementLine) else None
    return node if m.matches(node, RETURN_ROUTED) else None
