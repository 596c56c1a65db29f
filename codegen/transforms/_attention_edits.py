"""libcst edits shared by the attention transforms (no Transform lives here).

They work on the house vocabulary: `Attention.forward` computes `q`, `k`, `v` and calls
`F.scaled_dot_product_attention`, `TransformerBlock` wraps it, `Model.forward` loops
`for layer in self.layers: h = layer(h, rope, ...)`. Like `edits.py`, an edit whose
anchor is missing raises `EditError` through `run`.
"""

from __future__ import annotations

import ast
import json
import textwrap
from collections.abc import Callable

import libcst as cst
import libcst.matchers as m

from codegen.transforms.edits import (
    EditDict,
    EditError,
    InsertStatements,
    ReplaceStatements,
    calls,
    code_of,
    dotted,
    expression,
    field_name,
    is_name,
    is_statement,
    run,
)
from codegen.transforms.edits import ScopedTransformer as InMethod
from codegen.transforms.edits import _InMethod as StatementsInMethod


class ReplaceExpressions(InMethod):
    """Rewrite every expression `match`ed inside the method with `rewrite(node)`."""

    def __init__(self, class_name, method, match: Callable, rewrite: Callable):
        super().__init__(class_name, method)
        self.match, self.rewrite = match, rewrite

    def on_leave(self, original, updated):
        if (
            self.inside
            and isinstance(updated, cst.BaseExpression)
            and not isinstance(updated, cst.Name)
            and self.match(updated)
        ):
            self.hits += 1
            return self.rewrite(updated)
        return super().on_leave(original, updated)


def replace_expressions(package, filename, class_name, method, match, rewrite, *, required=True):
    return run(
        package, filename, ReplaceExpressions(class_name, method, match, rewrite), required=required
    )


def is_code(text: str) -> Callable[[cst.CSTNode], bool]:
    """Matches the expression `text`, compared as syntax trees (layout aside)."""
    wanted = ast.dump(ast.parse(text, mode="eval"))

    def matches(node: cst.CSTNode) -> bool:
        if not isinstance(node, cst.BaseExpression):
            return False
        try:
            return ast.dump(ast.parse(code_of(node), mode="eval")) == wanted
        except SyntaxError:
            return False

    return matches


def call_of(func: str) -> Callable[[cst.CSTNode], bool]:
    """Matches a call of `func` (e.g. "self.attention")."""
    return lambda node: m.matches(node, m.Call(func=dotted(func)))


def statements(code: str) -> list[cst.BaseStatement]:
    """Parsed statements; unlike a bare module parse, a leading comment stays with the first
    statement (a field's "why" comment above it)."""
    return list(cst.parse_module("pass\n" + code.strip() + "\n").body[1:])


# ---- call arguments ----------------------------------------------------------------------


def with_arg(call: cst.Call, value: str, keyword: str | None = None, before: str | None = None):
    """`call` with one more argument: positional after the last positional, or the keyword
    argument before the keyword `before` (or last). The call keeps its comma style."""
    args = list(call.args)
    new = cst.Arg(expression(value))
    if keyword is not None:
        new = cst.Arg(expression(value), keyword=cst.Name(keyword), equal=_EQUAL)
        at = next((i for i, a in enumerate(args) if before and _keyword(a) == before), len(args))
    else:
        at = next((i for i, a in enumerate(args) if a.keyword is not None), len(args))
    inner = args[0].comma if len(args) > 1 else _COMMA
    if at == len(args) and args:
        new = new.with_changes(comma=args[-1].comma)
        args[-1] = args[-1].with_changes(comma=inner)
    else:
        new = new.with_changes(comma=inner)
    args.insert(at, new)
    return call.with_changes(args=args)


def without_arg(call: cst.Call, *, keyword: str | None = None, position: int | None = None):
    """`call` without the keyword argument `keyword` / the argument at `position`."""
    args = list(call.args)
    if keyword is not None:
        position = next((i for i, a in enumerate(args) if _keyword(a) == keyword), None)
    if position is None:
        return call
    removed = args.pop(position)
    if position == len(args) and args:
        args[-1] = args[-1].with_changes(comma=removed.comma)
    return call.with_changes(args=args)


def without_trailing_comma(call: cst.Call) -> cst.Call:
    """Let the formatter join a call that no longer needs a line per argument."""
    args = list(call.args)
    args[-1] = args[-1].with_changes(comma=cst.MaybeSentinel.DEFAULT)
    return call.with_changes(args=args)


_EQUAL = cst.AssignEqual(cst.SimpleWhitespace(""), cst.SimpleWhitespace(""))
_COMMA = cst.Comma(whitespace_after=cst.SimpleWhitespace(" "))


def set_arg(call: cst.Call, keyword: str, value: str) -> cst.Call:
    args = [
        a.with_changes(value=expression(value)) if _keyword(a) == keyword else a for a in call.args
    ]
    return call.with_changes(args=args)


def arg_value(call: cst.Call, keyword: str) -> str | None:
    for arg in call.args:
        if _keyword(arg) == keyword:
            return code_of(arg.value)
    return None


def _keyword(arg: cst.Arg) -> str | None:
    return arg.keyword.value if arg.keyword is not None else None


# ---- function signatures -----------------------------------------------------------------


class _EditParams(InMethod):
    def __init__(self, class_name, method, edit: Callable[[list[cst.Param]], list[cst.Param]]):
        super().__init__(class_name, None)
        self.target, self.edit = method, edit

    def leave_FunctionDef(self, original, updated):
        hit = self._stack[:1] == [self.class_name] and len(self._stack) == 2
        hit = hit and original.name.value == self.target
        self._stack.pop()
        if not hit:
            return updated
        self.hits += 1
        params = self.edit(list(updated.params.params))
        comma = cst.Comma(whitespace_after=cst.SimpleWhitespace(" "))
        flat = cst.SimpleWhitespace("")
        params = [p.with_changes(comma=comma, whitespace_after_param=flat) for p in params[:-1]] + [
            p.with_changes(comma=cst.MaybeSentinel.DEFAULT, whitespace_after_param=flat)
            for p in params[-1:]
        ]
        return updated.with_changes(
            params=updated.params.with_changes(params=params),
            whitespace_before_params=cst.SimpleWhitespace(""),
        )


