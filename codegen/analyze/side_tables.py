"""Side tables of an embeddings module: tables indexed by ids of their own (RoCBert's glyph
shape and pronunciation ids), whose rows are concatenated to the token rows and mapped back
to the hidden size by a linear layer of the module before the token-type and position rows
are added.

Read from the module's forward as the analysed config runs it: the one `torch.cat` a linear
child of the module takes, flattened in order (`cat((cat((word, shape)), pronunciation))`);
its first part is the word table's rows, each other part one table's rows for ids HF makes
itself when the caller gives none (`torch.zeros`: row 0 for every token). For each table:
the config fields its constructor reads (rows, width), the bool field of the `if self.X:`
around its call (`self.X = config.X` in `__init__`), and the forward parameter its ids come
in through; for the linear layer, the bool field of the `if config.X:` it is built under.
"""

from __future__ import annotations

import libcst as cst
import libcst.matchers as m

from codegen.analyze.context import Ctx
from codegen.analyze.dataflow import Term, terms_in
from codegen.analyze.evaluate import ModuleRec
from codegen.analyze.roles import EMBEDDING, LINEAR
from codegen.analyze.walk import findall


def detect(ctx: Ctx, path: str, rec: ModuleRec, word: str) -> dict | None:
    """{"tables": ((hf path, rows field, width field, switch field, ids input), ...) in
    concat order, "projection": the linear layer's HF path, "switch": the bool field it is
    built under ("" = always), "names": the module's child names they use, "site": where
    the linear layer takes the concatenation}; None when the
    module's forward does not concatenate side tables into one linear layer this way."""
    children = {name: child for name, child in rec.children() if isinstance(child, ModuleRec)}
    linears = [name for name, c in children.items() if ctx.roles.role(c) == LINEAR]
    if len(linears) != 1:
        return None
    projection = children[linears[0]]
    terms = ctx.trace(rec).terms
    mapped = [t for t in terms if t.op == "call" and t.module is projection]
    if len(mapped) != 1 or not mapped[0].args:
        return None
    parts = _concatenated(mapped[0].args[0])
    if parts is None or len(parts) < 2:
        return None
    calls = [_table_call(p) for p in parts]
    if any(c is None for c in calls) or calls[0].module is not children.get(word):
        return None
    tables = []
    for call in calls[1:]:
        name = next((n for n, c in children.items() if c is call.module), None)
        if name is None or ctx.roles.role(call.module) != EMBEDDING or not _zeros(call):
            return None
        rows, width = _field(ctx, call.module, 0), _field(ctx, call.module, 1)
        switch, ids = _call_switch(ctx, rec, call), _ids_input(call)
        if not (rows and width and ids):
            return None
        tables.append((f"{path}.{name}", rows, width, switch, ids))
    return {
        "tables": tuple(tables),
        "projection": f"{path}.{linears[0]}",
        "switch": _built_under(rec, linears[0]),
        "names": {linears[0], *(t[0].rsplit(".", 1)[-1] for t in tables)},
        "site": mapped[0].site.cite() if mapped[0].site is not None else "",
    }


def _concatenated(term) -> list[Term] | None:
    """The parts of a (nested) `torch.cat` along the last dim, in order."""
    term = _unwrap(term)
    if not (isinstance(term, Term) and term.op == "fn" and term.name.endswith("cat")):
        return [term] if isinstance(term, Term) else None
    if not term.args or not isinstance(term.args[0], tuple | list):
        return None
    dim = term.args[1] if len(term.args) > 1 else term.kwargs.get("dim")
    if dim != -1:
        return None
    out: list[Term] = []
    for part in term.args[0]:
        inner = _concatenated(part)
        if inner is None:
            return None
        out.extend(inner)
    return out


def _unwrap(term):
    """`torch.clone(x)` is x."""
    while isinstance(term, Term) and term.op == "fn" and term.name.endswith("clone"):
        term = term.args[0] if term.args else None
    return term


def _table_call(term) -> Term | None:
    term = _unwrap(term)
    return term if isinstance(term, Term) and term.op == "call" else None


def _zeros(call: Term) -> bool:
    """The table's ids, when the caller gives none, are zeros HF makes (row 0)."""
    ids = terms_in(call.args)
    return len(ids) == 1 and ids[0].op == "fn" and ids[0].name.endswith("zeros")


def _field(ctx: Ctx, rec: ModuleRec, index: int) -> str:
    from codegen.analyze.detect_embedding import _config_field

    return _config_field(ctx, rec, index)


def _ids_input(call: Term) -> str:
    """The name the table's ids are read from at the call (`self.shape_embed(input_shape_ids)`):
    the forward parameter the caller passes them in."""
    node = call.site.node if call.site is not None else None
    if (
        isinstance(node, cst.Call)
        and len(node.args) == 1
        and isinstance(node.args[0].value, cst.Name)
    ):
        return node.args[0].value.value
    return ""


def _call_switch(ctx: Ctx, rec: ModuleRec, call: Term) -> str:
    """The bool config field of the `if self.X:` enclosing the table's call, where `__init__`
    sets `self.X = config.X`; "" when the call is not under such a test."""
    site = call.site
    if site is None or site.method is None:
        return ""
    for branch in findall(site.method, m.If(test=m.Attribute(value=m.Name("self")))):
        assert isinstance(branch, cst.If)
        if not any(node is site.node for node in findall(branch.body, m.Call())):
            continue
        attr = branch.test.attr.value
        assigned = rec.assign_sites.get(attr)
        value = getattr(assigned, "node", None)
        if isinstance(value, cst.Assign) and m.matches(
            value.value, m.Attribute(value=m.Name("config"), attr=m.Name(attr))
        ):
            return attr
    return ""


def _built_under(rec: ModuleRec, name: str) -> str:
    """The bool config field of the `if config.X:` the child `name` is assigned under."""
    site = rec.assign_sites.get(name)
    if site is None or site.method is None:
        return ""
    for branch in findall(site.method, m.If(test=m.Attribute(value=m.Name("config")))):
        assert isinstance(branch, cst.If)
        if any(node is site.node for node in findall(branch.body, m.Assign())):
            return branch.test.attr.value
    return ""
