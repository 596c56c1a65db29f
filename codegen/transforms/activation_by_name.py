"""The feed-forward (dense, shared and routed experts) applies the activation the config
names, not the one it was scaffolded with."""

from __future__ import annotations

import ast

import libcst as cst
import libcst.matchers as m

from codegen.transforms import _attention_edits as edits
from codegen.transforms._ffn_edits import (
    ACTIVATIONS,
    SetClassDocstring,
    drop_activation_pins,
    self_assignment,
)
from codegen.transforms._moe_edits import SHARED_EXPERTS_MODULE, has_class
from codegen.transforms.base import Transform
from codegen.transforms.edits import (
    InsertStatements,
    add_import,
    assigns,
    code_of,
    dotted,
    expression,
    run,
)
from codegen.transforms.edits import ScopedTransformer as Scoped

_SHARED = "codegen.layers.activations"
_SILU = "F.silu"  # what the shared Experts applies unless given `act`
_ACT_SENTENCE = "`act` is the gate's activation: silu (SwiGLU) unless the config names another."
_ARGUMENT = "__argument__"
FIELD = "hidden_act"  # the ModelArgs field; align_config_fields reads it under the config's name


class ActivationByName(Transform):
    """FeedForward applies `activation(args.hidden_act)` (the shared table of HF's ACT2FN
    names, `codegen/layers/activations.py`) where it applied the scaffolded `activation`
    inline; `from_hf_config` reads the field and the hidden_act pin (FIXED_SETTINGS, an
    explicit guard) goes. `field` is the config field HF looks the name up by: a name
    outside the table is refused in one line naming it.

    `experts`: HF's routed experts look their activation up by the same field (the plan
    reads it from the analysed expert code), so the shared `Experts` is built with
    `act=activation(...)` too; a package whose routed experts hard-code it passes False.

    Only where FeedForward.forward applies the activation once (or the package has no
    FeedForward and its routed experts follow), a copy of Experts written for one target's
    maths (fused gate/up, biases, clamps) applies it once in its forward, and nothing else
    in the model applies it: otherwise the package is left as it is and keeps its pin.
    """

    name = "activation_by_name"

    def apply(
        self, package, features=None, *, activation: str, field: str, experts: bool = False
    ) -> None:
        template = _template(activation)
        model = package.module("model.py")
        shared = _imports(model, SHARED_EXPERTS_MODULE)
        own = has_class(package, "model.py", "Experts")
        if ((shared or own) and not experts) or (own and activation not in ("silu", "swish")):
            return  # a copy of Experts is SwiGLU (silu its default `act`)
        found = _Applications(template)
        model.visit(found)
        unscoped = _BuiltWithoutArgs()
        model.visit(unscoped)
        dense = has_class(package, "model.py", "FeedForward")
        expected = [("Experts", "forward")] * own + [("FeedForward", "forward")] * dense
        if (
            unscoped.count
            or sorted(found.scopes, key=str) != expected
            or not (dense or shared or own)
        ):
            return
        routed = shared or own
        add_import(package, "model.py", _SHARED, "activation")
        edits.add_args_field(
            package,
            f'{FIELD}: str = "{activation}"  # the FFN activation, by its HF (ACT2FN) name',
            f"{FIELD}=hf_config.{FIELD}",
        )
        drop_activation_pins(package)
        if routed:
            edits.replace_expressions(
                package,
                "model.py",
                None,
                None,
                lambda node: m.matches(node, m.Call(func=m.Name("Experts"))),
                lambda call: edits.with_arg(call, _lookup(f"args.{FIELD}", field), keyword="act"),
            )
        if own:
            _follow_in_experts(package, template)
        if dense:
            _follow_in_feed_forward(package, template, activation, _lookup(FIELD, field))


def _follow_in_experts(package, template: ast.expr) -> None:
    """The package's own Experts takes the function as the shared class does (`act`, silu
    by default) and applies it where it applied silu."""
    run(package, "model.py", _Follow("Experts", "forward", template))
    edits.add_param(
        package, "Experts", "__init__", f"act: Callable[[torch.Tensor], torch.Tensor] = {_SILU}"
    )
    run(
        package,
        "model.py",
        InsertStatements("Experts", "__init__", assigns("self.num_experts"), "self.act = act"),
    )
    add_import(package, "model.py", "collections.abc", "Callable")
    run(package, "model.py", SetClassDocstring("Experts", _with_act_paragraph))


def _with_act_paragraph(old: str | None) -> str:
    """The copy's docstring with the shared class's sentence on `act`."""
    text = (old or "Routed experts.").rstrip()
    return f"{text}\n\n    {_ACT_SENTENCE}\n    "


def _lookup(name: str, field: str) -> str:
    """The table lookup of the activation `name` holds; `field` names it in a refusal."""
    return f"activation({name})" if field == FIELD else f'activation({name}, "{field}")'