def _param(code: str) -> cst.Param:
    """`name: annotation` or `name: annotation = default`."""
    head, equal, default = code.partition(" = ")
    name, _, annotation = head.partition(":")
    return cst.Param(
        cst.Name(name.strip()),
        annotation=cst.Annotation(expression(annotation.strip())) if annotation else None,
        default=expression(default.strip()) if equal else None,
    )


def add_param(package, class_name: str, method: str, code: str) -> None:
    """Append the parameter `code` ("mask: torch.Tensor | None") to `class_name.method`."""
    run(package, "model.py", _EditParams(class_name, method, lambda ps: [*ps, _param(code)]))


def remove_param(package, class_name: str, method: str, name: str) -> None:
    run(
        package,
        "model.py",
        _EditParams(class_name, method, lambda ps: [p for p in ps if p.name.value != name]),
    )


def set_param_annotation(package, class_name: str, method: str, name: str, annotation: str):
    def edit(params):
        return [
            p.with_changes(annotation=cst.Annotation(expression(annotation)))
            if p.name.value == name
            else p
            for p in params
        ]

    run(package, "model.py", _EditParams(class_name, method, edit))


def param_names(package, class_name: str, method: str) -> list[str]:
    function = find_method(package.module("model.py"), class_name, method)
    return [p.name.value for p in function.params.params] if function else []


def hand_down(
    package,
    param: str,
    *,
    passed: str | None = None,
    into: Callable[[cst.Call], cst.BaseExpression] | None = None,
) -> None:
    """A value `Model.forward`'s layer loop hands every block, which hands it to its
    attention: `layer(h, ...)` gets `passed` last (default: the parameter's name),
    `TransformerBlock.forward` takes `param` (its code, "mask: torch.Tensor | None") and its
    `self.attention(...)` call becomes `into(call)` (default: the name last). The attention
    class's own parameter is the caller's to add."""
    name = _param(param).name.value
    replace_expressions(
        package,
        "model.py",
        "Model",
        "forward",
        call_of("layer"),
        lambda call: with_arg(call, passed or name),
    )
    add_param(package, "TransformerBlock", "forward", param)
    replace_expressions(
        package,
        "model.py",
        "TransformerBlock",
        "forward",
        call_of("self.attention"),
        into or (lambda call: with_arg(call, name)),
    )


class BareConditionalArgs(cst.CSTTransformer):
    """`norm((a if c else b))` -> `norm(a if c else b)`: the parentheses a rewrite writes
    around a conditional for a sum (`x + (a if c else b)`) are redundant around a call's
    argument (ruff UP034)."""

    def __init__(self):
        super().__init__()
        self.hits = 0

    def leave_Arg(self, original, updated):
        if isinstance(updated.value, cst.IfExp) and updated.value.lpar:
            self.hits += 1
            return updated.with_changes(value=updated.value.with_changes(lpar=[], rpar=[]))
        return updated


def find_method(module: cst.Module, class_name: str, method: str) -> cst.FunctionDef | None:
    for statement in module.body:
        if isinstance(statement, cst.ClassDef) and statement.name.value == class_name:
            for item in statement.body.body:
                if isinstance(item, cst.FunctionDef) and item.name.value == method:
                    return item
    return None


def method_uses(package, class_name: str, method: str, name: str) -> bool:
    """Whether the body of `class_name.method` mentions the name `name`."""
    function = find_method(package.module("model.py"), class_name, method)
    if function is None:
        return False
    found = []

    class _Names(cst.CSTVisitor):
        def visit_Name(self, node):
            if node.value == name:
                found.append(node)

    function.body.visit(_Names())
    return bool(found)


# ---- module-level definitions ------------------------------------------------------------


def has_definition(package, filename: str, name: str) -> bool:
    return any(
        isinstance(s, cst.FunctionDef | cst.ClassDef) and s.name.value == name
        for s in package.module(filename).body
    ) or any(
        isinstance(s, cst.SimpleStatementLine)
        and isinstance(s.body[0], cst.Assign)
        and code_of(s.body[0].targets[0].target) == name
        for s in package.module(filename).body
    )


class _ModuleBody(cst.CSTTransformer):
    def __init__(self, edit):
        super().__init__()
        self.edit, self.hits = edit, 0

    def leave_Module(self, original, updated):
        body, self.hits = self.edit(list(updated.body))
        return updated.with_changes(body=body)


def insert_definition(package, filename: str, code: str, *, before: str | None = None) -> None:
    """Insert module-level `code` before the definition named `before` (or after the last
    top-level assignment / import when `before` is None)."""
    new = statements(code)

    def edit(body):
        if before is not None:
            for index, statement in enumerate(body):
                if getattr(statement, "name", None) is not None and statement.name.value == before:
                    return body[:index] + new + body[index:], 1
            return body, 0
        last = max(
            (
                i
                for i, s in enumerate(body)
                if isinstance(s, cst.SimpleStatementLine)
                and isinstance(s.body[0], cst.Assign | cst.Import | cst.ImportFrom)
            ),
            default=-1,
        )
        return body[: last + 1] + new + body[last + 1 :], 1

    run(package, filename, _ModuleBody(edit))


def remove_definition(package, filename: str, name: str) -> None:
    def edit(body):
        kept = [s for s in body if not _defines(s, name)]
        return kept, len(body) - len(kept)

    run(package, filename, _ModuleBody(edit))


def _defines(statement, name: str) -> bool:
    if isinstance(statement, cst.FunctionDef | cst.ClassDef):
        return statement.name.value == name
    return (
        isinstance(statement, cst.SimpleStatementLine)
        and isinstance(statement.body[0], cst.Assign)
        and code_of(statement.body[0].targets[0].target) == name
    )


