"""Edits shared by the transforms that give each MoE layer its own entry of a config field
that is an int or a per-layer list (`layer_top_k`, `layer_experts`): the MoE told its layer,
a ModelArgs field retyped `int | list[int]`, the `cls(...)` call of `from_hf_config`, the
one `per_layer` helper both read their field through, and the checks comparing the fields
made per layer (a layer's top-k against its own layer's count)."""

from __future__ import annotations

import libcst as cst
import libcst.matchers as m

from codegen.transforms import _attention_edits as edits
from codegen.transforms._attention_edits import StatementsInMethod
from codegen.transforms._moe_edits import insert_before_class
from codegen.transforms.edits import (
    EditError,
    InsertStatements,
    calls,
    code_of,
    expression,
    run,
    statements,
)


def moe_layer_id(package) -> str:
    """Make `MoE.__init__` take the block's layer index (once); return the block's name."""
    layer = edits.ensure_layer_id(package)
    if "layer_id" in edits.param_names(package, "MoE", "__init__"):
        return layer
    edits.replace_expressions(
        package,
        "model.py",
        "TransformerBlock",
        "__init__",
        lambda node: m.matches(node, m.Call(func=m.Name("MoE"))),
        lambda call: edits.with_arg(call, layer),
    )
    edits.add_param(package, "MoE", "__init__", "layer_id: int")
    return layer


def cls_call(package, keyword_name: str) -> cst.Call:
    """The `cls(...)` of ModelArgs.from_hf_config passing `keyword_name`."""
    found = m.findall(package.files["args.py"], m.Call(func=m.Name("cls")))
    found = [c for c in found if keyword(c, keyword_name) is not None]
    if not found:
        raise EditError(f"ModelArgs.from_hf_config builds no cls(..., {keyword_name}=...)")
    return found[0]


def keyword(call: cst.Call, name: str) -> cst.BaseExpression | None:
    return next((a.value for a in call.args if a.keyword and a.keyword.value == name), None)


class RetypeField(cst.CSTTransformer):
    """ModelArgs' `<name>: int = N` -> `line` formatted with `default=N` (its new type and
    comment)."""

    def __init__(self, name: str, line: str) -> None:
        super().__init__()
        self.name, self.line = name, line
        self.depth = 0
        self.hits = 0

    def visit_ClassDef(self, node) -> None:
        self.depth += node.name.value == "ModelArgs"

    def leave_ClassDef(self, original, updated):
        self.depth -= original.name.value == "ModelArgs"
        return updated

    def leave_SimpleStatementLine(self, original, updated):
        target = m.AnnAssign(target=m.Name(self.name), value=m.DoNotCare())
        if not self.depth or not m.matches(updated.body[0], target):
            return updated
        self.hits += 1
        default = code_of(updated.body[0].value)
        (line,) = statements(self.line.format(default=default))
        return line.with_changes(leading_lines=updated.leading_lines)


PER_LAYER = '''
def per_layer(value, n_layers: int, field: str) -> list[int]:
    """Each layer's entry of the config's `field`, an int (every layer's) or one entry per
    layer; a list of another length is refused in one line."""
    if isinstance(value, int):
        return [value] * n_layers
    if len(value) != n_layers:
        raise ValueError(
            f"{package}: {{field}}={{list(value)!r}} has {{len(value)}} entries, one per layer "
            f"is needed: give an int or a list of {{n_layers}} (num_hidden_layers)"
        )
    return list(value)
'''

LOOP = "layer"  # the per-layer check's loop variable


def read_per_layer(package, local: str, field: str, n_layers: str) -> None:
    """`from_hf_config` starts `<local> = per_layer(hf_config.<field>, <n_layers>, "<field>")`,
    the helper defined before ModelArgs by whichever per-layer transform runs first."""
    if not edits.has_definition(package, "args.py", "per_layer"):
        insert_before_class(package, "args.py", "ModelArgs", PER_LAYER.format(package=package.name))
    line = f'{local} = per_layer(hf_config.{field}, {n_layers}, "{field}")'
    run(
        package,
        "args.py",
        InsertStatements("ModelArgs", "from_hf_config", calls("require_settings"), line),
    )


class CheckPerLayer(StatementsInMethod):
    """`from_hf_config`'s checks comparing `read` (`if top_k > num_experts > 0: raise ...`)
    compare each layer's entry, `<local>[layer]`, inside `for layer in range(<n_layers>):`
    (made once: the other per-layer transform finds it and replaces its own read), their
    message naming the layer, so each layer's top-k meets its own layer's count."""

    def __init__(self, read: cst.BaseExpression, local: str, n_layers: str) -> None:
        super().__init__("ModelArgs", "from_hf_config")
        self.read, self.local, self.n_layers = read, local, n_layers

    def edit_statements(self, body: list) -> list:
        return [self._per_layer(statement) for statement in body]

    def _per_layer(self, statement):
        loop = m.For(target=m.Name(LOOP), body=m.IndentedBlock(body=[m.If()]))
        if m.matches(statement, loop) and self._compares(statement.body.body[0]):
            (check,) = statement.body.body
            return statement.with_deep_changes(statement.body, body=[self._entry(check)])
        if not (isinstance(statement, cst.If) and self._compares(statement)):
            return statement
        check = self._entry(statement)
        check = check.with_changes(body=check.body.visit(_LayerNamed()))
        (wrapped,) = statements(f"for {LOOP} in range({self.n_layers}):\n    pass")
        wrapped = wrapped.with_changes(
            body=wrapped.body.with_changes(body=[check.with_changes(leading_lines=())]),
            leading_lines=statement.leading_lines,
        )
        return wrapped

    def _compares(self, check: cst.If) -> bool:
        return bool(m.findall(check.body, m.Raise())) and _contains(check.test, self.read)

    def _entry(self, check: cst.If) -> cst.If:
        self.hits += 1
        entry = expression(f"{self.local}[{LOOP}]")
        return check.visit(_Replace(self.read, entry))


def _contains(tree: cst.CSTNode, node: cst.CSTNode) -> bool:
    found = _Replace(node, node)
    tree.visit(found)
    return bool(found.hits)


class _Replace(cst.CSTTransformer):
    """Every expression deep-equal to `old` -> `new`."""

    def __init__(self, old: cst.CSTNode, new: cst.CSTNode) -> None:
        super().__init__()
        self.old, self.new = old, new
        self.hits = 0

    def on_leave(self, original, updated):
        if isinstance(original, cst.BaseExpression) and original.deep_equals(self.old):
            self.hits += 1
            return self.new
        return super().on_leave(original, updated)


class _LayerNamed(cst.CSTTransformer):
    """The check's message names the layer: its first f-string's first text gains
    `layer {layer}: ` after its `<package>: ` prefix (at its start without one)."""

    def __init__(self) -> None:
        super().__init__()
        self.done = False

    def leave_FormattedString(self, original, updated):
        texts = [i for i, p in enumerate(updated.parts) if isinstance(p, cst.FormattedStringText)]
        if self.done or not texts:
            return updated
        self.done = True
        index = texts[0]
        head, sep, rest = updated.parts[index].value.partition(": ")
        before, after = (head + sep, rest) if sep else ("", head)
        named = [
            cst.FormattedStringText(f"{before}layer "),
            cst.FormattedStringExpression(cst.Name(LOOP)),
            cst.FormattedStringText(f": {after}"),
        ]
        parts = [*updated.parts[:index], *named, *updated.parts[index + 1 :]]
        return updated.with_changes(parts=parts)
