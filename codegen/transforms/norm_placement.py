"""Move the block's norms: post-norm, sandwich (pre + post) or a parallel attention + MLP block."""

from __future__ import annotations

import re

import libcst as cst

from codegen.transforms._ffn_edits import (
    EditCalls,
    EditCallsTaking,
    SetClassDocstring,
    adapter_rows,
    class_source,
    rewrite_adapter,
    self_assignment,
)
from codegen.transforms.base import Transform
from codegen.transforms.edits import (
    EditError,
    InsertStatements,
    ReplaceStatements,
    assigns,
    code_of,
    expression,
    run,
    sets,
    uses,
)

# house norms in block order
HOUSE_NORMS = ("attention_norm", "post_attention_norm", "ffn_norm", "post_ffn_norm")

# placement -> the HF module names of its norms, one dict per naming scheme (first = default)
HF_NAMES = {
    "post": (  # olmo2
        {
            "post_attention_norm": "post_attention_layernorm",
            "post_ffn_norm": "post_feedforward_layernorm",
        },
    ),
    "sandwich": (
        {  # gemma2 / gemma3
            "attention_norm": "input_layernorm",
            "post_attention_norm": "post_attention_layernorm",
            "ffn_norm": "pre_feedforward_layernorm",
            "post_ffn_norm": "post_feedforward_layernorm",
        },
        {  # glm4: post_attention_layernorm is the norm *before* the MLP
            "attention_norm": "input_layernorm",
            "post_attention_norm": "post_self_attn_layernorm",
            "ffn_norm": "post_attention_layernorm",
            "post_ffn_norm": "post_mlp_layernorm",
        },
        {  # afmoe: the MLP's pair named after it
            "attention_norm": "input_layernorm",
            "post_attention_norm": "post_attention_layernorm",
            "ffn_norm": "pre_mlp_layernorm",
            "post_ffn_norm": "post_mlp_layernorm",
        },
        {  # peri-LN: numbered post norms around the pre-norms
            "attention_norm": "input_layernorm",
            "post_attention_norm": "post_norm1",
            "ffn_norm": "post_attention_layernorm",
            "post_ffn_norm": "post_norm2",
        },
    ),
    "post_residual": (  # the residual sum normed (GPT-1's ln_1 / ln_2)
        {"post_attention_norm": "ln_1", "post_ffn_norm": "ln_2"},
    ),
    "parallel": (
        {"attention_norm": "input_layernorm"},  # cohere, gpt-j, stablelm: one shared norm
        {  # gpt-neox: attention and MLP each normalise x
            "attention_norm": "input_layernorm",
            "ffn_norm": "post_attention_layernorm",
        },
    ),
}

DOCSTRINGS = {
    "post": "Post-norm block: each sublayer's output is normalised before its residual add.",
    "sandwich": "Sandwich-norm block: each sublayer's input and output are normalised.",
    "post_residual": "Post-LN block: each residual sum (x + sublayer(x)) is normalised.",
    "parallel": "Parallel block: attention and feed-forward both read normed x and add to x.",
}

_BLOCK = "TransformerBlock"


class SetNormPlacement(Transform):
    """TransformerBlock's norms move to `placement`; the adapter's block-norm rows follow.

    post: `h = x + post_attention_norm(attention(x))`, likewise for the feed-forward.
    post_residual: `h = post_attention_norm(x + attention(x))`, likewise for the feed-forward.
    sandwich: pre and post norms around both sublayers (four norms).
    parallel: `x + attention(attention_norm(x)) + feed_forward(<norm>(x))`, where <norm> is
    the same `attention_norm` when the checkpoint has one input norm, else `ffn_norm`.
    `hf_names` (house norm -> HF module name) picks the checkpoint's naming; by default the
    scheme of HF_NAMES whose names the target's checkpoint keys contain (gemma2 vs glm4
    sandwich, one vs two parallel norms), else the first. Sublayer calls are edited in
    place, so arguments other transforms gave them (masks, ...) are kept.
    """

    name = "set_norm_placement"

    def apply(self, package, features=None, *, placement: str, hf_names: dict | None = None):
        if placement not in HF_NAMES:
            raise ValueError(f"norm placement {placement!r} is not one of {sorted(HF_NAMES)}")
        names = hf_names or _scheme(placement, features)
        if placement != "parallel" and set(names) != set(HF_NAMES[placement][0]):
            raise ValueError(f"{placement} needs HF names for {sorted(HF_NAMES[placement][0])}")
        norm = self_assignment(package, "model.py", _BLOCK, "__init__", "attention_norm")
        if norm is None or not self_assignment(package, "model.py", _BLOCK, "__init__", "ffn_norm"):
            raise EditError(f"{_BLOCK} has no pre-norms attention_norm and ffn_norm")
        if placement == "parallel":
            _parallel(package, shared="ffn_norm" not in names)
        elif placement == "post_residual":
            _norm_sums(package, code_of(norm))
        else:
            _wrap_sublayers(package, code_of(norm), keep_pre=placement == "sandwich")
        run(package, "model.py", SetClassDocstring(_BLOCK, lambda old: DOCSTRINGS[placement]))
        _adapter_rows(package, names)


