"""The config settings verify runs so that every config switch is exercised in each setting.

Why: one toy config exercises one side of each branch of the HF code. The static analysis
(`codegen.analyze.switches`) lists the config fields the modeling source branches on and the
value classes it distinguishes; this module turns each value class the base toy does not
already fall in into a concrete override of the toy (`q_lora_rank=None`,
`partial_rotary_factor=0.5`, `mlp_only_layers=[3]`, `topk_method="group_limited_greedy"`), and
keeps only those the config class accepts and that change the config. Concrete values for
"set" come from verify's own shrink rules (`tiny_config.SHRINK_RULES`) when it has one for the
field, else from the config class default, else a small value of the field's type.

transformers is imported lazily (verify's heavy path); the static analysis is not.
"""

from __future__ import annotations

import dataclasses
import json
import operator
from dataclasses import dataclass, field
from functools import lru_cache

from codegen.analyze.switches import Switch, SwitchValue
from codegen.verify.tiny_config import config_value

_CMP = {
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
    "==": operator.eq,
    "!=": operator.ne,
}
_SMALL_INT = 8  # "set" for an int field with no rule and no class default (a window, a rank)
_SMALL_FLOAT = 1.0  # ... for a float field (a cap or clip the toy activations reach)


@dataclass(frozen=True)
class Setting:
    """Config overrides (applied to the toy config dict) that put one switch in one value."""

    label: str  # "q_lora_rank=None"
    overrides: dict  # {"q_lora_rank": None}
    field: str = ""  # the switch ("rope_parameters.partial_rotary_factor")
    value: str = ""  # the value class it exercises ("None", "< 1", "'greedy'")
    selects: str = ""  # what that value selects in the HF code, with evidence
    evidence: tuple[str, ...] = ()


@dataclass(frozen=True)
class Dropped:
    label: str
    overrides: dict
    reason: str


@dataclass
class SettingsPlan:
    settings: list[Setting] = field(default_factory=list)
    dropped: list[Dropped] = field(default_factory=list)  # the config class refused them
    covered: list[str] = field(default_factory=list)  # value classes the base toy is in


def switch_settings(model_type_or_features, toy_config_dict: dict, **kwargs) -> list[Setting]:
    """The config settings that exercise every setting of every config switch.

    `model_type_or_features` is an installed model_type (its modeling source is analysed
    statically), a `Features` from `codegen.analyze` (its `.switches`), or a sequence of
    `Switch` together with `model_type=` or `config_class=`. `toy_config_dict` is the base toy
    config verify builds (keyword arguments of the config class). Each returned `Setting`
    has `label` and `overrides` (a dict to apply on top of the toy: nested dicts such as
    `rope_parameters` are given whole). Only settings whose constructed config differs from
    the base toy's are returned; settings the config class rejects are left out (see
    `plan_settings` for them and the reasons).
    """
    return plan_settings(model_type_or_features, toy_config_dict, **kwargs).settings


def static_switches(model_type: str) -> tuple[Switch, ...]:
    """The config switches of an installed model_type, from the static analysis of its
    modeling source (nothing imported or run)."""
    return _static_switches(model_type)


@lru_cache(maxsize=32)
def _static_switches(model_type: str) -> tuple[Switch, ...]:
    from codegen.analyze.locate import resolve
    from codegen.analyze.model import load_model
    from codegen.analyze.switches import switches_of_model

    return switches_of_model(load_model(resolve(model_type)))