def drop_docstring_paragraphs(package, filename: str, words: tuple[str, ...]) -> None:
    """Delete the paragraphs of `filename`'s module docstring that mention any of `words`
    (a reference's note about a feature the target does not have). No docstring: no-op."""

    def edit(body):
        first = body[0] if body else None
        if not (
            isinstance(first, cst.SimpleStatementLine)
            and isinstance(first.body[0], cst.Expr)
            and isinstance(first.body[0].value, cst.SimpleString)
        ):
            return body, 1
        text = first.body[0].value.evaluated_value
        paragraphs = text.strip("\n").split("\n\n")
        kept = [p for p in paragraphs if not any(word in p for word in words)]
        if len(kept) == len(paragraphs):
            return body, 1
        lines = "\n\n".join(kept)
        closing = "\n" if "\n" in lines else ""
        docstring = cst.SimpleString('"""' + lines + closing + '"""')
        line = first.with_changes(body=[first.body[0].with_changes(value=docstring)])
        return [line, *body[1:]], 1

    run(package, filename, _ModuleBody(edit))


# ---- ModelArgs ---------------------------------------------------------------------------


def add_args_field(package, code: str, hf_kwarg: str | None = None) -> None:
    """Add ModelArgs field lines (`code`, with their "why" comment) before
    `tie_word_embeddings` (or after the last field), and the `from_hf_config` keyword
    `hf_kwarg` ("name=hf_config.x") when given."""
    anchor = "tie_word_embeddings" if "tie_word_embeddings" in _field_lines(package) else None
    new = statements(code)

    class _Fields(cst.CSTTransformer):
        hits = 0

        def leave_ClassDef(self, original, updated):
            if original.name.value != "ModelArgs":
                return updated
            body = list(updated.body.body)
            at = max((i + 1 for i, s in enumerate(body) if field_name(s) is not None), default=0)
            if anchor is not None:
                at = next(i for i, s in enumerate(body) if field_name(s) == anchor)
            self.hits += 1
            return updated.with_changes(
                body=updated.body.with_changes(body=body[:at] + new + body[at:])
            )

    run(package, "args.py", _Fields())
    if hf_kwarg is not None:
        add_hf_kwarg(package, hf_kwarg)


def add_hf_kwarg(package, hf_kwarg: str) -> None:
    """Add `name=<expression>` to the `cls(...)` call of `from_hf_config`, before
    `tie_word_embeddings=` (or last)."""
    name, _, value = hf_kwarg.partition("=")
    replace_expressions(
        package,
        "args.py",
        "ModelArgs",
        "from_hf_config",
        lambda node: isinstance(node, cst.Call) and is_name(node.func, "cls"),
        lambda call: with_arg(call, value, keyword=name, before="tie_word_embeddings"),
    )


def remove_rope_settings(package) -> None:
    """Drop ModelArgs' rope frequency settings: the field, its mapping and the checks that
    read it (a package that computes no rotation from them)."""
    remove_args_field(package, "rope")
    remove_statements(
        package, "args.py", "ModelArgs", "__post_init__", mentions("self.rope"), required=False
    )


def remove_args_field(package, name: str) -> None:
    """Remove a ModelArgs field and its `from_hf_config` keyword (if present)."""

    class _Drop(cst.CSTTransformer):
        hits = 0

        def leave_SimpleStatementLine(self, original, updated):
            if field_name(updated) == name:
                self.hits += 1
                return cst.RemoveFromParent()
            return updated

    run(package, "args.py", _Drop())
    replace_expressions(
        package,
        "args.py",
        "ModelArgs",
        "from_hf_config",
        lambda node: (
            isinstance(node, cst.Call)
            and is_name(node.func, "cls")
            and arg_value(node, name) is not None
        ),
        lambda call: without_arg(call, keyword=name),
        required=False,
    )


def _field_lines(package) -> list[str]:
    for statement in package.module("args.py").body:
        if isinstance(statement, cst.ClassDef) and statement.name.value == "ModelArgs":
            return [n for n in (field_name(s) for s in statement.body.body) if n]
    raise EditError("args.py has no ModelArgs")


def append_to_method(package, filename: str, class_name: str, method: str, code: str) -> None:
    """Append statements to a method, creating it (after the fields) when missing."""
    if find_method(package.module(filename), class_name, method) is None:
        signature = f"def {method}(self):\n" + "".join(
            "    " + line + "\n" for line in code.strip().splitlines()
        )

        class _Add(cst.CSTTransformer):
            hits = 0

            def leave_ClassDef(self, original, updated):
                if original.name.value != class_name:
                    return updated
                body = list(updated.body.body)
                at = max((i + 1 for i, s in enumerate(body) if field_name(s)), default=0)
                self.hits += 1
                return updated.with_changes(
                    body=updated.body.with_changes(
                        body=body[:at] + statements(signature) + body[at:]
                    )
                )

        run(package, filename, _Add())
        return

    class _Append(InMethod):
        def leave_FunctionDef(self, original, updated):
            hit = self._stack == [class_name, method]
            self._stack.pop()
            if not hit:
                return updated
            self.hits += 1
            body = [*updated.body.body, *statements(code)]
            return updated.with_changes(body=updated.body.with_changes(body=body))

    run(package, filename, _Append(class_name, method))


def remove_statements(package, filename, class_name, method, match, *, required=True) -> int:
    """Delete the top-level statements of a method that `match`; an emptied method goes."""

    class _Remove(InMethod):
        def leave_FunctionDef(self, original, updated):
            hit = self._stack == [class_name, method]
            self._stack.pop()
            if not hit:
                return updated
            body = [s for s in updated.body.body if not match(s)]
            self.hits += len(updated.body.body) - len(body)
            if not body or all(_is_docstring(s) for s in body):
                return cst.RemoveFromParent()
            return updated.with_changes(body=updated.body.with_changes(body=body))

    return run(package, filename, _Remove(class_name, method), required=required)


def _is_docstring(statement) -> bool:
    return (
        isinstance(statement, cst.SimpleStatementLine)
        and isinstance(statement.body[0], cst.Expr)
        and isinstance(statement.body[0].value, cst.SimpleString | cst.ConcatenatedString)
    )


