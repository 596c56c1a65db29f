"""libcst edits shared by the RoPE, embedding, head and scale transforms (no Transform here).

They work on the house vocabulary: `ModelArgs` (a dataclass whose `from_hf_config` ends in
one `cls(...)` call), `Model.forward` (embeds with `self.tok_embeddings`, returns the
logits), `TransformerBlock.forward` (residual adds `x + self.attention(...)`), and
`Attention.forward` (calls `F.scaled_dot_product_attention`). An edit whose anchor is
missing raises `EditError` through `edits.run`.

`hf_source` / `hf_config_read` (from `_hf_source`, which reads the target's HF modeling file
as a syntax tree) give the one thing `Features` does not carry: which config field a scale is
read from.
"""

from __future__ import annotations

import libcst as cst
import libcst.matchers as m

from codegen.transforms._attention_edits import (
    call_of,
    ensure_layer_id,
    find_method,
    replace_expressions,
)
from codegen.transforms._hf_source import hf_config_read, hf_source  # noqa: F401 - re-exported
from codegen.transforms.edits import (
    EditError,
    InsertStatements,
    assigns,
    calls_super_init,
    code_of,
    expression,
    field_name,
    is_name,
    run,
    statements,
)
from codegen.transforms.edits import ScopedTransformer as InMethod


def use_rotation(package, old: str, new: str) -> None:
    """model.py's calls of the rotation `old` become calls of `new`, imported from the
    package's rope.py after the last relative import (once); EditError where none calls it."""
    renamer = _RenameCalls(old, new)
    run(package, "model.py", renamer)
    package.edit("model.py", _AddRopeImport(new))


class _RenameCalls(cst.CSTTransformer):
    """Calls of the function `old` by name (imports are no calls) become calls of `new`."""

    def __init__(self, old: str, new: str):
        super().__init__()
        self.old, self.new = old, new
        self.hits = 0

    def leave_Call(self, original, updated):
        if isinstance(updated.func, cst.Name) and updated.func.value == self.old:
            self.hits += 1
            return updated.with_changes(func=cst.Name(self.new))
        return updated


class _AddRopeImport(cst.CSTTransformer):
    """`from .rope import <name>` after the last relative import, unless already there."""

    def __init__(self, name: str):
        super().__init__()
        self.line = f"from .rope import {name}"

    def leave_Module(self, original, updated):
        body = list(updated.body)
        relative = [
            i
            for i, s in enumerate(body)
            if isinstance(s, cst.SimpleStatementLine)
            and isinstance(s.body[0], cst.ImportFrom)
            and s.body[0].relative
        ]
        if not relative:
            raise EditError("model.py has no relative import to place the rope import after")
        if any(code_of(s) == self.line for s in body):
            return updated
        at = relative[-1] + 1
        return updated.with_changes(body=body[:at] + statements(self.line) + body[at:])


class RewriteExpressions(InMethod):
    """Replace every expression inside `class_name.method` for which `rewrite` returns a node."""

    def __init__(self, class_name: str, method: str, rewrite):
        super().__init__(class_name, method)
        self.rewrite = rewrite

    def on_leave(self, original, updated):
        if self.inside and isinstance(updated, cst.BaseExpression):
            new = self.rewrite(updated)
            if new is not None:
                self.hits += 1
                return new
        return super().on_leave(original, updated)


def rewrite_expressions(package, filename: str, class_name: str, method: str, rewrite) -> int:
    return run(package, filename, RewriteExpressions(class_name, method, rewrite))


class _RewriteReturn(InMethod):
    """Replace the method's final `return X` with the statements `make(X_code)`."""

    def __init__(self, class_name: str, method: str, make):
        super().__init__(class_name, method)
        self.make = make

    def leave_FunctionDef(self, original, updated):
        hit = self.inside and len(self._stack) == 2
        self._stack.pop()
        if not hit:
            return updated
        body = list(updated.body.body)
        last = body[-1]
        if not (isinstance(last, cst.SimpleStatementLine) and isinstance(last.body[0], cst.Return)):
            return updated
        self.hits += 1
        new = statements(self.make(code_of(last.body[0].value)))
        new[0] = new[0].with_changes(leading_lines=last.leading_lines)
        return updated.with_changes(body=updated.body.with_changes(body=body[:-1] + new))


def rewrite_return(package, class_name: str, method: str, make) -> None:
    """`make(returned_code) -> code` replaces the last `return` of `class_name.method`."""
    run(package, "model.py", _RewriteReturn(class_name, method, make))


def operand(code: str) -> str:
    """`code` as the left operand of `*` or `/` (parenthesised unless it binds tighter)."""
    node = expression(code)
    if isinstance(node, cst.BinaryOperation) and isinstance(
        node.operator, cst.Multiply | cst.Divide
    ):
        return code
    if isinstance(
        node, cst.BinaryOperation | cst.BooleanOperation | cst.IfExp | cst.UnaryOperation
    ):
        return f"({code})"
    return code


class _InsertIntoMethod(InMethod):
    """Insert statements after the first top-level statement of the method matching `anchor`."""

    def __init__(self, class_name: str, method: str, anchor, code: str):
        super().__init__(class_name, method)
        self.anchor, self.new = anchor, statements(code)

    def leave_FunctionDef(self, original, updated):
        hit = self.inside and len(self._stack) == 2
        self._stack.pop()
        if not hit:
            return updated
        body = list(updated.body.body)
        for index, statement in enumerate(body):
            if self.anchor(statement):
                self.hits += 1
                body[index + 1 : index + 1] = self.new
                break
        return updated.with_changes(body=updated.body.with_changes(body=body))