def plan_settings(
    model_type_or_features,
    toy_config_dict: dict,
    *,
    model_type: str | None = None,
    config_class=None,
) -> SettingsPlan:
    """`switch_settings` with what was left out: settings the config class rejects (with the
    error) or silently changes, and value classes the base toy already exercises."""
    switches, model_type = _switches_of(model_type_or_features, model_type)
    if config_class is None:
        if model_type is None:
            raise ValueError("switch_settings needs a model_type or a config_class")
        from codegen.verify.tiny_config import hf_config_class

        config_class = hf_config_class(model_type)
    _quiet()
    toy = dict(toy_config_dict)
    base = config_class(**toy)
    base_dict = _comparable(base)
    plan = SettingsPlan()
    seen: set[str] = set()
    for switch in switches:
        for value in switch.values:
            current = _current(base, switch)
            if _satisfies(switch, value, current, base) and not _only_kind(switch, value, current):
                plan.covered.append(f"{switch.name} {value.label}")
                continue
            if value.test == "other" and value.operand:
                reason = f"the other values are {value.operand} keys: not enumerated here"
                plan.dropped.append(Dropped(f"{switch.field}=<other>", {}, reason))
                continue
            for label, overrides, wanted in _candidates(switch, value, base, toy, config_class):
                key = json.dumps(overrides, sort_keys=True, default=repr)
                if key in seen:
                    continue
                seen.add(key)
                try:
                    cfg = _build(config_class, {**toy, **overrides})
                except Exception as err:  # the class's own validation: any error type
                    reason = f"{type(err).__name__}: {_message(err)}"
                    plan.dropped.append(Dropped(label, overrides, reason))
                    instead = _zero_instead(switch, value, base, toy, config_class, seen)
                    instead = instead or _rederived(switch, value, base, toy, config_class, seen)
                    if instead is None:
                        continue
                    label, overrides, wanted, cfg = instead
                got = _current(cfg, switch)
                if not _satisfies(switch, value, got, cfg) or (
                    wanted is not _ANY and got != wanted
                ):
                    reason = f"the config class turns it into {switch.name}={got!r}"
                    plan.dropped.append(Dropped(label, overrides, reason))
                    continue
                if _comparable(cfg) == base_dict:
                    plan.covered.append(f"{switch.name} {value.label} (same config)")
                    continue
                plan.settings.append(
                    Setting(
                        label=label,
                        overrides=overrides,
                        field=switch.name,
                        value=value.label,
                        selects=value.selects,
                        evidence=value.evidence,
                    )
                )
    return plan


_ANY = object()


def _zero_instead(switch: Switch, value: SwitchValue, base, toy: dict, config_class, seen):
    """The field set to 0 where the class rejects None and the source tests the field's
    truth (gemma4's `if config.hidden_size_per_layer_input:`, typed int): (label,
    overrides, wanted, config), else None."""
    if value.test != "none" or value.operand != 0:
        return None
    overrides = _override(switch, 0, base, toy)
    key = json.dumps(overrides, sort_keys=True, default=repr)
    if key in seen:
        return None
    seen.add(key)
    try:
        cfg = config_class(**{**toy, **overrides})
    except Exception:  # rejected as well: the None setting's reason stands
        return None
    return _label(switch, 0), overrides, 0, cfg


def _build(config_class, values: dict):
    """The config of `values`, its own properties read: a class that validates a setting
    only where a property derives from it (gemma4's `kv_sharing_modes`, which the model
    reads while building) rejects it here, not in the middle of verify."""
    cfg = config_class(**values)
    for klass in type(cfg).__mro__:
        if klass.__module__ != config_class.__module__:
            continue
        for name, attribute in vars(klass).items():
            if isinstance(attribute, property):
                getattr(cfg, name)
    return cfg


def _rederived(switch: Switch, value: SwitchValue, base, toy: dict, config_class, seen):
    """Where the class rejects the plain override, the toy derived again from the class's
    defaults with the field in `value`'s class before shrinking: verify's shrink rules that
    read the field size the rest with it (keys and values shared by some layers double the
    toy's layer pattern and share its second half; gemma4's 6-layer toy accepts
    `num_kv_shared_layers` 0 only). (label, overrides, wanted, config), else None."""
    from codegen.verify.tiny_config import SHRINK_RULES, rederive

    if switch.container or switch.field not in SHRINK_RULES or value.test != "other":
        return None
    compared = _compared(switch)
    if not compared or not all(isinstance(c, int) and not isinstance(c, bool) for c in compared):
        return None
    try:
        again = rederive(config_class, {switch.field: max(compared) + 1})
        cfg = _build(config_class, {**toy, **again})
    except Exception:  # rejected as well: the plain setting's reason stands
        return None
    got = _current(cfg, switch)
    if not _satisfies(switch, value, got, cfg):
        return None
    overrides = {k: v for k, v in again.items() if toy.get(k) != v}
    key = json.dumps(overrides, sort_keys=True, default=repr)
    if key in seen:
        return None
    seen.add(key)
    return _label(switch, got), overrides, got, cfg


