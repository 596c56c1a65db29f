"""A learned relative position bias handed to the attention kernel (`attention.rel_bias`).

Inkling's attention adds to its scaled scores a bias that depends on the query's own input
and on the backward distance to each key: a projection of the input gives each head
`width` states, which mix the rows of a learned table (`width` x `extent`: one bias profile
over the distances per state) into one bias per distance; each score reads its distance's
entry, the distance clamped into the table, and is left unbiased where the key comes after
the query or `extent` or more tokens before it (the causal mask hides the former anyway).
The extent may differ by layer (inkling's sliding layers take their window, the others
`rel_extent`).

This module reads, without running anything:

* the bias module: the `call` of a module of the attention that the kernel's
  `position_bias` argument comes from, holding a 2-D parameter (the table);
* the states projection: the attention's own Linear that module's first input comes from;
* the idiom of the bias module's forward: the states times the table (`@`), a `gather` at
  a `clamp`ed index and a `masked_fill` of what lies outside the extent;
* the table's two sizes, restated over `hf_config` and the layer index `i` from the
  arguments the attention's `__init__` builds the module with, checked against every
  analysed layer's table;
* the kernel HF runs the bias through by default: "sdpa" where the model class (or a base)
  sets `_supports_sdpa = True` (transformers' SDPA path folds the bias and the mask into one
  additive float mask), else "eager" (the scores written out, the bias added to them).

The fact is `{"states": <projection attribute>, "table": <module attribute>.<parameter>,
"width": <expression>, "extent": <expression>, "kernel": "sdpa" | "eager"}`; "other" where
a `position_bias` is handed to the kernel in another shape (no rule realises it).
"""

from __future__ import annotations

import libcst as cst
import libcst.matchers as m

from codegen.analyze.attention_shapes import _init_assignments
from codegen.analyze.context import Ctx
from codegen.analyze.dataflow import Term, walk
from codegen.analyze.evaluate import ModuleRec, ParamRec
from codegen.analyze.layer_rule import restate_init

FEATURE = "attention.rel_bias"
KEYS = ("position_bias",)  # the kernel argument that carries such a bias (HF's eager path)
SDPA = "_supports_sdpa"  # the model class's flag: HF's default kernel is SDPA where it is True


def detect(ctx: Ctx, shared: dict) -> dict | str | None:
    """The bias (see the module docstring), "other", or None where no kernel gets one."""
    layers = [
        p
        for p in shared.get("per_layer", ())
        if p["type"] in ("full", "sliding") and p["info"].kernel is not None
    ]
    if not layers:
        return None
    rep = layers[0]["info"]
    term = next((rep.kernel.kwargs.get(k) for k in KEYS if k in rep.kernel.kwargs), None)
    if not isinstance(term, Term):
        return None
    where = rep.kernel.site.cite() if rep.kernel.site else ctx.class_site(rep.rec)
    found = _read(ctx, rep.rec, term, layers)
    if isinstance(found, dict):
        found["kernel"], flag = _default_kernel(ctx)
        if flag is not None:
            where += f"; {flag}"
    ctx.cite(FEATURE, f"{where} ({_describe(found)})")
    return found


def _default_kernel(ctx: Ctx) -> tuple[str, str | None]:
    """HF's default kernel: "sdpa" where the entry class (or a base) sets `_supports_sdpa =
    True`, else "eager"; with `file:line` of the flag where the code sets it."""
    found = ctx.model.project.find_class_attr(ctx.model.entry_cls, SDPA)
    if found is None:
        return "eager", None
    owner, value = found
    on = isinstance(value, cst.Name) and value.value == "True"
    return ("sdpa" if on else "eager"), owner.sf.cite(value)


def _describe(found) -> str:
    if not isinstance(found, dict):
        return "a position bias of another shape: no table mixed by a projection of the input"
    return (
        f"{found['table']} ({found['width']} x {found['extent']}) mixed by {found['states']},"
        f" read at the clamped backward distance; HF's default kernel {found['kernel']}"
    )


