"""The dense FFN's width as HF computes it, where the MLP does not take it from config as is.

Some MLPs size their projections with a local computed in `__init__` (lfm2: two thirds of
`intermediate_size`, times a multiplier, rounded up to a multiple, each step behind a config
switch). A package that reads `intermediate_size` builds other shapes. The statements that
compute the local are restated as one expression over `hf_config` (branches become
conditional expressions) and `from_hf_config` passes that as the FFN width. Only arithmetic
over config fields and numbers is restated; anything else (a loop, a call other than
int/float/round/min/max, a value from outside `__init__`) leaves the package unchanged.
"""

from __future__ import annotations

import re

import libcst as cst
import libcst.matchers as m
from libcst.metadata import MetadataWrapper, PositionProvider

from codegen.transforms._rope_edits import hf_source
from codegen.transforms.base import Transform
from codegen.transforms.edits import expression, run

_KEYWORD = "hidden_dim"  # the house FFN width ModelArgs field
_CALLS = frozenset({"int", "float", "round", "min", "max"})
_CONSTANTS = frozenset({"None", "True", "False"})
_LINEAR = m.Call(func=m.Name("Linear") | m.Attribute(attr=m.Name("Linear")))
_ATOMS = (cst.Name, cst.Attribute, cst.Integer, cst.Float, cst.Call)


class Unsupported(Exception):
    """A statement or value the restatement does not cover."""


class ComputedFfnWidth(Transform):
    """`hidden_dim=<HF's width expression over hf_config>` in `from_hf_config`, where the HF
    MLP builds its first projection with a width computed in `__init__` (`width` given, or
    restated from the MLP class the `ffn.kind` evidence points into). No-op otherwise."""

    name = "computed_ffn_width"

    def apply(self, package, features=None, *, width: str | None = None) -> None:
        if width is None:
            width = detect(features)
        if width is None:
            return
        run(package, "args.py", _SetKeyword(_KEYWORD, expression(width)), required=False)


def detect(features) -> str | None:
    """HF's FFN width restated over `hf_config`, or None (read from config as is, or not
    restatable)."""
    evidence = (getattr(features, "evidence", None) or {}).get("ffn.kind", "")
    found = re.match(r"[\w.]+\.py:(\d+)", evidence)
    if not found:
        return None
    try:
        source = hf_source(features)
    except Exception:  # no modeling file beside the features: nothing to restate
        return None
    return restate_width(source, int(found.group(1)))


def restate_width(source: str, line: int) -> str | None:
    """The out_features of the first Linear built in `__init__` of the class holding `line`,
    restated over `hf_config` when it is a local computed there; else None."""
    wrapper = MetadataWrapper(cst.parse_module(source))
    positions = wrapper.resolve(PositionProvider)
    classes = [
        node
        for node in m.findall(wrapper, m.ClassDef())
        if positions[node].start.line <= line <= positions[node].end.line
    ]
    if not classes:
        return None
    init = next((f for f in m.findall(classes[-1], m.FunctionDef(name=m.Name("__init__")))), None)
    params = [p.name.value for p in init.params.params] if init is not None else []
    if len(params) < 2:
        return None
    try:
        width = _Restater(params[1]).width(init.body.body)
    except Unsupported:
        return None
    return None if width is None else cst.Module([]).code_for_node(width)


class _Restater:
    def __init__(self, config: str):
        self.config = config

    def width(self, body) -> cst.BaseExpression | None:
        env: dict[str, cst.BaseExpression] = {}
        for statement in body:
            linear = m.findall(statement, _LINEAR)
            if linear:
                out = _out_features(linear[0])
                if not isinstance(out, cst.Name) or out.value not in env:
                    return None  # a config read as is, an attribute, a parameter
                return env[out.value]
            self._execute(statement, env)
        return None

    def _execute(self, statement, env: dict) -> None:
        if isinstance(statement, cst.If):
            self._branch(statement, env)
        elif isinstance(statement, cst.SimpleStatementLine):
            for small in statement.body:
                self._assign(small, env)
        elif _assigns_a_local(statement):
            raise Unsupported(type(statement).__name__)

    def _assign(self, small, env: dict) -> None:
        if isinstance(small, cst.Assign):
            names = [t.target for t in small.targets]
            if all(isinstance(n, cst.Name) for n in names):
                value = self._value(small.value, env)
                for name in names:
                    env[name.value] = value
            elif any(_assigns_a_local(t.target) for t in small.targets):
                raise Unsupported("unpacking")
        elif isinstance(small, cst.AugAssign) and isinstance(small.target, cst.Name):
            name = small.target.value
            if name not in env:
                raise Unsupported(name)
            operator = getattr(cst, type(small.operator).__name__.removesuffix("Assign"))()
            env[name] = _paren(
                cst.BinaryOperation(_paren(env[name]), operator, self._value(small.value, env))
            )

    def _branch(self, statement: cst.If, env: dict) -> None:
        test = self._value(statement.test, env)
        taken, other = dict(env), dict(env)
        for inner in statement.body.body:
            self._execute(inner, taken)
        orelse = statement.orelse
        if isinstance(orelse, cst.If):
            self._branch(orelse, other)
        elif isinstance(orelse, cst.Else):
            for inner in orelse.body.body:
                self._execute(inner, other)
        for name in set(taken) | set(other):
            if name not in taken or name not in other:
                taken.pop(name, None)  # bound on one side only: unusable after the if
                env.pop(name, None)
                continue
            if taken[name] is other[name]:
                env[name] = taken[name]
            else:
                env[name] = _paren(cst.IfExp(test=test, body=taken[name], orelse=other[name]))

    def _value(self, node: cst.BaseExpression, env: dict) -> cst.BaseExpression:
        restated = node.visit(_Substitute(self.config, env))
        _check(restated)
        return restated if isinstance(restated, _ATOMS) else _paren(restated)


