"""The word table's padding row: the config field HF passes as its `padding_idx`.

`nn.Embedding(vocab, dim, padding_idx)` keeps the padding row out of the gradient (and HF's
init zeroes it), so a package that builds its table without it trains another model. The
argument is read where the table is built: `padding_idx=` or the third positional argument
of `nn.Embedding` (of an Embedding subclass: the position of its own `padding_idx`
parameter), an expression reading one config field directly (`config.pad_token_id`) or
through an attribute or local the same method assigns from it (`self.padding_idx =
config.pad_token_id`). No argument, or a literal `None`, is no padding row (GPT-2, BLOOM).
A padding row given otherwise (a literal id, a value the method receives) is reported
unsupported (`embedding.padding_row`): no package field could carry it.
"""

from __future__ import annotations

import libcst as cst
import libcst.matchers as m

from codegen.analyze.context import Ctx
from codegen.analyze.evaluate import ModuleRec
from codegen.analyze.walk import findall

_TORCH_ORDER = ("num_embeddings", "embedding_dim", "padding_idx")
_DEPTH = 4  # assignments followed from the argument to the config read


def detect(ctx: Ctx, table: ModuleRec | None) -> str:
    """The config field of `table`'s padding row, "" when it has none."""
    key = "embedding.padding_idx"
    call = table.site.node if table is not None and table.site is not None else None
    if not isinstance(call, cst.Call):
        ctx.cite(key, ctx.site(table) if table is not None else "no word table")
        return ""
    where = table.site.cite()
    value = _argument(ctx, table, call)
    if value is None or m.matches(value, m.Name("None")):
        ctx.cite(key, f"{where} (no padding_idx)")
        return ""
    field = _field(value, _assigned(table.site.method), depth=0)
    if field:
        # the field the code reads from its own config (a composite config's text part may
        # hold it where the analysed config class does not declare it)
        config = ctx.model.config
        field = config.key(field) if config is not None else field
        ctx.cite(key, f"{where} (padding_idx = config.{field})")
        return field
    # reported under a name of its own: the rule table realises embedding.padding_idx
    ctx.cite(key, f"{where} (padding_idx not read from a config field)")
    ctx.unsupported(
        "embedding.padding_row",
        "the word table's padding_idx is not one config field (the package could only"
        " hard-code the row)",
        where,
    )
    return ""


def _argument(ctx: Ctx, table: ModuleRec, call: cst.Call) -> cst.BaseExpression | None:
    """The expression passed as the table's padding_idx, None when none is."""
    order = _TORCH_ORDER
    if table.cls is not None:
        found = ctx.model.project.find_method(table.cls, "__init__")
        if found is not None:
            params = found[1].params
            order = tuple(p.name.value for p in (*params.posonly_params, *params.params)[1:])
    positional = []
    for arg in call.args:
        if arg.star:
            return None
        if arg.keyword is not None:
            if arg.keyword.value == "padding_idx":
                return arg.value
        else:
            positional.append(arg.value)
    if "padding_idx" in order and order.index("padding_idx") < len(positional):
        return positional[order.index("padding_idx")]
    return None


def _assigned(method: cst.CSTNode | None) -> dict[str, cst.BaseExpression]:
    """Local names and `self.` attributes the method assigns -> their (first) value."""
    out: dict[str, cst.BaseExpression] = {}
    for node in findall(method, m.Assign()) if method is not None else ():
        assert isinstance(node, cst.Assign)
        if len(node.targets) == 1 and (name := _target(node.targets[0].target)):
            out.setdefault(name, node.value)
    return out


def _target(node: cst.BaseExpression) -> str:
    if isinstance(node, cst.Name):
        return node.value
    if m.matches(node, m.Attribute(value=m.Name("self"), attr=m.Name())):
        return "self." + node.attr.value
    return ""


def _field(node: cst.BaseExpression, assigned: dict, depth: int) -> str:
    """`X` for `config.X` / `self.config.X`, followed through assignments; else ""."""
    if m.matches(node, m.Attribute(value=m.Name("config") | m.Attribute(attr=m.Name("config")))):
        return node.attr.value
    name = _target(node)
    if name and name in assigned and depth < _DEPTH:
        return _field(assigned[name], assigned, depth + 1)
    return ""