def _read(ctx: Ctx, rec: ModuleRec, term: Term, layers: list) -> dict | str:
    names = {id(child): name for name, child in rec.attrs.items()}
    fill = next((t for t in walk(term) if _is_fn(t, "masked_fill")), None)
    if fill is None or len(fill.args) < 3 or fill.args[2] != 0:
        return "other"
    if not _is_fn(fill.args[0], "gather"):
        return "other"
    gather = fill.args[0]
    if len(gather.args) < 3 or gather.args[1] != -1:
        return "other"
    mixed, index = gather.args[0], gather.args[2]
    if not (isinstance(mixed, Term) and mixed.op == "matmul" and len(mixed.args) == 2):
        return "other"
    states, table = mixed.args
    if not (isinstance(table, Term) and table.op == "param" and isinstance(states, Term)):
        return "other"
    owner = next(
        (
            (name, child, pname)
            for name, child in rec.attrs.items()
            if isinstance(child, ModuleRec)
            for pname, value in child.attrs.items()
            if value is table.module
        ),
        None,
    )
    projections = {
        names[id(t.module)]
        for t in walk(states)
        if t.op == "call" and id(t.module) in names and t.module.kind == "Linear"
    }
    if owner is None or len(projections) != 1 or len(table.module.shape) != 2:
        return "other"
    if not _backward_distance(index, table.module.shape[1]):
        return "other"
    bias_name, bias, param_name = owner
    sizes = _table_sizes(ctx, rec, bias_name, bias, param_name, layers)
    if sizes is None:
        return "other"
    width, extent = sizes
    return {
        "states": projections.pop(),
        "table": f"{bias_name}.{param_name}",
        "width": width,
        "extent": extent,
    }


def _is_fn(term, name: str) -> bool:
    return isinstance(term, Term) and term.op == "fn" and term.name.rsplit(".", 1)[-1] == name


def _backward_distance(index, extent: int) -> bool:
    """`index` is the query's row minus the key's column (`q[:, None] - k[None, :]`: the
    distance back to the key), clamped into `[0, extent - 1]` (possibly expanded)."""
    clamp = (
        next((t for t in walk(index) if _is_fn(t, "clamp")), None)
        if isinstance(index, Term)
        else None
    )
    if clamp is None or len(clamp.args) != 3 or list(clamp.args[1:]) != [0, extent - 1]:
        return False
    sub = next((t for t in walk(clamp.args[0]) if t.op == "sub"), None)
    if sub is None or len(sub.args) != 2:
        return False
    rows, columns = sub.args
    return (
        isinstance(rows, Term)
        and rows.op == "index"
        and rows.name.replace(" ", "") in ("::,None", ":,None")
        and isinstance(columns, Term)
        and columns.op == "index"
        and columns.name.replace(" ", "") in ("None,::", "None,:")
    )


def _table(rec) -> tuple[str, ParamRec] | None:
    """The module's one 2-D parameter (name, record), else None."""
    if not isinstance(rec, ModuleRec):
        return None
    params = [
        (name, value)
        for name, value in rec.attrs.items()
        if isinstance(value, ParamRec) and value.kind == "parameter"
    ]
    if len(params) != 1 or len(params[0][1].shape) != 2:
        return None
    return params[0]


def _table_sizes(ctx, rec, bias_name, bias, param_name, layers) -> tuple[str, str] | None:
    """The table's (rows, columns) restated over the config and the layer index from the
    arguments the attention builds the module with, true for every analysed layer."""
    built = _init_assignments(ctx, rec).get(bias_name)
    init = ctx.model.project.find_method(bias.cls, "__init__") if bias.cls else None
    if not isinstance(built, cst.Call) or init is None:
        return None
    params = [p.name.value for p in init[1].params.params][1:]
    passed: dict[str, cst.BaseExpression] = {}
    positional = [a for a in built.args if a.keyword is None and not a.star]
    for name, arg in zip(params, positional, strict=False):
        passed[name] = arg.value
    for arg in built.args:
        if arg.keyword is not None:
            passed[arg.keyword.value] = arg.value
    dims = _parameter_dims(init[1], param_name)
    if dims is None or not all(d in passed for d in dims):
        return None
    indexed = [(p["index"], p["info"].rec) for p in layers]
    out = []
    for axis, dim in enumerate(dims):
        restated = restate_init(ctx, rec, passed[dim], indexed)
        if restated is None:
            return None
        text, values = restated
        for p, value in zip(layers, values, strict=True):
            table = _table(p["info"].rec.attrs.get(bias_name))
            if table is None or table[1].shape[axis] != value:
                return None
        out.append(text)
    return out[0], out[1]


def _parameter_dims(init: cst.FunctionDef, param_name: str) -> tuple[str, str] | None:
    """`self.<param> = nn.Parameter(torch.<factory>(a, b))` in `__init__` -> (a, b), the
    names of two of its arguments."""
    target = m.AssignTarget(m.Attribute(value=m.Name("self"), attr=m.Name(param_name)))
    for assign in m.findall(init, m.Assign(targets=[target])):
        value = assign.value
        if not (isinstance(value, cst.Call) and value.args):
            continue
        inner = value.args[0].value
        if not isinstance(inner, cst.Call) or len(inner.args) != 2:
            continue
        dims = [a.value for a in inner.args]
        if all(isinstance(d, cst.Name) for d in dims):
            return dims[0].value, dims[1].value
    return None