class DocstringNote(StatementsInMethod):
    """Append `note` to a method's docstring (one is written where it has none), for a
    transform that gives the method an argument to explain."""

    def __init__(self, class_name, method, note: str):
        super().__init__(class_name, method)
        self.note = note

    def edit_statements(self, body):
        self.hits += 1
        if body and _is_docstring(body[0]):
            text = body[0].body[0].value.evaluated_value.rstrip()
            return [*statements(_docstring(f"{text}{self.note}")), *body[1:]]
        return [*statements(_docstring(self.note.strip())), *body]


def _docstring(text: str) -> str:
    """A method's docstring (indented 8) holding `text`, wrapped inside 100 columns."""
    lines = textwrap.wrap(text.replace("\\", "\\\\"), width=88)
    return '"""' + "\n        ".join(lines) + '"""'


def mentions(*names: str) -> Callable[[cst.CSTNode], bool]:
    """A statement whose code mentions any of `names` as a whole word."""
    import re

    pattern = re.compile(r"\b(" + "|".join(re.escape(n) for n in names) + r")\b")
    return lambda node: bool(pattern.search(code_of(node)))


# ---- layer index into TransformerBlock ---------------------------------------------------


def ensure_layer_id(package) -> str:
    """Make `TransformerBlock.__init__` take the layer index; return its parameter name."""
    params = param_names(package, "TransformerBlock", "__init__")
    if len(params) > 2:
        return params[2]
    add_param(package, "TransformerBlock", "__init__", "layer_id: int")

    def rewrite(node: cst.BaseExpression):
        generator = node
        target = generator.for_in.target
        index = "i" if is_name(target, "_") else code_of(target)
        element = with_arg(generator.elt, index)
        for_in = generator.for_in.with_changes(target=cst.Name(index))
        return generator.with_changes(elt=element, for_in=for_in)

    replace_expressions(
        package,
        "model.py",
        "Model",
        "__init__",
        lambda node: (
            isinstance(node, cst.GeneratorExp | cst.ListComp)
            and call_of("TransformerBlock")(node.elt)
        ),
        rewrite,
    )
    return "layer_id"


def ensure_attention_layer_id(package) -> str:
    """Make `Attention.__init__` take the layer index too (the block hands it its own); return
    the attention's parameter name."""
    layer_id = ensure_layer_id(package)
    if len(param_names(package, "Attention", "__init__")) < 3:
        replace_expressions(
            package,
            "model.py",
            "TransformerBlock",
            "__init__",
            lambda node: m.matches(node, m.Call(func=m.Name("Attention"))),
            lambda call: with_arg(call, layer_id),
        )
        add_param(package, "Attention", "__init__", "layer_id: int")
    return param_names(package, "Attention", "__init__")[2]


def drop_layer_id_if_unused(package) -> None:
    """Undo `ensure_layer_id` when nothing in the block reads the index any more."""
    params = param_names(package, "TransformerBlock", "__init__")
    if len(params) < 3 or method_uses(package, "TransformerBlock", "__init__", params[2]):
        return
    remove_param(package, "TransformerBlock", "__init__", params[2])

    def rewrite(generator):
        element = without_arg(generator.elt, position=1)
        return generator.with_changes(
            elt=element, for_in=generator.for_in.with_changes(target=cst.Name("_"))
        )

    replace_expressions(
        package,
        "model.py",
        "Model",
        "__init__",
        lambda node: (
            isinstance(node, cst.GeneratorExp | cst.ListComp)
            and call_of("TransformerBlock")(node.elt)
        ),
        rewrite,
    )


# ---- the adapter table -------------------------------------------------------------------


def insert_rows_after(package, house_anchor: str, rows: list[tuple[str, str]]) -> None:
    """Insert `(hf_key, house_key)` rows (plain strings) after the row whose house key is
    `house_anchor`, replacing rows with the same HF keys."""
    wanted = {json.dumps(k): json.dumps(v) for k, v in rows}
    anchor = json.dumps(house_anchor)
    found = []

    def rewrite(key, value):
        if key in wanted:
            return []
        if value == anchor:
            found.append(key)
            return [(key, value), *wanted.items()]
        return [(key, value)]

    run(package, "state_dict_adapter.py", EditDict("from_hf_map", rewrite))
    if not found:
        raise EditError(f"state_dict_adapter.py has no row for {house_anchor}")


def insert_after_layer_rows(package, rows: list[tuple[str, str]]) -> None:
    """Insert `rows` after the adapter table's last per-layer row (`layers.{}.`)."""
    from codegen.transforms._ffn_edits import rewrite_adapter

    houses: list[str] = []

    def collect(hf, house):
        if house is not None and house.startswith("layers.{}."):
            houses.append(house)
        return [(hf, house)]

    rewrite_adapter(package, collect)
    if not houses:
        raise EditError("state_dict_adapter.py has no layer rows")
    insert_rows_after(package, houses[-1], rows)


def add_method_after_init(package, class_name: str, code: str) -> None:
    """Add a method to `class_name` of model.py right after its `__init__`."""
    new = cst.parse_module(code.strip() + "\n").body

    class _Add(cst.CSTTransformer):
        hits = 0

        def leave_ClassDef(self, original, updated):
            if original.name.value != class_name:
                return updated
            body = list(updated.body.body)
            at = next(
                i + 1
                for i, s in enumerate(body)
                if isinstance(s, cst.FunctionDef) and s.name.value == "__init__"
            )
            self.hits += 1
            return updated.with_changes(
                body=updated.body.with_changes(body=body[:at] + list(new) + body[at:])
            )

    run(package, "model.py", _Add())


def drop_rows(package, house_match: Callable[[str], bool]) -> int:
    """Delete the rows whose house key (a plain string) satisfies `house_match`."""
    dropped = []

    def rewrite(key, value):
        house = json.loads(value) if value != "None" else None
        if house is not None and house_match(house):
            dropped.append(key)
            return []
        return [(key, value)]

    run(package, "state_dict_adapter.py", EditDict("from_hf_map", rewrite))
    return len(dropped)


