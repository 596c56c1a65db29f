"""Norm the attention output before `wo`, or the feed-forward's inner activations before `w2`
(BitNet's attn_sub_norm / ffn_sub_norm)."""

from __future__ import annotations

import libcst as cst

from codegen.transforms import _attention_edits as edits
from codegen.transforms._attention_edits import _EditParams
from codegen.transforms.base import Transform
from codegen.transforms.edits import InsertStatements, assigns, expression, run

# site -> (module class, output projection, the norm's width, HF module path, house path)
SITES = {
    "attention": (
        "Attention",
        "self.wo",
        "args.n_heads * args.head_dim",
        "self_attn",
        "attention",
    ),
    "ffn": ("FeedForward", "self.w2", "hidden_dim", "mlp", "feed_forward"),
}


class AddSubNorm(Transform):
    """`self.wo(out)` -> `self.wo(self.sub_norm(out))` (site `attention`), or
    `self.w2(inner)` -> `self.w2(self.sub_norm(inner))` (site `ffn`).

    The norm is an `RMSNorm` over the projection's input width with `args.norm_eps`, built
    like the block norms, so a later `set_norm_kind` turns it into the target's norm with
    them. The feed-forward takes the eps as a new `eps` argument. The adapter maps
    `<module>.sub_norm.weight`; `align_hf_keys` renames it to the checkpoint's own name.
    """

    name = "add_sub_norm"

    def apply(self, package, features=None, *, site: str) -> None:
        if site not in SITES:
            raise ValueError(f"sub-norm site {site!r}: expected one of {sorted(SITES)}")
        cls, projection, width, hf, house = SITES[site]
        eps = "args.norm_eps" if site == "attention" else "eps"
        norm = f"self.sub_norm = RMSNorm({width}, {eps})  # before {projection[5:]}\n"
        run(package, "model.py", InsertStatements(cls, "__init__", assigns(projection), norm))
        edits.replace_expressions(
            package,
            "model.py",
            cls,
            "forward",
            edits.call_of(projection),
            lambda call: call.with_changes(
                args=[cst.Arg(cst.Call(func=expression("self.sub_norm"), args=list(call.args)))]
            ),
        )
        if site == "ffn":
            run(package, "model.py", _EditParams(cls, "__init__", _with_eps))
            run(
                package,
                "model.py",
                edits.ReplaceExpressions(
                    None,
                    None,
                    edits.call_of(cls),
                    lambda call: edits.with_arg(call, "args.norm_eps", keyword="eps"),
                ),
            )
        out = projection.removeprefix("self.")
        adapter = package.module("state_dict_adapter.py").code
        anchor = f"layers.{{}}.{house}.{out}.weight"
        if f"{house}.{out}.bias" in adapter:
            anchor = f"layers.{{}}.{house}.{out}.bias"
        rows = [(f"model.layers.{{}}.{hf}.sub_norm.weight", f"layers.{{}}.{house}.sub_norm.weight")]
        edits.insert_rows_after(package, anchor, rows)


def _with_eps(params: list[cst.Param]) -> list[cst.Param]:
    eps = cst.Param(
        cst.Name("eps"),
        annotation=cst.Annotation(expression("float")),
        default=expression("1e-6"),
        equal=cst.AssignEqual(cst.SimpleWhitespace(" "), cst.SimpleWhitespace(" ")),
    )
    return [*params, eps]