def _scheme(placement: str, features) -> dict[str, str]:
    """The names the analysis read from where each norm sits (`norm.block_names`), when it
    found every norm of the placement in the checkpoint; else the naming scheme whose HF
    names all appear in the target checkpoint's layer keys."""
    keys = set(getattr(getattr(features, "state_dict", None), "checkpoint_layer_keys", ()) or ())
    found = _analysed(placement, features, keys)
    if found is not None:
        return found
    schemes = sorted(HF_NAMES[placement], key=len, reverse=True)
    for scheme in schemes:
        if keys and all(f"{name}.weight" in keys for name in scheme.values()):
            return scheme
    return HF_NAMES[placement][0]


def _analysed(placement: str, features, keys: set[str]) -> dict[str, str] | None:
    """`norm.block_names` as a scheme: all four norms for a sandwich, the two post-norms for
    post, the input norms for parallel (one when both sublayers share it)."""
    names = dict(getattr(getattr(features, "norm", None), "block_names", ()) or ())
    if placement == "parallel" and names.get("ffn_norm") == names.get("attention_norm"):
        names.pop("ffn_norm", None)
    needed = set(HF_NAMES[placement][0])
    if placement == "parallel":
        needed = {"attention_norm"} | ({"ffn_norm"} if "ffn_norm" in names else set())
    names = {house: hf for house, hf in names.items() if house in needed}
    if set(names) != needed or not all(f"{hf}.weight" in keys for hf in names.values()):
        return None
    return names


def _wrap_sublayers(package, norm: str, keep_pre: bool) -> None:
    """post / sandwich: `self.attention(...)` -> `self.post_attention_norm(self.attention(...))`."""
    for pre, post, anchor in (
        ("attention_norm", "post_attention_norm", sets("self.attention")),
        ("ffn_norm", "post_ffn_norm", sets("self.feed_forward")),
    ):
        run(
            package,
            "model.py",
            EditCallsTaking(_BLOCK, "forward", f"self.{pre}", _wrapper(pre, post, keep_pre)),
        )
        init = (_BLOCK, "__init__")
        if not keep_pre:
            run(package, "model.py", ReplaceStatements(*init, assigns(f"self.{pre}"), ""))
        run(package, "model.py", InsertStatements(*init, anchor, f"self.{post} = {norm}"))


def _norm_sums(package, norm: str) -> None:
    """post_residual: the sublayers read their input unnormed and each residual sum with a
    sublayer's output, `x + self.attention(...)`, becomes `self.post_attention_norm(...)`."""
    for pre, post, sublayer, anchor in (
        ("attention_norm", "post_attention_norm", "self.attention", sets("self.attention")),
        ("ffn_norm", "post_ffn_norm", "self.feed_forward", sets("self.feed_forward")),
    ):
        unwrap = _wrapper(pre, post, keep_pre=False, wrap=False)
        run(package, "model.py", EditCallsTaking(_BLOCK, "forward", f"self.{pre}", unwrap))
        wrapped = ReplaceSum(_BLOCK, "forward", sublayer, post)
        run(package, "model.py", wrapped)
        if wrapped.hits != 1:
            raise EditError(
                f"{_BLOCK}.forward adds {sublayer}(...) to the residual {wrapped.hits} times"
            )
        init = (_BLOCK, "__init__")
        run(package, "model.py", ReplaceStatements(*init, assigns(f"self.{pre}"), ""))
        run(package, "model.py", InsertStatements(*init, anchor, f"self.{post} = {norm}"))