def _message(err: Exception) -> str:
    """The error's first lines, as one line."""
    lines = [line.strip() for line in str(err).strip().splitlines() if line.strip()]
    return " ".join(lines[:3])[:200]


def _switches_of(source, model_type: str | None) -> tuple[tuple[Switch, ...], str | None]:
    if isinstance(source, str):
        return static_switches(source), model_type or source
    if hasattr(source, "switches") and hasattr(source, "model_type"):
        return tuple(source.switches), model_type or source.model_type
    return tuple(source), model_type


def _quiet() -> None:
    from transformers.utils import logging

    logging.set_verbosity_error()


def _comparable(cfg) -> str:
    data = cfg.to_dict()
    data.pop("transformers_version", None)
    return json.dumps(data, sort_keys=True, default=repr)


def _current(cfg, switch: Switch):
    """The switch's field on a constructed config (a key of a dict field for containers)."""
    if switch.container:
        if switch.container.endswith("[*]"):
            return _ANY
        holder = getattr(cfg, switch.container, None)
        if switch.sub_config and not isinstance(holder, dict):
            return getattr(holder, switch.field, None)  # a sub-config object (attn_config)
        return holder.get(switch.field) if isinstance(holder, dict) else None
    return config_value(cfg, switch.field)


def _compared(switch: Switch) -> list:
    return [v.operand for v in switch.values if v.test == "eq"]


def _satisfies(switch: Switch, value: SwitchValue, current, cfg=None) -> bool:
    """Does a config (`cfg`) whose field is `current` fall in `value`'s class?"""
    if current is _ANY:
        return True  # per-layer-type dict keys: not enumerated
    test = value.test
    if test in ("same", "differs"):  # against another field of the same config
        return (current == getattr(cfg, value.operand, None)) == (test == "same")
    if test == "none":  # a number's truth tested: 0 is in the class too
        return current is None or (value.operand == 0 and current == 0)
    if test == "set":
        return current is not None and not (_falsy_zero(switch) and current == 0)
    if test == "true":
        return bool(current) is True
    if test == "false":
        return not current
    if test == "eq":
        return current == value.operand
    if test == "other":
        return current not in _compared(switch)
    if test == "cmp":
        if not isinstance(current, int | float) or isinstance(current, bool):
            return False
        return _CMP[value.op](current, value.operand)
    if test == "empty":
        return not current
    if test == "nonempty":
        return bool(current)
    if test == "layers":
        return isinstance(current, list | tuple) and value.operand in current
    if test == "scalar":
        return isinstance(current, int) and not isinstance(current, bool)
    if test == "layer_values":
        return isinstance(current, list | tuple)
    return True


def _falsy_zero(switch: Switch) -> bool:
    """The source tests the field's truth, and it holds a number: 0 is its None."""
    return any(v.test == "none" and v.operand == 0 for v in switch.values)


def _class_default(config_class, name: str):
    """(default, type text) of a config field, from the dataclass fields or `__init__`."""
    if dataclasses.is_dataclass(config_class):
        for f in dataclasses.fields(config_class):
            if f.name == name:
                default = f.default if f.default is not dataclasses.MISSING else None
                return default, str(f.type)
    import inspect

    try:
        param = inspect.signature(config_class.__init__).parameters.get(name)
    except (TypeError, ValueError):
        param = None
    if param is not None and param.default is not inspect.Parameter.empty:
        return param.default, str(param.annotation)
    return None, ""


