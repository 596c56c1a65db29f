"""What scaffold generates for: the target's Features under its toy config.

A package is generated for the configuration `codegen verify` will test, the toy of the
config class defaults (tiny_config's shrink rules): every optional structural feature is
switched on there (a sliding-window pattern, dense and MoE layers...), so the generated code
carries it and stays correct when a real checkpoint switches it off. Everything here is
static (libcst): no torch, no transformers, no execution of the target's code.

What the package *says* is about the real config, never the toy: the same analysis runs
under the config class defaults (or the given config.json), and its evidence, with the
values a real checkpoint of the class has, is what docstrings cite.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import libcst as cst
import libcst.matchers as m

from codegen.analyze.analysis import analyze_target
from codegen.analyze.config import ConfigBuilder
from codegen.analyze.derived_fields import derived_fields
from codegen.analyze.features import Features
from codegen.analyze.locate import resolve
from codegen.analyze.model import load_model
from codegen.analyze.source import Project
from codegen.analyze.switches import model_mentions
from codegen.errors import CodegenError
from codegen.verify.tiny_config import shrink


@dataclass(frozen=True)
class Target:
    features: Features
    config: dict  # the toy config values the features were read under
    config_fields: frozenset[str]  # every field name the target's config class answers to
    # config field -> the fields the config class derives from it (use_sliding_window ->
    # layer_types): a package reading a derived field realises the switch
    derived_fields: dict = field(default_factory=dict)
    # the config class defaults (or the given config.json): what ModelArgs defaults and
    # docstring values are taken from
    defaults: dict = field(default_factory=dict)
    # feature -> evidence under `defaults` (no toy value in it); {} when that analysis fails
    evidence: dict = field(default_factory=dict)
    # the Features under `defaults`: what the package's text describes (None when that
    # analysis fails)
    described: Features | None = None
    # the config class's properties and class-level names (`model_type`): a read of one
    # works although no instance field holds it
    config_members: frozenset[str] = frozenset()


def load_target(target: str, config_path: str | None = None) -> Target:
    project = Project()  # one parse cache for both passes
    model = load_model(resolve(target, config_path), project)
    values = {key: value for key, value in model.config.attrs.items() if not key.startswith("_")}
    fields = frozenset(values) | frozenset(model.config.attribute_map)
    # a sub-config (MPT's attn_config) is written into the toy as the dict of its fields, as
    # `to_dict()` gives it to verify's toy; its fields answer as `attn_config.clip_qkv`
    subs = _sub_config_values(values)
    values.update(subs)
    # only those the model's code reads: an audio encoder's config beside a text decoder's
    # fields holds none of the decoder's fields (its attention_bias is not the decoder's)
    read = model_mentions(model)
    fields |= frozenset(f"{key}.{name}" for key, sub in subs.items() if key in read for name in sub)
    # the class's own names (ernie: num_experts -> moe_num_experts): the toy shrinks the
    # field the code reads, as tiny_config does for the HF side
    names = dict(model.config.attribute_map)
    toy = shrink(values, keep_pattern=config_path is not None, attribute_map=names)
    if config_path is not None:
        _add_class_kinds(toy, model)
    model_type = model.target.model_type or values.get("model_type")
    toy["model_type"] = model_type
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "config.json"
        path.write_text(json.dumps(toy, default=_plain))
        features = analyze_target(resolve(target, str(path)), project)
    described = _described(target, config_path, project)
    return Target(
        features,
        toy,
        fields,
        _derived(model.target.configuration_path, project),
        defaults=_with_aliases(values, model.config.attribute_map),
        evidence=dict(described.evidence) if described is not None else {},
        described=described,
        config_members=_class_members(model),
    )


def _class_members(model) -> frozenset[str]:
    """Properties and class attributes of the config class and its project bases."""
    if model.config_cls is None:
        return frozenset()
    found = set()
    for cls in model.project.mro(model.config_cls):
        found |= set(cls.class_attrs)
        found |= {
            name
            for name, method in cls.methods.items()
            if any(m.matches(d, m.Decorator(m.Name("property"))) for d in method.decorators)
        }
    return frozenset(found)


def _add_class_kinds(toy: dict, model) -> None:
    """Layer kinds the config class puts in its own pattern (`layer_types` left unset) that
    the kept pattern of the given config lacks, each written over a layer whose kind the
    toy has twice (from the last): the package is generated for every kind the class
    builds, whatever mix the config at hand has (a config of sliding and compressed sparse
    layers still gets the heavily compressed ones DeepSeek-V4's class builds by default)."""
    pattern = toy.get("layer_types")
    if not isinstance(pattern, list) or model.config_cls is None:
        return
    unset = {key: value for key, value in toy.items() if key != "layer_types"}
    try:
        derived = (
            ConfigBuilder(model.interp).build(model.config_cls, unset).attrs.get("layer_types")
        )
    except Exception:  # noqa: BLE001 - a class whose defaults do not evaluate adds no kind
        return
    for kind in dict.fromkeys(derived if isinstance(derived, list | tuple) else ()):
        if not isinstance(kind, str) or kind in pattern:
            continue
        spare = [i for i, other in enumerate(pattern) if pattern.count(other) > 1]
        if not spare:
            return
        pattern[spare[-1]] = kind


def _sub_config_values(values: dict) -> dict[str, dict]:
    """Sub-config values (`ConfigObj`) as plain dicts of their public fields."""
    from codegen.analyze.evaluate import ConfigObj

    return {
        key: {k: v for k, v in value.attrs.items() if not k.startswith("_")}
        for key, value in values.items()
        if isinstance(value, ConfigObj)
    }


def _with_aliases(values: dict, attribute_map: dict) -> dict:
    """The config's values, also under the names its attribute_map answers to."""
    aliases = {alias: values[key] for alias, key in attribute_map.items() if key in values}
    return {**aliases, **values}


def _described(target: str, config_path: str | None, project: Project) -> Features | None:
    """The analysis under the real config: its values and evidence are what the text cites."""
    try:
        return analyze_target(resolve(target, config_path), project)
    except Exception:  # noqa: BLE001 - the toy analysis succeeded; text falls back to it
        return None


def _derived(path: str | None, project: Project) -> dict:
    if not path:
        return {}
    try:  # the analysis parsed the file already
        return derived_fields(project.load(path).module)
    except (OSError, UnicodeDecodeError, cst.ParserSyntaxError, CodegenError):
        return {}


def _plain(value):
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    return str(value)
