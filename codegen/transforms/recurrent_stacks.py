"""Two stacks of layers run in nested cycles: an inner and an outer state (HRM)."""

from __future__ import annotations

import libcst as cst
import libcst.matchers as m

from codegen.transforms import _attention_edits as edits
from codegen.transforms._ffn_edits import rewrite_adapter
from codegen.transforms.base import Transform
from codegen.transforms.edits import (
    EditError,
    ReplaceStatements,
    code_of,
    run,
    sets,
)

FIELDS = """
cycles: int = 2  # outer cycles: the inner stack's runs, then one run of the outer stack
inner_cycles: int = 3  # the inner stack's runs per cycle
# how many of each cycle's last inner runs carry gradients, left-padded with 1 to one entry
# per cycle; the earlier runs are cut from autograd
inner_grad_cycles: tuple[int, ...] = (2,)
"""

STACK = '''
class LayerStack(nn.Module):
    """Layers run in order, their output normed."""

    def __init__(self, args: ModelArgs):
        super().__init__()
{layers}
{norm}

    def forward(self, {h}: torch.Tensor, {params}) -> torch.Tensor:
{loop}
        return self.norm({h})
'''

MODEL_INIT = """
self.inner = LayerStack(args)  # per cycle, inner_cycles runs on the sum of both states
self.outer = LayerStack(args)  # then one run on their sum: the outer state, the output
# the inner state's start on every token: a checkpoint tensor training never changes
self.register_buffer("inner_init", torch.zeros(args.dim))
grads = list(args.inner_grad_cycles)
self.inner_grad_runs = [1] * max(0, args.cycles - len(grads)) + grads
"""

CYCLES = """
inner = self.inner_init.to({h}.dtype).expand_as({h})  # the outer state: {h}
for cycle in range(self.args.cycles):
    # only the last `inner_grad_runs[cycle]` inner runs carry gradients
    grad_from = self.args.inner_cycles - self.inner_grad_runs[cycle]
    for step in range(self.args.inner_cycles):
        with torch.set_grad_enabled(torch.is_grad_enabled() and step >= grad_from):
            inner = self.inner(inner + {h}, {args})
    {h} = self.outer({h} + inner, {args})
"""


class RecurrentStacks(Transform):
    """Two alike stacks of layers, each normed at its end, run in nested cycles: per cycle
    the inner stack runs `inner_cycles` times on the sum of the inner state (starting at the
    `inner_init` buffer on every token) and the outer state (starting as the embeddings),
    then the outer stack once on their sum; the outer state goes to the head. Of each
    cycle's inner runs only the last `inner_grad_cycles` entry (left-padded with 1) carry
    gradients. `LayerStack` takes the model's layer list and final norm; the layers per
    stack, the cycle counts and the gradient list are the HF fields the analysis read
    (`stacks`), and the adapter maps both stacks and the initial state to their HF keys."""

    name = "recurrent_stacks"

    def apply(self, package, features=None, *, stacks: dict) -> None:
        model = package.module("model.py")
        layers = _model_assign(model, "layers")
        norm = _model_assign(model, "norm")
        forward = edits.find_method(model, "Model", "forward")
        loops = [s for s in forward.body.body if _loops_layers(s)] if forward else []
        if len(loops) != 1 or not isinstance(loops[0].target, cst.Name):
            raise EditError("Model.forward has no single `for layer in self.layers` loop")
        loop = loops[0]
        h = _state(loop)
        args = _loop_args(loop, h)
        params = ", ".join(f"{name}" for name in args)
        stack = STACK.format(
            layers=_indented(layers),
            norm=_indented(norm),
            h=h,
            params=", ".join(f"{name}: {_annotation(forward, name)}" for name in args),
            loop=_indented(loop),
        )
        edits.insert_definition(package, "model.py", stack, before="Model")
        run(
            package,
            "model.py",
            ReplaceStatements("Model", "__init__", sets("self.layers"), MODEL_INIT),
        )
        run(package, "model.py", ReplaceStatements("Model", "__init__", sets("self.norm"), ""))
        run(
            package,
            "model.py",
            ReplaceStatements("Model", "forward", _loops_layers, CYCLES.format(h=h, args=params)),
        )
        run(package, "model.py", ReplaceStatements("Model", "forward", _norms_state(h), ""))
        edits.add_args_field(package, FIELDS)
        edits.add_hf_kwarg(package, f"cycles=hf_config.{stacks['cycles']}")
        edits.add_hf_kwarg(package, f"inner_cycles=hf_config.{stacks['inner_cycles']}")
        edits.add_hf_kwarg(package, f"inner_grad_cycles=tuple(hf_config.{stacks['grad_cycles']})")
        _layers_per_stack(package, stacks["layer_count"])
        _map_keys(package, features, stacks)


