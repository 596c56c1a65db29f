"""Token types that see each other both ways in the causal mask (HRM-Text's prefix LM).

Where the layers are already handed masks of their own (a sliding window's, a chunked
layer's, None on the layers that attend causally), the block joins each of them as
transformers' mask builders join `block_sequence_ids`: `or_masks(<the layer's mask>,
blockwise_overlay(...))`, after the window or the chunks are cut
(`and_masks(sliding_window_overlay, causal)`, `and_masks(chunked_overlay, causal)`), so the
tokens of the type see each other also beyond a layer's window and across chunks. Where
the attention is written out and the layers take the keys each mask hides (tables built once
per forward), the masks are joined before their tables are built.
"""

from __future__ import annotations

import libcst as cst
import libcst.matchers as m

from codegen.transforms import _attention_edits as edits
from codegen.transforms._rope_edits import add_args_field
from codegen.transforms.base import Transform
from codegen.transforms.edits import EditError, InsertStatements, assigns, code_of, run

INPUT = "token_type_ids: torch.Tensor | None = None"
MASK_PARAM = "mask: torch.Tensor | None"
FIELD = "bool = {on}  # tokens of type {kind} see each other both ways (a prefix read whole)"
BUILD = """
mask: torch.Tensor | None = None  # plain causal
if {input} is not None and {test}:
    mask = type_block_mask({input}, {kind})
"""
TYPE_BLOCK_MASK = '''
def type_block_mask(token_types: torch.Tensor, kind: int) -> torch.Tensor:
    """Causal mask (batch, 1, seq, seq), True = attend, where the tokens of type `kind` also
    see every other token of that type, before or after them: one bidirectional block."""
    seq = token_types.shape[-1]
    causal = torch.ones(seq, seq, dtype=torch.bool, device=token_types.device).tril()
    block = token_types == kind
    return (causal | (block[:, :, None] & block[:, None, :]))[:, None]
'''
# the layers' masks joined: each mask the forward builds for them gains the block, and the
# causal layers (None) take the block over the causal mask
JOIN = "if {input} is not None and {test}:\n"
JOIN_MASK = "{name} = type_block_mask({input}, {kind}, {name})"
TYPE_BLOCK_OVER = '''
def type_block_mask(
    token_types: torch.Tensor, kind: int, mask: torch.Tensor | None = None
) -> torch.Tensor:
    """`mask` (seq, seq), True = attend (None: causal), widened to (batch, 1, seq, seq) so
    that the tokens of type `kind` also see every other token of that type, before or after
    them and beyond a window or a chunk: one bidirectional block."""
    if mask is None:
        seq = token_types.shape[-1]
        mask = torch.ones(seq, seq, dtype=torch.bool, device=token_types.device).tril()
    block = token_types == kind
    return (mask | (block[:, :, None] & block[:, None, :]))[:, None]
'''
JOINED_NOTE = (
    " `{input}` (batch, seq): while `{field}` is {on}, the tokens of type {kind} see each"
    " other both ways, beyond a layer's window or chunk too; the rest keeps the layer's mask."
    " Packed documents each take their own slice of the types: a block never crosses a"
    " document."
)
NOTE = (
    " `{input}` (batch, seq): while `{field}` is {on}, the tokens of type {kind} see each"
    " other both ways; the rest stays causal. Packed documents each take their own slice of"
    " the types: a block never crosses a document."
)


class TypeBlockMask(Transform):
    """`Model.forward` takes the token types HF's backbone takes (`block["input"]`) and,
    while the config switch `block["field"]` is `block["on"]`, builds the causal mask in
    which the tokens of type `block["type"]` see each other both ways, handed through each
    block to SDPA (plain causal without types or with the switch the other way). The packed
    path (`forward_packed`, each document run alone) hands each document its own types.
    An attention that already takes a `mask` (a sliding window pattern) keeps it: the block
    joins every mask the layer loop hands down (`_join`). Written-out attention takes the
    keys the mask hides as an additive table `Model.forward` builds once (`hidden_mask`),
    not a table built from the mask in every layer; where its layers take such tables of
    their own masks already (a window's), the block joins those masks before the tables
    are built from them."""

    name = "type_block_mask"

    def apply(self, package, features=None, *, block: dict) -> None:
        if edits.has_definition(package, "model.py", "type_block_mask"):
            return
        name, field, kind, on = block["input"], block["field"], block["type"], block["on"]
        test = f"self.args.{field}" if on else f"not self.args.{field}"
        params = edits.param_names(package, "Attention", "forward")
        joined = MASK_PARAM.split(":")[0] in params or edits.masks_hidden(package)
        # the block is built where the masks it joins are, before their hidden keys' tables
        anchor = assigns("future") if edits.masks_hidden(package) else edits.is_layer_loop
        if joined:
            build = _join(package, name, test, kind)
        else:
            edits.add_param(package, "Attention", "forward", MASK_PARAM)
            edits.set_attention_masking(package, True)
            edits.hand_down(package, MASK_PARAM)
            build = BUILD.format(input=name, test=test, kind=kind)
        edits.add_param(package, "Model", "forward", INPUT.replace("token_type_ids", name))
        run(package, "model.py", InsertStatements("Model", "forward", anchor, build, before=True))
        edits.replace_expressions(
            package,
            "model.py",
            "Model",
            "forward",
            edits.call_of("forward_packed"),
            lambda call: edits.with_arg(call, name, keyword=name),
        )
        run(
            package,
            "model.py",
            edits.DocstringNote(
                "Model",
                "forward",
                (JOINED_NOTE if joined else NOTE).format(input=name, field=field, on=on, kind=kind),
            ),
        )
        definition = TYPE_BLOCK_OVER if joined else TYPE_BLOCK_MASK
        edits.insert_definition(package, "model.py", definition, before="Model")
        if not joined:
            # written-out attention: the additive table of the keys the mask hides, built
            # once per forward beside the causal one, each layer adding it in place
            edits.hide_masks_once(package)
        add_args_field(package, field, FIELD.format(on=on, kind=kind), f"hf_config.{field}")


