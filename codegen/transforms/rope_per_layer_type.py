"""RoPE per layer type: `rope_parameters` nested as {"full_attention": {...},
"sliding_attention": {...}} (gemma3, olmo3, mellum), each type with its own theta and scaling.

A reference reads one flat `rope_parameters` dict. Here `rope` is built from the
full-attention entry and, where the package has a window pattern (its blocks know whether
they slide), `sliding_rope` from the sliding entry: the model builds one cos/sin table per
type present in `layer_types` (the sliding one beside the window mask, when a layer slides)
and hands each block the table of its own type, as HF does; both, and the window mask, are
freed after the layer loop (HF's backbone has returned, freeing them, when its head runs).
With a RoPE base per layer as well (`rope.layer_bases` over `rope_parameters[<layer type>]`)
the model builds a table per (layer type, base) pair some layer has and a layer takes its
own pair's (`_typed_rope_bases`); a base swapped into anything else is refused in one line.
"""

from __future__ import annotations

import libcst as cst
import libcst.matchers as m

from codegen.transforms import _attention_edits as edits
from codegen.transforms import _rope_edits as rope_edits
from codegen.transforms import _typed_rope_bases as typed_bases
from codegen.transforms.base import Transform
from codegen.transforms.edits import InsertStatements, assigns, code_of, is_name, run

FULL, SLIDING = "full_attention", "sliding_attention"

FIELD = """
# "sliding_attention" layers' RoPE when rope_parameters differ per layer type; None: `rope`
sliding_rope: RopeScaling | None = None
"""

_FROM_HF = m.Call(func=m.Attribute(value=m.Name("RopeScaling"), attr=m.Name("from_hf")))


class SetRopePerLayerType(Transform):
    """`rope` from the full-attention parameters, `sliding_rope` (with a window pattern) from
    the sliding ones; sliding blocks rotate with the sliding table."""

    name = "rope_per_layer_type"

    def apply(self, package, features=None) -> None:
        built = _rope_kwarg(package)
        if built is None:
            raise ValueError("from_hf_config builds no RopeScaling.from_hf(...) to split per type")
        # a RoPE base per layer as well: each layer's base swapped into its own type's entry
        rope = getattr(features, "rope", None)
        bases = getattr(rope, "layer_bases", None)
        evidence = (getattr(features, "evidence", None) or {}).get("rope.layer_bases", "")
        typed_bases.check(bases, evidence)
        # a full-attention entry of None: those layers apply no RoPE (the NoPE rule says
        # which), and `rope`, which no layer of that type then reads, is the sliding one
        parameters_of = getattr(getattr(features, "rope", None), "parameters", None) or {}
        nope_full = FULL in parameters_of and parameters_of[FULL] is None
        sliding_key = _sliding_key(parameters_of, features)
        full_key = _full_key(parameters_of, sliding_key)

        def full(parameters):
            entry = _entry(parameters, full_key)
            if not nope_full:
                return entry
            either = cst.BooleanOperation(entry, cst.Or(), _entry(parameters, sliding_key))
            return either.with_changes(lpar=[cst.LeftParen()], rpar=[cst.RightParen()])

        edits.replace_expressions(
            package,
            "args.py",
            "ModelArgs",
            "from_hf_config",
            lambda node: m.matches(node, _FROM_HF),
            lambda call: call.with_changes(
                args=[call.args[0].with_changes(value=full(call.args[0].value)), *call.args[1:]]
            ),
        )
        # the dict is nested now: a flat read of it (the references' partial-factor guard,
        # `rope.get("partial_rotary_factor", 1.0)`) reads the full-attention entry `rope` is
        # built from, or it would only ever see its defaults
        parameters = built.args[0].value
        if isinstance(parameters, cst.Name):
            flat_read = m.Call(func=m.Attribute(value=m.Name(parameters.value), attr=m.Name("get")))
            edits.replace_expressions(
                package,
                "args.py",
                "ModelArgs",
                "from_hf_config",
                lambda node: m.matches(node, flat_read),
                lambda call: call.with_changes(func=call.func.with_changes(value=full(parameters))),
                required=False,
            )
        if not _slides(package):
            return  # every layer attends fully: the full-attention table is the only one
        edits.add_args_field(
            package, FIELD, f"sliding_rope={code_of(_of_type(built, sliding_key))}"
        )
        if bases is not None:
            # a RoPE base per layer as well: a table per (layer type, base) pair in use
            typed_bases.compose(package, sliding_key)
            tables = typed_bases.FREED
        else:
            _sliding_tables(package)
            tables = "rope, sliding_rope"
        # the tables and the window mask go once the layers have run, as HF's backbone
        # frees its position embeddings and masks on return, before the head (a written-out
        # attention's hidden masks free the window on their own line: `hide_masks_once`)
        freed = tables if edits.masks_hidden(package) else f"{tables}, window"
        edits.free_after_layer_loop(package, freed)


