"""Default positions counted over the tokens that are not padding (RoBERTa's position ids).

RoBERTa's embeddings module, given no position ids, computes them from the token ids: with
`mask = tokens != pad`, `cumsum(mask) * mask + pad`, so the first real token reads row
`pad + 1` of the learned table and every padding token reads row `pad`. The trace of the
embeddings module shows it as the index of the position table's call; `pad` is the module
attribute assigned from one config field (`self.padding_idx = config.pad_token_id`). An
index of that form whose field is not found is reported, never planned as 0..n-1.
"""

from __future__ import annotations

import libcst as cst
import libcst.matchers as m

from codegen.analyze.config import attr
from codegen.analyze.context import Ctx
from codegen.analyze.dataflow import Term
from codegen.analyze.evaluate import ModuleRec

_CASTS = ("long", "int", "type_as", "to")  # dtype changes along the way, value unchanged


def detect(ctx: Ctx, module: ModuleRec, table: str) -> str:
    """The config field of the padding id when `module`'s default positions count the
    non-padding tokens (`table`: the HF path of its position table), else ""."""
    rec = module.attrs.get(table.rsplit(".", 1)[-1])
    calls = [t for t in ctx.trace(module).terms if t.op == "call" and t.module is rec]
    if rec is None or len(calls) != 1 or not calls[0].args:
        return ""
    index = calls[0].args[0]
    pad = _counted_from(index) if isinstance(index, Term) else None
    if pad is None:
        return ""
    where = calls[0].site.cite() if calls[0].site is not None else ctx.class_site(module)
    field = _field_of(ctx, module, pad)
    if not field:
        ctx.unsupported(
            "embedding.position_padding",
            f"default positions count the tokens other than {pad} from row {pad + 1}, and no"
            " config field of the embeddings module gives that id",
            where,
        )
        return ""
    ctx.cite(
        "embedding.position_padding",
        f"{where} (positions count the tokens other than {field}, from row {field} + 1)",
    )
    return field


def _counted_from(term: Term) -> int | None:
    """`pad` when `term` is `cumsum(tokens != pad) * (tokens != pad) + pad`."""
    term = _bare(term)
    if term.op != "add":
        return None
    pad = [a for a in term.args if _is_int(a)]
    rest = [a for a in term.args if isinstance(a, Term)]
    if len(pad) != 1 or len(rest) != 1:
        return None
    product = _bare(rest[0])
    if product.op != "mul" or len(product.args) != 2:
        return None
    first, second = (_bare(a) if isinstance(a, Term) else None for a in product.args)
    for count, mask in ((first, second), (second, first)):
        if (
            count is not None
            and mask is not None
            and _not_padding(mask) == pad[0]
            and count.op == "fn"
            and count.name.rsplit(".", 1)[-1] == "cumsum"
            and count.args
            and isinstance(count.args[0], Term)
            and _not_padding(_bare(count.args[0])) == pad[0]
        ):
            return pad[0]
    return None


def _not_padding(term: Term) -> int | None:
    """`pad` when `term` is `tokens.ne(pad)` (`tokens != pad`) on the module's token ids."""
    if term.op != "fn" or term.name.rsplit(".", 1)[-1] not in ("ne", "not_equal"):
        return None
    tokens = [a for a in term.args if isinstance(a, Term)]
    values = [a for a in term.args if _is_int(a)]
    if len(tokens) != 1 or len(values) != 1 or tokens[0].op != "input":
        return None
    return values[0] if tokens[0].kwargs.get("primary") else None


def _bare(term: Term) -> Term:
    """`term` without dtype casts and additions of a literal 0 (a cache length of 0)."""
    while True:
        tensors = [a for a in term.args if isinstance(a, Term)]
        if term.op == "fn" and term.name.rsplit(".", 1)[-1] in _CASTS and len(tensors) >= 1:
            term = tensors[0]
        elif term.op == "add" and len(tensors) == 1 and 0 in [a for a in term.args if _is_int(a)]:
            term = tensors[0]
        else:
            return term


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _field_of(ctx: Ctx, module: ModuleRec, pad: int) -> str:
    """The config field an attribute of `module` holding `pad` is assigned from
    (`self.padding_idx = config.pad_token_id`), checked against the config's value."""
    fields = set()
    for name, value in module.attrs.items():
        site = module.assign_sites.get(name)
        if not _is_int(value) or value != pad or site is None:
            continue
        node = site.node
        if m.matches(node, m.Assign(value=m.Attribute(value=m.Name(), attr=m.Name()))):
            assert isinstance(node, cst.Assign)
            field = node.value.attr.value
            if attr(ctx.model.config, field) == pad:
                fields.add(field)
    return fields.pop() if len(fields) == 1 else ""