def split_projection_rows(package, projection: str, parts: list[tuple[str, str]]) -> None:
    """The adapter rows of the attention's `projection` (`wq`, `wo`: its weight, and a bias if
    mapped) -> the weights of `parts`, (HF module, house module) pairs in the attention under
    the same HF prefix (none of them has a bias). The table must map the projection's weight."""
    weight, bias = (f"layers.{{}}.attention.{projection}.{p}" for p in ("weight", "bias"))
    found = []

    def rewrite(key, value):
        house = json.loads(value) if value != "None" else None
        if house == weight:
            prefix = json.loads(key).rsplit(".", 2)[0]
            found.append(key)
            return [
                (
                    json.dumps(f"{prefix}.{hf}.weight"),
                    json.dumps(f"layers.{{}}.attention.{ours}.weight"),
                )
                for hf, ours in parts
            ]
        if house == bias:
            return []
        return [(key, value)]

    run(package, "state_dict_adapter.py", EditDict("from_hf_map", rewrite))
    if not found:
        raise EditError(f"state_dict_adapter.py maps no attention.{projection}.weight")


# ---- attention maths written out (for what SDPA cannot take: sinks, soft-capping) ----------

_SDPA = "F.scaled_dot_product_attention"

# `{scale}` is SDPA's (head_dim ** -0.5 unless the call set `scale=`); `{groups}` the GQA
# repeat where the attention has fewer k/v heads (none: latent attention's k/v per q head)
EXPLICIT_ATTENTION = """{groups}
scores = q @ k.transpose(2, 3) * {scale}
{masking}
probs = torch.softmax(scores, dim=-1, dtype=torch.float32).to(q.dtype)
out = probs @ v
"""

GQA_REPEAT = """
groups = self.n_heads // self.n_kv_heads  # GQA: each k/v head serves `groups` q heads
k, v = k.repeat_interleave(groups, dim=1), v.repeat_interleave(groups, dim=1)"""

# the hidden keys' -inf is added in place (no backward step reads the scores): the same
# values as a masked_fill_, which broadcasts a (seq, seq) mask over every head far slower.
# The additive table (0 / -inf) is built once per forward by `Model.forward` (`FUTURE`)
CAUSAL_MASKING = """
scores.add_(future)
"""

MASK_MASKING = """
if mask is None:
    mask = torch.ones(seq, seq, dtype=torch.bool, device=x.device).tril()
scores.add_(torch.where(~mask, float("-inf"), 0.0).to(scores.dtype))
"""

# plain causal attention: `Model.forward` builds the keys to hide once, as the additive
# table every layer adds to its scores, in the scores' dtype (see `_table_dtype`)
FUTURE_PARAM = "future: torch.Tensor"
FUTURE = """
# -inf where a key comes after its query, 0 elsewhere: every layer adds it to its scores
future = torch.full(({seq}, {seq}), float("-inf"), dtype={dtype}, device=tokens.device).triu(1)
"""
FREE_FUTURE = "del future  # not held while the head computes the logits"


def attention_is_explicit(package) -> bool:
    """Whether `Attention.forward` writes its attention out (no fused SDPA call there; a
    depth attention elsewhere in the module may call it)."""
    module = package.module("model.py")
    function = find_method(module, "Attention", "forward")
    if function is None:
        return _SDPA not in module.code
    return not m.findall(function, m.Call(func=dotted(_SDPA)))


def make_attention_explicit(package) -> None:
    """Replace `out = F.scaled_dot_product_attention(...)` in Attention.forward with the
    same maths written out (scores, mask, fp32 softmax as HF's eager path); no-op if done.
    Plain causal attention hides the `future` keys `Model.forward` builds once."""
    if attention_is_explicit(package):
        return
    function = find_method(package.module("model.py"), "Attention", "forward")
    call = next(
        statement.body[0].value
        for statement in function.body.body
        if isinstance(statement, cst.SimpleStatementLine)
        and isinstance(statement.body[0], cst.Assign)
        and call_of(_SDPA)(statement.body[0].value)
    )
    scale = arg_value(call, "scale") or "self.head_dim**-0.5"
    with_mask = arg_value(call, "attn_mask") is not None
    if with_mask and arg_value(call, "attn_mask") != "mask":
        # an additive mask (a bias) is not the boolean `mask` the lines below hide
        raise EditError("the attention's SDPA takes an additive mask: write it out first")
    masking = MASK_MASKING if with_mask else CAUSAL_MASKING
    init = find_method(package.module("model.py"), "Attention", "__init__")
    grouped = bool(
        m.findall(init, m.AssignTarget(m.Attribute(m.Name("self"), m.Name("n_kv_heads"))))
    )
    groups = GQA_REPEAT if grouped else ""
    code = EXPLICIT_ATTENTION.format(groups=groups, scale=scale, masking=masking.strip())
    run(
        package,
        "model.py",
        _ReplaceStatement("Attention", "forward", calls(_SDPA), code),
    )
    if with_mask:
        hide_masks_once(package)
    else:
        _hand_down_future(package)


def set_attention_masking(package, with_mask: bool) -> None:
    """Switch the attention between plain causal and a `mask` argument (None = causal):
    SDPA's `attn_mask`/`is_causal`, or the explicit masking lines (plain causal there
    hides the `future` keys the model builds once; a `mask` replaces them)."""
    if attention_is_explicit(package):
        if not with_mask and "hidden" in param_names(package, "Attention", "forward"):
            _unhide(package)
            return
        old, new = (CAUSAL_MASKING, MASK_MASKING) if with_mask else (MASK_MASKING, CAUSAL_MASKING)
        first = is_statement(code_of(statements(old)[0]))
        run(package, "model.py", _ReplaceStatement("Attention", "forward", first, new))
        if len(statements(old)) > 1:
            last = is_statement(code_of(statements(old)[-1]))
            remove_statements(package, "model.py", "Attention", "forward", last)
        if with_mask:
            _drop_future(package)
        else:
            _hand_down_future(package)
        return
    if with_mask:

        def rewrite(call):
            call = with_arg(call, "mask", keyword="attn_mask", before="is_causal")
            return set_arg(call, "is_causal", "mask is None")

    else:

        def rewrite(call):
            call = set_arg(without_arg(call, keyword="attn_mask"), "is_causal", "True")
            return without_trailing_comma(call)

    replace_expressions(package, "model.py", "Attention", "forward", call_of(_SDPA), rewrite)