def _sliding_tables(package) -> None:
    """`self.sliding_rotary` beside `self.rotary`, its table built beside the window mask
    (only when a layer slides), and sliding blocks handed it in place of `rope`."""
    model = package.module("model.py")
    rotary = rope_edits.first_assignment(model, "Model", "__init__", "self.rotary")
    table = rope_edits.first_assignment(model, "Model", "forward", "rope")
    if rotary is None or table is None:
        raise ValueError("the model builds no `self.rotary` table to duplicate per type")
    run(
        package,
        "model.py",
        InsertStatements(
            "Model",
            "__init__",
            assigns("self.rotary"),
            # laguna rotates all of a sliding layer's head, half of a full one's
            rope_edits.second_rotary(rotary, "sliding_rope", "sliding_rotary"),
        ),
    )
    run(package, "model.py", _BesideTheWindow(_sliding_table(table)))

    def per_type(call: cst.Call) -> cst.Call:
        args = [
            a.with_changes(value=edits.expression("sliding_rope if layer.sliding else rope"))
            if is_name(a.value, "rope")
            else a
            for a in call.args
        ]
        return call.with_changes(args=args)

    edits.replace_expressions(
        package, "model.py", "Model", "forward", edits.call_of("layer"), per_type
    )


def _sliding_key(parameters_of: dict, features) -> str:
    """The entry of the sliding layers: "sliding_attention", or the layer type of the
    config's own naming whose layers the source gives a window (zaya's "hybrid_sliding": the
    `layer_types` switch value that selects `sliding_window`)."""
    if SLIDING in parameters_of:
        return SLIDING
    for switch in getattr(features, "switches", None) or ():
        if switch.field != "layer_types":
            continue
        for value in switch.values:
            if value.test == "layers" and "sliding_window" in (value.selects or ""):
                if value.operand in parameters_of:
                    return value.operand
    return SLIDING


def _full_key(parameters_of: dict, sliding_key: str = SLIDING) -> str:
    """The entry of the layers that do not slide: "full_attention", or the one other type
    the config names (dots3's "indexed_attention", full attention narrowed by an indexer;
    zaya's "hybrid" beside "hybrid_sliding")."""
    others = [key for key in parameters_of if key != sliding_key]
    return others[0] if FULL not in parameters_of and len(others) == 1 else FULL


def _rope_kwarg(package) -> cst.Call | None:
    """The `RopeScaling.from_hf(...)` call of `from_hf_config`."""
    method = edits.find_method(package.module("args.py"), "ModelArgs", "from_hf_config")
    found = m.findall(method, _FROM_HF) if method is not None else []
    return found[0] if found else None


def _of_type(call: cst.Call, layer_type: str) -> cst.Call:
    """`RopeScaling.from_hf(p, ...)` -> `RopeScaling.from_hf(p["<layer_type>"], ...)`."""
    first = call.args[0]
    value = _entry(first.value, layer_type)
    return call.with_changes(args=[first.with_changes(value=value), *call.args[1:]])


def _entry(parameters: cst.BaseExpression, layer_type: str) -> cst.Subscript:
    """`p` -> `p["<layer_type>"]`."""
    key = cst.SubscriptElement(cst.Index(cst.SimpleString(f'"{layer_type}"')))
    return cst.Subscript(value=parameters, slice=[key])


def _slides(package) -> bool:
    """The blocks know whether they slide (`self.sliding = ...`, the window pattern)."""
    init = edits.find_method(package.module("model.py"), "TransformerBlock", "__init__")
    target = m.AssignTarget(target=m.Attribute(value=m.Name("self"), attr=m.Name("sliding")))
    return init is not None and bool(m.findall(init, target))


_WINDOW_IF = m.If(
    test=m.Comparison(
        left=m.SimpleString('"sliding_attention"'),
        comparisons=[
            m.ComparisonTarget(operator=m.In(), comparator=m.Attribute(attr=m.Name("layer_types")))
        ],
    )
)
_NO_WINDOW = m.SimpleStatementLine(
    body=[m.Assign(targets=[m.AssignTarget(target=m.Name("window"))], value=m.Name("None"))]
)


class _BesideTheWindow(edits.InMethod):
    """In `Model.forward`: `window = None` -> `window = sliding_rope = None`, and `code` (the
    sliding table) appended to `if "sliding_attention" in ...layer_types:` (where the window
    mask is built), so no layer type's table is computed that no layer reads."""

    def __init__(self, code: str):
        super().__init__("Model", "forward")
        self.new = edits.statements(code)
        self.tables = ["sliding_rope"]

    def leave_FunctionDef(self, original, updated):
        hit = self._stack == [self.class_name, self.method]
        self._stack.pop()
        if not hit:
            return updated
        body = list(updated.body.body)
        nones = [i for i, s in enumerate(body) if m.matches(s, _NO_WINDOW)]
        ifs = [i for i, s in enumerate(body) if m.matches(s, _WINDOW_IF)]
        if len(nones) != 1 or len(ifs) != 1:
            return updated
        self.hits += 1
        assign = body[nones[0]].body[0]
        targets = [*assign.targets, *(cst.AssignTarget(cst.Name(t)) for t in self.tables)]
        body[nones[0]] = body[nones[0]].with_changes(body=[assign.with_changes(targets=targets)])
        block = body[ifs[0]]
        inner = block.body.with_changes(body=[*block.body.body, *self.new])
        body[ifs[0]] = block.with_changes(body=inner)
        return updated.with_changes(body=updated.body.with_changes(body=body))


def _sliding_table(statement) -> str:
    """`rope = self.rotary(positions)` -> `sliding_rope = self.sliding_rotary(positions)`."""
    value = statement.body[0].value
    renamed = value.visit(_Rename("rotary", "sliding_rotary"))
    return f"sliding_rope = {code_of(renamed)}"


class _Rename(cst.CSTTransformer):
    def __init__(self, old: str, new: str):
        super().__init__()
        self.old, self.new = old, new

    def leave_Attribute(self, original, updated):
        if is_name(updated.value, "self") and updated.attr.value == self.old:
            return updated.with_changes(attr=cst.Name(self.new))
        return updated
