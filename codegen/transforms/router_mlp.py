"""Router logits from an MLP over a down-projection carrying a state across layers (zaya)."""

from __future__ import annotations

import libcst as cst
import libcst.matchers as m

from codegen.transforms import _attention_edits as attention_edits
from codegen.transforms import _moe_edits as moe_edits
from codegen.transforms._rope_edits import (
    RewriteExpressions,
    add_args_field,
    rewrite_expressions,
)
from codegen.transforms.base import Transform
from codegen.transforms.edits import (
    EditError,
    assigns,
    code_of,
    expression,
    findall,
    run,
    statements,
)

ROUTER = '''
class Router(nn.Module):
    """Router logits from an MLP over a down-projection of the input; every layer but the
    first adds the previous layer's down-projected state times a learned per-channel vector.
    The logits score the experts and a skip class past them. Returns (logits, the state the
    next layer's router reads)."""

    def __init__(self, args: ModelArgs, carried: bool):
        super().__init__()
        self.down = nn.Linear(args.dim, args.router_dim, bias={down_bias})
        self.state_scale = nn.Parameter(torch.ones(args.router_dim)) if carried else None
        self.norm = RMSNorm(args.router_dim, args.norm_eps)
{layers}

    def init_parameters(self, std: float) -> None:
        if self.state_scale is not None:  # HF's _init_weights: the state as it is
            nn.init.ones_(self.state_scale)

    def forward(
        self, x: torch.Tensor, state: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.down(x)
        if self.state_scale is not None:
            h = h + state * self.state_scale
        return {logits}, h
'''

SKIP = """
# a token picking the skip class (the row past the experts') gets no expert
skip = indices == self.num_experts
weights, indices = weights.masked_fill(skip, 0), indices.masked_fill(skip, 0)
"""

DOC = (
    "Routed feed-forward: the router scores every expert and a skip class, each token runs"
    "\n    its top_k experts (none for the skip class); the router's state goes on to the next"
    " layer."
)

SKIP_INIT = '''
def init_parameters(self, std: float) -> None:
    """The skip class's selection bias starts at {start} (the experts' at zero)."""
    self.e_score_correction_bias[-1] = {start}
'''

ON_LOAD = '''
def _load_from_state_dict(self, state_dict, prefix, *args) -> None:
    """Loads as nn.Module does, then sets the skip class's selection bias to {value}: HF's
    _init_weights writes it there again after loading a checkpoint, so HF routes with {value}
    whatever the checkpoint holds."""
    super()._load_from_state_dict(state_dict, prefix, *args)
    self.e_score_correction_bias[-1] = {value}
'''

_MOE_CALL = m.Call(func=m.Attribute(value=m.Name("self"), attr=m.Name("moe")))
_ROUTE = m.Call(func=m.Attribute(value=m.Name("self"), attr=m.Name("route")))


def router_class(found: dict) -> str:
    """The `Router` class for the analysed `moe.router_mlp`."""
    hidden = len(found["linears"]) - 1
    names = [f"fc{i + 1}" for i in range(hidden)] + ["out"]
    layers = []
    for name, bias in zip(names, found["biases"], strict=True):
        rows = "args.num_experts + 1" if name == "out" else "args.router_dim"
        layers.append(f"        self.{name} = nn.Linear(args.router_dim, {rows}, bias={bias})")
    act = f"F.{found['activation']}"
    logits = "self.norm(h)"
    for name in names[:-1]:
        logits = f"{act}(self.{name}({logits}))"
    return ROUTER.format(
        down_bias=found["down_bias"],
        layers="\n".join(layers),
        logits=f"self.out({logits})",
    )