FREED = "# not held while the head computes the logits"

# ModelArgs.__post_init__ of a package given a per-layer pattern (`layer_types`) by a
# transform: one of LAYER_TYPES per layer, all full attention when the config names none
LAYER_PATTERN_CHECKS = """
self.layer_types = tuple(self.layer_types or ("full_attention",) * self.n_layers)
if len(self.layer_types) != self.n_layers:
    raise ValueError(f"{len(self.layer_types)} layer_types for {self.n_layers} layers")
unknown = sorted(set(self.layer_types) - set(LAYER_TYPES))
if unknown:
    raise NotImplementedError(f"layer_types {unknown} are not supported")
"""
# the first statement of an Attention.forward given a `mask` argument (`take_mask`)
MASK_DOC = '"""`mask`: boolean (seq, seq), True = attend; None = plain causal."""'


def take_mask(package) -> None:
    """The attention takes a `mask` argument (boolean, True = attend; None = plain causal),
    says so first in its forward, and masks with it (`set_attention_masking`)."""
    add_param(package, "Attention", "forward", "mask: torch.Tensor | None")
    run(
        package,
        "model.py",
        InsertStatements("Attention", "forward", lambda _: True, MASK_DOC, before=True),
    )
    set_attention_masking(package, with_mask=True)


HIDDEN_MASKING = """
scores.add_(hidden)
"""
HIDDEN_DOC = '"""`hidden`: (seq, seq), -inf at a key the query does not see, 0 elsewhere."""'
HIDDEN_PARAM = "hidden: torch.Tensor"
# one statement per mask the layers take: its additive table, -inf at the keys it hides
# (`future`'s dtype and device; plain causal where it is None)
HIDE = (
    "hidden_{name} = future if {name} is None"
    ' else future.new_full({name}.shape, float("-inf")).masked_fill_({name}, 0.0)'
)


def hide_masks_once(package) -> None:
    """Explicit masking with a `mask` argument (True = attend, None = plain causal) hides
    `~mask` in every layer, and builds the causal mask there where it is None. Instead
    `Model.forward` builds, once before the layer loop, the keys each mask hides (the
    causal `future` for None) and every layer takes its `hidden` keys (as HF builds one
    mask per layer type); no-op unless the attention is explicit and takes `mask`."""
    if not attention_is_explicit(package) or "mask" not in param_names(
        package, "Attention", "forward"
    ):
        return
    forward = find_method(package.module("model.py"), "Model", "forward")
    loop = next(s for s in forward.body.body if is_layer_loop(s))
    call = next(iter(m.findall(loop, m.Call(func=m.Name("layer")))), None)
    block_params = param_names(package, "TransformerBlock", "forward")
    if call is None or "mask" not in block_params:
        raise EditError("the layer loop hands no mask to the blocks")
    at = block_params.index("mask") - 1  # the call has no `self`
    # the masks the layers are handed: names the forward assigns (`window = sliding_rope = None`)
    assigned = {t.target.value for t in m.findall(forward, m.AssignTarget(m.Name()))}
    argument = call.args[at].value
    names = sorted({n.value for n in m.findall(argument, m.Name()) if n.value in assigned})

    class _Hidden(cst.CSTTransformer):
        def leave_Name(self, original, updated):
            if original.value in names:
                return updated.with_changes(value=f"hidden_{original.value}")
            if original.value == "None":
                return cst.Name("future")
            return updated

    hidden = code_of(argument.visit(_Hidden()))
    # the attention: the keys it is handed are hidden as they are
    first = is_statement(code_of(statements(MASK_MASKING)[0]))
    last = is_statement(code_of(statements(MASK_MASKING)[-1]))
    run(package, "model.py", _ReplaceStatement("Attention", "forward", first, HIDDEN_MASKING))
    remove_statements(package, "model.py", "Attention", "forward", last)
    attention = find_method(package.module("model.py"), "Attention", "forward")
    if any(code_of(s) == MASK_DOC for s in attention.body.body):
        note = _ReplaceStatement(
            "Attention", "forward", lambda s: code_of(s) == MASK_DOC, HIDDEN_DOC
        )
        run(package, "model.py", note)
    _through_the_block(
        package,
        lambda class_name: _rename_param(package, class_name, "mask", HIDDEN_PARAM),
        lambda call: call.with_changes(
            args=[
                a.with_changes(value=cst.Name("hidden")) if is_name(a.value, "mask") else a
                for a in call.args
            ]
        ),
    )
    # the model: every mask's hidden keys once, before the loop; freed after it
    seq = "seq" if any(_assigns_name(s, "seq") for s in forward.body.body) else "tokens.shape[1]"
    build = FUTURE.format(seq=seq, dtype=_table_dtype(package)) + "".join(
        HIDE.format(name=n) + "\n" for n in names
    )
    run(package, "model.py", _Insert("Model", "forward", is_layer_loop, build, before=True))
    free = ", ".join(["future", *names, *(f"hidden_{n}" for n in names)])
    _no_longer_inputs(package, names)  # a mask freed with the layers' inputs: freed here now
    run(
        package,
        "model.py",
        InsertStatements(
            "Model",
            "forward",
            is_layer_loop,
            f"del {free}  {FREED}",
        ),
    )

    def hand_down(call):
        args = list(call.args)
        args[at] = args[at].with_changes(value=expression(hidden))
        return call.with_changes(args=args)

    replace_expressions(package, "model.py", "Model", "forward", call_of("layer"), hand_down)


def masks_hidden(package) -> bool:
    """`hide_masks_once` has run: the layers are handed the keys each mask hides."""
    return attention_is_explicit(package) and "hidden" in param_names(
        package, "Attention", "forward"
    )


