"""The dense FFN's width as HF computes it, where the MLP does not take it from config as is.

Some MLPs size their projections with a local computed in `__init__` (lfm2: two thirds of
`intermediate_size`, times a multiplier, rounded up to a multiple, each step behind a config
switch), or with a width the decoder layer passes when it builds the MLP (minimax_m3's
`DenseMLP(config, intermediate_size=config.dense_intermediate_size)`, the same class its
MoE block builds as the shared expert with another field). A package that reads
`intermediate_size` builds other shapes. The statements that compute the local are restated
as one expression over `hf_config` (branches become conditional expressions; the MLP's
parameters take the arguments of the decoder layer's one call of it, or their defaults;
a fused gate/up projection `2 * width` gives `width`) and `from_hf_config` passes that as
the FFN width. Only arithmetic over config fields and numbers is restated; anything else (a
loop, a call other than int/float/round/min/max, a value from outside `__init__`) leaves the
package unchanged.
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
    evidence = getattr(features, "evidence", None) or {}
    found = _line(evidence.get("ffn.kind", ""))
    if found is None:
        return None
    try:
        source = hf_source(features)
    except Exception:  # no modeling file beside the features: nothing to restate
        return None
    # the decoder layer: the class whose forward places the norms around its sublayers
    layer = _line(evidence.get("norm.placement", ""))
    fused = getattr(getattr(features, "ffn", None), "fused_gate_up", False) is True
    return restate_width(source, found, layer_line=layer, fused=fused)


def _line(evidence: str) -> int | None:
    found = re.match(r"[\w.]+\.py:(\d+)", evidence)
    return int(found.group(1)) if found else None


def restate_width(
    source: str, line: int, layer_line: int | None = None, fused: bool = False
) -> str | None:
    """The out_features of the first Linear built in `__init__` of the class holding `line`
    (half of it for a `fused` gate/up), restated over `hf_config` when it is a local computed
    there; else None. The MLP's parameters take the arguments of the one call of it in the
    `__init__` of the class holding `layer_line` (the decoder layer), or their defaults."""
    wrapper = MetadataWrapper(cst.parse_module(source))
    positions = wrapper.resolve(PositionProvider)
    mlp, layer = (
        _innermost_class(wrapper, positions, at) if at is not None else None
        for at in (line, layer_line)
    )
    init = _init(mlp)
    params = list(init.params.params) if init is not None else []
    if len(params) < 2:
        return None
    config = _config_param(params)
    if layer is not mlp and not _builds(_init(layer), mlp.name.value):
        layer = _builder(wrapper, mlp) or layer  # gpt_neo's block, not its attention wrapper
    try:
        bound = _bindings(params, _init(layer), mlp.name.value, config) if layer is not mlp else {}
        width = _Restater(config, fused).width(init.body.body, bound)
    except Unsupported:
        return None
    return None if width is None else cst.Module([]).code_for_node(_simplify(width))


def _innermost_class(wrapper, positions, line: int) -> cst.ClassDef | None:
    classes = [
        node
        for node in m.findall(wrapper, m.ClassDef())
        if positions[node].start.line <= line <= positions[node].end.line
    ]
    return classes[-1] if classes else None


def _init(cls: cst.ClassDef | None) -> cst.FunctionDef | None:
    if cls is None:
        return None
    return next(iter(m.findall(cls, m.FunctionDef(name=m.Name("__init__")))), None)


def _config_param(params) -> str:
    """The `__init__` parameter holding the config: one named `config`, else the first after
    self (gpt_neo's MLP takes `(intermediate_size, config)`)."""
    names = [p.name.value for p in params[1:]]
    return "config" if "config" in names else names[0]


def _calls_of(init: cst.FunctionDef | None, name: str) -> list[cst.Call]:
    if init is None:
        return []
    return list(m.findall(init, m.Call(func=m.Name(name) | m.Attribute(attr=m.Name(name)))))


def _builds(init: cst.FunctionDef | None, name: str) -> bool:
    return len(_calls_of(init, name)) == 1


def _builder(wrapper, mlp: cst.ClassDef) -> cst.ClassDef | None:
    """The one class whose `__init__` builds the MLP once."""
    found = [
        cls
        for cls in m.findall(wrapper, m.ClassDef())
        if cls is not mlp and _builds(_init(cls), mlp.name.value)
    ]
    return found[0] if len(found) == 1 else None


def _layer_env(layer_init: cst.FunctionDef, call: cst.Call, config: str) -> dict:
    """The layer's `__init__` locals computed before its statement that builds the MLP,
    restated over `hf_config` (gpt_neo's `inner_dim`); a local that cannot be is left out."""
    env: dict[str, cst.BaseExpression] = {}
    restater = _Restater(config)
    for statement in layer_init.body.body:
        if any(found is call for found in m.findall(statement, m.Call())):
            break
        try:
            restater._execute(statement, env)
        except Unsupported:
            continue
    return env


def _bindings(params, layer_init, mlp_name: str, config: str = "") -> dict[str, cst.BaseExpression]:
    """The MLP's parameters (other than self and config) restated over `hf_config`: the
    arguments of the decoder layer's call of the MLP (over the layer's own locals), else
    their defaults. Several calls (or none) bind defaults only; a config argument other
    than the layer's own config stops the restating."""
    config = config or params[1].name.value
    defaults = {
        p.name.value: p.default
        for p in params[1:]
        if p.default is not None and p.name.value != config
    }
    layer_params = list(layer_init.params.params) if layer_init is not None else []
    built = m.Call(func=m.Name(mlp_name) | m.Attribute(attr=m.Name(mlp_name)))
    calls = m.findall(layer_init, built) if len(layer_params) >= 2 else []
    if len(calls) != 1:
        return _restatable(defaults, "")
    layer_config = layer_params[1].name.value
    names = [p.name.value for p in params[1:]]
    passed: dict[str, cst.BaseExpression] = {}
    for index, arg in enumerate(calls[0].args):
        if arg.star or (arg.keyword is None and index >= len(names)):
            raise Unsupported("starred or extra argument")
        name = arg.keyword.value if arg.keyword is not None else names[index]
        if name not in names:
            raise Unsupported(name)
        passed[name] = arg.value
    if not m.matches(passed.pop(config, None), m.Name(layer_config)):
        raise Unsupported("the MLP's config is not the layer's")
    # a passed value that cannot be restated leaves its parameter unbound, not at its default
    kept = {name: value for name, value in defaults.items() if name not in passed}
    env = _layer_env(layer_init, calls[0], layer_config)
    return {**_restatable(kept, ""), **_restatable(passed, layer_config, env)}


def _restatable(
    values: dict, config: str, env: dict | None = None
) -> dict[str, cst.BaseExpression]:
    """The values restated over `hf_config`; one that is not arithmetic over config fields
    is left unbound (a read of it then stops the restating)."""
    out = {}
    for name, value in values.items():
        try:
            out[name] = _checked(value, config, env or {})
        except Unsupported:
            continue
    return out


def _checked(node: cst.BaseExpression, config: str, env: dict) -> cst.BaseExpression:
    restated = node.visit(_Substitute(config, env))
    _check(restated)
    return restated if isinstance(restated, _ATOMS) else _paren(restated)


class _Restater:
    def __init__(self, config: str, fused: bool = False):
        self.config, self.fused = config, fused

    def width(self, body, bound: dict | None = None) -> cst.BaseExpression | None:
        env: dict[str, cst.BaseExpression] = dict(bound or {})
        for statement in body:
            linear = m.findall(statement, _LINEAR)
            if linear:
                out = _out_features(linear[0])
                if self.fused and out is not None and _halved(out) is None:
                    # [gate | up] in one projection of a width of its own (moshi's fc1 of
                    # config.ffn_dim outputs): each half is the FFN's width
                    half = cst.BinaryOperation(
                        self._value(out, env), cst.FloorDivide(), cst.Integer("2")
                    )
                    return half
                if self.fused:  # [gate | up] in one projection of 2 * width outputs
                    out = _halved(out)
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
                try:
                    value = self._value(small.value, env)
                except Unsupported:  # fails only where the width reads it (a flag parameter)
                    for name in names:
                        env.pop(name.value, None)
                    return
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
        return _checked(node, self.config, env)


_DOUBLED = m.BinaryOperation(left=m.Integer("2"), operator=m.Multiply()) | m.BinaryOperation(
    operator=m.Multiply(), right=m.Integer("2")
)


def _halved(out):
    """`width` of a fused projection's `2 * width` (either order, any `width`); None
    otherwise."""
    if not m.matches(out, _DOUBLED):
        return None
    return out.right if isinstance(out.left, cst.Integer) else out.left


def _simplify(node: cst.BaseExpression) -> cst.BaseExpression:
    """Conditionals the bindings decide: `a if c else a` is `a`; `None is None` and
    `None is not None` choose their branch (a parameter left at its default None)."""
    return node.visit(_Fold())


class _Fold(cst.CSTTransformer):
    def leave_IfExp(self, original, updated):
        if updated.body.deep_equals(updated.orelse):
            return _paren(updated.body) if not isinstance(updated.body, _ATOMS) else updated.body
        test = updated.test
        if m.matches(
            test,
            m.Comparison(
                left=m.Name("None"),
                comparisons=[m.ComparisonTarget(m.Is() | m.IsNot(), m.Name("None"))],
            ),
        ):
            taken = isinstance(test.comparisons[0].operator, cst.Is)
            return updated.body if taken else updated.orelse
        return updated


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