class RouterMlp(Transform):
    """The MoE's router becomes a `Router` (see `router_class`): `MoE.forward` takes and
    returns the carried state, a pick of the skip class gets weight zero on expert 0 (as HF
    masks it); `TransformerBlock.forward` threads the state from its MoE, `Model.forward`
    through the layer loop (None into the first layer, whose router holds no state scale).
    The correction bias, if any, gets the skip class's row too, set after every load to
    the value HF writes there after loading (`skip_bias_on_load`). `found` is the analysed
    `moe.router_mlp`; the adapter maps its modules' keys in place of the gate's weight."""

    name = "router_mlp"

    def apply(self, package, features=None, *, found: dict | None = None) -> None:
        if not found:
            raise EditError("router_mlp needs the analysed moe.router_mlp")
        if not moe_edits.has_class(package, "model.py", "MoE"):
            raise EditError("model.py has no MoE class (run add_moe first)")
        add_args_field(
            package,
            "router_dim",
            "int = 256  # the router's down-projection width",
            f"hf_config.{found['width']}",
        )
        moe_edits.insert_before_class(package, "model.py", "MoE", router_class(found))
        moe_edits.replace_statement(
            package,
            "model.py",
            "MoE",
            "__init__",
            assigns("self.gate"),
            "self.router = Router(args, carried)\nself.num_experts = args.num_experts",
        )
        attention_edits.add_param(package, "MoE", "__init__", "carried: bool")
        run(package, "model.py", _Docstring("MoE", DOC))
        _widen_correction_bias(
            package, found.get("skip_bias_init", 0.0), found.get("skip_bias_on_load")
        )
        _route_in_forward(package)
        _thread_block(package, found["carried_from"])
        _thread_loop(package)
        _rows(package, found)


def _widen_correction_bias(package, start: float, on_load: float | None = None) -> None:
    """`torch.zeros(args.num_experts)` of the correction bias gets the skip class's row,
    which starts at `start` where that is not zero (HF's _init_weights) and is set to
    `on_load` after every load where that is not None (HF's _init_weights writing it again
    after loading a checkpoint)."""
    narrow = m.Call(
        func=m.Attribute(value=m.Name("torch"), attr=m.Name("zeros")),
        args=[m.Arg(m.Attribute(value=m.Name("args"), attr=m.Name("num_experts")))],
    )

    def rewrite(node):
        return expression("torch.zeros(args.num_experts + 1)") if m.matches(node, narrow) else None

    widened = run(
        package, "model.py", RewriteExpressions("MoE", "__init__", rewrite), required=False
    )
    if widened and on_load is not None:
        attention_edits.add_method_after_init(package, "MoE", ON_LOAD.format(value=on_load))
    if widened and start:
        attention_edits.add_method_after_init(package, "MoE", SKIP_INIT.format(start=start))


def _route_in_forward(package) -> None:
    moe_edits.replace_statement(
        package,
        "model.py",
        "MoE",
        "forward",
        lambda s: bool(findall(s, _ROUTE)),
        "logits, state = self.router(x, state)\nweights, indices = self.route(logits)" + SKIP,
    )
    attention_edits.add_param(package, "MoE", "forward", "state: torch.Tensor | None")
    returned = moe_edits.returned_expression(package, "MoE")
    moe_edits.replace_statement(
        package, "model.py", "MoE", "forward", moe_edits.is_return, f"return {returned}, state"
    )
    run(package, "model.py", _Returns("MoE", "tuple[torch.Tensor, torch.Tensor]"))


def _thread_block(package, first: int) -> None:
    """The block builds its MoE with `carried` from layer `first` on, passes the state in
    and returns it beside its output."""

    layer_id = attention_edits.ensure_layer_id(package)

    def rewrite(node):
        if not m.matches(node, m.Call(func=m.Name("MoE"))):
            return None
        return node.with_changes(
            args=[
                *node.args,
                cst.Arg(
                    expression(f"{layer_id} >= {first}"),
                    keyword=cst.Name("carried"),
                    equal=cst.AssignEqual(cst.SimpleWhitespace(""), cst.SimpleWhitespace("")),
                ),
            ]
        )

    if not rewrite_expressions(package, "model.py", "TransformerBlock", "__init__", rewrite):
        raise EditError("TransformerBlock.__init__ builds no MoE")
    chosen = moe_edits.chosen_ffn(package)
    calls = []

    def take_out(node):
        if not (m.matches(node, _MOE_CALL) or (chosen and m.matches(node, m.Call(m.Name(chosen))))):
            return None
        calls.append(node)
        return cst.Name("out")

    if rewrite_expressions(package, "model.py", "TransformerBlock", "forward", take_out) != 1:
        raise EditError("TransformerBlock.forward: not one call of self.moe")
    (call,) = calls
    arg = code_of(call.args[0].value)
    if chosen:  # `ffn = self.moe if self.is_moe else self.feed_forward`: dense layers pass it on
        moe_edits.replace_statement(
            package, "model.py", "TransformerBlock", "forward", assigns(chosen), ""
        )
        computed = (
            f"if self.is_moe:\n    out, state = self.moe({arg}, state)\n"
            f"else:\n    out = self.feed_forward({arg})"
        )
    else:
        computed = f"out, state = self.moe({arg}, state)"
    returned = moe_edits.returned_expression(package, "TransformerBlock")
    moe_edits.replace_statement(
        package,
        "model.py",
        "TransformerBlock",
        "forward",
        moe_edits.is_return,
        f"{computed}\nreturn {returned}, state",
    )
    attention_edits.add_param(package, "TransformerBlock", "forward", "state: torch.Tensor | None")
    run(package, "model.py", _Returns("TransformerBlock", "tuple[torch.Tensor, torch.Tensor]"))