def _set_value(switch: Switch, base, toy: dict, config_class):
    """A valid non-None value for a None-vs-set field."""
    from codegen.verify.tiny_config import SHRINK_RULES

    name = switch.field
    if switch.sub_config:  # the field's class is the sub-config's (attn_config's)
        holder = getattr(base, switch.container, None)
        if holder is not None and not isinstance(holder, dict):
            config_class = type(holder)
    default, type_text = _class_default(config_class, name)
    if (not switch.container or switch.sub_config) and name in SHRINK_RULES:
        rule = SHRINK_RULES[name]
        value = (
            rule({**toy, name: default if default is not None else 1}) if callable(rule) else rule
        )
        if value is not None:
            return value
    if default is not None:
        return default
    if "float" in type_text:
        return _SMALL_FLOAT
    if "int" in type_text:
        return _SMALL_INT
    if "bool" in type_text:
        return True
    if "str" in type_text:
        return None
    return _SMALL_INT


def _number(switch: Switch, value: SwitchValue, current):
    floaty = isinstance(current, float) or isinstance(value.operand, float)
    t = value.operand
    if value.op == "<":
        return t / 2 if floaty and t > 0 else t - 1
    if value.op == ">":
        return t * 2 if floaty and t > 0 else t + 1
    if value.op == "!=":
        return t + 1
    return float(t) if floaty else t  # >=, <=, ==


def _layer_count(base, toy: dict) -> int:
    for name in ("num_hidden_layers", "n_layer", "num_layers"):
        n = getattr(base, name, None) or toy.get(name)
        if isinstance(n, int) and n > 0:
            return n
    return 2


def _candidates(switch: Switch, value: SwitchValue, base, toy: dict, config_class):
    """(label, overrides, wanted field value or _ANY) for one value class."""
    current = _current(base, switch)
    test = value.test
    if test == "layers":
        yield from _layer_settings(switch, value, base, toy)
        return
    if test == "none":
        wanted = None
    elif test == "set":
        wanted = _set_value(switch, base, toy, config_class)
        if wanted is None:
            return
    elif test in ("true", "false"):
        wanted = test == "true"
    elif test == "eq":
        wanted = value.operand
    elif test == "other" and value.operand:
        return  # the other values are keys of a table, each with its own parameters
    elif test == "other":
        compared = _compared(switch)
        if all(isinstance(c, str) for c in compared):
            wanted = "other"
            while wanted in compared:
                wanted += "_"
        else:
            wanted = max(compared) + 1
    elif test == "cmp":
        wanted = _number(switch, value, current)
    elif test == "empty":
        wanted = []
    elif test == "nonempty":
        wanted = [_layer_count(base, toy) - 1]
    elif test == "layer_values":
        wanted = _layer_values(current, _layer_count(base, toy))
        if wanted is None:
            return
    elif test == "scalar":
        if not isinstance(current, list | tuple) or not current:
            return
        wanted = current[0]
    elif test in ("same", "differs"):
        other = getattr(base, value.operand, None)
        if not isinstance(other, int) or isinstance(other, bool):
            return
        wanted = other if test == "same" else other * 2  # a width of its own
    else:
        return
    yield _label(switch, wanted), _override(switch, wanted, base, toy), wanted


def _layer_values(current, n: int) -> list[int] | None:
    """An int field given per layer: the toy's value on odd layers, two less (two more where
    that is below 1) on even ones, so a package reading one entry for every layer, or the
    int it was, shows on some layer; of the same parity, so an expert count that splits
    over ep=2 still does."""
    if not isinstance(current, int) or isinstance(current, bool):
        return None
    other = current - 2 if current > 2 else current + 2
    return [other if i % 2 == 0 else current for i in range(n)]