class _Substitute(cst.CSTTransformer):
    """Locals become their values, the config parameter becomes `hf_config`."""

    def __init__(self, config: str, env: dict):
        super().__init__()
        self.config, self.env = config, env

    def leave_Attribute(self, original, updated):
        return updated.with_changes(attr=original.attr)  # a field name is no local

    def leave_Name(self, original, updated):
        if updated.value in self.env:
            return self.env[updated.value]
        if updated.value == self.config:
            return updated.with_changes(value="hf_config")
        return updated


def _check(node: cst.BaseExpression) -> None:
    """Only numbers, `hf_config.<field>`, arithmetic, comparisons, conditionals and the
    numeric builtins: what is restated into a generated package can do nothing else."""
    for child in _walk(node):
        if isinstance(child, cst.Attribute):
            if not (isinstance(child.value, cst.Name) and child.value.value == "hf_config"):
                raise Unsupported(cst.Module([]).code_for_node(child))
        elif isinstance(child, cst.Call):
            if not (isinstance(child.func, cst.Name) and child.func.value in _CALLS):
                raise Unsupported("call")
        elif isinstance(child, cst.Name):
            allowed = {"hf_config"} | _CALLS | _CONSTANTS
            if child.value not in allowed:
                raise Unsupported(child.value)
        elif not isinstance(child, _ALLOWED):
            raise Unsupported(type(child).__name__)


_ALLOWED = (
    cst.Integer,
    cst.Float,
    cst.BinaryOperation,
    cst.UnaryOperation,
    cst.BooleanOperation,
    cst.Comparison,
    cst.ComparisonTarget,
    cst.IfExp,
    cst.Arg,
    cst.BaseBinaryOp,
    cst.BaseUnaryOp,
    cst.BaseBooleanOp,
    cst.BaseCompOp,
    cst.LeftParen,
    cst.RightParen,
    cst.BaseParenthesizableWhitespace,
    cst.TrailingWhitespace,
    cst.EmptyLine,
    cst.Comment,
    cst.Newline,
    cst.Comma,
)


def _walk(node: cst.CSTNode):
    yield node
    if isinstance(node, cst.Attribute):
        yield node.value  # the field name is no variable
        return
    if isinstance(node, cst.Call):
        yield node.func
        for arg in node.args:
            if arg.keyword is not None or arg.star:
                raise Unsupported("keyword or starred argument")
            yield from _walk(arg.value)
        return
    for child in node.children:
        yield from _walk(child)


def _assigns_a_local(node) -> bool:
    return bool(m.findall(node, m.AssignTarget(target=m.Name()) | m.For() | m.With()))


def _out_features(call: cst.Call):
    positional = [a.value for a in call.args if a.keyword is None]
    keyword = [a.value for a in call.args if a.keyword and a.keyword.value == "out_features"]
    return keyword[0] if keyword else positional[1] if len(positional) > 1 else None


def _paren(node: cst.BaseExpression) -> cst.BaseExpression:
    if node.lpar:
        return node
    return node.with_changes(lpar=[cst.LeftParen()], rpar=[cst.RightParen()])


class _SetKeyword(cst.CSTTransformer):
    """`<keyword>=...` in the `cls(...)` call of `from_hf_config` gets `value`."""

    def __init__(self, keyword: str, value: cst.BaseExpression):
        super().__init__()
        self.keyword, self.value = keyword, value
        self.hits = 0
        self.inside = 0

    def visit_FunctionDef(self, node):
        if node.name.value == "from_hf_config":
            self.inside += 1

    def leave_FunctionDef(self, original, updated):
        if original.name.value == "from_hf_config":
            self.inside -= 1
        return updated

    def leave_Arg(self, original, updated):
        if self.inside and updated.keyword is not None and updated.keyword.value == self.keyword:
            self.hits += 1
            return updated.with_changes(value=self.value)
        return updated