def _thread_loop(package) -> None:
    """`h = layer(h, ...)` becomes `h, state = layer(h, ..., state)`, `state = None` first."""

    def rewrite(node):
        if not (
            isinstance(node, cst.Assign) and m.matches(node.value, m.Call(func=m.Name("layer")))
        ):
            return None
        call = node.value.with_changes(args=[*node.value.args, cst.Arg(cst.Name("state"))])
        target = code_of(node.targets[0].target)
        return statements(f"{target}, state = {code_of(call)}")[0].body[0]

    if not run(package, "model.py", moe_edits.InLoop(rewrite)):
        raise EditError("Model.forward: no `h = layer(h, ...)` in the layer loop")
    moe_edits.insert_statements(
        package,
        "Model",
        "forward",
        lambda s: m.matches(s, moe_edits.LAYER_LOOP),
        "state = None  # the router state each layer hands to the next",
        before=True,
    )


def _rows(package, found: dict) -> None:
    """The gate weight's row becomes the router modules' rows under the same HF prefix."""

    def rows(_, prefix):
        mlp = f"{prefix}.{found['mlp']}"
        house = "layers.{}.moe.router"
        out = [moe_edits.row(f"{prefix}.{found['down']}.weight", f"{house}.down.weight")]
        if found["down_bias"]:
            out.append(moe_edits.row(f"{prefix}.{found['down']}.bias", f"{house}.down.bias"))
        out.append(moe_edits.row(f"{prefix}.{found['state_scale']}", f"{house}.state_scale"))
        out.append(moe_edits.row(f"{mlp}.{found['norm']}.weight", f"{house}.norm.weight"))
        hidden = len(found["linears"]) - 1
        names = [f"fc{i + 1}" for i in range(hidden)] + ["out"]
        for name, theirs, bias in zip(names, found["linears"], found["biases"], strict=True):
            out.append(moe_edits.row(f"{mlp}.{theirs}.weight", f"{house}.{name}.weight"))
            if bias:
                out.append(moe_edits.row(f"{mlp}.{theirs}.bias", f"{house}.{name}.bias"))
        return out

    moe_edits.rewrite_row(package, moe_edits.GATE_WEIGHT, rows)


class _Returns(cst.CSTTransformer):
    """Set `cls.forward`'s return annotation."""

    def __init__(self, cls: str, annotation: str):
        super().__init__()
        self.cls, self.annotation, self.inside, self.hits = cls, annotation, False, 0

    def visit_ClassDef(self, node):
        self.inside = node.name.value == self.cls

    def leave_FunctionDef(self, original, updated):
        if not self.inside or original.name.value != "forward":
            return updated
        self.hits += 1
        return updated.with_changes(returns=cst.Annotation(expression(self.annotation)))


class _Docstring(cst.CSTTransformer):
    """Set `cls`'s docstring (replacing the one it has, if any)."""

    def __init__(self, cls: str, text: str):
        super().__init__()
        self.cls, self.text, self.hits = cls, text, 0

    def leave_ClassDef(self, original, updated):
        if original.name.value != self.cls:
            return updated
        body = list(updated.body.body)
        first = body[0] if body else None
        if (
            isinstance(first, cst.SimpleStatementLine)
            and isinstance(first.body[0], cst.Expr)
            and isinstance(first.body[0].value, cst.SimpleString)
        ):
            body = body[1:]
        self.hits += 1
        doc = cst.SimpleStatementLine([cst.Expr(cst.SimpleString(f'"""{self.text}"""'))])
        if body:
            body[0] = body[0].with_changes(leading_lines=[cst.EmptyLine()])
        return updated.with_changes(body=updated.body.with_changes(body=[doc, *body]))
