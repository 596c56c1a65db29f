"""Edits shared by the FFN and norm transforms (no Transform here).

They work on expressions rather than whole statements, so transforms of different groups
compose: wrapping `self.attention(...)` in a post-norm keeps whatever arguments (masks,
positions) another transform gave the call, and an activation swap keeps a fused gate.
"""

from __future__ import annotations

import ast
import json
import re
from collections.abc import Callable
from pathlib import Path

import libcst as cst
import libcst.matchers as m

from codegen.transforms.edits import EditDict, EditError, code_of, expression, run, statements
from codegen.transforms.edits import ScopedTransformer as Scoped

_SHARED_TABLE = Path(__file__).resolve().parents[1] / "layers" / "activations.py"
_ARGUMENT = "__argument__"


class _Placeholder(cst.CSTTransformer):
    """The lambda's parameter becomes a placeholder name (then `{}` in the text)."""

    def __init__(self, parameter: str):
        super().__init__()
        self.parameter = parameter

    def leave_Name(self, original, updated):
        return updated.with_changes(value=_ARGUMENT) if updated.value == self.parameter else updated


def _expressions() -> dict[str, str]:
    """HF ACT2FN name -> the torch expression of one argument `{}`, read (not imported: no
    torch here) from the lambdas of the shared table a package looks names up in at run
    time, so the code the scaffold writes and that table are one."""
    module = cst.parse_module(_SHARED_TABLE.read_text())
    (table,) = m.findall(module, m.AnnAssign(target=m.Name("ACTIVATIONS")))
    expressions = {}
    for element in table.value.elements:
        parameter = element.value.params.params[0].name.value
        body = element.value.body.visit(_Placeholder(parameter))
        expressions[ast.literal_eval(code_of(element.key))] = code_of(body).replace(_ARGUMENT, "{}")
    return expressions


ACTIVATIONS = _expressions()


def activation_of(name: str, argument: str) -> cst.BaseExpression:
    """The torch expression applying HF activation `name` to `argument` (source text)."""
    if name not in ACTIVATIONS:
        known = ", ".join(sorted(ACTIVATIONS))
        raise ValueError(f"activation {name!r} has no torch expression (known: {known})")
    return expression(ACTIVATIONS[name].format(argument))


class EditCalls(Scoped):
    """Rewrite every call of `func` (source text, e.g. `self.attention_norm`) in scope.

    `rewrite(original_call, updated_call) -> expression`.
    """

    def __init__(self, class_name, method, func: str, rewrite: Callable):
        super().__init__(class_name, method)
        self.func, self.rewrite = func, rewrite

    def leave_Call(self, original, updated):
        if self.in_scope() and code_of(original.func) == self.func:
            self.hits += 1
            return self.rewrite(original, updated)
        return updated


class EditCallsTaking(Scoped):
    """Rewrite every call in scope that takes a `func(...)` call as an argument: the sublayer
    fed by a norm (`self.attention(self.attention_norm(x), rope)` for `self.attention_norm`)."""

    def __init__(self, class_name, method, func: str, rewrite: Callable):
        super().__init__(class_name, method)
        self.func, self.rewrite = func, rewrite

    def leave_Call(self, original, updated):
        takes = any(
            isinstance(arg.value, cst.Call) and code_of(arg.value.func) == self.func
            for arg in original.args
        )
        if self.in_scope() and takes:
            self.hits += 1
            return self.rewrite(original, updated)
        return updated


class ReplaceExpressions(Scoped):
    """Replace every expression whose source is `old` with `new`, in scope."""

    def __init__(self, class_name, method, old: str, new: str):
        super().__init__(class_name, method)
        self.old, self.new = old, expression(new)

    def on_leave(self, original, updated):
        if (
            isinstance(original, cst.BaseExpression)
            and self.in_scope()
            and code_of(original) == self.old
        ):
            self.hits += 1
            return self.new
        return super().on_leave(original, updated)


class SetClassDocstring(cst.CSTTransformer):
    """Set (or add) the docstring of `class_name` to `rewrite(old_text_or_None)`."""

    def __init__(self, class_name: str, rewrite: Callable[[str | None], str]):
        super().__init__()
        self.class_name, self.rewrite = class_name, rewrite
        self.hits = 0

    def leave_ClassDef(self, original, updated):
        if original.name.value != self.class_name:
            return updated
        self.hits += 1
        body = list(updated.body.body)
        old = docstring_of(body[0]) if body else None
        line = statements(f'"""{self.rewrite(old)}"""')[0]
        if old is None and body:  # a blank line between a new docstring and the code
            body[0] = body[0].with_changes(
                leading_lines=[cst.EmptyLine(indent=False), *body[0].leading_lines]
            )
        body = [line] + (body[1:] if old is not None else body)
        return updated.with_changes(body=updated.body.with_changes(body=body))


