"""Projections whose checkpoint weight is stored [in, out]: transformers' `Conv1D` (GPT-2,
GPT-1, ...) is a linear layer that keeps its weight transposed against `nn.Linear`. The
adapter of a generated package (an `nn.Linear` model) transposes exactly these keys."""

from __future__ import annotations

from codegen.analyze.context import Ctx
from codegen.analyze.evaluate import ModuleRec
from codegen.analyze.model import walk_tree


def transposed_keys(ctx: Ctx) -> tuple[str, ...]:
    """Layer-relative weight keys (`attn.c_attn.weight`) of Conv1D modules, over all layers."""
    found: dict[str, None] = {}
    for layer in ctx.model.layers or ():
        for path, rec in walk_tree(layer):
            if isinstance(rec, ModuleRec) and rec.kind == "Conv1D" and path:
                if not found:
                    ctx.cite("state_dict.transposed_keys", f"{ctx.site(rec)} (Conv1D {path})")
                found[f"{path}.weight"] = None
    if not found:
        ctx.cite("state_dict.transposed_keys", "no Conv1D projection in the layers")
    return tuple(found)
