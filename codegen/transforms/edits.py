"""Small, reusable libcst edits that transforms compose.

House packages share a vocabulary (`Attention.__init__` builds `self.wq`, `ModelArgs` is a
dataclass with `from_hf_config`, the adapter has a `from_hf_map` dict), so an edit names
its anchor as "class, method, statement that assigns / calls / returns ...", matched on the
syntax tree (libcst matchers), never on rendered text, so an earlier rule reformatting a
line does not move an anchor. An edit whose anchor is missing raises `EditError`: a
transform never silently does nothing.
"""

from __future__ import annotations

import ast
import functools
from collections.abc import Callable

import libcst as cst
import libcst.matchers as m

from codegen.transforms import pruned_visit

_RENDER = cst.Module(body=[])


def findall(tree: cst.CSTNode, matcher, index=None) -> list[cst.CSTNode]:
    """`m.findall(tree, matcher)`, the same nodes in the same order, for a matcher of node
    types (`m.Assign(...)`, `m.Assign() | m.AnnAssign()`): only subtrees holding such a
    node are entered (`pruned_visit`; libcst's own findall rebuilds the whole tree). Any
    other matcher goes to libcst."""
    kinds = _matcher_kinds(matcher)
    if kinds is None:
        return list(m.findall(tree, matcher))
    finder = _finder(kinds)(matcher)
    pruned_visit.visit(tree, finder, index)
    return finder.found


def _matcher_kinds(matcher) -> tuple[str, ...] | None:
    options = matcher.options if isinstance(matcher, m.OneOf) else (matcher,)
    kinds = []
    for option in options:
        name = type(option).__name__
        node = getattr(cst, name, None)
        if not (isinstance(node, type) and issubclass(node, cst.CSTNode)):
            return None
        if type(option).__module__ != m.__name__:
            return None
        kinds.append(name)
    return tuple(sorted(set(kinds)))


@functools.cache
def _finder(kinds: tuple[str, ...]) -> type:
    """A visitor class collecting the matching nodes of `kinds`, in visit order."""

    def collect(self, node):
        if m.matches(node, self.matcher):
            self.found.append(node)

    handlers = {f"visit_{kind}": collect for kind in kinds}
    return type("_FindAll", (_Finder,), handlers)


class _Finder(cst.CSTVisitor):
    def __init__(self, matcher):
        super().__init__()
        self.matcher = matcher
        self.found: list[cst.CSTNode] = []


class EditError(LookupError):
    """The anchor an edit needs is not in the file."""


def code_of(node: cst.CSTNode) -> str:
    return _RENDER.code_for_node(node).strip()


def statements(code: str) -> list[cst.BaseStatement]:
    return list(cst.parse_module(code.strip() + "\n").body)


def expression(code: str) -> cst.BaseExpression:
    return cst.parse_expression(code)


def dotted(name: str) -> m.BaseMatcherNode:
    """A matcher for the expression `a.b.c` (a Name, or Attributes over a Name)."""
    *head, last = name.split(".")
    if not head:
        return m.Name(last)
    return m.Attribute(value=dotted(".".join(head)), attr=m.Name(last))


def is_name(node: cst.CSTNode, name: str) -> bool:
    """`node` is the expression `name` (e.g. "self.wq", "F.silu")."""
    return m.matches(node, dotted(name))


def _first_small(statement: cst.CSTNode) -> cst.CSTNode | None:
    if isinstance(statement, cst.SimpleStatementLine) and statement.body:
        return statement.body[0]
    return None


def assigns(*targets: str, calling: str | None = None) -> Callable[[cst.CSTNode], bool]:
    """Anchor: a statement assigning one of `targets` (`x = ...`, `x: T = ...`), optionally
    only when the assigned value calls `calling` (`probs = torch.softmax(...).to(...)`)."""
    target = m.OneOf(*(dotted(t) for t in targets)) if len(targets) > 1 else dotted(targets[0])
    assign = m.Assign(targets=[m.AssignTarget(target=target)]) | m.AnnAssign(target=target)

    def matches(statement: cst.CSTNode) -> bool:
        node = _first_small(statement)
        if not m.matches(node, assign):
            return False
        return calling is None or bool(m.findall(node.value, m.Call(func=dotted(calling))))

    return matches


