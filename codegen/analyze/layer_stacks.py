"""Layer stacks: several stacks, and layers holding several attention sublayers.

A package builds one stack of layers run once, in order, or two alike stacks run in nested
cycles (HRM: `recurrent_stacks` reads the form). Any other model with several stacks (BLT's
local encoder, global transformer, local decoder and entropy patcher) is reported
unsupported with every stack's path, instead of being planned from whichever stack looked
most like a backbone.

A layer holding module lists of attentions, dense MLPs and their pre-norms, run in turn
(LongCat-Flash: two attention sublayers, each with its own MLP), is read as `block.sublayers`:
how many, the checkpoint's module lists, and the layer's MoE as a shortcut branch (its input
the normed input of one sublayer's MLP, its output added to the layer's last residual sum).
Read from the layer's forward by data flow, not by names; any other wiring of such lists is
one unsupported line (`block.sublayer_wiring`).
"""

from __future__ import annotations

import libcst as cst

from codegen.analyze import recurrent_stacks
from codegen.analyze.context import Ctx
from codegen.analyze.dataflow import Term, first_output, primary_input, strip, walk
from codegen.analyze.evaluate import ModuleListRec, ModuleRec
from codegen.analyze.model import layer_slots
from codegen.analyze.roles import ATTENTION, LAYER, MLP, MOE, NORM


def stack_paths(ctx: Ctx) -> list[str]:
    """Attribute paths of every module list holding decoder layers, one per path even where
    two attributes name the same module (no global dedup: only cycles are cut)."""
    found: list[str] = []

    def visit(rec, path: str, above: frozenset) -> None:
        if id(rec) in above:
            return
        above = above | {id(rec)}
        if isinstance(rec, ModuleListRec):
            if any(isinstance(i, ModuleRec) and ctx.roles.role(i) == LAYER for i in rec.items):
                found.append(path)
                return
            for i, item in enumerate(rec.items):
                key = rec.keys[i] if rec.keys is not None else str(i)
                visit(item, f"{path}.{key}", above)
        elif isinstance(rec, ModuleRec):
            for name, child in rec.children():
                visit(child, f"{path}.{name}" if path else name, above)

    visit(ctx.model.entry, "", frozenset())
    return found


def detect(ctx: Ctx) -> tuple[dict | None, dict | None]:
    """Reports several stacks; returns the `block.sublayers` fact (None: one attention) and
    the `block.recurrent_stacks` fact (two stacks run in nested cycles, else None)."""
    paths = stack_paths(ctx)
    recurrent = None
    if len(paths) > 1:
        found = recurrent_stacks.detect(ctx, paths) if len(paths) == 2 else None
        if isinstance(found, dict):
            recurrent = found
        else:
            why = f" {found}" if found else ""
            ctx.unsupported(
                "block.stacks",
                f"{len(paths)} layer stacks ({', '.join(paths)}){why}; a package builds one",
                ctx.model.entry_cls.cite(),
            )
    return _attention_lists(ctx), recurrent


def _attention_lists(ctx: Ctx) -> dict | None:
    for layer in ctx.model.layers:
        slots = layer_slots(ctx.model, layer)
        listed = [(name, rec) for name, rec in slots.get(ATTENTION, []) if _indexed(name)]
        if len(listed) > 1:
            site = ctx.class_site(layer)
            found = read_sublayers(ctx, layer, slots)
            names = ", ".join(name for name, _ in listed)
            if isinstance(found, str):
                ctx.unsupported(  # a finding of its own: a rule realises block.sublayers
                    "block.sublayer_wiring",
                    f"{len(listed)} attention sublayers per layer ({names}) {found}",
                    site,
                )
                return None
            ctx.cite(
                "block.sublayers",
                f"{site} ({found['count']} attention sublayers: {names}; MoE"
                f" {found['moe']} reads {found['names']['ffn_norm']}.{found['moe_input']}'s"
                " output, added to the last residual sum)",
            )
            return found
    return None


def _indexed(name: str) -> bool:
    return name.rsplit(".", 1)[-1].isdigit()


