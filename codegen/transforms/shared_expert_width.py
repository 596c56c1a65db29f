"""Size the reference's shared expert as the target does (a width field of its own)."""

from __future__ import annotations

import libcst as cst
import libcst.matchers as m

from codegen.transforms import _moe_edits as moe_edits
from codegen.transforms.base import Transform
from codegen.transforms.edits import EditError, code_of, run
from codegen.transforms.edits import ScopedTransformer as InMethod

FIELD = "shared_hidden_dim: int = 1536  # SwiGLU inner size of the always-on shared expert"

_SHARED = m.Assign(
    targets=[m.AssignTarget(m.Attribute(value=m.Name("self"), attr=m.Name("shared_experts")))],
    value=m.Call(func=m.Name("FeedForward")),
)


class SharedExpertWidth(Transform):
    """The MoE block's shared expert (`self.shared_experts = FeedForward(args.dim,
    <width>)`, the reference's n_shared_experts x moe_hidden_dim) is
    `args.shared_hidden_dim` wide: ModelArgs' field, which `from_hf_config` reads as HF
    sizes it (`size`, the analysed `moe.shared_size` over `config`: dots3's
    `config.shared_experts_intermediate_size * config.n_shared_experts`)."""

    name = "shared_expert_width"

    def apply(self, package, features=None, *, size: str) -> None:
        try:
            expression = cst.parse_expression(size)
        except cst.ParserSyntaxError:
            raise ValueError(f"shared expert size {size!r} is not an expression") from None
        mapping = code_of(expression.visit(_OverHfConfig()))
        moe_edits.add_args_fields(package, FIELD)
        moe_edits.add_config_kwargs(package, {"shared_hidden_dim": mapping})
        run(package, "model.py", _Width())


class _Width(InMethod):
    """`FeedForward(args.dim, <width>)` of `self.shared_experts` -> `args.shared_hidden_dim`."""

    def __init__(self):
        super().__init__("MoE", "__init__")

    def leave_Assign(self, original, updated):
        if not (self.in_scope() and m.matches(updated, _SHARED)):
            return updated
        call = updated.value
        if len(call.args) != 2:
            raise EditError("the shared expert is not built as FeedForward(dim, width)")
        width = cst.parse_expression("args.shared_hidden_dim")
        args = [call.args[0], call.args[1].with_changes(value=width)]
        self.hits += 1
        return updated.with_changes(value=call.with_changes(args=args))


class _OverHfConfig(cst.CSTTransformer):
    """`config.X` -> `hf_config.X`."""

    def leave_Attribute(self, original, updated):
        if m.matches(updated.value, m.Name("config")):
            return updated.with_changes(value=cst.Name("hf_config"))
        return updated