def _follow_in_feed_forward(package, template: ast.expr, activation: str, named: str) -> None:
    """FeedForward takes the name, looks it up once in __init__ and applies `self.act`."""
    run(package, "model.py", _Follow("FeedForward", "forward", template))
    edits.add_param(package, "FeedForward", "__init__", f'{FIELD}: str = "{activation}"')
    last = (
        "self.w3"
        if self_assignment(package, "model.py", "FeedForward", "__init__", "w3")
        else "self.w2"
    )
    run(
        package,
        "model.py",
        InsertStatements("FeedForward", "__init__", assigns(last), f"self.act = {named}"),
    )
    edits.replace_expressions(
        package,
        "model.py",
        None,
        None,
        lambda node: m.matches(node, m.Call(func=m.Name("FeedForward"))),
        lambda call: edits.with_arg(call, f"args.{FIELD}", keyword=FIELD),
    )
    run(package, "model.py", SetClassDocstring("FeedForward", _docstring(activation)))


def _template(activation: str) -> ast.expr:
    """The expression the scaffold wrote for `activation`, over a placeholder argument."""
    return ast.parse(ACTIVATIONS[activation].format(_ARGUMENT), mode="eval").body


def _argument(node: cst.CSTNode, template: ast.expr) -> cst.BaseExpression | None:
    """The argument `node` applies the `template` activation to, else None (compared as
    syntax trees: layout aside)."""
    if not isinstance(node, cst.Call | cst.BinaryOperation):
        return None
    code = code_of(node)
    try:
        tree = ast.parse(code.strip(), mode="eval").body
    except SyntaxError:
        return None
    if isinstance(tree, ast.Call):  # `F.silu(h, inplace=True)`: the same function of h
        tree.keywords = [k for k in tree.keywords if k.arg != "inplace"]
    captured: list[ast.expr] = []
    if not _same(template, tree, captured) or len(captured) != 1:
        return None
    return expression(ast.get_source_segment(code.strip(), captured[0]))


def _same(template, tree, captured: list) -> bool:
    if isinstance(template, ast.Name) and template.id == _ARGUMENT:
        captured.append(tree)
        return True
    if type(template) is not type(tree):
        return False
    if isinstance(template, ast.AST):
        return all(
            _same(getattr(template, name), getattr(tree, name, None), captured)
            for name in template._fields
            if name != "ctx"
        )
    if isinstance(template, list):
        return len(template) == len(tree) and all(
            _same(a, b, captured) for a, b in zip(template, tree, strict=True)
        )
    return template == tree


class _Applications(Scoped):
    """Where (class, method) the module applies the activation."""

    def __init__(self, template: ast.expr):
        super().__init__(None, None)
        self.template = template
        self.scopes: list[tuple[str | None, str | None]] = []

    def on_visit(self, node):
        if _argument(node, self.template) is not None:
            stack = self._stack
            self.scopes.append((stack[0] if stack else None, stack[1] if len(stack) > 1 else None))
        return super().on_visit(node)


class _Follow(Scoped):
    """`<activation>(a)` -> `self.act(a)`."""

    def __init__(self, class_name: str, method: str, template: ast.expr):
        super().__init__(class_name, method)
        self.template = template

    def on_leave(self, original, updated):
        if self.in_scope() and (argument := _argument(updated, self.template)) is not None:
            self.hits += 1
            return expression(f"self.act({code_of(argument)})")
        return super().on_leave(original, updated)


def _imports(module: cst.Module, name: str) -> bool:
    return bool(m.findall(module, m.ImportFrom(module=dotted(name))))


class _BuiltWithoutArgs(cst.CSTVisitor):
    """Counts the `FeedForward(...)` / `Experts(...)` calls made where no `args` is in scope
    to pass on."""

    def __init__(self):
        super().__init__()
        self.parameters: list[set[str]] = []
        self.count = 0

    def visit_FunctionDef(self, node):
        self.parameters.append({p.name.value for p in node.params.params})

    def leave_FunctionDef(self, original):
        self.parameters.pop()

    def visit_Call(self, node):
        if m.matches(node.func, m.Name("FeedForward") | m.Name("Experts")) and not (
            self.parameters and "args" in self.parameters[-1]
        ):
            self.count += 1


LINE_LENGTH = 100  # a generated package's line limit (`scaffold/tidy.py`)


def _docstring(activation: str):
    """`SwiGLU: w2(silu(w1(x)) * w3(x)).` -> `Gated FFN: w2(act(w1(x)) * w3(x)), act named by
    hidden_act.`: no kind named after one activation when the config picks it."""

    def rewrite(old: str | None) -> str:
        summary = old.split("\n", 1)[0] if old else ""
        formula = summary.split(":", 1)[1].strip().rstrip(".,") if ":" in summary else ""
        formula = formula.replace(f"{activation}(", "act(", 1)
        if "act(" not in formula:
            formula = "w2(act(w1(x)) * w3(x))"
        title = "Gated FFN" if "w3" in formula or "gate" in formula else "MLP"
        one_line = f"{title}: {formula}, act named by {FIELD}."
        if len(f'    """{one_line}"""') <= LINE_LENGTH:
            return one_line
        # too long for one line (a clamped formula): the naming goes below, in the class's indent
        return f"{title}: {formula},\n    act named by {FIELD}.\n    "

    return rewrite