def hide_mask_too(package, name: str) -> str:
    """After `hide_masks_once`, one more mask `name` (True = attend, None = plain causal)
    that `Model.forward` builds before the layer loop: its hidden keys are built once beside
    the others' and freed with them, as `hide_masks_once` writes them (names in order).
    Returns the name the layers are to be handed."""
    forward = find_method(package.module("model.py"), "Model", "forward")
    freed = next((s for s in forward.body.body if _frees_future(s)), None)
    if freed is None:
        raise EditError("the forward frees no hidden masks after the layer loop")
    held = [n.value for n in m.findall(freed, m.Name())]
    names = sorted({*(n for n in held if n != "future" and not n.startswith("hidden_")), name})
    before = [n for n in names if n < name]
    anchor = is_statement(HIDE.format(name=before[-1])) if before else _assigns_future
    run(package, "model.py", InsertStatements("Model", "forward", anchor, HIDE.format(name=name)))
    free = ", ".join(["future", *names, *(f"hidden_{n}" for n in names)])
    _no_longer_inputs(package, names)
    replace = ReplaceStatements("Model", "forward", _frees_future, f"del {free}  {FREED}")
    run(package, "model.py", replace)
    return f"hidden_{name}"


def _frees_future(statement) -> bool:
    return m.matches(statement, m.SimpleStatementLine(body=[m.Del()])) and bool(
        m.findall(statement, m.Name("future"))
    )


def _unhide(package) -> None:
    """Back to plain causal from `hide_masks_once` (a window removed, its masks already
    gone from the loop): the attention hides the `future` keys the model hands down."""
    remove_statements(package, "model.py", "Model", "forward", _assigns_future)
    remove_statements(
        package, "model.py", "Model", "forward", is_statement("del future"), required=False
    )
    remove_statements(
        package,
        "model.py",
        "Attention",
        "forward",
        lambda s: code_of(s) == HIDDEN_DOC,
        required=False,
    )
    first = is_statement(code_of(statements(HIDDEN_MASKING)[0]))
    run(package, "model.py", _ReplaceStatement("Attention", "forward", first, CAUSAL_MASKING))
    _through_the_block(
        package,
        lambda class_name: remove_param(package, class_name, "forward", "hidden"),
        lambda call: without_arg(call, position=_position(call, "hidden")),
        required=False,
    )
    _hand_down_future(package)


def _through_the_block(
    package,
    param: Callable[[str], None],
    argument: Callable[[cst.Call], cst.Call],
    *,
    required: bool = True,
) -> None:
    """The path the attention's mask takes through a layer, edited in step: `param(class)`
    edits the parameter of `Attention.forward` and of `TransformerBlock.forward`, `argument`
    the block's `self.attention(...)` call (`required`: that call must be found)."""
    for class_name in ("Attention", "TransformerBlock"):
        param(class_name)
    replace_expressions(
        package,
        "model.py",
        "TransformerBlock",
        "forward",
        call_of("self.attention"),
        argument,
        required=required,
    )


def _rename_param(package, class_name: str, old: str, code: str) -> None:
    """The parameter `old` of `class_name.forward` becomes `code`, in its place."""
    new = _param(code)
    run(
        package,
        "model.py",
        _EditParams(
            class_name,
            "forward",
            lambda ps: [new if p.name.value == old else p for p in ps],
        ),
    )


def _hand_down_future(package) -> None:
    """`Model.forward` builds the causal mask (True: a key after the query) once, before the
    layer loop, hands it through each block to the attention and lets it go after the loop
    (the head's logits are the forward's peak)."""
    forward = find_method(package.module("model.py"), "Model", "forward")
    seq = "seq" if any(_assigns_name(s, "seq") for s in forward.body.body) else "tokens.shape[1]"
    future = FUTURE.format(seq=seq, dtype=_table_dtype(package))
    run(
        package,
        "model.py",
        _Insert("Model", "forward", is_layer_loop, future, before=True),
    )
    run(package, "model.py", InsertStatements("Model", "forward", is_layer_loop, FREE_FUTURE))
    hand_down(package, FUTURE_PARAM)
    add_param(package, "Attention", "forward", FUTURE_PARAM)


# `q.float() @ ...`: written-out scores upcast to fp32 (fp32_attention_scores)
_UPCAST_SCORES = m.BinaryOperation(
    left=m.Call(func=m.Attribute(attr=m.Name("float"))), operator=m.MatrixMultiply()
)


def _table_dtype(package) -> str:
    """The dtype of the scores the additive table is added to: fp32 where the attention
    upcasts them, else the dtype of the stream the layer loop hands the blocks (`h.dtype`),
    which q and k are computed in."""
    module = package.module("model.py")
    attention = find_method(module, "Attention", "forward")
    if attention is not None and m.findall(attention, _UPCAST_SCORES):
        return "torch.float32"
    loop = next(s for s in find_method(module, "Model", "forward").body.body if is_layer_loop(s))
    # `h = layer(h, ...)` (or `h, blocks = layer(h, blocks, ...)`): the stream handed in,
    # else the one the loop assigns (the first of several)
    step = m.Assign(targets=[m.AssignTarget()], value=m.Call(func=m.Name("layer")))
    for assign in m.findall(loop, step):
        target = assign.targets[0].target
        if isinstance(target, cst.Tuple) and target.elements:
            target = target.elements[0].value
        for stream in (assign.value.args[0].value if assign.value.args else None, target):
            if isinstance(stream, cst.Name):
                return f"{stream.value}.dtype"
    raise EditError("the layer loop hands the blocks no stream to read the scores' dtype from")


# `torch.full((seq, seq), float("-inf"), dtype=..., ...)`: the table `FUTURE` builds
_TABLE = m.Call(
    func=dotted("torch.full"),
    args=[m.Arg(m.Tuple()), m.Arg(m.Call(func=m.Name("float"))), m.ZeroOrMore()],
)


def set_table_dtype(package, dtype: str) -> None:
    """The additive table `Model.forward` builds (`future = torch.full(...)`) in `dtype`: for
    an edit that changes the scores' dtype after the attention was written out (fp32
    scores, an fp32 bias added to them); no-op without a table."""
    replace_expressions(
        package,
        "model.py",
        "Model",
        "forward",
        lambda node: m.matches(node, _TABLE),
        lambda call: set_arg(call, "dtype", dtype),
        required=False,
    )


