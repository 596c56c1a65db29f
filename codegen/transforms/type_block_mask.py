"""Token types that see each other both ways in the causal mask (HRM-Text's prefix LM)."""

from __future__ import annotations

from codegen.transforms import _attention_edits as edits
from codegen.transforms._rope_edits import add_args_field
from codegen.transforms.base import Transform
from codegen.transforms.edits import EditError, InsertStatements, run

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
    Needs the plain causal attention of the llama reference."""

    name = "type_block_mask"

    def apply(self, package, features=None, *, block: dict) -> None:
        if edits.has_definition(package, "model.py", "type_block_mask"):
            return
        if MASK_PARAM.split(":")[0] in edits.param_names(package, "Attention", "forward"):
            raise EditError("the attention already takes a mask: no rule joins two masks yet")
        name, field, kind, on = block["input"], block["field"], block["type"], block["on"]
        edits.add_param(package, "Attention", "forward", MASK_PARAM)
        edits.set_attention_masking(package, True)
        edits.hand_down(package, MASK_PARAM)
        edits.add_param(package, "Model", "forward", INPUT.replace("token_type_ids", name))
        test = f"self.args.{field}" if on else f"not self.args.{field}"
        run(
            package,
            "model.py",
            InsertStatements(
                "Model",
                "forward",
                edits.is_layer_loop,
                BUILD.format(input=name, test=test, kind=kind),
                before=True,
            ),
        )
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
                "Model", "forward", NOTE.format(input=name, field=field, on=on, kind=kind)
            ),
        )
        edits.insert_definition(package, "model.py", TYPE_BLOCK_MASK, before="Model")
        add_args_field(package, field, FIELD.format(on=on, kind=kind), f"hf_config.{field}")