def docstring_of(statement) -> str | None:
    if (
        isinstance(statement, cst.SimpleStatementLine)
        and isinstance(statement.body[0], cst.Expr)
        and isinstance(statement.body[0].value, cst.SimpleString)
    ):
        return statement.body[0].value.evaluated_value
    return None


class InsertClassBefore(cst.CSTTransformer):
    """Insert module-level `code` (a class) before the first class of the file."""

    def __init__(self, code: str):
        super().__init__()
        self.new = statements(code)
        self.hits = 0

    def leave_Module(self, original, updated):
        body = list(updated.body)
        for index, statement in enumerate(body):
            if isinstance(statement, cst.ClassDef):
                self.hits += 1
                return updated.with_changes(body=body[:index] + self.new + body[index:])
        return updated


def self_assignment(package, filename: str, class_name: str, method: str, attr: str):
    """The value assigned to `self.<attr>` in `class_name.method` (None when absent)."""
    for statement in _method_body(package.module(filename), class_name, method):
        if isinstance(statement, cst.SimpleStatementLine) and isinstance(
            statement.body[0], cst.Assign
        ):
            target = statement.body[0].targets[0].target
            if code_of(target) == f"self.{attr}":
                return statement.body[0].value
    return None


def class_source(package, filename: str, class_name: str) -> str:
    for statement in package.module(filename).body:
        if isinstance(statement, cst.ClassDef) and statement.name.value == class_name:
            return code_of(statement)
    raise EditError(f"{filename} has no class {class_name}")


def _method_body(module: cst.Module, class_name: str, method: str) -> list:
    for statement in module.body:
        if isinstance(statement, cst.ClassDef) and statement.name.value == class_name:
            for item in statement.body.body:
                if isinstance(item, cst.FunctionDef) and item.name.value == method:
                    return list(item.body.body)
    raise EditError(f"no {class_name}.{method}")


def adapter_rows(package) -> list[tuple[str, str | None]]:
    """The `from_hf_map` table as (HF key, house key or None) pairs, in order."""
    rows = []

    class _Read(cst.CSTVisitor):
        def visit_Assign(self, node):
            target = node.targets[0].target
            if isinstance(target, cst.Name) and target.value == "from_hf_map":
                for element in node.value.elements:
                    rows.append((_literal(element.key), _literal(element.value)))

    package.module("state_dict_adapter.py").visit(_Read())
    return rows


def _literal(node: cst.BaseExpression) -> str | None:
    return ast.literal_eval(code_of(node))


def rewrite_adapter(package, rewrite: Callable[[str, str | None], list]) -> None:
    """Rewrite the `from_hf_map` rows as plain strings: `rewrite(hf, house) -> [(hf, house)]`."""

    def on_entry(key: str, value: str):
        old = (ast.literal_eval(key), ast.literal_eval(value))
        return [
            (key, value)
            if new == old
            else (json.dumps(new[0]), "None" if new[1] is None else json.dumps(new[1]))
            for new in rewrite(*old)
        ]

    run(package, "state_dict_adapter.py", EditDict("from_hf_map", on_entry))


def rename_component(key: str, old: str, new: str) -> str:
    """Replace one whole dotted component of `key` (`mlp.gate_proj.weight`)."""
    return ".".join(new if part == old else part for part in key.split("."))


def house_parameter(house: str | None, module: str) -> str | None:
    """The parameter name ("weight", "bias") when `house` is `<...>.<module>.<param>`."""
    if house is None:
        return None
    found = re.fullmatch(rf"(?:.*\.)?{re.escape(module)}\.(\w+)", house)
    return found.group(1) if found else None


def set_fixed_setting(package, key: str, value) -> None:
    """Set one FIXED_SETTINGS entry that the reference already lists (no-op otherwise)."""
    literal = json.dumps(value) if isinstance(value, str) else repr(value)
    wanted = json.dumps(key)

    def rewrite(entry_key, entry_value):
        return [(entry_key, literal if entry_key == wanted else entry_value)]

    if "args.py" in package.files:
        run(package, "args.py", EditDict("FIXED_SETTINGS", rewrite), required=False)


def pin_setting(package, key: str, value) -> None:
    """FIXED_SETTINGS pins config field `key` to `value`: its entry is set when the reference
    lists it, added otherwise, so a config with another value is refused."""
    literal = json.dumps(value) if isinstance(value, str) else repr(value)
    wanted = json.dumps(key)
    listed: list[str] = []

    def rewrite(entry_key, entry_value):
        listed.append(entry_key)
        return [(entry_key, literal if entry_key == wanted else entry_value)]

    run(package, "args.py", EditDict("FIXED_SETTINGS", rewrite))
    if wanted not in listed:
        run(package, "args.py", EditDict("FIXED_SETTINGS", None, [(wanted, literal)]))