def _layer_settings(switch: Switch, value: SwitchValue, base, toy: dict):
    """A per-layer string list: the string on every other layer, and on every layer."""
    if switch.container:
        return
    n = _layer_count(base, toy)
    current = getattr(base, switch.field, None)
    current = list(current) if isinstance(current, list | tuple) and len(current) == n else None
    if value.operand == 0 and not isinstance(value.operand, str):
        yield from _zero_layer_settings(switch, current)
        return
    others = [v.operand for v in switch.values if v.test == "layers" and v.operand != value.operand]
    # the source compares against one kind only (`mlp_layer_types[i] == "sparse"`, dense
    # otherwise) and the toy has it on every layer: a kind nothing compares against fills
    # the other layers, so the branch the comparison leaves is built too
    unnamed = _unnamed(switch)
    filler = [x for x in (current or []) if x != value.operand] or others or [unnamed]
    s = value.operand
    if filler:
        mixed = [s if i % 2 == 0 else (current[i] if current else filler[0]) for i in range(n)]
        if current is not None and all(x == s for x in mixed[1::2]):
            mixed = [s if i % 2 == 0 else filler[0] for i in range(n)]
        yield (
            f"{switch.field}=['{s}' on even layers]",
            {switch.field: mixed},
            mixed,
        )
    uniform = [s] * n
    yield f"{switch.field}=['{s}' on every layer]", {switch.field: uniform}, uniform


def _zero_layer_settings(switch: Switch, current: list | None):
    """A per-layer number list whose entries the source tests for truth (a RoPE base per
    layer, 0: none): 0 on every other layer, the toy's entries on the others each made to
    differ (the k-th kept entry times k + 1), so a package reading one entry for every layer
    is caught too; and 0 on every layer."""
    if current is None or not all(isinstance(x, int | float) for x in current):
        return
    kept = [x for i, x in enumerate(current) if i % 2]
    if not any(kept):
        return
    mixed = [0 if i % 2 == 0 else x * (i // 2 + 1) for i, x in enumerate(current)]
    mixed = [type(x)(v) for x, v in zip(current, mixed, strict=True)]
    yield f"{switch.field}=[0 on even layers, the others differing]", {switch.field: mixed}, mixed
    uniform = [type(x)(0) for x in current]
    yield f"{switch.field}=[0 on every layer]", {switch.field: uniform}, uniform


def _only_kind(switch: Switch, value: SwitchValue, current) -> bool:
    """The toy has `value`'s kind on every layer and the source names no other kind: the
    branch the comparison leaves (`mlp_layer_types[i] == "sparse"` false: a dense MLP) is
    built by no layer yet."""
    if value.test != "layers" or not isinstance(current, list | tuple) or not current:
        return False
    named = [v for v in switch.values if v.test == "layers"]
    return len(named) == 1 and all(kind == value.operand for kind in current)


def _unnamed(switch: Switch) -> str:
    """A per-layer kind none of the switch's values names: the first other kind transformers
    allows in the field (its config validation's table: `mlp_layer_types` in ('sparse',
    'dense')), else "other" (as a choice's other value)."""
    from transformers import configuration_utils

    allowed = {
        "layer_types": "ALLOWED_ATTN_LAYER_TYPES",
        "mlp_layer_types": "ALLOWED_MLP_LAYER_TYPES",
    }.get(switch.field)
    named = {v.operand for v in switch.values}
    kinds = getattr(configuration_utils, allowed, ()) if allowed else ()
    wanted = next((kind for kind in kinds if kind not in named), "other")
    while wanted in named:
        wanted += "_"
    return wanted


def _override(switch: Switch, wanted, base, toy: dict) -> dict:
    if switch.sub_config:
        # the sub-config as the toy gives it (a dict of its fields), this field changed
        holder = toy.get(switch.container)
        holder = dict(holder) if isinstance(holder, dict) else {}
        holder[switch.field] = wanted
        return {switch.container: holder}
    if switch.container:
        holder = getattr(base, switch.container, None)
        holder = dict(holder) if isinstance(holder, dict) else {}
        holder[switch.field] = wanted
        return {switch.container: holder}
    # the toy may carry the field under another name of the class's attribute_map
    # (`num_local_experts` for `num_experts`): override every name it is given under
    names = dict(getattr(type(base), "attribute_map", {}) or {})
    stored = names.get(switch.field, switch.field)
    out = {switch.field: wanted}
    for alias, target in names.items():
        if target == stored and alias in toy:
            out[alias] = wanted
    if stored in toy:
        out[stored] = wanted
    return out


def _label(switch: Switch, wanted) -> str:
    name = switch.name if switch.sub_config else switch.field
    return f"{name}={wanted!r}"
