"""ModelArgs defaults become the target's: what `from_hf_config` gives for its config class.

A reference's ModelArgs defaults are its own checkpoint's sizes (llama's 4096 / 128256).
In a generated package they would describe another model, so each field mapped in
`from_hf_config` takes the value that mapping produces for the target's config defaults.
The mapping is read from the package itself (its `cls(...)` keywords, after every other
transform), evaluated over the plain config values: no transformers, no torch. A field whose
mapping cannot be evaluated that way keeps its default; so does a field whose value is no
literal (`RopeScaling` only takes its `theta`), or None where the field's type has no None.
"""

from __future__ import annotations

import math
from types import SimpleNamespace
from typing import Any

import libcst as cst
import libcst.matchers as m

from codegen.config_checks import padding_row
from codegen.transforms.base import Transform
from codegen.transforms.edits import code_of, expression, findall

# what a mapping may call while it is evaluated (all pure)
_BUILTINS = {
    f.__name__: f
    for f in (abs, all, any, bool, dict, float, getattr, int, isinstance, len, list, max, min)
    + (range, round, set, sorted, str, sum, tuple, hasattr)
}
_CLS_CALL = m.Return(value=m.Call(func=m.Name("cls")))


class SetArgDefaults(Transform):
    """Each mapped ModelArgs default becomes `from_hf_config(<config class defaults>)`'s."""

    name = "set_arg_defaults"

    def apply(self, package, features=None, *, config: dict) -> None:
        module = package.files["args.py"]
        mapping = _mapping(module)
        if mapping is None:
            return
        values = evaluate(mapping, config)
        package.files["args.py"] = module.visit(_Defaults(values))


def _mapping(module: cst.Module):
    """(the statements of from_hf_config before its return, the cls(...) keywords)."""
    for fn in findall(module, m.FunctionDef(name=m.Name("from_hf_config"))):
        body = list(fn.body.body)
        for index, statement in enumerate(body):
            found = m.findall(statement, _CLS_CALL)
            if found:
                return body[:index], {
                    a.keyword.value: a.value for a in found[0].value.args if a.keyword
                }
    return None


def evaluate(mapping, config: dict) -> dict[str, Any]:
    """field -> the value its mapping gives for `config`; fields that fail are left out."""
    prelude, keywords = mapping
    scope: dict[str, Any] = {
        "__builtins__": _BUILTINS,
        "hf_config": _namespace(config),
        "math": math,
        "RopeScaling": _Rope,
        "padding_row": padding_row,  # the package's own config check (pure)
    }
    for statement in prelude:  # plain local assignments feed the keywords
        if m.matches(
            statement, m.SimpleStatementLine(body=[m.Assign(targets=[m.AssignTarget(m.Name())])])
        ):
            assign = statement.body[0]
            try:
                scope[assign.targets[0].target.value] = _eval(assign.value, scope)
            except Exception:  # noqa: BLE001 - an unevaluable local: its users fail below
                continue
    values = {}
    for field, node in keywords.items():
        try:
            values[field] = _eval(node, scope)
        except Exception:  # noqa: BLE001 - the mapping needs more than plain values
            continue
    return values


def _eval(node: cst.BaseExpression, scope: dict):
    source = f"({code_of(node)})"  # a keyword value may span lines
    return eval(compile(source, "<from_hf_config>", "eval"), scope)  # noqa: S307


def _namespace(config: dict):
    plain = {k: v for k, v in config.items() if isinstance(k, str) and k.isidentifier()}
    overrides, layers = plain.get("per_layer_config"), plain.get("num_hidden_layers")
    if isinstance(overrides, dict) and isinstance(layers, int):
        # PreTrainedConfig's per-layer view: layer i's config, the global one with its
        # overrides (config.json spells the layer indices as strings)
        plain["per_layer_config"] = [
            SimpleNamespace(**{**plain, **(overrides.get(i) or overrides.get(str(i)) or {})})
            for i in range(layers)
        ]
    return SimpleNamespace(**plain)


class _Rope:
    """Stands for the house RopeScaling while a mapping is evaluated: its theta only."""

    def __init__(self, theta: float):
        self.theta = theta

    @classmethod
    def from_hf(cls, rope_parameters: dict, *args):
        return cls(rope_parameters["rope_theta"])


class _Defaults(cst.CSTTransformer):
    """Rewrites the defaults of ModelArgs's annotated fields."""

    def __init__(self, values: dict[str, Any]):
        super().__init__()
        self.values = values
        self.depth = 0

    def visit_ClassDef(self, node):
        self.depth += node.name.value == "ModelArgs"

    def leave_ClassDef(self, original, updated):
        self.depth -= original.name.value == "ModelArgs"
        return updated

    def leave_AnnAssign(self, original, updated):
        if not self.depth or not m.matches(updated.target, m.Name()):
            return updated
        field = updated.target.value
        if field not in self.values or updated.value is None:
            return updated
        value = self.values[field]
        if value is None and not m.findall(updated.annotation, m.Name("None")):
            return updated  # the class leaves it unset (deepseek_v2's top-k): no default to take
        if isinstance(value, _Rope):
            return updated.with_changes(value=updated.value.visit(_Theta(value.theta)))
        literal = _literal(value, tuple_default=m.matches(updated.value, m.Tuple()))
        return updated if literal is None else updated.with_changes(value=expression(literal))


class _Theta(cst.CSTTransformer):
    """`RopeScaling(theta=...)` inside a default factory."""

    def __init__(self, theta: float):
        super().__init__()
        self.theta = theta

    def leave_Arg(self, original, updated):
        if m.matches(updated, m.Arg(keyword=m.Name("theta"))) and _literal(self.theta):
            return updated.with_changes(value=expression(_literal(self.theta)))
        return updated


def _literal(value, tuple_default: bool = False) -> str | None:
    """Python source for a plain value, or None (a list only where the default is a tuple)."""
    if isinstance(value, list) and tuple_default:
        value = tuple(value)
    if value is None or isinstance(value, bool | int | str):
        return repr(value)
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else None
    if isinstance(value, tuple) and all(_literal(v) is not None for v in value):
        return _repeated(value)
    return None


def _repeated(value: tuple) -> str:
    """A tuple as its shortest repeating unit times a count, as one writes it by hand:
    `("full_attention",) * 30`, `("sliding_attention", "full_attention") * 13`."""
    for period in range(1, len(value) // 2 + 1):
        count, rest = divmod(len(value), period)
        if not rest and value == value[:period] * count:
            return f"{value[:period]!r} * {count}"
    return repr(value)
