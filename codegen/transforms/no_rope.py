"""Take rotary embeddings out: the attention of the target applies no RoPE (GPT-2, OPT...).

Whatever gives such a model its positions (a learned or sinusoidal table added to the
embeddings, an ALiBi bias) is another rule's step; this one only removes the rotation.
"""

from __future__ import annotations

import libcst as cst

from codegen.transforms import _attention_edits as edits
from codegen.transforms.base import Transform
from codegen.transforms.edits import assigns, code_of, is_name, is_statement
from codegen.transforms.layer_attention_sizes import ONE_TABLE_CHECK

ROPE_WORDS = ("RoPE", "rotary", "rope")


class NoRope(Transform):
    """q and k are not rotated: the rotary module, the `rope` argument the model hands each
    block and attention, the rotation itself and the RoPE settings of ModelArgs (the `rope`
    field and its checks) are removed. `positions` stays the model's input."""

    name = "no_rope"

    def apply(self, package, features=None) -> None:
        # the attention: no cos/sin, no rotation, no rope parameter
        edits.remove_statements(
            package,
            "model.py",
            "Attention",
            "forward",
            lambda s: _unpacks_rope(s) or edits.mentions("apply_rotary")(s),
        )
        edits.remove_param(package, "Attention", "forward", "rope")
        # the block and the model stop handing it on
        edits.replace_expressions(
            package,
            "model.py",
            "TransformerBlock",
            "forward",
            edits.call_of("self.attention"),
            _without_rope,
        )
        edits.remove_param(package, "TransformerBlock", "forward", "rope")
        edits.replace_expressions(
            package, "model.py", "Model", "forward", edits.call_of("layer"), _without_rope
        )
        edits.remove_statements(package, "model.py", "Model", "forward", assigns("rope"))
        edits.remove_statements(package, "model.py", "Model", "__init__", assigns("self.rotary"))
        edits.remove_rope_settings(package)
        # layers sized apart (layer_attention_sizes) no longer share a table's width
        edits.remove_statements(
            package,
            "args.py",
            "ModelArgs",
            "__post_init__",
            is_statement(ONE_TABLE_CHECK),
            required=False,
        )
        edits.drop_docstring_paragraphs(package, "args.py", ROPE_WORDS)


def _unpacks_rope(statement: cst.CSTNode) -> bool:
    """`cos, sin = rope`."""
    return (
        isinstance(statement, cst.SimpleStatementLine)
        and isinstance(statement.body[0], cst.Assign)
        and is_name(statement.body[0].value, "rope")
    )


def _without_rope(call: cst.Call) -> cst.Call:
    at = next((i for i, a in enumerate(call.args) if code_of(a.value) == "rope"), None)
    if at is None:
        return call
    return edits.without_arg(call, position=at)
