"""What a causal stack the layer reader did not read needs, each named as unsupported.

A decoder the reader finds no layers in must still count in the coverage sweep, listed as
remaining with the capabilities no rule has, each with its site:

* `block.layer_form`: the blocks' sublayers the reader does not take apart (a norm and an
  attention wrapped together), or one module list per sublayer indexed by the backbone;
* `block.reversible`: the layer list handed whole to a custom autograd Function's `apply`
  (reversible residuals over two halves of the stream, recomputed in backward);
* `attention.lsh`: an attention hashing queries and keys into buckets by random rotations
  (`randn`, `argmax`) and sorting by bucket;
* `attention.written_out`: any other attention written out in the blocks without a kernel
  the reader knows (chunked local attention), with the config fields it reads;
* `attention.relative_buckets`: a per-head bias table indexed by log-spaced buckets of the
  query-key distance (`log` of the distance, `abs`, clipped with `where`/`min`);
* `embedding.tables`: several embedding tables summed into the stream (segment ids);
* `model.unread`: any other module of the model that has no role (axial positions).

All read from structure: roles, the operations a class's forward calls, module lists.
"""

from __future__ import annotations

import libcst.matchers as m

from codegen.analyze.context import Ctx
from codegen.analyze.evaluate import ModuleListRec, ModuleRec, ParamRec
from codegen.analyze.model import get_path, walk_tree
from codegen.analyze.roles import (
    ATTENTION,
    CONTAINER,
    EMBEDDING,
    MIXER,
    OTHER,
    attention_calls,
)

# a softmax, or one written out as exp(scores - logsumexp(scores)) (Reformer's attentions)
SOFTMAX = {"softmax", "Softmax", "log_softmax", "logsumexp"}
_PRODUCTS = {"matmul", "bmm", "baddbmm", "einsum"}


def report(ctx: Ctx, path: str, block: ModuleRec, parallel: bool) -> None:
    model = ctx.model
    owner_path = path.rsplit(".", 1)[0] if "." in path else ""
    owner = get_path(model.entry, owner_path)
    listed = get_path(model.entry, path)
    blocks = [i for i in getattr(listed, "items", []) if isinstance(i, ModuleRec)] or [block]
    _layer_form(ctx, path, block, parallel, owner)
    if isinstance(owner, ModuleRec):
        _reversible(ctx, path, owner)
    inside = _modules_under(blocks) if not parallel else _modules_under(_parallel_items(owner))
    _attentions(ctx, inside)
    outside = [(name, rec) for name, rec in walk_tree(model.entry) if isinstance(rec, ModuleRec)]
    outside = [(name, rec) for name, rec in outside if id(rec) not in inside]
    reported = _relative_buckets(ctx, outside)
    _embedding_tables(ctx, outside)
    _unread(ctx, [(name, rec) for name, rec in outside if id(rec) not in reported])


def _layer_form(ctx: Ctx, path: str, block: ModuleRec, parallel: bool, owner) -> None:
    if parallel:
        lists = [name for name, v in owner.children() if isinstance(v, ModuleListRec) and v.items]
        ctx.unsupported(
            "block.layer_form",
            f"no layer class: one module list per sublayer ({', '.join(lists)}) indexed by layer"
            " in the backbone's forward",
            ctx.class_site(owner),
        )
        return
    roles = ctx.model.roles
    wrapped = [
        f"{name} ({rec.cls.name}{_unread_parts(ctx, rec)})"
        for name, rec in block.children()
        if isinstance(rec, ModuleRec) and rec.cls is not None and roles.role(rec) in (CONTAINER,)
    ]
    what = f"sublayers not read: {', '.join(wrapped)}" if wrapped else "a form the reader lacks"
    ctx.unsupported(
        "block.layer_form",
        f"the blocks at {path} are not read as layers ({what})",
        ctx.class_site(block),
    )


def _unread_parts(ctx: Ctx, rec: ModuleRec) -> str:
    """', whose q_proj, k_proj (MoshiLinear) have no role': the wrapper modules inside a
    sublayer that keep it from being read (projections wrapped in a module of their own)."""
    roles = ctx.model.roles
    parts: dict[str, list[str]] = {}
    for name, child in rec.children():
        if isinstance(child, ModuleRec) and child.cls is not None:
            if roles.role(child) in (CONTAINER, OTHER) and roles.role(rec) == CONTAINER:
                parts.setdefault(child.cls.name, []).append(name)
    if not parts or len(parts) > 2:
        return ""
    listed = "; ".join(f"{', '.join(names)} ({cls})" for cls, names in parts.items())
    return f", whose {listed} have no role"


