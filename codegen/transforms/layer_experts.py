"""Give each MoE layer its own number of routed experts where the config's field is an int or
a per-layer list (hunyuan_v1_moe's `num_experts`: `config.num_experts[layer_idx]` unless it
is an int): the layer's router width and its stacked expert weights. The checkpoint's
per-expert keys are stacked per layer by the count found on disk, and the expert-parallel
plan shards each layer's experts module by its own count, so neither needs an edit."""

from __future__ import annotations

import libcst as cst
import libcst.matchers as m

from codegen.transforms import _attention_edits as edits
from codegen.transforms._layer_lists import (
    CheckPerLayer,
    RetypeField,
    cls_call,
    keyword,
    moe_layer_id,
    read_per_layer,
)
from codegen.transforms._moe_edits import add_method
from codegen.transforms.base import Transform
from codegen.transforms.edits import EditError, code_of, expression, run

FIELD = "{name}: int | list[int] = {{default}}  # routed experts; a list: each layer's, by index"

EXPERTS_OF = '''
def experts_of(self, layer_id: int) -> int:
    """Layer `layer_id`'s routed experts."""
    return self.{name} if isinstance(self.{name}, int) else self.{name}[layer_id]
'''


class LayerExperts(Transform):
    """`MoE` sizes its router and experts by its layer's count (`args.experts_of(layer_id)`);
    the ModelArgs field the config's `field` maps to is an int or a per-layer list, a list of
    another length refused in one line."""

    name = "layer_experts"

    def apply(self, package, features=None, *, field: str) -> None:
        name = _router_width(package)
        moe_layer_id(package)
        edits.replace_expressions(
            package,
            "model.py",
            "MoE",
            "__init__",
            edits.is_code(f"args.{name}"),
            lambda _: expression("args.experts_of(layer_id)"),
        )
        read = m.Attribute(value=m.Name("args"), attr=m.Name(name))
        if m.findall(package.files["model.py"], read):
            raise EditError(f"model.py reads args.{name} outside MoE.__init__: one count assumed")
        _per_layer_args(package, field, name)


def _router_width(package) -> str:
    """The ModelArgs field sizing the router: `nn.Linear(args.dim, args.<field>, ...)`
    assigned to `self.gate` in `MoE.__init__`."""
    init = edits.find_method(package.module("model.py"), "MoE", "__init__")
    linear = m.Call(
        func=m.Name("Linear") | m.Attribute(attr=m.Name("Linear")),
        args=[m.Arg(), m.Arg(m.Attribute(value=m.Name("args"), attr=m.Name())), m.ZeroOrMore()],
    )
    router = m.Assign(
        targets=[m.AssignTarget(m.Attribute(value=m.Name("self"), attr=m.Name("gate")))],
        value=linear,
    )
    found = m.findall(init, router) if init is not None else []
    if not found:
        raise EditError("MoE.__init__ builds no router `self.gate = nn.Linear(..., args.<n>)`")
    return found[0].value.args[1].value.attr.value


def _per_layer_args(package, field: str, name: str) -> None:
    """ModelArgs: `name` typed `int | list[int]`, `experts_of`, and `from_hf_config`
    passing the config's field on once `per_layer` has checked it, the checks that compared
    the one count comparing each layer's."""
    run(package, "args.py", RetypeField(name, FIELD.format(name=name)))
    run(package, "args.py", _LayerReads(name), required=False)
    add_method(package, "args.py", "ModelArgs", EXPERTS_OF.format(name=name))
    call = cls_call(package, name)
    n_layers, passed = code_of(keyword(call, "n_layers")), keyword(call, name)
    read_per_layer(package, "expert_counts", field, n_layers)
    run(package, "args.py", CheckPerLayer(passed, "expert_counts", n_layers), required=False)
    edits.replace_expressions(
        package,
        "args.py",
        "ModelArgs",
        "from_hf_config",
        lambda node: isinstance(node, cst.Call) and edits.is_name(node.func, "cls"),
        lambda c: edits.set_arg(c, name, f"hf_config.{field}"),
    )


class _LayerReads(cst.CSTTransformer):
    """In ModelArgs' methods taking a layer (`is_moe_layer(self, layer_id)`: qwen3_moe's
    `self.num_experts > 0`), `self.<name>` -> `self.experts_of(layer_id)`; a method reading
    it without a layer is an EditError (one count assumed)."""

    def __init__(self, name: str) -> None:
        super().__init__()
        self.read = m.Attribute(value=m.Name("self"), attr=m.Name(name))
        self.name = name
        self.depth = 0
        self.layer: list[str | None] = []
        self.hits = 0

    def visit_ClassDef(self, node) -> None:
        self.depth += node.name.value == "ModelArgs"

    def leave_ClassDef(self, original, updated):
        self.depth -= original.name.value == "ModelArgs"
        return updated

    def visit_FunctionDef(self, node) -> None:
        params = [p.name.value for p in node.params.params]
        self.layer.append(params[1] if len(params) == 2 and params[0] == "self" else None)
        self.method = node.name.value

    def leave_FunctionDef(self, original, updated):
        self.layer.pop()
        return updated

    def leave_Attribute(self, original, updated):
        if not self.depth or not self.layer or not m.matches(updated, self.read):
            return updated
        if self.layer[-1] is None:
            raise EditError(f"ModelArgs.{self.method} reads self.{self.name} for no one layer")
        self.hits += 1
        return expression(f"self.experts_of({self.layer[-1]})")