def sets(target: str) -> Callable[[cst.CSTNode], bool]:
    """Anchor: a statement that assigns `target` anywhere inside it (an `if` whose branch
    builds `self.feed_forward` counts)."""
    return lambda statement: bool(m.findall(statement, m.AssignTarget(target=dotted(target))))


def returns(name: str) -> Callable[[cst.CSTNode], bool]:
    """Anchor: a `return` statement whose value reads `name` (`return weights.to(...), i`)."""

    def matches(statement: cst.CSTNode) -> bool:
        node = _first_small(statement)
        return m.matches(node, m.Return()) and bool(m.findall(node, dotted(name)))

    return matches


def calls(name: str) -> Callable[[cst.CSTNode], bool]:
    """Anchor: a statement that calls `name` anywhere inside it."""
    return lambda statement: bool(m.findall(statement, m.Call(func=dotted(name))))


def uses(name: str) -> Callable[[cst.CSTNode], bool]:
    """Anchor: a statement that reads the name or attribute `name` anywhere inside it."""
    return lambda statement: bool(m.findall(statement, dotted(name)))


def is_statement(code: str) -> Callable[[cst.CSTNode], bool]:
    """Anchor: the statement `code`, compared as syntax trees (layout and comments aside)."""
    wanted = ast.dump(ast.parse(code.strip()))

    def matches(statement: cst.CSTNode) -> bool:
        try:
            return ast.dump(ast.parse(code_of(statement))) == wanted
        except SyntaxError:  # a compound statement's header alone does not parse
            return False

    return matches


SUPER_INIT = m.Call(func=m.Attribute(value=m.Call(func=m.Name("super")), attr=m.Name("__init__")))


def calls_super_init(statement: cst.CSTNode) -> bool:
    """Anchor: `super().__init__(...)`."""
    return m.matches(_first_small(statement), m.Expr(value=SUPER_INIT))


class ScopedTransformer(cst.CSTTransformer):
    """Base for expression-level edits limited to `class_name.method`.

    `method=None` means anywhere in the class, `class_name=None` anywhere in the module.
    Subclasses test `self.in_scope()` (or the `inside` property) and count `self.hits`.
    """

    def __init__(self, class_name: str | None, method: str | None):
        super().__init__()
        self.class_name, self.method = class_name, method
        self._stack: list[str] = []
        self.hits = 0

    def visit_ClassDef(self, node):
        self._stack.append(node.name.value)

    def leave_ClassDef(self, original, updated):
        self._stack.pop()
        return updated

    def visit_FunctionDef(self, node):
        self._stack.append(node.name.value)

    def leave_FunctionDef(self, original, updated):
        self._stack.pop()
        return updated

    def in_scope(self) -> bool:
        if self.class_name is None:
            return True
        if self.class_name not in self._stack:
            return False
        if self.method is None:
            return True
        at = self._stack.index(self.class_name)
        return self._stack[at + 1 : at + 2] == [self.method]

    @property
    def inside(self) -> bool:
        return self.in_scope()


class _InMethod(cst.CSTTransformer):
    """Base: only act inside `class_name.method` (or the class body when method is None)."""

    def __init__(self, class_name: str, method: str | None):
        super().__init__()
        self.class_name, self.method = class_name, method
        self._class_depth = 0
        self._in_method = False
        self.hits = 0

    def visit_ClassDef(self, node):
        if node.name.value == self.class_name:
            self._class_depth += 1
        return True

    def leave_ClassDef(self, original, updated):
        if original.name.value == self.class_name:
            self._class_depth -= 1
            if self.method is None:
                updated = self.edit_body(updated)
        return updated

    def visit_FunctionDef(self, node):
        if self._class_depth and node.name.value == self.method:
            self._in_method = True
        return True

    def leave_FunctionDef(self, original, updated):
        if self._in_method and original.name.value == self.method:
            self._in_method = False
            return self.edit_body(updated)
        return updated

    def edit_body(self, node):
        body = list(node.body.body)
        new_body = self.edit_statements(body)
        return node.with_changes(body=node.body.with_changes(body=new_body))

    def edit_statements(self, body: list) -> list:
        raise NotImplementedError