def _reversible(ctx: Ctx, path: str, owner: ModuleRec) -> None:
    project = ctx.model.project
    attr = path.rsplit(".", 1)[-1]
    found = project.find_method(owner.cls, "forward") if owner.cls is not None else None
    if found is None:
        return
    klass, fn = found
    for call in m.findall(fn.body, m.Call(func=m.Attribute(value=m.Name(), attr=m.Name("apply")))):
        hands_layers = any(
            m.matches(a.value, m.Attribute(value=m.Name("self"), attr=m.Name(attr)))
            for a in call.args
        )
        function = project.resolve_class(klass.sf, call.func.value.value)
        if not hands_layers or function is None:
            continue
        if any(base.rsplit(".", 1)[-1] == "Function" for base in project.external_bases(function)):
            ctx.unsupported(
                "block.reversible",
                f"the layers run inside {function.name}.apply, a custom autograd Function"
                " (reversible residuals, activations recomputed in backward)",
                klass.sf.cite(call, klass.node, fn),
            )
            return


def _attentions(ctx: Ctx, inside: dict[int, ModuleRec]) -> None:
    roles = ctx.model.roles
    written: list[str] = []
    seen: set[int] = set()
    for rec in inside.values():
        if rec.cls is None or id(rec.cls) in seen:
            continue
        seen.add(id(rec.cls))
        sig = roles.method_signals(rec.cls)
        attention = roles.role(rec) in (ATTENTION, MIXER) or (
            SOFTMAX & sig.ops and (sig.matmul or _PRODUCTS & sig.ops)
        )
        if not attention:
            continue
        if {"randn", "argmax"} <= sig.ops and any("sort" in op for op in sig.ops):
            ctx.unsupported(
                "attention.lsh",
                f"{rec.cls.name} hashes queries and keys into buckets (random rotations: randn,"
                " argmax) and attends within the bucket-sorted chunks",
                ctx.class_site(rec),
            )
        elif not attention_calls(sig.ops):
            fields = sorted({key for keys in rec.config_reads.values() for key in keys})
            reads = f" (reads config {', '.join(fields)})" if fields else ""
            written.append((f"{rec.cls.name}{reads}", ctx.class_site(rec)))
    if written:
        ctx.unsupported(
            "attention.written_out",
            "attention written out without a kernel the reader knows: "
            + "; ".join(f"{what} ({site})" for what, site in written),
            written[0][1],
        )


def _relative_buckets(ctx: Ctx, outside) -> set[int]:
    roles = ctx.model.roles
    reported: set[int] = set()
    for name, rec in outside:
        if rec.cls is None or id(rec) in reported:
            continue
        sig = roles.method_signals(rec.cls)
        tables = [
            k
            for k, v in rec.children()
            if (isinstance(v, ParamRec) and len(v.shape or ()) == 2)
            or (isinstance(v, ModuleRec) and roles.role(v) == EMBEDDING)
        ]
        if tables and {"log", "abs"} <= sig.ops and sig.ops & {"where", "min", "clamp"}:
            ctx.unsupported(
                "attention.relative_buckets",
                f"{name} ({rec.cls.name}) biases the scores per head from a table"
                f" ({', '.join(tables)}) indexed by log-spaced buckets of the query-key distance",
                ctx.class_site(rec),
            )
            reported.add(id(rec))
    return reported


def _embedding_tables(ctx: Ctx, outside) -> None:
    roles = ctx.model.roles
    for name, rec in outside:
        tables = [
            k for k, v in rec.children() if isinstance(v, ModuleRec) and roles.role(v) == EMBEDDING
        ]
        if len(tables) > 1:
            ctx.unsupported(
                "embedding.tables",
                f"{len(tables)} embedding tables in {name or 'the model'} ({', '.join(tables)})",
                ctx.class_site(rec),
            )
            return


def _unread(ctx: Ctx, outside) -> None:
    roles = ctx.model.roles
    unread = [
        (name, rec)
        for name, rec in outside
        if rec.cls is not None and roles.role(rec) == OTHER and name
    ]
    if unread:
        what = "; ".join(f"{name} ({rec.cls.name})" for name, rec in unread)
        ctx.unsupported(
            "model.unread", f"modules with no role: {what}", ctx.class_site(unread[0][1])
        )


def _parallel_items(owner) -> list[ModuleRec]:
    items: list[ModuleRec] = []
    for _, v in owner.children() if isinstance(owner, ModuleRec) else []:
        if isinstance(v, ModuleListRec):
            items += [i for i in v.items if isinstance(i, ModuleRec)]
    return items


def _modules_under(roots: list[ModuleRec]) -> dict[int, ModuleRec]:
    found: dict[int, ModuleRec] = {}
    for root in roots:
        for _, rec in walk_tree(root):
            if isinstance(rec, ModuleRec):
                found[id(rec)] = rec
        found[id(root)] = root
    return found