class ReplaceSum(cst.CSTTransformer):
    """`a + <sublayer>(...)` (either order) in `cls.method` -> `self.<norm>(a + ...)`."""

    def __init__(self, cls: str, method: str, sublayer: str, norm: str):
        super().__init__()
        self.cls, self.method, self.sublayer, self.norm = cls, method, sublayer, norm
        self.scope: list[str] = []
        self.hits = 0

    def visit_ClassDef(self, node) -> None:
        self.scope.append(node.name.value)

    def leave_ClassDef(self, original, updated):
        self.scope.pop()
        return updated

    def visit_FunctionDef(self, node) -> None:
        self.scope.append(node.name.value)

    def leave_FunctionDef(self, original, updated):
        self.scope.pop()
        return updated

    def leave_BinaryOperation(self, original, updated):
        if self.scope[-2:] != [self.cls, self.method] or not isinstance(updated.operator, cst.Add):
            return updated
        calls = [
            side
            for side in (updated.left, updated.right)
            if isinstance(side, cst.Call) and code_of(side.func) == self.sublayer
        ]
        if not calls:
            return updated
        self.hits += 1
        inner = updated.with_changes(lpar=[], rpar=[])
        return cst.Call(func=expression(f"self.{self.norm}"), args=[cst.Arg(inner)])


def _wrapper(pre: str, post: str, keep_pre: bool, wrap: bool = True):
    def rewrite(original: cst.Call, updated: cst.Call) -> cst.BaseExpression:
        if not keep_pre:
            updated = updated.with_changes(
                args=[
                    arg.with_changes(value=arg.value.args[0].value)
                    if isinstance(arg.value, cst.Call) and code_of(arg.value.func) == f"self.{pre}"
                    else arg
                    for arg in updated.args
                ]
            )
        if not wrap:
            return updated
        return cst.Call(func=expression(f"self.{post}"), args=[cst.Arg(updated)])

    return rewrite


def _parallel(package, shared: bool) -> None:
    """Both sublayers read x: the feed-forward's norm input `h` becomes `x`, or both share
    one `normed = self.attention_norm(x)`."""
    source = class_source(package, "model.py", _BLOCK)
    found = re.search(r"self\.attention_norm\((\w+)\)", source)
    if found is None:
        raise EditError(f"{_BLOCK}.forward does not call self.attention_norm")
    x = found.group(1)
    forward = (_BLOCK, "forward")
    if not shared:
        rewrite = lambda o, updated: updated.with_changes(args=[cst.Arg(expression(x))])  # noqa: E731
        run(package, "model.py", EditCalls(*forward, "self.ffn_norm", rewrite))
        return
    normed = expression("normed")
    run(package, "model.py", EditCalls(*forward, "self.attention_norm", lambda o, u: normed))
    run(package, "model.py", EditCalls(*forward, "self.ffn_norm", lambda o, u: normed))
    run(
        package,
        "model.py",
        InsertStatements(
            *forward,
            uses("normed"),
            f"normed = self.attention_norm({x})",
            before=True,
        ),
    )
    drop = ReplaceStatements(_BLOCK, "__init__", assigns("self.ffn_norm"), "")
    run(package, "model.py", drop)


def _adapter_rows(package, names: dict[str, str]) -> None:
    """Replace the block-norm rows by one row per (norm, parameter) of the new block."""
    pattern = re.compile(rf"(.*)\.({'|'.join(HOUSE_NORMS)})\.(\w+)")
    block_rows = [
        (hf, pattern.fullmatch(house)) for hf, house in adapter_rows(package) if house is not None
    ]
    block_rows = [(hf, m) for hf, m in block_rows if m]
    first = next(((hf, m) for hf, m in block_rows if m.group(2) == "attention_norm"), None)
    if first is None:
        raise EditError("the adapter has no attention_norm row")
    hf_prefix = first[0].rsplit(".", 2)[0]
    house_prefix = first[1].group(1)
    parameters = [m.group(3) for _, m in block_rows if m.group(2) == "attention_norm"]
    new_rows = [
        (f"{hf_prefix}.{names[norm]}.{parameter}", f"{house_prefix}.{norm}.{parameter}")
        for norm in HOUSE_NORMS
        if norm in names
        for parameter in parameters
    ]
    placed = False

    def rewrite(hf: str, house: str | None):
        nonlocal placed
        if house is None or not pattern.fullmatch(house):
            return [(hf, house)]
        if placed:
            return []
        placed = True
        return new_rows

    rewrite_adapter(package, rewrite)