class _FieldComment(cst.CSTTransformer):
    def __init__(self, field: str, comment: str):
        super().__init__()
        self.field, self.comment = field, comment
        self.hits = 0

    def leave_SimpleStatementLine(self, original, updated):
        statement = updated.body[0]
        if not (
            isinstance(statement, cst.AnnAssign)
            and isinstance(statement.target, cst.Name)
            and statement.target.value == self.field
        ):
            return updated
        self.hits += 1
        trailing = updated.trailing_whitespace.with_changes(
            whitespace=cst.SimpleWhitespace("  "), comment=cst.Comment(f"# {self.comment}")
        )
        return updated.with_changes(trailing_whitespace=trailing)


def set_field_comment(package, field: str, comment: str) -> None:
    """Give the ModelArgs field `field` the trailing comment `# comment` (when it exists)."""
    if "args.py" in package.files:
        run(package, "args.py", _FieldComment(field, comment), required=False)


class _DropImport(cst.CSTTransformer):
    """Remove `from <module> import <name>` (the whole line when it is the only name),
    handing the line's leading blank lines to the next statement so import sections stay
    separated."""

    def __init__(self, module: str, name: str):
        super().__init__()
        self.module, self.name = module, name
        self.hits = 0

    def leave_Module(self, original, updated):
        body = list(updated.body)
        for index, statement in enumerate(body):
            if not (
                isinstance(statement, cst.SimpleStatementLine)
                and isinstance(statement.body[0], cst.ImportFrom)
                and statement.body[0].module is not None
                and code_of(statement.body[0].module) == self.module
                and not isinstance(statement.body[0].names, cst.ImportStar)
            ):
                continue
            names = [a for a in statement.body[0].names if code_of(a.name) != self.name]
            if len(names) == len(statement.body[0].names):
                continue
            self.hits += 1
            if names:
                names[-1] = names[-1].with_changes(comma=cst.MaybeSentinel.DEFAULT)
                body[index] = statement.with_changes(
                    body=[statement.body[0].with_changes(names=names)]
                )
            else:
                del body[index]
                if index < len(body):
                    body[index] = body[index].with_changes(leading_lines=statement.leading_lines)
            return updated.with_changes(body=body)
        return updated


def drop_import(package, filename: str, module: str, name: str) -> None:
    """Remove an import of `name` that the edits made unused (no-op when not imported)."""
    run(package, filename, _DropImport(module, name), required=False)


class _RetargetActivationGuard(cst.CSTTransformer):
    """In `if ... hidden_act ...:` guards, the accepted "silu" becomes the target's activation
    (a message's "silu (SwiGLU)" too: the line stays short)."""

    def __init__(self, activation: str):
        super().__init__()
        self.activation = activation
        self.hits = 0
        self._depth = 0

    def visit_If(self, node):
        if _tests_activation(node):
            self._depth += 1

    def leave_If(self, original, updated):
        if _tests_activation(original):
            self._depth -= 1
            self.hits += 1
        return updated

    def _swap(self, text: str) -> str:
        return text.replace("silu (SwiGLU)", "silu").replace("silu", self.activation)

    def leave_SimpleString(self, original, updated):
        return updated.with_changes(value=self._swap(updated.value)) if self._depth else updated

    def leave_FormattedStringText(self, original, updated):
        return updated.with_changes(value=self._swap(updated.value)) if self._depth else updated


def retarget_activation_guard(package, activation: str) -> None:
    """Make a reference's explicit `hidden_act` check accept `activation` (qwen2/qwen3 style;
    llama's FIXED_SETTINGS is handled by set_fixed_setting). No-op without such a guard."""
    if "args.py" in package.files:
        run(package, "args.py", _RetargetActivationGuard(activation), required=False)


class _DropActivationGuard(cst.CSTTransformer):
    """`if ... hidden_act ...:` guards go: no value of the field changes the target's model."""

    def __init__(self):
        super().__init__()
        self.hits = 0

    def leave_If(self, original, updated):
        if _tests_activation(original):
            self.hits += 1
            return cst.RemoveFromParent()
        return updated


def drop_activation_pins(package) -> None:
    """The reference's pins of `hidden_act` (its FIXED_SETTINGS entry, an explicit guard) go,
    for a target whose code applies its activation without reading a config field for it
    (`own_act(x)`, `self.act = OwnAct()`): refusing the config's own value, whatever it is,
    would refuse the target's default config."""
    if "args.py" not in package.files:
        return
    wanted = json.dumps("hidden_act")

    def rewrite(entry_key, entry_value):
        return [] if entry_key == wanted else [(entry_key, entry_value)]

    run(package, "args.py", EditDict("FIXED_SETTINGS", rewrite), required=False)
    run(package, "args.py", _DropActivationGuard(), required=False)


def _tests_activation(node: cst.If) -> bool:
    """`if hf_config.hidden_act != "silu":` (the reference's activation guard)."""
    return bool(m.findall(node.test, m.Attribute(attr=m.Name("hidden_act"))))