class _Insert(InsertStatements):
    """`InsertStatements` whose code keeps its leading comment (see `statements`)."""

    def __init__(self, class_name, method, anchor, code: str, before: bool = False):
        super().__init__(class_name, method, anchor, "pass", before)
        self.new = statements(code)


def _drop_future(package) -> None:
    """Undo `_hand_down_future`: the argument, the parameters and the mask's statement."""
    remove_statements(package, "model.py", "Model", "forward", _assigns_future)
    remove_statements(package, "model.py", "Model", "forward", is_statement("del future"))
    for class_name, callee in (("Model", "layer"), ("TransformerBlock", "self.attention")):
        replace_expressions(
            package,
            "model.py",
            class_name,
            "forward",
            call_of(callee),
            lambda call: without_arg(call, position=_position(call, "future")),
        )
    remove_param(package, "TransformerBlock", "forward", "future")
    remove_param(package, "Attention", "forward", "future")


def _position(call: cst.Call, name: str) -> int | None:
    return next(
        (i for i, a in enumerate(call.args) if a.keyword is None and is_name(a.value, name)),
        None,
    )


def _assigns_name(statement, name: str) -> bool:
    return m.matches(
        statement,
        m.SimpleStatementLine(body=[m.Assign(targets=[m.AssignTarget(target=m.Name(name))])]),
    )


def _assigns_future(statement) -> bool:
    return _assigns_name(statement, "future")


_METHOD_INDENT, _WIDTH = " " * 8, 100  # a method's statements; the packages' line length


def free_after_layer_loop(package, name: str) -> None:
    """`del name` right after Model.forward's layer loop, as HF's backbone returns (freeing
    what its layers read) before the head runs: one `del` line for every such input, joined
    into the line an earlier transform wrote there while it fits (else a line of its own
    below it); hidden masks keep their own line, which a later transform may put first."""
    forward = find_method(package.module("model.py"), "Model", "forward")
    body = list(forward.body.body) if forward is not None else []
    loop = next((i for i, s in enumerate(body) if is_layer_loop(s)), None)
    if loop is None:
        raise EditError("Model.forward has no `for layer in self.layers` loop")
    # of the `del` lines right after the loop (the hidden masks' may come first), the inputs'
    frees = []
    for statement in body[loop + 1 :]:
        if not m.matches(statement, m.SimpleStatementLine(body=[m.Del()])):
            break
        frees.append(statement)
    after = next((s for s in frees if _frees_loop_inputs(s)), None)
    if after is not None:
        code = f"del {code_of(after.body[0].target)}, {name}  {FREED}"
        if len(_METHOD_INDENT + code) > _WIDTH:  # a second line, not a wrapped tuple
            insert = InsertStatements("Model", "forward", after.deep_equals, f"del {name}  {FREED}")
            run(package, "model.py", insert)
            return
        replace = ReplaceStatements("Model", "forward", after.deep_equals, code)
        run(package, "model.py", replace)
        return
    run(
        package,
        "model.py",
        InsertStatements("Model", "forward", is_layer_loop, f"del {name}  {FREED}"),
    )


def _no_longer_inputs(package, names) -> None:
    """Take `names` out of the layers' inputs' `del` line (`free_after_layer_loop`), the line
    gone when nothing else is left in it: the hidden masks' line frees them instead."""
    forward = find_method(package.module("model.py"), "Model", "forward")
    line = next((s for s in forward.body.body if _frees_loop_inputs(s)), None)
    if line is None:
        return
    kept = [code_of(n) for n in m.findall(line.body[0].target, m.Name()) if n.value not in names]
    if len(kept) == len(m.findall(line.body[0].target, m.Name())):
        return
    if not kept:
        remove_statements(package, "model.py", "Model", "forward", line.deep_equals)
        return
    code = f"del {', '.join(kept)}  {FREED}"
    run(package, "model.py", ReplaceStatements("Model", "forward", line.deep_equals, code))


def _frees_loop_inputs(statement) -> bool:
    """A `del` of the layers' inputs (`free_after_layer_loop`), not of hidden masks."""
    return (
        m.matches(statement, m.SimpleStatementLine(body=[m.Del()]))
        and not _frees_future(statement)
        and statement.trailing_whitespace.comment is not None
        and statement.trailing_whitespace.comment.value == FREED
    )


def is_layer_loop(statement) -> bool:
    """`for layer in self.layers:` (Model.forward's loop over its blocks)."""
    return isinstance(statement, cst.For) and is_name(statement.iter, "self.layers")


class _ReplaceStatement(InMethod):
    """Replace the first top-level statement of the method that matches with `code`."""

    def __init__(self, class_name, method, match, code: str):
        super().__init__(class_name, method)
        self.match, self.new = match, statements(code)

    def leave_FunctionDef(self, original, updated):
        hit = self._stack == [self.class_name, self.method]
        self._stack.pop()
        if not hit:
            return updated
        body = list(updated.body.body)
        for index, statement in enumerate(body):
            if self.match(statement):
                self.hits += 1
                body[index : index + 1] = self.new
                break
        return updated.with_changes(body=updated.body.with_changes(body=body))


def disk_names(features, module: str) -> dict[str, str]:
    """The checkpoint's key for each key of the HF model under the layer module `module`
    (A.X-K2 stores its gated norms' `mlp.fc1` as `W_down` and its `q_gate_proj` as
    `q_b_proj`; remote code stores the model's own names): the analysis's model and
    checkpoint keys under it, paired in order (empty when their counts differ)."""
    state = getattr(features, "state_dict", None)
    if state is None:
        return {}
    prefix = f"{state.prefix}.{{}}." if state.prefix else ""

    def under(keys) -> list[str]:
        bare = (key.split(" [", 1)[0] for key in keys)
        return list(dict.fromkeys(prefix + k for k in bare if k.startswith(f"{module}.")))

    model, disk = under(state.layer_keys), under(state.checkpoint_layer_keys)
    return dict(zip(model, disk, strict=True)) if len(model) == len(disk) else {}
