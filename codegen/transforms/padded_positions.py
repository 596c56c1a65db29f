"""Count the default positions over the tokens that are not padding (RoBERTa's position ids:
the first real token reads row pad + 1 of the learned table, a padding token row pad)."""

from __future__ import annotations

import libcst as cst
import libcst.matchers as m

from codegen.transforms import _attention_edits as edits
from codegen.transforms.base import Transform
from codegen.transforms.edits import EditError, ScopedTransformer, expression, run

FIELD = "pad_token_id: int = 1  # padding token: reads position row pad_token_id, the rest count on"
COUNT = '''
def padded_positions(tokens: torch.Tensor, pad_id: int) -> torch.Tensor:
    """Positions counted over the tokens other than `pad_id`, from `pad_id + 1`; a padding
    token reads row `pad_id`."""
    real = tokens.ne(pad_id).long()
    return real.cumsum(dim=1) * real + pad_id
'''
DEFAULT = "padded_positions(tokens, self.args.pad_token_id)"


class PaddedPositions(Transform):
    """`Model.forward`'s default positions (no `positions` given) become
    `padded_positions(tokens, args.pad_token_id)`; given positions index the table as they
    are, as in HF. The position table takes `padding_idx=args.pad_token_id`, so its padding
    row starts at zero and learns nothing, as HF's does. `field`: the config field of the
    padding id (`pad_token_id`); a package whose word table already has its padding row
    (`pad_token_id`, mapped from that field) keeps that one field."""

    name = "padded_positions"

    def apply(self, package, features=None, *, field: str) -> None:
        if not field:
            raise EditError("padded positions need the config field of the padding id")
        table = _PaddedTable()
        run(package, "model.py", table)
        if table.hits != 1:
            raise EditError("model.py: Model.__init__ builds more than one position table")
        default = _DefaultPositions()
        run(package, "model.py", default)
        if default.hits != 1:
            raise EditError("model.py: Model.forward has more than one `if positions is None:`")
        if "pad_token_id" not in edits._field_lines(package):
            edits.add_args_field(package, FIELD, f"pad_token_id=hf_config.{field}")
        elif not _reads(_mapping_of(package, "pad_token_id"), field):
            raise EditError(f"args.py maps pad_token_id from another field than {field}")
        edits.insert_definition(package, "model.py", COUNT, before="Model")


def _mapping_of(package, name: str) -> str:
    """The code of `from_hf_config`'s `name=` keyword ("" when it has none): the word
    table's padding row (`pad_token_id=padding_row(hf_config.pad_token_id, ...)`) is the
    padding id the positions count around when it reads the same field."""
    for arg in m.findall(package.module("args.py"), m.Arg(keyword=m.Name(name))):
        return cst.Module([]).code_for_node(arg.value)
    return ""


def _reads(code: str, field: str) -> set[str]:
    """The spellings of a read of `field` in `code` (`hf_config.x`, `getattr(hf_config, "x"`)."""
    return {
        read for read in (f"hf_config.{field}", f'getattr(hf_config, "{field}"') if read in code
    }


_POSITIONS = m.Name("positions")


class _DefaultPositions(ScopedTransformer):
    """`if positions is None: positions = ...` -> `positions = padded_positions(...)`."""

    def __init__(self):
        super().__init__("Model", "forward")

    def leave_If(self, original, updated):
        test = m.Comparison(
            left=_POSITIONS, comparisons=[m.ComparisonTarget(m.Is(), m.Name("None"))]
        )
        if not (self.inside and m.matches(updated.test, test)):
            return updated
        body = list(updated.body.body)
        assign = m.SimpleStatementLine(body=[m.Assign(targets=[m.AssignTarget(_POSITIONS)])])
        if len(body) != 1 or not m.matches(body[0], assign):
            return updated
        self.hits += 1
        # the comment above the default described the arange it replaces
        line = body[0].with_changes(
            body=[body[0].body[0].with_changes(value=expression(DEFAULT))], leading_lines=()
        )
        return updated.with_changes(body=updated.body.with_changes(body=[line]))


class _PaddedTable(ScopedTransformer):
    """`self.pos_embeddings = nn.Embedding(rows, dim)` gains `padding_idx=args.pad_token_id`."""

    def __init__(self):
        super().__init__("Model", "__init__")

    def leave_Assign(self, original, updated):
        target = m.Attribute(value=m.Name("self"), attr=m.Name("pos_embeddings"))
        if not (
            self.inside
            and m.matches(updated.targets[0].target, target)
            and m.matches(updated.value, m.Call())
        ):
            return updated
        self.hits += 1
        call = updated.value
        assert isinstance(call, cst.Call)
        padding = cst.Arg(
            value=expression("args.pad_token_id"),
            keyword=cst.Name("padding_idx"),
            equal=cst.AssignEqual(
                whitespace_before=cst.SimpleWhitespace(""),
                whitespace_after=cst.SimpleWhitespace(""),
            ),
        )
        args = list(call.args)
        comma = cst.Comma(whitespace_after=cst.SimpleWhitespace(" "))
        args[-1] = args[-1].with_changes(comma=comma)
        return updated.with_changes(value=call.with_changes(args=[*args, padding]))
