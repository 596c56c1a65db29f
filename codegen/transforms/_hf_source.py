"""Reading the target's HF modeling file by its syntax tree (no Transform here).

The scale transforms (embedding, residual, logits) need the one thing `Features` does not
carry: which config field a multiplier is read from. They find it in the HF source as nodes
(libcst matchers, line positions from metadata), never by patterns over its text, so a
line wrapped, spaced or commented otherwise reads the same.
"""

from __future__ import annotations

import ast
import functools
from pathlib import Path

import libcst as cst
import libcst.matchers as m
from libcst.metadata import MetadataWrapper, PositionProvider

from codegen.transforms.edits import EditError, code_of, dotted, findall

# `config.<field>` or `self.config.<field>`
CONFIG_READ = m.Attribute(value=m.Name("config") | dotted("self.config"), attr=m.Name())


def hf_source(features) -> str:
    """The text of the target's HF modeling file (from `features.source.modeling`)."""
    path = getattr(getattr(features, "source", None), "modeling", "") if features else ""
    if not path or not Path(path).is_file():
        raise EditError("no HF modeling source in the features; pass the config field explicitly")
    return Path(path).read_text()


@functools.lru_cache(maxsize=8)
def parsed(source: str) -> cst.Module:
    """`source` as a libcst module (the same file is read by several rules of one plan)."""
    return cst.parse_module(source)


def dotted_chain(node: cst.BaseExpression) -> list[str] | None:
    """`a.b.c` as ["a", "b", "c"]: a Name, or Attributes over a Name, unparenthesised;
    None for any other expression."""
    names: list[str] = []
    while isinstance(node, cst.Attribute) and not node.lpar:
        names.append(node.attr.value)
        node = node.value
    if not isinstance(node, cst.Name) or node.lpar:
        return None
    return [node.value, *reversed(names)]


def leading_chain(node: cst.BaseExpression) -> list[str] | None:
    """The dotted name an operand starts with: `self.scale.to(x.dtype)` -> self.scale.to,
    `config.x[0]` -> config.x; None when it starts with anything else (a parenthesis, a
    number, a call of a call's result)."""
    return _leading(node, through_operations=False)


def _leading(node: cst.BaseExpression, *, through_operations: bool) -> list[str] | None:
    """The dotted name `node` starts with, through calls, subscripts and attributes (and,
    `through_operations`, the left operand of an operation and the body of `a if c else b`)."""
    while not node.lpar:
        chain = dotted_chain(node)
        if chain is not None:
            return chain
        if through_operations and isinstance(
            node, cst.BinaryOperation | cst.BooleanOperation | cst.Comparison
        ):
            node = node.left
        elif through_operations and isinstance(node, cst.IfExp):
            node = node.body
        elif isinstance(node, cst.Call):
            node = node.func
        elif isinstance(node, cst.Subscript | cst.Attribute):
            node = node.value
        else:
            return None
    return None


def config_field(node: cst.BaseExpression) -> str | None:
    """`<field>` of the expression `config.<field>` / `self.config.<field>`, else None."""
    return node.attr.value if m.matches(node, CONFIG_READ) and not node.lpar else None


def leading_config_field(node: cst.BaseExpression) -> str | None:
    """The config field an expression starts with: `config.a * 2`, `config.a if c else b`,
    `config.a.b` -> "a"; None when it starts otherwise."""
    chain = _leading(node, through_operations=True)
    return chain[1] if chain and len(chain) > 1 and chain[0] == "config" else None


def assigned_values(source: str, attr: str) -> list[cst.BaseExpression]:
    """The values assigned to `self.<attr>` in the HF source, in file order."""
    target = m.AssignTarget(target=dotted(f"self.{attr}"))
    found = findall(parsed(source), m.Assign(targets=[m.ZeroOrMore(), target, m.ZeroOrMore()]))
    return [assign.value for assign in found]


def hf_config_read(source: str, expression_code: str) -> str | None:
    """The config field behind `self.x` / `self.config.x` / `config.x` in HF source.

    `self.x` is followed to its first `self.x = config.<field>...` assignment in the file.
    """
    try:
        node = cst.parse_expression(expression_code)
    except cst.ParserSyntaxError:
        return None
    field = config_field(node)
    if field is not None:
        return field
    chain = dotted_chain(node)
    if chain is None or len(chain) != 2 or chain[0] != "self":
        return None
    for value in assigned_values(source, chain[1]):
        field = leading_config_field(value)
        if field is not None:
            return field
    return None


def evidence_line_number(features, key: str) -> int:
    """The line `features.evidence[key]` ("modeling_x.py:123 ...") points at."""
    evidence = (getattr(features, "evidence", None) or {}).get(key, "")
    where = evidence.split(" ", 1)[0]
    filename, _, line = where.rpartition(":")
    if not (filename.endswith(".py") and line.isdigit()):
        raise EditError(f"no source line in the evidence for {key}; pass the config field")
    return int(line)


def evidence_line(features, key: str) -> str:
    """The HF source line that `features.evidence[key]` points at (for messages)."""
    lines = hf_source(features).splitlines()
    return lines[evidence_line_number(features, key) - 1].strip()


@functools.lru_cache(maxsize=8)
def _positions(source: str):
    """The parsed source and each node's position in it."""
    wrapper = MetadataWrapper(parsed(source), unsafe_skip_copy=True)
    return wrapper.module, wrapper.resolve(PositionProvider)


def on_evidence_line(features, key: str, matcher) -> list[cst.CSTNode]:
    """The nodes matching `matcher` (a matcher of node types, see `edits.findall`) that
    start on the HF source line the evidence for `key` points at, in the order they start."""
    line = evidence_line_number(features, key)
    module, positions = _positions(hf_source(features))
    found = [node for node in findall(module, matcher) if positions[node].start.line == line]
    return sorted(found, key=lambda node: positions[node].start.column)


_OPERATORS = {"*": m.Multiply(), "/": m.Divide()}


def scaled_operand_at(features, key: str, operators: str = "*/") -> tuple[str, str] | None:
    """(operator, right operand) of the first `a * b` / `a / b` on the HF source line the
    evidence for `key` points at whose right operand starts with a dotted name under `self`
    or `config` (`x * self.embed_scale.to(...)` -> ("*", "self.embed_scale.to"))."""
    kinds = m.OneOf(*(_OPERATORS[op] for op in operators))
    _, positions = _positions(hf_source(features))
    found = []
    for node in on_evidence_line(features, key, m.BinaryOperation(operator=kinds)):
        chain = leading_chain(node.right)
        if chain and chain[0] in ("self", "config") and len(chain) > 1:
            op = "*" if isinstance(node.operator, cst.Multiply) else "/"
            found.append((positions[node.right].start.column, op, ".".join(chain)))
    if not found:
        return None
    _, op, operand = min(found)
    return op, operand


def with_hf_config(node: cst.BaseExpression) -> str:
    """An HF expression over the config as `from_hf_config` reads it: `config.x` and
    `self.config.x` read `hf_config.x`, `math.sqrt` is `sqrt`; one line, without the
    comments or line breaks the HF source wraps it in."""
    return ast.unparse(ast.parse(code_of(node.visit(_ToHfConfig())).strip(), mode="eval"))


class _ToHfConfig(cst.CSTTransformer):
    def leave_Attribute(self, original, updated):
        if m.matches(updated, dotted("self.config") | dotted("math.sqrt")):
            return cst.Name("hf_config" if updated.attr.value == "config" else "sqrt")
        if m.matches(updated.value, m.Name("config")):
            return updated.with_changes(value=cst.Name("hf_config"))
        return updated
