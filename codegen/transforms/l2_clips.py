"""Head vectors clipped to a maximum L2 norm: the queries, keys or relative-bias states, some
after a learned scale per head and channel (inkling2's q/k/rel L2 clips)."""

from __future__ import annotations

import libcst as cst
import libcst.matchers as m

from codegen.transforms import _attention_edits as edits
from codegen.transforms import _moe_edits
from codegen.transforms.base import Transform
from codegen.transforms.edits import EditError, InsertStatements, assigns, dotted, run
from codegen.transforms.relative_position_bias import _attention_prefix

CLIP = '''
class L2Clip(nn.Module):
    """Scales each head vector (the last dim) down to L2 norm `threshold` where it is
    longer; shorter vectors pass unchanged.{fp32_doc}"""

    def __init__(self, threshold: float):
        super().__init__()
        self.threshold = threshold

    def clip(self, x: torch.Tensor) -> torch.Tensor:
        norm = torch.linalg.vector_norm(x, dim=-1, keepdim=True)
        return x * (self.threshold / (norm + {eps!r})).clamp(max=1.0)
'''
PLAIN_FORWARD = """
def forward(self, x: torch.Tensor) -> torch.Tensor:
    return self.clip(x{upcast}).to(x.dtype)
"""
SCALED = '''
class ScaledL2Clip(L2Clip):
    """`L2Clip` after a learned scale per head and channel."""

    def __init__(self, heads: int, width: int, threshold: float):
        super().__init__(threshold)
        self.scale = nn.Parameter(torch.ones(heads, width))

    def init_parameters(self, std: float) -> None:
        nn.init.ones_(self.scale)  # HF starts the scale at one

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """`x`: (batch, seq, heads, width)."""
        return self.clip(x{upcast} * self.scale{upcast}).to(x.dtype)
'''
FP32_DOC = " In fp32, the result in the input's dtype."

# the projection each clipped tensor is viewed to heads from, and the sizes of its scale
PROJECTION = {"q": "self.wq", "k": "self.wk", "rel": "self.wr"}
SCALE_SIZES = {
    "q": "self.n_heads, self.head_dim",
    "k": "self.n_kv_heads, self.head_dim",
    "rel": "self.n_heads, args.rel_dim",
}
WHAT = {"q": "queries", "k": "keys", "rel": "relative-bias states"}


class L2Clips(Transform):
    """`Attention` clips the head vectors of its queries, keys and/or relative-bias states
    (`clips`: the analysis's `attention.l2_clips`, keyed "q", "k", "rel") to a maximum L2
    norm right after their view to heads, as HF does: an `L2Clip` (the threshold alone) or
    a `ScaledL2Clip` (a learned scale per head and channel first, which the adapter maps).
    Each distinct threshold is a ModelArgs field read from its HF config field. The
    relative states' clip needs `relative_position_bias` first (it wraps their view)."""

    name = "l2_clips"

    def apply(self, package, features=None, *, clips: dict | None = None) -> None:
        if not isinstance(clips, dict) or not clips or set(clips) - set(PROJECTION):
            raise EditError("l2_clips: the analysed clips of q, k and/or rel")
        eps = {c["eps"] for c in clips.values()}
        upcasts = {c["fp32"] for c in clips.values()}
        if len(eps) != 1 or len(upcasts) != 1:
            raise EditError("l2_clips: clips with different epsilons or dtypes")
        upcast = ".float()" if upcasts.pop() else ""
        code = CLIP.format(eps=eps.pop(), fp32_doc=FP32_DOC if upcast else "")
        if any(not c["scale"] for c in clips.values()):
            code = _with_method(code, PLAIN_FORWARD.format(upcast=upcast))
        if any(c["scale"] for c in clips.values()):
            code += SCALED.format(upcast=upcast)
        _moe_edits.insert_before_class(package, "model.py", "Attention", code)
        fields = _threshold_fields(package, clips)
        parts = ["# the head vectors clipped to a maximum L2 norm"]
        for tensor, clip in clips.items():
            threshold = fields[tensor]
            if clip["scale"]:
                built = f"ScaledL2Clip({SCALE_SIZES[tensor]}, {threshold})"
            else:
                built = f"L2Clip({threshold})"
            parts.append(f"self.{tensor}_clip = {built}")
        run(
            package,
            "model.py",
            InsertStatements("Attention", "__init__", assigns("self.wo"), "\n".join(parts)),
        )
        for tensor in clips:
            _wrap_view(package, PROJECTION[tensor], f"self.{tensor}_clip")
        prefix = _attention_prefix(package)
        rows = [
            (f"{prefix}.{clip['module']}.{clip['scale']}", f"layers.{{}}.attention.{t}_clip.scale")
            for t, clip in clips.items()
            if clip["scale"]
        ]
        if rows:
            edits.insert_rows_after(package, "layers.{}.attention.wo.weight", rows)


def _with_method(class_code: str, method: str) -> str:
    """`class_code` with `method` appended to its (one) class."""
    body = "\n".join("    " + line if line else line for line in method.strip().splitlines())
    return class_code.rstrip() + "\n\n" + body + "\n"


def _threshold_fields(package, clips: dict) -> dict[str, str]:
    """tensor -> the expression the attention reads its threshold from: a ModelArgs field per
    distinct HF config field (named after the tensors sharing it), or the number."""
    by_source: dict[str, list[str]] = {}
    for tensor, clip in clips.items():
        by_source.setdefault(clip["threshold"], []).append(tensor)
    out = {}
    for source, tensors in by_source.items():
        if not source.startswith("hf_config."):
            for tensor in tensors:
                out[tensor] = source
            continue
        name = "".join(tensors) + "_clip_threshold"
        value = clips[tensors[0]]["value"]
        what = " and ".join(WHAT[t] for t in tensors)
        edits.add_args_field(
            package,
            f"# the largest L2 norm of a head vector of the {what}\n{name}: float = {value!r}",
            f"{name}={source}",
        )
        for tensor in tensors:
            out[tensor] = f"args.{name}"
    return out


def _wrap_view(package, projection: str, clip: str) -> None:
    """`<...projection(...)...>.view(...)` in `Attention.forward` -> `clip(<that view>)`."""
    made_by = m.Call(func=dotted(projection))

    def match(node: cst.CSTNode) -> bool:
        return (
            isinstance(node, cst.Call)
            and m.matches(node.func, m.Attribute(attr=m.Name("view")))
            and bool(m.findall(node.func.value, made_by))
        )

    def rewrite(node: cst.Call) -> cst.Call:
        return cst.Call(func=cst.parse_expression(clip), args=[cst.Arg(node)])

    hits = edits.replace_expressions(package, "model.py", "Attention", "forward", match, rewrite)
    if hits != 1:
        raise EditError(f"l2_clips: {hits} views to heads of {projection}'s output, not one")
