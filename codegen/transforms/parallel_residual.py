"""Keep both block layouts when a config flag switches them (StableLM's use_parallel_residual).

Off: the pre-norm block as the reference has it. On: attention and feed-forward both read
the one `attention_norm(x)` and add to x, and the checkpoint has no second block norm. The
block branches on the flag; `ffn_norm` is built only for the sequential layout, so the
adapter keeps its rows for the checkpoints that carry it. Where the parallel setting still
calls the feed-forward's own norm (GPT-NeoX: `mlp(post_attention_layernorm(x))`), both
layouts build and read `ffn_norm`, on `x` or on `h`.
"""

from __future__ import annotations

import libcst as cst
import libcst.matchers as m

from codegen.scaffold.source import SourcePackage
from codegen.transforms import _moe_edits as moe_edits
from codegen.transforms.base import Transform
from codegen.transforms.edits import EditError, expression
from codegen.transforms.norm_placement import _parallel

_BLOCK = "TransformerBlock"


class ParallelResidualSwitch(Transform):
    """TransformerBlock branches on `field`: a parallel block off one norm, or the
    reference's sequential pre-norm block."""

    name = "parallel_residual_switch"

    def apply(self, package, features=None, *, field: str = "use_parallel_residual") -> None:
        shared = not _parallel_calls_ffn_norm(features, field)
        parallel = SourcePackage(package.name, dict(package.files))
        _parallel(parallel, shared=shared)
        body = _method(parallel.files["model.py"], "forward").body.body
        package.edit("model.py", _Branch(body, field, shared))
        how = "off one norm" if shared else "each off its own norm"
        moe_edits.add_args_fields(
            package, f"{field}: bool = False  # attention and MLP in parallel {how}"
        )
        moe_edits.add_config_kwargs(package, {field: f"hf_config.{field}"})


def _parallel_calls_ffn_norm(features, field: str) -> bool:
    """The parallel setting of the switch still calls the feed-forward's own norm on the
    block input (GPT-NeoX's post_attention_layernorm), rather than sharing the attention's
    one (StableLM); read from what the analysis says that setting calls."""
    names = dict(getattr(getattr(features, "norm", None), "block_names", ()) or ())
    ffn_norm = names.get("ffn_norm")
    switch = next((s for s in getattr(features, "switches", ()) if s.field == field), None)
    if not ffn_norm or switch is None:
        return False
    on = next((v for v in switch.values if v.label == "True"), None)
    calls = next((p for p in (on.selects if on else "").split("; ") if p.startswith("calls ")), "")
    return ffn_norm in {name.strip() for name in calls.removeprefix("calls ").split(",")}


def _method(module: cst.Module, name: str) -> cst.FunctionDef:
    for node in m.findall(module, m.ClassDef(name=m.Name(_BLOCK))):
        for item in node.body.body:
            if isinstance(item, cst.FunctionDef) and item.name.value == name:
                return item
    raise EditError(f"model.py has no {_BLOCK}.{name}")


class _Branch(cst.CSTTransformer):
    """`__init__`: `self.parallel = args.<field>`, `ffn_norm` built only when not parallel;
    `forward`: `if self.parallel: <parallel body>` before the sequential body."""

    def __init__(self, parallel_body, field: str, shared: bool = True):
        super().__init__()
        self.parallel_body, self.field, self.shared = parallel_body, field, shared
        self.block = False

    def visit_ClassDef(self, node):
        self.block = node.name.value == _BLOCK

    def leave_FunctionDef(self, original, updated):
        if not self.block:
            return updated
        body = list(updated.body.body)
        if updated.name.value == "__init__":
            body = self._init(body)
        elif updated.name.value == "forward":
            branch = cst.If(
                test=expression("self.parallel"),
                body=cst.IndentedBlock(body=list(self.parallel_body)),
            )
            body = [branch, *body]
        return updated.with_changes(body=updated.body.with_changes(body=body))

    def _init(self, body: list) -> list:
        ffn_norm = m.SimpleStatementLine(
            body=[
                m.Assign(targets=[m.AssignTarget(m.Attribute(m.Name("self"), m.Name("ffn_norm")))])
            ]
        )
        found = [i for i, statement in enumerate(body) if m.matches(statement, ffn_norm)]
        if len(found) != 1:
            raise EditError(f"{_BLOCK}.__init__ builds no single self.ffn_norm")
        flag = cst.parse_statement(f"self.parallel = args.{self.field}")
        if not self.shared:  # both layouts read the feed-forward's own norm
            return [body[0], flag, *body[1:]]
        at = found[0]
        guarded = cst.If(
            test=expression("not self.parallel"),
            body=cst.IndentedBlock(body=[body[at].with_changes(leading_lines=[])]),
        )
        return [body[0], flag, *body[1:at], guarded, *body[at + 1 :]]