class InsertStatements(_InMethod):
    """Insert `code` after (or before) the first statement matching `anchor`."""

    def __init__(self, class_name, method, anchor, code: str, before: bool = False):
        super().__init__(class_name, method)
        self.anchor, self.new, self.before = anchor, statements(code), before

    def edit_statements(self, body):
        for index, statement in enumerate(body):
            if self.anchor(statement):
                self.hits += 1
                at = index if self.before else index + 1
                return body[:at] + self.new + body[at:]
        return body


class ReplaceStatements(_InMethod):
    """Replace every statement matching `anchor` with `code` (empty code deletes it)."""

    def __init__(self, class_name, method, anchor, code: str):
        super().__init__(class_name, method)
        self.anchor, self.new = anchor, statements(code) if code.strip() else []

    def edit_statements(self, body):
        result = []
        for statement in body:
            if self.anchor(statement):
                self.hits += 1
                result.extend(self.new)
            else:
                result.append(statement)
        return result


class SetKeyword(ScopedTransformer):
    """Set `keyword=value` on calls assigned to `self.<attr>` for attr in `attrs`,
    inside `class_name.method`."""

    def __init__(self, class_name: str, method: str, attrs: set[str], keyword: str, value: str):
        super().__init__(class_name, method)
        self.attrs, self.keyword, self.value = attrs, keyword, expression(value)

    def leave_Assign(self, original, updated):
        if not self.in_scope():
            return updated
        target = updated.targets[0].target
        if not (
            isinstance(target, cst.Attribute)
            and is_name(target.value, "self")
            and target.attr.value in self.attrs
            and isinstance(updated.value, cst.Call)
        ):
            return updated
        self.hits += 1
        return updated.with_changes(value=set_call_keyword(updated.value, self.keyword, self.value))


def set_call_keyword(call: cst.Call, keyword: str, value: cst.BaseExpression) -> cst.Call:
    args = list(call.args)
    for index, arg in enumerate(args):
        if arg.keyword is not None and arg.keyword.value == keyword:
            args[index] = arg.with_changes(value=value)
            return call.with_changes(args=args)
    if args:
        args[-1] = args[-1].with_changes(
            comma=cst.Comma(whitespace_after=cst.SimpleWhitespace(" "))
        )
    args.append(cst.Arg(keyword=cst.Name(keyword), value=value, equal=_EQUAL))
    return call.with_changes(args=args)


_EQUAL = cst.AssignEqual(
    whitespace_before=cst.SimpleWhitespace(""), whitespace_after=cst.SimpleWhitespace("")
)


class EditDict(cst.CSTTransformer):
    """Edit the dict literal assigned to `name` (e.g. the adapter's `from_hf_map`).

    `rewrite(key, value) -> list[(key, value)]` maps each entry (as source strings) to its
    replacement entries: [] deletes, several insert. `append` adds entries at the end. An
    entry that is rewritten keeps its own comma and the comments around it; an entry that
    is deleted hands its comma (the line break to what follows) to the entry before it.
    """

    def __init__(self, name: str, rewrite=None, append: list[tuple[str, str]] | None = None):
        super().__init__()
        self.name, self.rewrite, self.append = name, rewrite, append or []
        self.hits = 0

    def leave_Assign(self, original, updated):
        target = updated.targets[0].target
        if not (isinstance(target, cst.Name) and target.value == self.name):
            return updated
        if not isinstance(updated.value, cst.Dict):
            return updated
        self.hits += 1
        old = list(updated.value.elements)
        plain_comma = _plain_comma(old[0].comma if len(old) > 1 else _INNER_COMMA)
        elements: list[cst.DictElement] = []
        for element in old:
            key, value = code_of(element.key), code_of(element.value)
            replacements = [(key, value)] if self.rewrite is None else self.rewrite(key, value)
            if not replacements:
                if elements:
                    elements[-1] = elements[-1].with_changes(comma=element.comma)
                continue
            first_key, first_value = replacements[0]
            if (first_key, first_value) != (key, value):
                element = element.with_changes(
                    key=expression(first_key), value=expression(first_value)
                )
            added = [_element(old[0], k, v, plain_comma) for k, v in replacements[1:]]
            if added:
                added[-1] = added[-1].with_changes(comma=element.comma)
                element = element.with_changes(comma=plain_comma)
            elements += [element, *added]
        for key, value in self.append:
            if elements:
                elements[-1] = elements[-1].with_changes(comma=plain_comma)
            last_comma = old[-1].comma if old else cst.MaybeSentinel.DEFAULT
            elements.append(_element(old[0] if old else None, key, value, last_comma))
        return updated.with_changes(value=updated.value.with_changes(elements=elements))


