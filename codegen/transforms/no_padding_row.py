"""Build the word table without a padding row, as HF does where it passes no `padding_idx`
(GPT-2, BLOOM): every row of the table then learns, the padding token's too."""

from __future__ import annotations

import libcst as cst
import libcst.matchers as m

from codegen.transforms.base import Transform
from codegen.transforms.edits import EditError, ScopedTransformer, run

_TABLE = m.Attribute(value=m.Name("self"), attr=m.Name("tok_embeddings"))
_PADDING = m.Arg(keyword=m.Name("padding_idx"))


class NoPaddingRow(Transform):
    """`self.tok_embeddings = nn.Embedding(..., padding_idx=args.pad_token_id)` loses its
    `padding_idx`; the `pad_token_id` field, then read by nothing, is dropped by tidy with
    its mapping."""

    name = "no_padding_row"

    def apply(self, package, features=None) -> None:
        edit = _DropPadding()
        run(package, "model.py", edit)
        if edit.hits != 1:
            raise EditError("model.py: Model.__init__ builds more than one word table")


class _DropPadding(ScopedTransformer):
    def __init__(self):
        super().__init__("Model", "__init__")

    def leave_Assign(self, original, updated):
        if not (
            self.inside
            and len(updated.targets) == 1
            and m.matches(updated.targets[0].target, _TABLE)
            and m.matches(updated.value, m.Call(args=[m.ZeroOrMore(), _PADDING, m.ZeroOrMore()]))
        ):
            return updated
        self.hits += 1
        call = updated.value
        assert isinstance(call, cst.Call)
        args = [arg for arg in call.args if not m.matches(arg, _PADDING)]
        args[-1] = args[-1].with_changes(comma=cst.MaybeSentinel.DEFAULT)
        return updated.with_changes(value=call.with_changes(args=args))