def _join(package, name: str, test: str, kind: int) -> str:
    """The statements that join the block to the masks the layer loop hands down: the loop's
    mask argument picks, per layer, among names the forward binds (`window`) and None (plain
    causal), `window if layer.sliding else None`. Each name is rebound with the block; None
    becomes `mask`, the causal mask with the block, built only when picked. The argument is
    rewritten in place; any other value there is refused.

    Written-out attention takes the keys each mask hides instead (`hidden_window if
    layer.sliding else future`, tables built once from `window` and the causal `future`):
    the masks are rebound before their tables are built, so each table hides what the
    joined mask hides, and the causal layers take `hidden_mask`, the table of `mask` built
    beside the others (`hide_mask_too`)."""
    hidden = edits.masks_hidden(package)
    forward = edits.find_method(package.module("model.py"), "Model", "forward")
    loop = next((s for s in forward.body.body if edits.is_layer_loop(s)), None)
    call = None if loop is None else next(iter(m.findall(loop, m.Call(func=m.Name("layer")))), None)
    param = "hidden" if hidden else "mask"
    params = edits.param_names(package, "TransformerBlock", "forward")
    if call is None or param not in params or len(call.args) < params.index(param):
        raise EditError("the layer loop hands no mask to the blocks")
    at = params.index(param) - 1  # the call has no `self`
    argument = call.args[at].value
    bound = {t.target.value for t in m.findall(forward, m.AssignTarget(m.Name()))}
    causal = "future" if hidden else "None"  # what the causal layers are handed
    picked = _picked(argument)
    leaves = {leaf.value for leaf in picked if isinstance(leaf, cst.Name)}
    named = all(isinstance(leaf, cst.Name) for leaf in picked)
    # the masks behind the leaves: `hidden_window` hides what `window` does
    masks = {_mask_of(leaf, hidden) for leaf in leaves - {causal}}
    taken = {"mask", "hidden_mask"} if hidden else {"mask"}
    if taken & bound or not named or None in masks or not masks <= bound:
        raise EditError(f"the layers' mask `{code_of(argument)}` is not one the block can join")
    lines = [JOIN_MASK.format(name=n, input=name, kind=kind) for n in sorted(masks)]
    if causal in leaves:
        lines.insert(0, f"mask = type_block_mask({name}, {kind})")
        # the causal layers take `mask`, or the keys it hides
        joined = edits.hide_mask_too(package, "mask") if hidden else "mask"

        def hand_down(found: cst.Call) -> cst.Call:
            args = list(found.args)
            value = _causal_is(args[at].value, causal, joined)
            args[at] = args[at].with_changes(value=value)
            return found.with_changes(args=args)

        edits.replace_expressions(
            package, "model.py", "Model", "forward", edits.call_of("layer"), hand_down
        )
    head = ("mask: torch.Tensor | None = None  # plain causal\n" if causal in leaves else "") + JOIN
    body = "".join(f"    {line}\n" for line in lines)
    return head.format(input=name, test=test) + body


def _mask_of(leaf: str, hidden: bool) -> str | None:
    """The mask a layer is handed as `leaf`: itself, or (written out) the mask whose hidden
    keys `leaf` is, None where it is not such a table."""
    if not hidden:
        return leaf
    return leaf.removeprefix("hidden_") if leaf.startswith("hidden_") else None


def _picked(expression: cst.BaseExpression) -> list[cst.BaseExpression]:
    """The values a conditional expression picks among (itself if it is none)."""
    if isinstance(expression, cst.IfExp):
        return [*_picked(expression.body), *_picked(expression.orelse)]
    return [expression]


def _causal_is(expression: cst.BaseExpression, causal: str, mask: str) -> cst.BaseExpression:
    """`expression` with every `causal` name it picks (None, `future`) replaced by `mask`."""
    if isinstance(expression, cst.IfExp):
        return expression.with_changes(
            body=_causal_is(expression.body, causal, mask),
            orelse=_causal_is(expression.orelse, causal, mask),
        )
    return cst.Name(mask) if m.matches(expression, m.Name(causal)) else expression