def insert_after(package, filename: str, class_name: str, method: str, anchor, code: str) -> None:
    run(package, filename, _InsertIntoMethod(class_name, method, anchor, code))


def is_super_init(statement) -> bool:
    return calls_super_init(statement)


# ---- ModelArgs ---------------------------------------------------------------------------


def add_args_field(package, name: str, declaration: str, hf_value: str) -> None:
    """Add `name: <declaration>` (type, default and "why" comment) to ModelArgs before
    `tie_word_embeddings` (else after the last field) and `name=<hf_value>` to the
    `cls(...)` call of `from_hf_config`, at the same place."""
    run(package, "args.py", _AddField(name, declaration))
    run(package, "args.py", _AddKeyword(name, hf_value))


_LAST_FIELD = "tie_word_embeddings"


class _AddField(cst.CSTTransformer):
    def __init__(self, name: str, declaration: str):
        super().__init__()
        self.name, self.new = name, statements(f"{name}: {declaration}")
        self.hits = 0

    def leave_ClassDef(self, original, updated):
        if original.name.value != "ModelArgs":
            return updated
        body = list(updated.body.body)
        names = [field_name(s) for s in body]
        if self.name in names:
            raise EditError(f"ModelArgs already has a field {self.name!r}")
        if _LAST_FIELD in names:
            at = names.index(_LAST_FIELD)
        else:
            at = max((i + 1 for i, n in enumerate(names) if n is not None), default=0)
        self.hits += 1
        return updated.with_changes(
            body=updated.body.with_changes(body=body[:at] + self.new + body[at:])
        )


class _AddKeyword(InMethod):
    def __init__(self, name: str, value: str):
        super().__init__("ModelArgs", "from_hf_config")
        self.name, self.value = name, expression(value)

    def leave_Call(self, original, updated):
        if not (self.inside and isinstance(updated.func, cst.Name) and updated.func.value == "cls"):
            return updated
        args = list(updated.args)
        keywords = [a.keyword.value if a.keyword else None for a in args]
        at = keywords.index(_LAST_FIELD) if _LAST_FIELD in keywords else len(args)
        # take the comma (and the line break after it) of the argument before the new one
        neighbour = args[at - 1] if at > 0 else (args[0] if args else None)
        new = cst.Arg(
            keyword=cst.Name(self.name),
            value=self.value,
            equal=cst.AssignEqual(cst.SimpleWhitespace(""), cst.SimpleWhitespace("")),
            comma=neighbour.comma if neighbour is not None else cst.MaybeSentinel.DEFAULT,
        )
        if at == len(args) and args:
            # appended: the old last argument needs a comma like its neighbours
            comma = args[-2].comma if len(args) > 1 else cst.Comma(cst.SimpleWhitespace(""))
            if isinstance(args[-1].comma, cst.MaybeSentinel):
                args[-1] = args[-1].with_changes(comma=comma)
        args.insert(at, new)
        self.hits += 1
        return updated.with_changes(args=args)


def first_assignment(module: cst.Module, cls: str, method: str, target: str):
    """The first statement of `cls.method`'s body assigning `target`, or None."""
    fn = find_method(module, cls, method)
    if fn is None:
        return None
    return next((s for s in fn.body.body if assigns(target)(s)), None)


def layers_pick_table(package, choice: str, pick: str) -> None:
    """Each block keeps which rotary table is its own (`choice`, a statement over its
    `{layer_id}` placed before its attention is built), and the forward hands each layer call
    `pick` (an expression over `layer`) where it handed every layer the one `rope`."""
    layer_id = ensure_layer_id(package)
    before_attention = InsertStatements(
        "TransformerBlock",
        "__init__",
        assigns("self.attention"),
        choice.format(layer_id=layer_id),
        before=True,
    )
    run(package, "model.py", before_attention)
    picked = expression(pick)

    def own_table(call: cst.Call) -> cst.Call:
        args = [a.with_changes(value=picked) if is_name(a.value, "rope") else a for a in call.args]
        return call.with_changes(args=args)

    replace_expressions(package, "model.py", "Model", "forward", call_of("layer"), own_table)


def second_rotary(statement, field: str, name: str) -> str:
    """`self.rotary = RotaryEmbedding(args.rope, dim)` -> `self.<name> = ...` over the table
    `args.<field>` (`args.rope` where it is None); a dim read from the table
    (`args.rope.rotary_dim(...)`, partial rotary) reads that table too."""
    return f"self.{name} = {code_of(rotary_over(statement, f'args.{field} or args.rope'))}"


def rotary_over(statement, table: str) -> cst.Call:
    """`self.rotary = RotaryEmbedding(args.rope, dim)` -> `RotaryEmbedding(<table>, dim)`,
    a dim read from the table (`args.rope.rotary_dim(...)`) read from `table` too."""
    call = statement.body[0].value
    first = call.args[0].with_changes(value=expression(table))
    rest = [arg.visit(_ReadTable(expression(f"({table})"))) for arg in call.args[1:]]
    return call.with_changes(args=[first, *rest])


class _ReadTable(cst.CSTTransformer):
    """`args.rope` -> `table`."""

    def __init__(self, table: cst.BaseExpression):
        super().__init__()
        self.table = table

    def leave_Attribute(self, original, updated):
        if m.matches(updated, m.Attribute(value=m.Name("args"), attr=m.Name("rope"))):
            return self.table
        return updated