def _indented(statement) -> str:
    """A statement's code at a method body's indent (8 spaces)."""
    code = cst.Module(body=[statement]).code.strip("\n")
    return "\n".join(("        " + line) if line else line for line in code.split("\n"))


def _model_assign(model: cst.Module, attr: str) -> cst.SimpleStatementLine:
    init = edits.find_method(model, "Model", "__init__")
    found = [s for s in (init.body.body if init else ()) if sets(f"self.{attr}")(s)]
    if len(found) != 1:
        raise EditError(f"Model.__init__ does not set self.{attr} once")
    return found[0]


def _loops_layers(statement) -> bool:
    layers = m.Attribute(value=m.Name("self"), attr=m.Name("layers"))
    return isinstance(statement, cst.For) and bool(
        m.matches(statement.iter, layers) or m.findall(statement.iter, layers)
    )


def _state(loop: cst.For) -> str:
    """The name the loop's layer call assigns (`h = layer(h, rope)` -> h)."""
    layer = loop.target.value
    for node in m.findall(loop.body, m.Assign(targets=[m.AssignTarget(target=m.Name())])):
        if m.findall(node.value, m.Call(func=m.Name(layer))):
            return node.targets[0].target.value
    raise EditError("the layer loop assigns no layer call's output")


def _loop_args(loop: cst.For, h: str) -> list[str]:
    """Names the loop reads besides its own target, the state and `self`, in order."""
    skip = {loop.target.value, h, "self"}
    assigned = {
        n.value for t in m.findall(loop.body, m.AssignTarget()) for n in m.findall(t, m.Name())
    }
    out: list[str] = []
    for node in m.findall(loop.body, m.Name()):
        name = node.value
        if name not in skip and name not in assigned and name not in out and name[:1].islower():
            out.append(name)
    attrs = {n.attr.value for n in m.findall(loop.body, m.Attribute())}
    return [name for name in out if name not in attrs]


def _annotation(forward: cst.FunctionDef, name: str) -> str:
    """The annotation of `name` where forward assigns it or takes it, else torch.Tensor."""
    for param in forward.params.params:
        if param.name.value == name and param.annotation is not None:
            return code_of(param.annotation.annotation)
    for node in m.findall(forward, m.AnnAssign(target=m.Name(name))):
        return code_of(node.annotation.annotation)
    return "tuple[torch.Tensor, torch.Tensor]" if name == "rope" else "torch.Tensor"


def _norms_state(h: str):
    """`h = self.norm(h)` (the final norm, now the stacks' own)."""
    norm = m.SimpleStatementLine(
        body=[
            m.Assign(
                targets=[m.AssignTarget(target=m.Name(h))],
                value=m.Call(func=m.Attribute(value=m.Name("self"), attr=m.Name("norm"))),
            )
        ]
    )
    return lambda statement: m.matches(statement, norm)


def _layers_per_stack(package, field: str) -> None:
    """`n_layers=` reads the layers per stack."""
    hits = edits.replace_expressions(
        package,
        "args.py",
        "ModelArgs",
        "from_hf_config",
        lambda node: isinstance(node, cst.Call) and m.matches(node.func, m.Name("cls")),
        lambda call: edits.set_arg(call, "n_layers", f"hf_config.{field}"),
    )
    if hits != 1:
        raise EditError("from_hf_config builds no cls(...) with n_layers")


def stack_prefixes(features, stacks: dict) -> tuple[str, str]:
    """(the house stack the analysis's layer prefix is, the other one)."""
    prefix = features.state_dict.prefix if features is not None else ""
    inner = ".".join(p for p in (stacks["backbone"], stacks["inner"], stacks["layers"]) if p)
    return ("inner", "outer") if prefix in ("", inner) else ("outer", "inner")


def _map_keys(package, features, stacks: dict) -> None:
    """Layer rows -> the analysed stack's; the final norm's row (if any) -> both stacks'
    norms; the initial state's row. `stack_keys` adds the other stack's layer rows."""
    own, _ = stack_prefixes(features, stacks)
    base = f"{stacks['backbone']}." if stacks["backbone"] else ""

    def rewrite(hf: str, house: str | None):
        if house is not None and house.startswith("layers."):
            return [(hf, f"{own}.{house}")]
        if house == "norm.weight" or house == "norm.bias":
            tail = house.split(".", 1)[1]
            return [
                (f"{base}{stacks[name]}.{stacks['norm']}.{tail}", f"{name}.norm.{tail}")
                for name in ("inner", "outer")
            ]
        return [(hf, house)]

    rewrite_adapter(package, rewrite)
    edits.insert_rows_after(
        package, "tok_embeddings.weight", [(f"{base}{stacks['init']}", "inner_init")]
    )
