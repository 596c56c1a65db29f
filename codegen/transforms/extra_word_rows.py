"""Build the word table `rows` rows taller than the head is wide, as HF does where its
`nn.Embedding(config.vocab_size + 1, ...)` takes ids the logits never predict."""

from __future__ import annotations

import libcst as cst
import libcst.matchers as m

from codegen.transforms.base import Transform
from codegen.transforms.edits import EditError, ScopedTransformer, run

_TABLE = m.Attribute(value=m.Name("self"), attr=m.Name("tok_embeddings"))
_VOCAB = m.Attribute(value=m.Name("args"), attr=m.Name("vocab_size"))
_HF_VOCAB = m.Attribute(value=m.Name("hf_config"), attr=m.Name("vocab_size"))


class ExtraWordRows(Transform):
    """`nn.Embedding(args.vocab_size, ...)` becomes `nn.Embedding(args.vocab_size + rows,
    ...)`; `padding_row`'s range check in `from_hf_config` counts the extra rows too (a pad
    id may be one of them). A head tied to that table would be as tall: refused."""

    name = "extra_word_rows"

    def apply(self, package, features=None, *, rows: int) -> None:
        if features is not None and features.get("embedding.tied") is True:
            raise EditError("a head tied to a word table taller than the vocabulary")
        edit = _AddRows(rows)
        run(package, "model.py", edit)
        if edit.hits != 1:
            raise EditError("model.py: Model.__init__ builds more than one word table")
        run(package, "args.py", _PaddingRange(rows), required=False)


def _plus(node: cst.BaseExpression, rows: int) -> cst.BinaryOperation:
    return cst.BinaryOperation(node, cst.Add(), cst.Integer(str(rows)))


class _AddRows(ScopedTransformer):
    def __init__(self, rows: int):
        super().__init__("Model", "__init__")
        self.rows = rows

    def leave_Assign(self, original, updated):
        if not (
            self.inside
            and len(updated.targets) == 1
            and m.matches(updated.targets[0].target, _TABLE)
            and m.matches(updated.value, m.Call(args=[m.Arg(_VOCAB, keyword=None), m.ZeroOrMore()]))
        ):
            return updated
        self.hits += 1
        call = updated.value
        first = call.args[0].with_changes(value=_plus(call.args[0].value, self.rows))
        return updated.with_changes(value=call.with_changes(args=[first, *call.args[1:]]))


class _PaddingRange(ScopedTransformer):
    """`padding_row(pad, hf_config.vocab_size)` -> `padding_row(pad, hf_config.vocab_size + N)`."""

    def __init__(self, rows: int):
        super().__init__("ModelArgs", "from_hf_config")
        self.rows = rows

    def leave_Call(self, original, updated):
        if not (
            self.inside
            and m.matches(updated.func, m.Name("padding_row"))
            and len(updated.args) == 2
            and m.matches(updated.args[1].value, _HF_VOCAB)
        ):
            return updated
        self.hits += 1
        last = updated.args[1].with_changes(value=_plus(updated.args[1].value, self.rows))
        return updated.with_changes(args=[updated.args[0], last])