_INNER_COMMA = cst.Comma(whitespace_after=cst.SimpleWhitespace(" "))


def _plain_comma(comma):
    """A comma with the same line break and indent as `comma`, minus any comment lines."""
    if not isinstance(comma, cst.Comma):
        return _INNER_COMMA
    after = comma.whitespace_after
    if isinstance(after, cst.ParenthesizedWhitespace):
        after = after.with_changes(first_line=cst.TrailingWhitespace(), empty_lines=[])
    return comma.with_changes(whitespace_after=after)


def _element(template, key: str, value: str, comma) -> cst.DictElement:
    element = cst.DictElement(expression(key), expression(value), comma=comma)
    if template is not None:
        element = element.with_changes(
            whitespace_before_colon=template.whitespace_before_colon,
            whitespace_after_colon=template.whitespace_after_colon,
        )
    return element


def field_name(statement) -> str | None:
    """The name a dataclass field line `name: T = default` declares, else None."""
    if (
        isinstance(statement, cst.SimpleStatementLine)
        and isinstance(statement.body[0], cst.AnnAssign)
        and isinstance(statement.body[0].target, cst.Name)
    ):
        return statement.body[0].target.value
    return None


def run(package, filename: str, transformer, *, required: bool = True) -> int:
    """Apply `transformer` to one file; raise EditError if it matched nothing."""
    package.edit(filename, transformer)
    if required and not transformer.hits:
        raise EditError(f"{type(transformer).__name__} found no anchor in {filename}")
    return transformer.hits


def add_import(package, filename: str, module: str, name: str) -> None:
    """`from module import name` in `filename`, before its first relative import (no-op when
    it is already imported); tidy sorts the block."""
    run(package, filename, _AddImport(module, name), required=False)


def _imports(module: str, name: str) -> m.BaseMatcherNode:
    return m.SimpleStatementLine(
        body=[
            m.ImportFrom(
                module=dotted(module),
                names=[m.ZeroOrMore(), m.ImportAlias(name=m.Name(name)), m.ZeroOrMore()],
            )
        ]
    )


class _AddImport(cst.CSTTransformer):
    def __init__(self, module: str, name: str):
        super().__init__()
        self.module, self.name, self.hits = module, name, 0

    def leave_Module(self, original, updated):
        body = list(updated.body)
        if any(m.matches(s, _imports(self.module, self.name)) for s in body):
            return updated
        relative = m.SimpleStatementLine(body=[m.ImportFrom(relative=[m.AtLeastN(n=1)])])
        at = next((i for i, s in enumerate(body) if m.matches(s, relative)), None)
        if at is None:  # after the last import
            imports = m.SimpleStatementLine(body=[m.ImportFrom() | m.Import()])
            at = max((i + 1 for i, s in enumerate(body) if m.matches(s, imports)), default=0)
        self.hits += 1
        new = statements(f"from {self.module} import {self.name}")
        return updated.with_changes(body=body[:at] + new + body[at:])
