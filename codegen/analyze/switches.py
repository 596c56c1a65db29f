"""Config switches: the config fields a modeling source branches on, found statically.

Why: a package proven on one toy config is right only for that toy. Every config field the HF
code tests (`if config.X`, `self.q_lora_rank is None`, `config.topk_method == "greedy"`,
`bias=config.attention_bias`, `i in config.mlp_only_layers`, ...) selects code the package must
realise or refuse, and verify must run each side. This module finds them by reading the code's
structure with libcst (nothing is imported or executed), for code it has never seen: the config
object is recognised by how it is passed (a `config` parameter or one annotated with a config
class, `self.config`, `self` inside the config class), attributes assigned from it in any method
are followed (`self.use_qk_norm = config.use_qk_norm` then `if self.use_qk_norm:`), and each test
is classified by its shape (`is None`, `==` a string, `<` a number, membership, truthiness).
Fields of a sub-config (MPT's `config.attn_config.clip_qkv`, also through
`self.attn_config = config.attn_config` or a local alias) are switches of their own, named
`attn_config.clip_qkv` (`Switch.container` is the sub-config's attribute).

`WORDING` only names what well-known fields select, for the report; it never decides whether a
field is a switch.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field, replace
from typing import Any

import libcst as cst
import libcst.matchers as m

from codegen.analyze import int_or_list, type_block
from codegen.analyze.constructor_values import constructor_values, decide
from codegen.analyze.source import ClassInfo, Project, SourceFile, constant, dotted, parameters
from codegen.analyze.walk import DEFS, bare_children, nested_def, walk

# test vocabulary of SwitchValue.test
TESTS = (
    "none",  # the field is None (operand 0: or 0, where the source tests a number's truth)
    "set",  # the field is not None
    "true",
    "false",
    "eq",  # == operand (a string)
    "other",  # a string none of the compared ones
    "cmp",  # `op operand` (a number; operand None: compared with a variable such as a layer index)
    "empty",  # a per-layer index list with no entry
    "nonempty",  # ... with some entries
    "layers",  # a per-layer list whose entries are `operand` (a string, or 0) for some layers
    "same",  # equal to the config field named `operand` (OPT's word_embed_proj_dim == hidden_size)
    "differs",  # ... not equal to it (OPT: project_in / project_out between the two widths)
    "scalar",  # an int for every layer (`isinstance(config.moe_topk, int)` holds)
    "layer_values",  # ... or a list, each layer's entry (`config.moe_topk[layer_idx]`)
)

_NEGATE = {"<": ">=", ">=": "<", ">": "<=", "<=": ">", "==": "!=", "!=": "=="}
_FLIP = {"<": ">", ">": "<", "<=": ">=", ">=": "<=", "==": "==", "!=": "!="}
_OPS = {
    cst.LessThan: "<",
    cst.LessThanEqual: "<=",
    cst.GreaterThan: ">",
    cst.GreaterThanEqual: ">=",
    cst.Equal: "==",
    cst.NotEqual: "!=",
}

# Wording only (never detection): what a value of a well-known field selects.
WORDING: dict[tuple[str, str], str] = {
    ("q_lora_rank", "none"): "direct q projection",
    ("q_lora_rank", "set"): "q LoRA (low-rank q projection)",
    ("tie_word_embeddings", "true"): "head tied to the input embedding",
    ("tie_word_embeddings", "false"): "separate head weight",
    ("use_parallel_residual", "true"): "parallel attention and MLP residual",
    ("use_parallel_residual", "false"): "sequential residuals",
    ("clip_qkv", "set"): "q/k/v clamped",
    ("clip_qkv", "none"): "no q/k/v clamp",
    ("sliding_window", "none"): "no sliding window",
    ("sliding_window", "set"): "sliding window",
    ("norm_topk_prob", "true"): "top-k weights renormalised",
    ("norm_topk_prob", "false"): "top-k weights as scored",
    ("qk_layernorm", "true"): "QK-norm",
    ("use_qk_norm", "true"): "QK-norm",
    ("mlp_only_layers", "nonempty"): "dense MLP on the listed layers",
    ("mlp_only_layers", "empty"): "MoE on every layer",
}


@dataclass(frozen=True)
class SwitchValue:
    """One value class a switch distinguishes, with what it selects and where."""

    label: str  # as printed: "None", "set", "True", "'greedy'", "other", "< 1", "empty"...
    test: str  # one of TESTS
    operand: str | int | float | None = None  # eq/layers: the string; cmp: the number
    op: str = ""  # cmp: <, <=, >, >=, ==, !=
    selects: str = ""  # short description of the code this value selects ("" if not told)
    evidence: tuple[str, ...] = ()  # file:line of the branches distinguishing it


@dataclass(frozen=True)
class Switch:
    """A config field the code branches on."""

    field: str  # config attribute, or the key of a dict attribute (see `container`)
    # optional | bool | choice | threshold | per_layer | layer_list | number | int_or_list
    kind: str
    values: tuple[SwitchValue, ...]
    # "rope_parameters" when `field` is a key of that dict attribute; "attn_config" when it
    # is a field of that sub-config (see `sub_config`)
    container: str = ""
    configured: Any = None  # value under the analysed config (config.json or class defaults)
    reads: tuple[str, ...] = ()  # file:line where it is read into an attribute or local

    sub_config: bool = False  # `container` is a sub-config object, not a dict

    @property
    def name(self) -> str:
        return f"{self.container}.{self.field}" if self.container else self.field


# ------------------------------------------------------------------------------------------
# references to config fields
# ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Ref:
    field: str
    key: str = ""  # dict key under `field` (rope_parameters["rope_type"])
    item: bool = False  # one element of a per-layer list (layer_types[layer_idx])
    via: str = ""  # self.attr / local name it came through
    read_at: _Site | str = ""  # file:line of that assignment
    sub: str = ""  # the sub-config attribute holding `field` (attn_config.clip_qkv)
    whole: bool = False  # the ref is the sub-config `field` itself, not one of its values


class _Site:
    """`file:line` of a node, worked out when first printed: most reads are never reported,
    and a line number costs a code generation of the method around the node."""

    __slots__ = ("unit", "node", "text")

    def __init__(self, unit: _Unit, node: cst.CSTNode) -> None:
        self.unit, self.node, self.text = unit, node, None

    def __str__(self) -> str:
        if self.text is None:
            self.text = self.unit.cite(self.node)
        return self.text

    def __format__(self, spec: str) -> str:
        return format(str(self), spec)


@dataclass
class _Unit:
    """One function body to scan, with how to cite its lines."""

    sf: SourceFile
    fn: cst.FunctionDef
    scope: cst.CSTNode  # top-level class or function node (for lazy line numbers)
    cls: ClassInfo | None
    config_self: bool = False  # `self` is the config (methods of the config class)

    def cite(self, node: cst.CSTNode) -> str:
        method = self.fn if self.cls is not None else None
        return f"{self.sf.name}:{self.sf.line(node, self.scope, method)}"

    def site(self, node: cst.CSTNode) -> _Site:
        return _Site(self, node)


@dataclass
class _Atom:
    """One field test inside a condition: the value class when it holds and when not (None:
    that side is no value class of its own)."""

    ref: _Ref
    yes: SwitchValue | None
    no: SwitchValue | None
    node: cst.CSTNode


@dataclass
class _Found:
    ref: _Ref
    values: list[SwitchValue] = field(default_factory=list)
    reads: list[str] = field(default_factory=list)
    # config classes' tests: the `self.<field>`s assigned in the statement holding the test
    assigns: set[str] = field(default_factory=set)


def _strings(node: cst.BaseExpression) -> list[str] | None:
    if isinstance(node, cst.Tuple | cst.List | cst.Set):
        out = []
        for el in node.elements:
            ok, value = constant(el.value)
            if not ok or not isinstance(value, str):
                return None
            out.append(value)
        return out
    return None


def _short(text: str, words: int = 8) -> str:
    """At most `words` words (not characters: a renamed class must not change the cut)."""
    parts = text.replace("self.", "").split()
    return " ".join(parts) if len(parts) <= words else " ".join(parts[:words]) + " ..."


def _few(parts: list[str], most: int = 6) -> str:
    return "; ".join(parts[:most]) + ("; ..." if len(parts) > most else "")


class _Scanner:
    """Finds config reads and the tests on them across a set of functions."""

    def __init__(self, known: dict[str, Any] | None, subs: dict[str, dict] | None = None) -> None:
        self.known = known  # config field -> configured value (None: accept every read)
        # sub-config attribute -> its fields with their configured values
        self.subs = subs or {}
        # id(ClassInfo) -> the sub-config its config parameter (or, for a sub-config class,
        # `self`) holds: DBRX builds `DbrxRouter(config.ffn_config)`
        self.held: dict[int, str] = {}
        self.found: dict[tuple[str, str, bool], _Found] = {}
        self.attr_maps: dict[int, dict[str, _Ref]] = {}  # id(ClassInfo) -> attr -> ref
        self.derived_maps: dict[int, dict] = {}  # id(ClassInfo) -> attr -> (test, env)
        # keyword -> the config field a call passes under it (`softcap=self.attn_softcap`):
        # a module function's parameter of that name carries the field into its tests
        self.bindings: dict[str, _Ref] = {}
        self._config_names: dict[int, tuple] = {}  # id(fn) -> (fn, names)
        self._never: dict[int, tuple] = {}  # id(SourceFile) -> (sf, names)
        # id(ClassInfo) -> `__init__` parameter -> every value the reachable calls give it
        # (`MLP(config, flexible=False)`): a test on those alone is decided (`decide`)
        self.fixed: dict[int, dict[str, frozenset]] = {}

    # -- config objects and reads ---------------------------------------------------------
    def config_names(self, unit: _Unit) -> set[str]:
        """Parameters that hold a config (by name or annotation); read-only, so cached per
        function (every unit's environment is built more than once)."""
        found = self._config_names.get(id(unit.fn))
        if found is not None and found[0] is unit.fn:
            return found[1]
        names = set()
        for param in parameters(unit.fn):
            name = param.name.value
            annotation = param.annotation
            text = ""
            if annotation is not None:
                text = unit.sf.code(annotation.annotation).strip("\"'")
            if name == "config" or any(
                part.strip().rsplit(".", 1)[-1].endswith("Config") for part in text.split("|")
            ):
                names.add(name)
        self._config_names[id(unit.fn)] = (unit.fn, names)
        return names

    def never(self, sf: SourceFile) -> set[str]:
        """Module flags that are False here (`HAS_FLASH = False`), per file."""
        found = self._never.get(id(sf))
        if found is None or found[0] is not sf:
            names = {
                name
                for name, value in sf.assigns.items()
                if isinstance(value, cst.Name) and value.value == "False"
            }
            found = self._never[id(sf)] = (sf, names)
        return found[1]

    def is_config(self, node: cst.BaseExpression, env: dict) -> bool:
        if isinstance(node, cst.Name):
            return node.value in env["config"] or (env["config_self"] and node.value == "self")
        if isinstance(node, cst.Attribute) and node.attr.value == "config":
            return isinstance(node.value, cst.Name) and node.value.value == "self"
        return False

    def read(self, node: cst.BaseExpression, env: dict) -> _Ref | None:
        """The config field `node` evaluates to, if it is one (directly or indirectly)."""
        if isinstance(node, cst.Attribute):
            if self.is_config(node.value, env) and env.get("sub"):
                return self._sub_field(_Ref(env["sub"], whole=True), node.attr)
            if self.is_config(node.value, env):
                if node.attr.value in self.subs:
                    return _Ref(node.attr.value, whole=True)
                return self._accept(_Ref(node.attr.value))
            if isinstance(node.value, cst.Name) and node.value.value == "self":
                ref = env["attrs"].get(node.attr.value)
                if ref is not None and not env["config_self"]:
                    return ref
                return None
            return self._sub_field(self.read(node.value, env) if self.subs else None, node.attr)
        if isinstance(node, cst.Name):
            return env["locals"].get(node.value)
        if isinstance(node, cst.Call):
            func = dotted(node.func)
            args = node.args
            if func == "getattr" and len(args) >= 2 and self.is_config(args[0].value, env):
                ok, name = constant(args[1].value)
                if ok and isinstance(name, str) and env.get("sub"):
                    return self._sub_field(_Ref(env["sub"], whole=True), cst.Name(name))
                if ok and isinstance(name, str):
                    return self._accept(_Ref(name))
            if func == "getattr" and len(args) >= 2 and self.subs:
                ok, name = constant(args[1].value)
                if ok and isinstance(name, str):
                    return self._sub_field(self.read(args[0].value, env), cst.Name(name))
            if (
                isinstance(node.func, cst.Attribute)
                and node.func.attr.value == "get"
                and args
                and not args[0].keyword
            ):
                base = self.read(node.func.value, env)
                ok, key = constant(args[0].value)
                if base is not None and not base.key and ok and isinstance(key, str):
                    return replace(base, key=key)
            return None
        if isinstance(node, cst.Subscript) and len(node.slice) == 1:
            base = self.read(node.value, env)
            if base is None or base.key or base.whole:
                return None
            index = node.slice[0].slice
            if not isinstance(index, cst.Index):
                return None
            ok, key = constant(index.value)
            if ok and isinstance(key, str):
                return replace(base, key=key)
            if base.item:
                return None
            return replace(base, item=True)
        return None

    def _sub_field(self, base: _Ref | None, attr: cst.Name) -> _Ref | None:
        """`<sub-config>.<attr>`: the sub-config's field, when `base` is a sub-config."""
        if base is None or not base.whole or attr.value.startswith("_"):
            return None
        fields = self.subs.get(base.field)
        if fields is None or (self.known is not None and attr.value not in fields):
            return None
        return _Ref(attr.value, sub=base.field, via=base.via, read_at=base.read_at)

    def bind_sub_configs(self, project: Project, classes: list[ClassInfo]) -> None:
        """Classes built from one sub-config only (`Router(config.ffn_config)`, as the first
        argument or `config=`): their config parameter holds that sub-config. Passed on
        (`ExpertGLU(config)` inside such a class) until nothing changes."""
        calls = []  # (unit, call's config argument, class built)
        for cls in classes:
            for unit in _units(project, cls):
                for node in walk(unit.fn, nested_def):
                    if type(node) is not cst.Call or type(node.func) is not cst.Name:
                        continue
                    kind, built = project.resolve_name(unit.sf, node.func.value)
                    arg = next((a for a in node.args if not a.keyword and not a.star), None)
                    arg = next((a for a in node.args if _keyword(a) == "config"), arg)
                    if kind == "class" and arg is not None:
                        calls.append((unit, arg.value, id(built)))
        for _ in range(4):
            votes: dict[int, set[str]] = {}
            envs: dict[int, dict] = {}
            for unit, value, built in calls:
                env = envs.get(id(unit.fn))
                if env is None:
                    env = envs[id(unit.fn)] = self.env(unit, {})
                ref = self.read(value, env)
                if ref is not None and ref.whole:
                    votes.setdefault(built, set()).add(ref.field)
                elif self.is_config(value, env):
                    votes.setdefault(built, set()).add(env["sub"] or "")
            held = {k: next(iter(v)) for k, v in votes.items() if len(v) == 1 and "" not in v}
            if held == self.held:
                return
            self.held = held

    def configured(self, ref: _Ref):
        """The field's configured value (None when not known)."""
        if ref.sub:
            return self.subs.get(ref.sub, {}).get(ref.field)
        return self.known.get(ref.field) if self.known is not None else None

    def maybe_float(self, ref: _Ref) -> bool:
        """The field holds a float (or its configured value is not known)."""
        if self.known is None:
            return True
        value = self.configured(ref)
        if ref.key:
            value = value.get(ref.key) if isinstance(value, dict) else None
        return value is None or (isinstance(value, float))

    def is_bool(self, ref: _Ref) -> bool:
        return self.known is not None and isinstance(self.configured(ref), bool)

    def _accept(self, ref: _Ref) -> _Ref | None:
        if ref.field.startswith("_"):
            return None  # implementation selectors (`_attn_implementation`), not the model
        if self.known is not None and ref.field not in self.known:
            return None
        return ref

    def value_ref(self, node: cst.BaseExpression, env: dict) -> _Ref | None:
        """A read, or a ternary/`or` whose only config-derived operand is one read."""
        ref = self.read(node, env)
        if ref is not None:
            return ref
        if isinstance(node, cst.IfExp):
            decided = decide(node.test, env.get("fixed"))
            if decided is not None:  # `config.n if flexible else 1`, flexible never given
                return self.value_ref(node.body if decided else node.orelse, env)
            branches = [self.read(node.body, env), self.read(node.orelse, env)]
            others = [node.orelse, node.body]
            for ref, other in zip(branches, others, strict=True):
                ok, _ = constant(other)
                if ref is not None and ok:
                    return ref
        if isinstance(node, cst.BooleanOperation) and isinstance(node.operator, cst.Or):
            return self.read(node.left, env)
        return None

    # -- per class: attributes assigned from the config -------------------------------------
    def attr_map(self, project: Project, cls: ClassInfo, units_of) -> dict[str, _Ref]:
        key = id(cls)
        if key in self.attr_maps:
            return self.attr_maps[key]
        self.attr_maps[key] = {}
        out: dict[str, _Ref] = {}
        derived = self.derived_maps.setdefault(key, {})
        for base in reversed(project.mro(cls)):
            for unit in units_of(base):
                env = self.env(unit, attrs=out)
                for _ in range(2):  # `self.b = self.a` after `self.a = config.x`
                    for target, value in _assignments(unit.fn):
                        if (
                            isinstance(target, cst.Attribute)
                            and isinstance(target.value, cst.Name)
                            and target.value.value == "self"
                        ):
                            name = target.attr.value
                            ref = self.value_ref(value, env)
                            if ref is not None and name not in out:
                                out[name] = replace(
                                    ref, via=f"self.{name}", read_at=unit.site(value)
                                )
                            elif _is_condition(value) and name not in derived:
                                # `self.is_x = cfg.k == "x"`
                                derived[name] = (value, env, f"self.{name}", unit.site(value))
        self.attr_maps[key] = out
        return out

    def derived(self, cls: ClassInfo) -> dict:
        """self.attr -> (test, its env, via, site) for attributes assigned a config test."""
        return self.derived_maps.get(id(cls), {})

    def env(self, unit: _Unit, attrs: dict[str, _Ref], derived: dict | None = None) -> dict:
        env = {
            "config": self.config_names(unit),
            "config_self": unit.config_self,
            "init": unit.fn.name.value in ("__init__", "__post_init__"),
            "attrs": attrs,
            "locals": {},
            "derived": derived or {},  # self.attr -> (test, env, via, site)
            "derived_locals": {},  # local -> (test, env, via, site)
            # module flags that are False here (`HAS_FLASH = False` on the `except
            # ImportError` path): `cfg.x and HAS_FLASH` never holds, so x switches nothing
            "never": self.never(unit.sf),
            "sub": self.held.get(id(unit.cls)) if unit.cls is not None else None,
            "fixed": (
                self.fixed.get(id(unit.cls), {})
                if unit.cls is not None and unit.fn.name.value == "__init__"
                else {}
            ),
        }
        params = {p.name.value for p in parameters(unit.fn)}
        assigned = _assignments(unit.fn)
        counts: dict[str, int] = {}
        for target, _ in assigned:
            if isinstance(target, cst.Name):
                counts[target.value] = counts.get(target.value, 0) + 1
        for target, value in assigned:
            if (
                isinstance(target, cst.Name)
                and target.value not in params
                and counts[target.value] == 1
            ):
                ref = self.value_ref(value, env)
                if ref is not None:
                    env["locals"][target.value] = replace(
                        ref, via=target.value, read_at=unit.site(value)
                    )
                elif _is_condition(value):
                    site = unit.site(value)
                    env["derived_locals"][target.value] = (value, env, target.value, site)
        return env

    # -- conditions ---------------------------------------------------------------------------
    def atoms(self, test: cst.BaseExpression, env: dict) -> list[_Atom]:
        if decide(test, env.get("fixed")) is not None:
            return []  # the constructor's arguments decide it, whatever the config holds
        stored = None
        if isinstance(test, cst.Attribute) and dotted(test.value) == "self":
            stored = env["derived"].get(test.attr.value)
        elif isinstance(test, cst.Name):
            stored = env["derived_locals"].get(test.value)
        if stored is not None and env.get("depth", 0) < 3:
            # a name holding an earlier test (`self.is_sliding`): that test's atoms, cited here
            expr, where, via, site = stored
            inner = self.atoms(expr, {**where, "depth": env.get("depth", 0) + 1})
            return [replace(a, node=test, ref=replace(a.ref, via=via, read_at=site)) for a in inner]
        if isinstance(test, cst.UnaryOperation) and isinstance(test.operator, cst.Not):
            return [
                _Atom(a.ref, a.no, a.yes, a.node) if a.no is not None or a.yes is None else a
                for a in self.atoms(test.expression, env)
            ]
        if isinstance(test, cst.BooleanOperation):
            if isinstance(test.operator, cst.And) and _training(test):
                return []  # `self.training and ...`: only in training, not a model switch
            if isinstance(test.operator, cst.And) and any(
                isinstance(side, cst.Name) and side.value in env.get("never", ())
                for side in (test.left, test.right)
            ):
                return []  # `cfg.x and HAS_FLASH` with the flag False here: never true
            return self.atoms(test.left, env) + self.atoms(test.right, env)
        if isinstance(test, cst.Comparison):
            out = []
            left = test.left
            for comp in test.comparisons:
                out.extend(self._compare(left, comp.operator, comp.comparator, env, test))
                left = comp.comparator
            return out
        if m.matches(test, int_or_list.ISINSTANCE):
            return self._type_test(test, env) if env.get("type_test") else []
        ref = self.read(test, env)
        if ref is not None and not ref.item:
            return [_Atom(ref, _value("truthy"), _value("falsy"), test)]
        if ref is not None and not ref.key and not ref.sub:
            # one layer's entry of a number list tested for truth (granite_swa's per-layer
            # RoPE base, 0: no RoPE on that layer): the list has 0 on some layers
            return [_Atom(replace(ref, item=False), None, _value("layers", 0), test)]
        return []

    def _type_test(self, test: cst.Call, env: dict) -> list[_Atom]:
        """`isinstance(config.F, int)` (or `list`/`tuple`): F is one int or a per-layer list."""
        field, kind = (arg.value for arg in test.args)
        ref = self.read(field, env)
        kinds = int_or_list.type_names(kind)
        if ref is None or not _plain(ref) or not kinds:
            return []
        scalar, listed = _value("scalar"), _value("layer_values")
        if kinds <= {"int"}:
            return [_Atom(ref, scalar, listed, test)]
        if kinds <= {"list", "tuple"}:
            return [_Atom(ref, listed, scalar, test)]
        return []

    def _compare(self, left, operator, right, env, node) -> list[_Atom]:
        lref, rref = self.read(left, env), self.read(right, env)
        lok, lconst = constant(left)
        rok, rconst = constant(right)
        if isinstance(operator, cst.Is | cst.IsNot):
            ref, ok, const = (lref, rok, rconst) if lref is not None else (rref, lok, lconst)
            if ref is None or not ok or ref.item:
                return []
            negate = isinstance(operator, cst.IsNot)
            if const is None:
                pair = (_value("none"), _value("set"))
            elif isinstance(const, bool):
                pair = (_value("true" if const else "false"), _value("false" if const else "true"))
            else:
                return []
            yes, no = (pair[1], pair[0]) if negate else pair
            return [_Atom(ref, yes, no, node)]
        if isinstance(operator, cst.In | cst.NotIn):
            negate = isinstance(operator, cst.NotIn)
            atoms = []
            if lref is not None and not lref.item:
                choices = _strings(right)
                if choices:
                    for s in choices:
                        yes, no = _value("eq", s), _value("other")
                        pair = (no, yes) if negate else (yes, no)
                        atoms.append(_Atom(lref, *pair, node))
                    return atoms
            if rref is not None and not rref.key:
                if lok and isinstance(lconst, str):
                    yes, no = _value("layers", lconst), None
                else:
                    yes, no = _value("nonempty"), _value("empty")
                if negate:
                    yes, no = (no, yes) if no is not None else (yes, None)
                return [_Atom(replace(rref, item=False), yes, no, node)]
            return []
        op = next((sym for cls, sym in _OPS.items() if isinstance(operator, cls)), None)
        if op is None:
            return []
        if lref is None and rref is not None:
            left, right, lref, rref = right, left, rref, None
            lok, lconst, rok, rconst = rok, rconst, lok, lconst
            op = _FLIP[op]
        if lref is None:
            return self._arith(left, op, right, env, node) + self._arith(
                right, _FLIP[op], left, env, node
            )
        if rok and isinstance(rconst, str) and op in ("==", "!="):
            if lref.item:
                yes, no = _value("layers", rconst), None
                return [_Atom(replace(lref, item=False), yes, no, node)]
            yes, no = _value("eq", rconst), _value("other")
            return [_Atom(lref, *((yes, no) if op == "==" else (no, yes)), node)]
        if rok and isinstance(rconst, bool) and op in ("==", "!="):
            yes, no = _value("true" if rconst else "false"), _value("false" if rconst else "true")
            return [_Atom(lref, *((yes, no) if op == "==" else (no, yes)), node)]
        if rok and rconst is None:
            return [_Atom(lref, _value("none"), _value("set"), node)]
        if lref.item:
            return []
        if (
            _plain(lref)
            and rref is not None
            and _plain(rref)
            and op in ("==", "!=")
            and env["init"]
        ):
            # two fields compared while building (`config.a != config.b`: modules between the
            # two widths): a switch on `a` whose settings are "equal to b" and "not"
            yes, no = _value("same", rref.field), _value("differs", rref.field)
            return [_Atom(lref, *((yes, no) if op == "==" else (no, yes)), node)]
        if rok and isinstance(rconst, int | float) and op in ("==", "!="):
            yes, no = _value("eq", rconst), _value("other")
            return [_Atom(lref, *((yes, no) if op == "==" else (no, yes)), node)]
        if rok and isinstance(rconst, int | float):
            return [_Atom(lref, _cmp(op, rconst), _cmp(_NEGATE[op], rconst), node)]
        if rref is None and not rok and op in ("<", "<=", ">", ">=") and env["init"]:
            # ordered against a variable while building (`layer_idx >= config.first_k_dense`):
            # a count of layers. At run time such comparisons are about the data (lengths).
            return [_Atom(lref, _cmp("==", 0), _cmp(">", 0), node)]
        return []

    def _arith(self, side, op, other, env, node) -> list[_Atom]:
        """`(layer_idx + 1) % config.step == 0`: a field inside arithmetic of a comparison."""
        if not isinstance(side, cst.BinaryOperation):
            return []
        ok, _ = constant(other)
        if isinstance(side.operator, cst.Modulo):
            ref = self.read(side.right, env)
            index_side = not any(self.read(n, env) for n in walk(side.left))
            if ref is not None and ok and index_side:
                return [_Atom(ref, _cmp("==", 1), _cmp(">", 1), node)]
        return []

    # -- recording ----------------------------------------------------------------------------
    def record(self, ref: _Ref, value: SwitchValue | None, unit: _Unit, node) -> None:
        if value is None or ref.whole:
            return  # a sub-config object as a whole (`if config.attn_config is None`)
        key = (ref.sub, ref.field, ref.key, ref.item)
        found = self.found.setdefault(key, _Found(ref))
        site = unit.cite(node)
        found.values.append(replace(value, evidence=(site,)))
        if unit.config_self:
            # a property's value is what the model reads (gemma4's kv_sharing_modes)
            own = {unit.fn.name.value} if _is_property(unit.fn) else set()
            found.assigns |= _assigned_around(unit.fn, node) | own
        if ref.read_at and ref.read_at not in found.reads:
            found.reads.append(f"{ref.read_at} ({ref.via})")

    def scan(
        self, unit: _Unit, attrs: dict[str, _Ref], bound: dict | None = None, derived=None
    ) -> None:
        env = self.env(unit, attrs, derived)
        for param in parameters(unit.fn) if bound else ():
            ref = bound.get(param.name.value)
            if ref is not None and param.name.value not in env["locals"]:
                env["locals"][param.name.value] = ref
        _Visitor(self, unit, env).run(unit.fn)


def _assigned_around(fn: cst.FunctionDef, node: cst.CSTNode) -> set[str]:
    """`self.<name>` targets assigned in the top-level statement of `fn` holding `node`."""
    for stmt in fn.body.body:
        inside = list(walk(stmt))
        if not any(n is node for n in inside):
            continue
        out = set()
        for n in inside:
            targets = []
            if isinstance(n, cst.Assign):
                targets = [t.target for t in n.targets]
            elif isinstance(n, cst.AugAssign | cst.AnnAssign):
                targets = [n.target]
            for t in targets:
                if isinstance(t, cst.Attribute) and m.matches(t.value, m.Name("self")):
                    out.add(t.attr.value)
        return out
    return set()


def _value(test: str, operand=None) -> SwitchValue:
    label = {
        "none": "None",
        "set": "set",
        "true": "True",
        "false": "False",
        "truthy": "truthy",
        "falsy": "falsy",
        "other": "other",
        "empty": "empty",
        "nonempty": "non-empty",
        "scalar": "int",
        "layer_values": "per-layer list",
    }.get(test, "")
    if test == "eq":
        label = repr(operand)
    elif test == "layers":
        label = f"layers {operand!r}"
    elif test in ("same", "differs"):
        label = f"{'==' if test == 'same' else '!='} {operand}"
    return SwitchValue(label=label, test=test, operand=operand)


def _plain(ref: _Ref) -> bool:
    """A top-level config field itself (no dict key, list item, or sub-config)."""
    return not (ref.key or ref.item or ref.sub or ref.whole)


def _cmp(op: str, number) -> SwitchValue:
    return SwitchValue(label=f"{op} {number:g}", test="cmp", operand=number, op=op)


def _keyword(arg: cst.Arg) -> str:
    return arg.keyword.value if arg.keyword is not None else ""


def _assignments(fn: cst.FunctionDef):
    """(target, value) of every simple assignment in `fn` (nested blocks included, nested
    definitions not)."""
    return _facts(fn)[0]


def _facts(fn: cst.FunctionDef) -> tuple[list, set[str]]:
    """`fn`'s assignments and every name it mentions (nested definitions included), from
    one walk: the scan needs both of every reachable function."""
    found = _ASSIGNS.get(id(fn))
    if found is not None and found[0] is fn:
        return found[1], found[2]
    out = []
    names: set[str] = set()
    nested: list[cst.CSTNode] = []  # nested definitions: their names only, walked after
    stack = [fn]
    while stack:
        node = stack.pop()
        kind = type(node)
        if kind is cst.Name:
            names.add(node.value)
        elif kind is cst.Assign:
            out.extend((t.target, node.value) for t in node.targets)
        elif kind is cst.AnnAssign and node.value is not None:
            out.append((node.target, node.value))
        elif kind in DEFS and node is not fn:
            nested.append(node)
            continue
        children = bare_children(node)
        children.reverse()
        stack.extend(children)
    while nested:
        node = nested.pop()
        if type(node) is cst.Name:
            names.add(node.value)
        nested.extend(bare_children(node))
    if len(_ASSIGNS) > 4096:  # keeps the functions (and their trees) alive: bounded
        _ASSIGNS.clear()
    _ASSIGNS[id(fn)] = (fn, out, names)
    return out, names


def _names(node: cst.CSTNode) -> set[str]:
    """Every name `node` mentions; a class's methods through `_facts`."""
    if type(node) is cst.FunctionDef:
        return _facts(node)[1]
    names: set[str] = set()
    stack = [node]
    while stack:
        current = stack.pop()
        kind = type(current)
        if kind is cst.Name:
            names.add(current.value)
        if kind is cst.FunctionDef and current is not node:
            names |= _facts(current)[1]
            continue
        stack.extend(bare_children(current))
    return names


_ASSIGNS: dict[int, tuple] = {}  # id(fn) -> (fn, assignments, names); parsed trees are shared


class _Visitor:
    """Walks one function (not its nested definitions), handling each test it meets."""

    def __init__(self, scanner: _Scanner, unit: _Unit, env: dict) -> None:
        self.s = scanner
        self.unit = unit
        self.env = env
        self.in_test: set[int] = set()
        self.skipped: set[int] = set()  # branches no setting of the model reaches
        self.dead: set[int] = set()  # branches the constructor's arguments never take
        self.targets: list[str] = []  # enclosing assignment targets (for wording)
        self.handlers = {
            cst.If: self.visit_If,
            cst.IfExp: self.visit_IfExp,
            cst.CompFor: self.visit_CompFor,
            cst.BooleanOperation: self.visit_BooleanOperation,
            cst.Arg: self.visit_Arg,
            cst.Call: self.visit_Call,
        }

    def run(self, node: cst.CSTNode) -> None:
        kind = type(node)
        if kind in DEFS and node is not self.unit.fn:
            return
        if id(node) in self.dead:
            return
        handler = self.handlers.get(kind)
        if handler is not None:
            handler(node)
            if id(node) in self.skipped:
                return
        assign = kind is cst.Assign
        if assign:
            self.targets.append(_target_name(node.targets[0].target))
            if _is_condition(node.value) and id(node.value) not in self.in_test:
                name = self.targets[-1] or "the result"
                self._test(node.value, f"{name} = True", f"{name} = False", True)
        for child in bare_children(node):
            if type(child) not in _LEAVES:
                self.run(child)
        if assign:
            self.targets.pop()

    def _mark(self, test: cst.CSTNode) -> None:
        for sub in walk(test):
            self.in_test.add(id(sub))

    def _test(self, test, yes_text, no_text, has_else: bool, other_nodes=()) -> None:
        """`yes_text`/`no_text`: what each side selects, or a function making it (described
        only for a test that reads the config, most tests do not)."""
        self._mark(test)
        atoms = self.s.atoms(test, self.env)
        if not atoms:
            return
        yes_text = yes_text() if callable(yes_text) else yes_text
        no_text = no_text() if callable(no_text) else no_text
        single = len(atoms) == 1 and not isinstance(test, cst.BooleanOperation)
        conj = isinstance(test, cst.BooleanOperation) and isinstance(test.operator, cst.And)
        for atom in atoms:
            yes_sel = yes_text if (single or conj) else ""
            no_sel = (no_text or "") if single else ""
            yes, no = atom.yes, atom.no
            if single and other_nodes:
                yes, no = (self._registry(v, atom.ref, other_nodes) for v in (yes, no))
            if yes is not None:
                self.s.record(atom.ref, replace(yes, selects=yes_sel), self.unit, atom.node)
            if no is not None and (no.test != "other" or has_else):
                self.s.record(atom.ref, replace(no, selects=no_sel), self.unit, atom.node)

    def _registry(self, value: SwitchValue | None, ref: _Ref, nodes) -> SwitchValue | None:
        """ "other" whose branch looks the field up in a table (`TABLE[config.kind]`): the
        other values are that table's keys; `operand` names the table."""
        if value is None or value.test != "other":
            return value
        for node in nodes:
            for sub in walk(node):
                if isinstance(sub, cst.Subscript) and len(sub.slice) == 1:
                    index = sub.slice[0].slice
                    if isinstance(index, cst.Index):
                        found = self.s.read(index.value, self.env)
                        if found is not None and found.field == ref.field:
                            table = dotted(sub.value)
                            if table:
                                return replace(value, operand=table, label=f"other (a {table} key)")
        return value

    def _decided(self, test, yes: cst.CSTNode | None, no: cst.CSTNode | None) -> bool:
        """A test the constructor's arguments decide: the side never taken is dead."""
        decided = decide(test, self.env["fixed"])
        if decided is None:
            return False
        self._mark(test)
        dead = no if decided else yes
        if dead is not None:
            self.dead.add(id(dead))
        return True

    def visit_If(self, node: cst.If) -> None:
        if self._decided(node.test, node.body, node.orelse):
            return
        if _raises(node.body.body) or _validates(node.body.body):
            self._mark(node.test)  # a validation (the value is an error), not a switch
            return
        if _given_input(node.test, self.unit.fn) and not type_block.opens(node, self.unit.fn):
            # code run only when the caller passes an optional input a package does not
            # take (a loss under labels): no setting of the model. Token types a package
            # takes for its mask (hrm_text's prefix block) keep their switch.
            self.skipped.add(id(node))
            return
        orelse = node.orelse
        sf = self.unit.sf
        no_text = None
        if isinstance(orelse, cst.Else):  # (an `elif` selects by its own test)
            no_text = lambda: _describe_block(sf, orelse.body.body)  # noqa: E731
        has_else = orelse is not None
        yes_text = lambda: _describe_block(sf, node.body.body)  # noqa: E731
        block = type_block.switched_by(node, self.unit.fn)
        if block is not None:  # the body opens the mask's block of one token type
            yes_text = f"tokens of {block.input} == {block.type} see each other both ways"
            no_text, has_else = f"causal whatever {block.input} says", True
        # `!=`: the body runs for "other"; `==`: the else branch does
        ops = _first_op(node.test)
        if ops == "!=":
            has_else = True
        elif ops == "==":
            # an early return is an else: the code after the `if` runs for the other values
            # (gemma4's `if self.num_kv_shared_layers == 0: return [None] * n`)
            has_else = isinstance(orelse, cst.Else) or (orelse is None and _returns(node.body.body))
        other = node.body.body if ops == "!=" else (orelse.body.body if orelse else ())
        self._test(node.test, yes_text, no_text, has_else, other)

    def visit_IfExp(self, node: cst.IfExp) -> None:
        if self._decided(node.test, node.body, node.orelse):
            return
        prefix = f"{self.targets[-1]}: " if self.targets and self.targets[-1] else ""
        sf = self.unit.sf
        # `F if isinstance(F, int) else F[layer_idx]`: the type test is a switch (one int or
        # a per-layer list); other type tests (`eos_token_id[0]`, a size pair) are not
        self.env["type_test"] = int_or_list.layer_indexed(node) is not None
        try:
            self._test(
                node.test,
                lambda: prefix + _describe_expr(sf, node.body),
                lambda: prefix + _describe_expr(sf, node.orelse),
                True,
            )
        finally:
            self.env["type_test"] = False

    def visit_CompFor(self, node: cst.CompFor) -> None:
        for cond in node.ifs:
            self._test(cond.test, "kept in the comprehension", "left out", True)

    def visit_BooleanOperation(self, node: cst.BooleanOperation) -> None:
        if id(node) in self.in_test or not isinstance(node.operator, cst.Or):
            return
        ref = self.s.read(node.left, self.env)
        if ref is not None and not ref.item:
            fallback = self.unit.sf.code(node.right)
            self._mark(node)
            self.s.record(ref, replace(_value("truthy"), selects="used"), self.unit, node.left)
            self.s.record(
                ref,
                replace(_value("fallback"), selects="falls back to " + _short(fallback, 6)),
                self.unit,
                node.left,
            )

    def visit_Arg(self, node: cst.Arg) -> None:
        if id(node) in self.in_test or node.keyword is None:
            return
        ref = self.s.read(node.value, self.env)
        if ref is not None and not ref.item and self.unit.cls is not None:
            via = node.keyword.value  # the parameter it is passed as
            bound = replace(ref, via=via, read_at=self.unit.site(node.value))
            self.s.bindings.setdefault(node.keyword.value, bound)
        if ref is None or ref.item or ref.key or not self.s.is_bool(ref):
            return
        where = self.targets[-1] if self.targets and self.targets[-1] else "the module"
        kw = node.keyword.value
        self.s.record(
            ref, replace(_value("kwtrue"), selects=f"{kw} on {where}"), self.unit, node.value
        )
        self.s.record(
            ref, replace(_value("kwfalse"), selects=f"no {kw} on {where}"), self.unit, node.value
        )

    def visit_Call(self, node: cst.Call) -> None:
        # `int(head_dim * config.factor)`: a fraction of a dimension
        if dotted(node.func) != "int" or len(node.args) != 1:
            return
        arg = node.args[0].value
        if not isinstance(arg, cst.BinaryOperation) or not isinstance(arg.operator, cst.Multiply):
            return
        for side, other in ((arg.left, arg.right), (arg.right, arg.left)):
            ref = self.s.read(side, self.env)
            if ref is not None and not ref.item and self.s.maybe_float(ref):
                whole = _short(self.unit.sf.code(other), 4)
                self.s.record(
                    ref, replace(_cmp("<", 1), selects=f"part of {whole}"), self.unit, node
                )
                self.s.record(
                    ref, replace(_cmp(">=", 1), selects=f"all of {whole}"), self.unit, node
                )
                return


def _is_condition(node: cst.BaseExpression) -> bool:
    """A boolean test: a comparison, `not x`, or `and`/`or` of those; an `and` of a flag and
    such a test (`config.attention_k_eq_v and not self.is_sliding`) is one too."""
    if isinstance(node, cst.Comparison):
        return True
    if isinstance(node, cst.UnaryOperation) and isinstance(node.operator, cst.Not):
        return True
    if isinstance(node, cst.BooleanOperation):
        sides = (_is_condition(node.left), _is_condition(node.right))
        if isinstance(node.operator, cst.And) and any(sides):
            return all(
                ok or isinstance(side, cst.Attribute | cst.Name)
                for ok, side in zip(sides, (node.left, node.right), strict=True)
            )
        return all(sides)
    return False


def _raises(body) -> bool:
    return len(body) == 1 and (
        isinstance(body[0], cst.SimpleStatementLine)
        and all(isinstance(small, cst.Raise) for small in body[0].body)
    )


def _returns(body) -> bool:
    """A body whose last statement returns."""
    return bool(body) and (
        isinstance(body[-1], cst.SimpleStatementLine) and isinstance(body[-1].body[-1], cst.Return)
    )


def _validates(body) -> bool:
    """A body that only tests and raises (`if flash requested: raise ...`, no else)."""
    return len(body) == 1 and (
        isinstance(body[0], cst.If) and body[0].orelse is None and _raises(body[0].body.body)
    )


# the inputs a package's forward takes (tokens and positions); any other optional input of
# HF's forward (token types, masks, a cache) is one the package is never given
TAKEN_INPUTS = frozenset({"input_ids", "position_ids"})


def _given_input(test: cst.BaseExpression, fn: cst.FunctionDef) -> bool:
    """`test` holds only when an optional tensor input of `fn` (annotated a Tensor, default
    None) the package does not take is given: `x is not None`, alone or as a side of an
    `and` (a helper's optional number or name passed from the config stays a switch)."""
    optional = {
        p.name.value
        for p in parameters(fn)
        if m.matches(p.default, m.Name("None"))
        and p.name.value not in TAKEN_INPUTS
        and p.annotation is not None
        and any("Tensor" in n.value for n in m.findall(p.annotation, m.Name()))
    }
    sides = [test]
    while isinstance(sides[0], cst.BooleanOperation) and isinstance(sides[0].operator, cst.And):
        sides = [sides[0].left, sides[0].right, *sides[1:]]
    return any(
        isinstance(side, cst.Comparison)
        and len(side.comparisons) == 1
        and isinstance(side.comparisons[0].operator, cst.IsNot)
        and m.matches(side.comparisons[0].comparator, m.Name("None"))
        and m.matches(side.left, m.Name())
        and side.left.value in optional
        for side in sides
    )


def _training(test: cst.BooleanOperation) -> bool:
    sides = [test.left, test.right]
    return any(
        isinstance(side, cst.Attribute) and dotted(side) == "self.training" for side in sides
    )


def _first_op(test) -> str | None:
    if isinstance(test, cst.Comparison) and len(test.comparisons) == 1:
        op = test.comparisons[0].operator
        if isinstance(op, cst.Equal):
            return "=="
        if isinstance(op, cst.NotEqual):
            return "!="
    return None


# nodes with no child nodes and no handler of `_Visitor`: not worth a call each
_LEAVES = frozenset((cst.Name, cst.Integer, cst.Float, cst.Imaginary, cst.SimpleString))


def _target_name(target: cst.BaseExpression) -> str:
    if isinstance(target, cst.Attribute):
        return target.attr.value
    if isinstance(target, cst.Name):
        return target.value
    return ""


def _callee(node: cst.Call) -> str:
    if isinstance(node.func, cst.Subscript):  # `ACT2FN[name](x)`
        return f"{dotted(node.func.value) or 'table'}[...]"
    name = dotted(node.func)
    if name is None and isinstance(node.func, cst.Attribute):
        name = node.func.attr.value
    return (name or "call").rsplit(".", 1)[-1]


def _describe_expr(sf: SourceFile, node: cst.BaseExpression) -> str:
    ok, value = constant(node)
    if ok:
        return repr(value)
    if isinstance(node, cst.Call):
        return f"{_callee(node)}(...)"
    return _short(sf.code(node), 6)


_TRIVIAL_CALLS = {"view", "reshape", "transpose", "contiguous", "size", "to", "float", "type_as"}


def _describe_block(sf: SourceFile, body) -> str:
    """`creates q_a_proj, q_b_proj; calls clamp_` for a branch body."""
    created, removed, called = [], [], []
    for stmt in body:
        for node in walk(stmt, nested_def):
            if isinstance(node, cst.Assign):
                for t in node.targets:
                    name = _target_name(t.target)
                    if not isinstance(t.target, cst.Attribute) or not name:
                        continue
                    ok, value = constant(node.value)
                    if ok and value is None:
                        removed.append(name)
                    elif isinstance(node.value, cst.Call) and _callee(node.value)[:1].isupper():
                        created.append(f"{name} ({_callee(node.value)})")
            elif isinstance(node, cst.Call):
                name = _callee(node)
                trivial = name[:1].isupper() or name in _TRIVIAL_CALLS or name == "super"
                if not trivial and name not in called:
                    called.append(name)
    parts = []
    if created:
        parts.append("creates " + ", ".join(dict.fromkeys(created)))
    if removed:
        parts.append("no " + ", ".join(dict.fromkeys(removed)))
    if called:
        parts.append("calls " + ", ".join(called[:4]))
    if not parts and body:
        first = body[0]
        parts.append(_short(sf.code(first), 8))
    return _few(parts)


# ------------------------------------------------------------------------------------------
# which code to scan
# ------------------------------------------------------------------------------------------


def _units(project: Project, cls: ClassInfo, config_self: bool = False) -> list[_Unit]:
    return [
        _Unit(cls.sf, fn, cls.node, cls, config_self)
        for fn in cls.methods.values()
        if isinstance(fn, cst.FunctionDef)
    ]


def _reachable(project: Project, start: list[ClassInfo]) -> tuple[list[ClassInfo], list]:
    """Classes and module functions the start classes reference by name, transitively, in
    the modeling files (what the code can instantiate or call under some config)."""
    classes: list[ClassInfo] = []
    functions: list[tuple[SourceFile, cst.FunctionDef]] = []
    seen: set[int] = set()
    todo: list[tuple[SourceFile, cst.CSTNode, ClassInfo | None]] = []

    def add_class(cls: ClassInfo) -> None:
        for c in project.mro(cls):
            if id(c) not in seen:
                seen.add(id(c))
                classes.append(c)
                todo.append((c.sf, c.node, c))

    for cls in start:
        add_class(cls)
    while todo:
        sf, node, _ = todo.pop()
        names = _names(node)
        for name in sorted(names):
            kind, value = project.resolve_name(sf, name)
            if kind == "class" and not _is_config_cls(project, value):
                add_class(value)
            elif kind == "function":
                fsf, fn = value
                if id(fn) not in seen:
                    seen.add(id(fn))
                    functions.append((fsf, fn))
                    todo.append((fsf, fn, None))
    return classes, functions


def _is_property(fn: cst.FunctionDef) -> bool:
    """A config property (gemma4's `kv_sharing_modes`): the modeling code reads what it
    derives from the fields its branches test (`num_kv_shared_layers == 0`)."""
    return any(m.matches(d.decorator, m.Name("property")) for d in fn.decorators)


def _is_config_cls(project: Project, cls: ClassInfo) -> bool:
    bases = project.external_bases(cls)
    return any(b.endswith(("PreTrainedConfig", "PretrainedConfig")) for b in bases)


def find_switches(
    project: Project,
    entry: ClassInfo | list[ClassInfo],
    config_classes: list[ClassInfo] = (),
    known: dict[str, Any] | None = None,
    subs: dict[str, dict[str, Any]] | None = None,
    sub_classes: dict[str, ClassInfo] | None = None,
    mentioned: set[str] | None = None,
) -> tuple[Switch, ...]:
    """The config switches of the code reachable from `entry` (and of the config classes'
    own `__init__`/`__post_init__`). `known` maps the config's fields to their configured values;
    when given, only reads of those fields count (a `getattr(config, "x", d)` of a field the
    config does not have always takes its default). `subs` maps each sub-config attribute
    (`attn_config`) to its fields and their values: reads of those are switches of their own;
    `sub_classes` maps it to its config class (whose own reads are of that sub-config).
    `mentioned`: the names the model's code mentions (default: the reachable code's); a
    test only a config class makes on a field outside them is no switch (`_reaches_model`)."""
    scanner = _Scanner(known, subs)
    starts = entry if isinstance(entry, list) else [entry]
    classes, functions = _reachable(project, starts)
    scanner.fixed = constructor_values(project, classes, functions, starts, _names)
    if scanner.subs:
        scanner.bind_sub_configs(project, classes)
        for name, cls in (sub_classes or {}).items():
            scanner.held.setdefault(id(cls), name)

    def units_of(cls: ClassInfo) -> list[_Unit]:
        return _units(project, cls)

    for cls in classes:
        attrs = scanner.attr_map(project, cls, units_of)
        for unit in _units(project, cls):
            scanner.scan(unit, attrs, derived=scanner.derived(cls))
    for sf, fn in functions:  # after the classes: their calls bind these functions' params
        scanner.scan(_Unit(sf, fn, fn, None), {}, bound=scanner.bindings)
    in_model = set(scanner.found)
    for cfg_cls in config_classes:
        for c in project.mro(cfg_cls):
            for unit in _units(project, c, config_self=True):
                if unit.fn.name.value in ("__init__", "__post_init__") or _is_property(unit.fn):
                    scanner.scan(unit, {})
    if mentioned is None:
        mentioned = _mentioned(classes, functions)
    feeding = _feeding(project, config_classes, mentioned)
    found_all = [
        found
        for key, found in scanner.found.items()
        if key in in_model or _reaches_model(found, mentioned, feeding)
    ]
    switches = [_merge(found, known, scanner.subs) for found in found_all]
    tied = _tied_switch(project, starts[0], known)
    if tied is not None:
        switches = [s for s in switches if s.name != tied.name] + [tied]
    named = {s.name for s in switches if s is not None}
    for score in _score_switches(classes, known):  # one per field, unless an `if` tests it
        if score.name not in named:
            named.add(score.name)
            switches.append(score)
    return tuple(sorted((s for s in switches if s is not None), key=lambda s: s.name))


def _mentioned(classes: list[ClassInfo], functions: list) -> set[str]:
    """Every name and string the reachable modeling code mentions (`config.<field>`,
    `getattr(config, "<field>")`)."""
    names: set[str] = set()
    nodes = [cls.node for cls in classes] + [fn for _, fn in functions]
    for node in nodes:
        names |= _names(node)
        # `getattr(config, "field", ...)`
        names |= {
            s.evaluated_value
            for s in walk(node)
            if isinstance(s, cst.SimpleString) and isinstance(s.evaluated_value, str)
        }
    return names


def _feeding(project: Project, config_classes, mentioned: set[str]) -> set[str]:
    """Names the config classes use to compute a field the model mentions: in a statement
    of `__init__`/`__post_init__` assigning such a `self.<field>`, or in a property the
    model reads."""
    out: set[str] = set()
    for cfg_cls in config_classes:
        for c in project.mro(cfg_cls):
            for fn in c.methods.values():
                if not isinstance(fn, cst.FunctionDef):
                    continue
                if _is_property(fn):
                    if fn.name.value in mentioned:
                        out |= _names(fn)
                    continue
                if fn.name.value not in ("__init__", "__post_init__"):
                    continue
                for stmt in fn.body.body:
                    targets = _assigned_around(fn, stmt)
                    if targets & mentioned:
                        out |= _names(stmt) - targets
    return out


def _reaches_model(found: _Found, mentioned: set[str], feeding: set[str]) -> bool:
    """A test only a config class makes counts unless the model cannot see what it decides:
    a sub-config the modeling code never names (an audio encoder's beside a text decoder),
    or a field it never names whose test only fills the field itself in (MoshiConfig's
    `audio_vocab_size = codebook_size if audio_vocab_size is None else ...`) and no other
    (`feeding`: gpt_neo's attention_types -> attention_layers) or property derives from."""
    if found.ref.sub:
        return found.ref.sub in mentioned
    field = found.ref.field
    return field in mentioned or found.assigns != {field} or field in feeding


def _tied_switch(project: Project, entry: ClassInfo, known) -> Switch | None:
    """`_tied_weights_keys` on the model class: transformers' base class ties the head to
    the input embedding when `tie_word_embeddings` is on."""
    found = project.find_class_attr(entry, "_tied_weights_keys")
    if found is None:
        return None
    owner, value = found
    ok, const = constant(value)
    if (ok and const is None) or (isinstance(value, cst.Dict | cst.List) and not value.elements):
        return None
    if known is not None and "tie_word_embeddings" not in known:
        return None
    site = f"{owner.sf.name}:{owner.sf.line(value, owner.node)}"
    pairs = _short(owner.sf.code(value), 6)
    name = "tie_word_embeddings"
    tied = _word(name, "true") + f" ({pairs})"
    values = (
        SwitchValue("True", "true", selects=tied, evidence=(site,)),
        SwitchValue("False", "false", selects=_word(name, "false"), evidence=(site,)),
    )
    configured = _jsonable(known.get("tie_word_embeddings")) if known else None
    return Switch("tie_word_embeddings", "bool", values, configured=configured)


# ACT2FN keys a top-k router scores its logits by (the sigmoid, DeepSeek-V4's sqrtsoftplus,
# inkling2's relu2): each value of a router's activation field the sweep puts the package to
ROUTER_SCORES = ("sigmoid", "sqrtsoftplus", "relu2")
_ACT_TABLES = ("ACT2FN", "ACT2CLS")


def _score_switches(classes: list[ClassInfo], known) -> list[Switch]:
    """`self.score_fn = ACT2FN[config.scoring_func]` in a class whose forward picks by
    `topk` from what that module returns (inkling2's and DeepSeek-V4's TopKRouter: `scores =
    self.score_fn(logits)`, `topk(scores + bias, ...)`): the config field chooses the router's
    score activation, a switch no `if` shows. Its values: the configured one and the other
    ROUTER_SCORES (each computes another model), then any other ACT2FN key."""
    found = []
    for cls in classes:
        forward = cls.methods.get("forward")
        if not isinstance(forward, cst.FunctionDef):
            continue
        picked = _picked(forward)
        for fn in cls.methods.values():
            if not isinstance(fn, cst.FunctionDef):
                continue
            for node in walk(fn):
                if not isinstance(node, cst.Assign) or len(node.targets) != 1:
                    continue
                attr = dotted(node.targets[0].target) or ""
                field = act_field(node.value)
                if field is None or f"{attr}()" not in picked:
                    continue
                if known is not None and field not in known:
                    continue
                configured = _jsonable(known.get(field)) if known else None
                site = (cls.cite(node.value),)
                names = [configured] if isinstance(configured, str) else []
                names += [n for n in ROUTER_SCORES if n not in names]
                values = tuple(
                    SwitchValue(
                        repr(name),
                        "eq",
                        name,
                        selects=f"router scores by ACT2FN[{name!r}]",
                        evidence=site,
                    )
                    for name in names
                ) + (
                    SwitchValue(
                        "other (a ACT2FN key)",
                        "other",
                        "ACT2FN",
                        selects="router scores by that activation",
                        evidence=site,
                    ),
                )
                found.append(Switch(field, "choice", values, configured=configured, reads=site))
    return found


def _picked(fn: cst.FunctionDef) -> set[str]:
    """What `fn`'s `topk` calls pick from: the names and called attributes (`self.score_fn()`)
    in their arguments, and those of the values assigned to a name among them."""
    assigned: dict[str, list[cst.CSTNode]] = {}
    for node in walk(fn):
        if isinstance(node, cst.Assign) and len(node.targets) == 1:
            name = node.targets[0].target
            if isinstance(name, cst.Name):
                assigned.setdefault(name.value, []).append(node.value)

    def refs(node: cst.CSTNode) -> set[str]:
        out = set()
        for sub in walk(node):
            if isinstance(sub, cst.Name):
                out.add(sub.value)
            elif isinstance(sub, cst.Call) and dotted(sub.func):
                out.add(f"{dotted(sub.func)}()")
        return out

    picked: set[str] = set()
    for node in walk(fn):
        if isinstance(node, cst.Call) and (dotted(node.func) or "").rsplit(".", 1)[-1] == "topk":
            picked |= refs(node)
    for name in [n for n in picked if n in assigned]:  # one step back: `scores = ...`
        for value in assigned[name]:
            picked |= refs(value)
    return picked


def act_field(node: cst.CSTNode) -> str | None:
    """`ACT2FN[config.<field>]` (or `self.config.<field>`) -> field."""
    if not isinstance(node, cst.Subscript) or len(node.slice) != 1:
        return None
    if (dotted(node.value) or "").rsplit(".", 1)[-1] not in _ACT_TABLES:
        return None
    index = node.slice[0].slice
    if not isinstance(index, cst.Index) or not isinstance(index.value, cst.Attribute):
        return None
    owner = dotted(index.value.value) or ""
    return index.value.attr.value if owner in ("config", "self.config") else None


def _word(name: str, test: str) -> str:
    return WORDING.get((name, test), "")


def _jsonable(value):
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return repr(value)
    return value


def _is_number(value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _merge(found: _Found, known: dict[str, Any] | None, subs: dict | None = None) -> Switch:
    ref = found.ref
    name = ref.key or ref.field
    container = ref.field if ref.key else ""
    if ref.key and ref.item:
        container = f"{ref.field}[*]"
    if ref.sub:
        container = ref.sub if not ref.key else f"{ref.sub}.{container}"
    configured = None
    if ref.sub:
        configured = (subs or {}).get(ref.sub, {}).get(ref.field)
        if ref.key:
            configured = configured.get(ref.key) if isinstance(configured, dict) else None
    elif known is not None:
        configured = known.get(ref.field)
        if ref.key:
            configured = configured.get(ref.key) if isinstance(configured, dict) else None
    tests = {v.test for v in found.values}
    is_bool = isinstance(configured, bool)
    # truthiness and keyword use resolve by the field's type
    resolved: list[SwitchValue] = []
    for v in found.values:
        if v.test in ("truthy", "kwtrue"):
            if is_bool:
                v = replace(v, label="True", test="true")
            elif isinstance(configured, list) or "nonempty" in tests:
                v = replace(v, label="non-empty", test="nonempty")
            else:
                v = replace(v, label="set", test="set")
        elif v.test in ("falsy", "kwfalse", "fallback"):
            if is_bool:
                v = replace(v, label="False", test="false")
            elif isinstance(configured, list) or "nonempty" in tests:
                v = replace(v, label="empty", test="empty")
            elif v.test == "falsy" and _is_number(configured):
                # `if config.width:` on a number: 0 takes the same branch as None (a config
                # class typing the field int accepts only the 0); not so for a fallback
                # (`config.head_dim or ...`), whose 0 other code reads as a size
                v = replace(v, label="None", test="none", operand=0)
            else:
                v = replace(v, label="None", test="none")
        resolved.append(v)
    merged: dict[tuple, SwitchValue] = {}
    for v in resolved:
        key = (v.test,) if v.test == "other" else (v.test, v.op, repr(v.operand))
        old = merged.get(key)
        if old is None:
            merged[key] = replace(v, selects=_join("", v.selects))
        else:
            evidence = tuple(dict.fromkeys(old.evidence + v.evidence))
            merged[key] = replace(old, selects=_join(old.selects, v.selects), evidence=evidence)
            if v.test == "other" and v.operand and not old.operand:  # the table lookup
                merged[key] = replace(merged[key], operand=v.operand, label=v.label)
    values = sorted(merged.values(), key=_order)
    values = [
        replace(v, selects=_join(_word(name, v.test), v.selects)) if _word(name, v.test) else v
        for v in values
    ]
    kinds = {v.test for v in values}
    if kinds & {"eq", "other"}:
        kind = "choice"
    elif "layers" in kinds:
        kind = "per_layer"
    elif kinds & {"scalar", "layer_values"}:
        kind = "int_or_list"
    elif kinds & {"empty", "nonempty"}:
        kind = "layer_list"
    elif "cmp" in kinds:
        cmps = [v for v in values if v.test == "cmp"]
        fraction = any(v.operand not in (0, 1) or v.op in ("<", ">=") for v in cmps)
        kind = "threshold" if fraction else "number"
    elif kinds & {"true", "false"}:
        kind = "bool"
    else:
        kind = "optional"
    return Switch(
        field=name,
        kind=kind,
        values=tuple(values),
        container=container,
        configured=_jsonable(configured),
        reads=tuple(dict.fromkeys(found.reads)),
        sub_config=bool(ref.sub) and not ref.key,
    )


def _join(a: str, b: str) -> str:
    if not b or b in a:
        return a
    if not a:
        return b
    return _compact(f"{a}; {b}")


def _compact(text: str) -> str:
    """`bias on q_proj; bias on k_proj` -> `bias on q_proj, k_proj`."""
    groups: dict[str, list[str]] = {}
    for part in text.split("; "):
        head, sep, tail = part.rpartition(" on ")
        names = tail.split(", ")
        key = head + sep if sep and not any(" " in n for n in names) else part
        groups.setdefault(key, [])
        if key != part:
            groups[key].extend(n for n in names if n not in groups[key])
    parts = [key + ", ".join(tails) if tails else key for key, tails in groups.items()]
    return _few(parts)


def _order(v: SwitchValue):
    rank = {t: i for i, t in enumerate(TESTS)}
    return (rank.get(v.test, 99), v.op, repr(v.operand))


# ------------------------------------------------------------------------------------------
# entry points
# ------------------------------------------------------------------------------------------


def switches_of_model(model) -> tuple[Switch, ...]:
    """Switches of an analysed `codegen.analyze.model.Model` (its entry class, its config)."""
    known, classes = _known_fields(model.config)
    if model.config_cls is not None and all(c is not model.config_cls for c in classes):
        classes.insert(0, model.config_cls)
    subs = _sub_configs(model.config)
    sub_classes = {
        key: value.cls
        for key, value in model.config.attrs.items()
        if key in subs and getattr(value, "cls", None) is not None
    }
    return find_switches(
        model.project,
        model.entry_cls,
        classes,
        known,
        subs,
        sub_classes,
        mentioned=model_mentions(model),
    )


def model_mentions(model) -> set[str]:
    """Every name the modeling code reachable from the analysed model's entry mentions: a
    sub-config it never names (another model's in a composite config) holds nothing of it.
    The classes the static instantiation built count too (a sub-model followed into another
    file)."""
    from codegen.analyze.evaluate import ModuleRec
    from codegen.analyze.model import walk_tree

    starts = {id(model.entry_cls): model.entry_cls}
    for _, rec in walk_tree(model.entry):
        if isinstance(rec, ModuleRec) and rec.cls is not None:
            starts.setdefault(id(rec.cls), rec.cls)
    classes, functions = _reachable(model.project, list(starts.values()))
    return _mentioned(classes, functions)


def _sub_configs(cfg) -> dict[str, dict[str, Any]]:
    """The config's sub-configs (MPT's `attn_config`): attribute -> its fields and values
    (names reached through its `attribute_map` too). Only those of the top config: a
    deeper sub-config's fields are read through its parent's, which is not followed."""
    from codegen.analyze.evaluate import ConfigObj

    out: dict[str, dict[str, Any]] = {}
    for key, value in cfg.attrs.items():
        if isinstance(value, ConfigObj) and not key.startswith("_"):
            fields = {k: v for k, v in value.attrs.items() if not isinstance(v, ConfigObj)}
            for alias, stored in value.attribute_map.items():
                if stored in fields:
                    fields.setdefault(alias, fields[stored])
            out[key] = {k: v for k, v in fields.items() if not callable(v) or isinstance(v, type)}
    return out


def _known_fields(cfg) -> tuple[dict[str, Any], list[ClassInfo]]:
    """Every field of the config (and its sub-configs) with its configured value (names
    reached through `attribute_map` count too), and the config classes they come from."""
    from codegen.analyze.evaluate import ConfigObj

    out: dict[str, Any] = {}
    classes: list[ClassInfo] = []
    stack = [cfg]
    seen: set[int] = set()
    while stack:
        current = stack.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        if current.cls is not None:
            classes.append(current.cls)
        for key, value in current.attrs.items():
            if isinstance(value, ConfigObj):
                stack.append(value)
                continue
            out.setdefault(key, value)
        for alias, key in current.attribute_map.items():
            if key in current.attrs:
                out.setdefault(alias, current.attrs[key])
    return {k: v for k, v in out.items() if not callable(v) or isinstance(v, type)}, classes


def switches_of_file(path: str) -> tuple[Switch, ...]:
    """Switches of every class in one modeling file, for files that are not a full model:
    the config fields are the annotated fields of the config classes in the file and in a
    sibling `configuration_*.py` (every config read counts when there are none)."""
    project = Project()
    sf = project.load(path)
    classes = [c for c in sf.classes.values() if not _is_config_cls(project, c)]
    configs = [c for c in sf.classes.values() if _is_config_cls(project, c)]
    folder = os.path.dirname(os.path.abspath(path))
    for name in sorted(os.listdir(folder)):
        if name.startswith("configuration_") and name.endswith(".py"):
            other = project.try_load(os.path.join(folder, name))
            if other is not None:
                configs += [c for c in other.classes.values() if _is_config_cls(project, c)]
    known: dict[str, Any] | None = None
    for cfg in configs:
        known = {**(known or {}), **static_fields(project, cfg)}
    sub_classes = _static_sub_configs(project, configs)
    subs = {key: static_fields(project, cls) for key, cls in sub_classes.items()}
    return find_switches(project, classes, configs, known, subs, sub_classes) if classes else ()


def _static_sub_configs(project: Project, configs: list[ClassInfo]) -> dict[str, ClassInfo]:
    """`sub_configs = {"attn_config": AttnConfig}` of the config classes: attribute -> the
    sub-config class."""
    by_name = {c.name: c for c in configs}
    out: dict[str, ClassInfo] = {}
    for cfg in configs:
        found = project.find_class_attr(cfg, "sub_configs")
        if found is None or not isinstance(found[1], cst.Dict):
            continue
        for element in found[1].elements:
            if not isinstance(element, cst.DictElement):
                continue
            ok, key = constant(element.key)
            sub = by_name.get(dotted(element.value) or "")
            if ok and isinstance(key, str) and sub is not None:
                out.setdefault(key, sub)
    return out


def static_fields(project: Project, cls: ClassInfo) -> dict[str, Any]:
    """Annotated fields of a config class (base classes first) with their literal defaults
    (None when the default is not a literal; False for a `bool` field without one)."""
    out: dict[str, Any] = {}
    for c in reversed(project.mro(cls)):
        for name, annotation in c.annotations.items():
            value = c.class_attrs.get(name)
            ok, const = constant(value) if value is not None else (False, None)
            if not ok and c.sf.code(annotation) == "bool":
                const = False
            out[name] = const if ok or isinstance(const, bool) else None
    return out


def describe(switch: Switch) -> str:
    """`q_lora_rank: None -> direct q projection | set -> q LoRA` (one line)."""
    parts = []
    for v in switch.values:
        parts.append(f"{v.label} -> {v.selects}" if v.selects else v.label)
    return f"{switch.name} ({switch.kind}): " + " | ".join(parts)


__all__ = [
    "Switch",
    "SwitchValue",
    "describe",
    "find_switches",
    "switches_of_file",
    "switches_of_model",
    "model_mentions",
]