def read_sublayers(ctx: Ctx, layer, slots: dict) -> dict | str:
    """The sublayer wiring of a layer with module lists of attentions, or why it is not
    one a package builds (a sentence)."""
    roles = ctx.roles
    slotted = [
        (name, rec) for role in (ATTENTION, MLP, NORM, MOE) for name, rec in slots.get(role, [])
    ]
    paths = {id(rec): name for name, rec in slotted}
    owners = {name.split(".")[0] for name, _ in slotted}
    out = first_output(ctx.trace(layer).result)
    if out is None:
        return "whose forward the analysis could not follow"
    # list items built alike are one record: a call is named by its callee, self.<list>[i]
    calls: dict[str, Term] = {}
    named: dict[int, str] = {}
    for term in walk(out):
        term = strip(term)
        if isinstance(term, Term) and term.op == "call" and id(term.module) in paths:
            name = _callee(term)
            if name is None or name.split(".")[0] not in owners:
                return "whose modules are called other than as self.<module> or self.<list>[i]"
            calls.setdefault(name, term)
            named[id(term)] = name

    def list_of(role: str) -> tuple[str, list[str]] | None:
        names = [name for name, _ in slots.get(role, []) if _indexed(name)]
        lists = {name.rsplit(".", 1)[0] for name in names}
        return (lists.pop(), names) if len(lists) == 1 else None

    attention, mlps = list_of(ATTENTION), list_of(MLP)
    moes = [name for name, _ in slots.get(MOE, []) if not _indexed(name)]
    if attention is None or mlps is None or len(moes) != 1:
        return "without one dense MLP per attention and one MoE beside them: no rule yet"
    count = len(attention[1])
    if len(mlps[1]) != count or any(name not in calls for name in attention[1] + mlps[1]):
        return "whose attentions and MLPs are not each run once: no rule yet"
    if moes[0] not in calls:
        return "whose MoE is not run: no rule yet"

    def norm_of(call: Term) -> str | None:
        source = strip(primary_input(call))
        if isinstance(source, Term) and source.op == "call" and roles.role(source.module) == NORM:
            return named.get(id(source))
        return None

    norms: dict[str, list[str]] = {"attention_norm": [], "ffn_norm": []}
    for i in range(count):
        for key, name in (("attention_norm", attention[1][i]), ("ffn_norm", mlps[1][i])):
            norm = norm_of(calls[name])
            if norm is None or not _indexed(norm) or int(norm.rsplit(".", 1)[1]) != i:
                return f"where {name} does not read a norm of its own (pre-norm): no rule yet"
            norms[key].append(norm.rsplit(".", 1)[0])
    lists = {key: set(found) for key, found in norms.items()}
    if any(len(found) != 1 for found in lists.values()):
        return "whose norms are not one module list per place: no rule yet"
    moe = calls[moes[0]]
    moe_norm = norm_of(moe)
    ffn_norm = lists["ffn_norm"].pop()
    if moe_norm is None or moe_norm.rsplit(".", 1)[0] != ffn_norm:
        return "whose MoE does not read a sublayer MLP's normed input: no rule yet"
    moe_input = int(moe_norm.rsplit(".", 1)[1])
    # a shortcut: no later sublayer reads the MoE's output; the layer's output does
    later = [calls[name] for name in attention[1][moe_input + 1 :] + mlps[1][moe_input + 1 :]]
    if any(_reads(call, moe) for call in later) or not _reads(out, moe):
        return "whose MoE output is not added to the layer's last residual sum only: no rule yet"
    if not _in_last_sum(out, moe, calls[mlps[1][-1]]):
        return "whose MoE output is not added to the layer's last residual sum only: no rule yet"
    return {
        "count": count,
        "moe": moes[0],
        "moe_input": moe_input,
        "names": {
            "attention": attention[0],
            "feed_forward": mlps[0],
            "attention_norm": lists["attention_norm"].pop(),
            "ffn_norm": ffn_norm,
        },
    }


def _callee(term: Term) -> str | None:
    """`self.mlp(...)` -> "mlp", `self.mlps[0](...)` -> "mlps.0", else None."""
    node = getattr(term.site, "node", None)
    func = node.func if isinstance(node, cst.Call) else None
    index = None
    if isinstance(func, cst.Subscript) and len(func.slice) == 1:
        element = func.slice[0].slice
        if not (isinstance(element, cst.Index) and isinstance(element.value, cst.Integer)):
            return None
        index, func = element.value.value, func.value
    if not (
        isinstance(func, cst.Attribute)
        and isinstance(func.value, cst.Name)
        and func.value.value == "self"
    ):
        return None
    return func.attr.value if index is None else f"{func.attr.value}.{index}"


def _reads(term, target: Term) -> bool:
    return isinstance(term, Term) and any(t is target for t in walk(term))


def _in_last_sum(out: Term, moe: Term, last_mlp: Term) -> bool:
    """`out` is a sum (of sums) whose operands include the MoE's output and the last MLP's."""
    operands: list = []
    stack = [strip(out)]
    while stack:
        term = stack.pop()
        if isinstance(term, Term) and term.op == "add":
            stack.extend(strip(a) for a in term.args)
        else:
            operands.append(term)
    return any(t is moe for t in operands) and any(t is last_mlp for t in operands)
