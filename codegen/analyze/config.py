"""Config values, statically: class defaults + config.json + an interpreted `__post_init__`.

transformers 5 configs are dataclasses (`hidden_size: int = 4096`); remote-code configs may
still use `__init__(self, hidden_size=4096, ...)`. Both are read with libcst and interpreted by
`evaluate.Interp`; the base class behaviour that matters for architecture (RoPE parameter
standardisation, extra kwargs becoming attributes, sub-config construction) is reimplemented
here on plain data rather than imported.
"""

from __future__ import annotations

import json
import os
from typing import Any

from codegen.analyze.evaluate import (
    NATIVE_CONFIG_ATTRS,
    UNKNOWN,
    BudgetExceeded,
    CallRec,
    ClassRef,
    ConfigObj,
    Frame,
    FuncRef,
    Interp,
    Site,
    Unknown,
    _KwargsBag,
    _Missing,
)
from codegen.analyze.source import ClassInfo
from codegen.errors import CodegenError

_ROPE_SCALED_TYPES = ("llama3", "yarn", "longrope")


def load_json(path: str) -> dict:
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
    except FileNotFoundError:
        raise CodegenError("no such file", path=path) from None
    except json.JSONDecodeError as err:
        raise CodegenError(f"invalid JSON: {err.msg}", path=path, line=err.lineno) from None
    except UnicodeDecodeError as err:
        raise CodegenError(f"not UTF-8 text ({err.reason})", path=path) from None
    except OSError as err:
        raise CodegenError(f"cannot read file: {err.strerror}", path=path) from None
    if not isinstance(data, dict):
        raise CodegenError("config is not a JSON object", path=path)
    return data


def attr(cfg: ConfigObj, name: str, default: Any = None) -> Any:
    """Read a config attribute without logging it as evidence.

    A standard name the config does not hold is answered from the legacy fields remote
    code still uses (`n_head`, `seq_length`, a top-level `rope_theta`...), see `legacy`.
    The modeling code itself is evaluated on the config as it is: these answers are for
    the analyzer's own reads only, never for the code's `getattr`.
    """
    key = cfg.key(name)
    if key in cfg.attrs:
        return cfg.attrs[key]
    value = legacy(cfg.attrs, name)
    return default if value is None else value


# standard field -> the legacy names remote code stores it under, first found wins
LEGACY_NAMES: dict[str, tuple[str, ...]] = {
    "hidden_size": ("n_embd", "d_model"),
    "num_attention_heads": ("n_head", "num_heads"),
    "num_hidden_layers": ("n_layer", "num_layers", "n_layers"),
    "max_position_embeddings": ("seq_length", "n_positions", "max_sequence_length"),
    "layer_norm_eps": ("layer_norm_epsilon",),
    "rms_norm_eps": ("layer_norm_epsilon",),
    "intermediate_size": ("ffn_hidden_size", "n_inner"),
    "vocab_size": ("padded_vocab_size",),
    "head_dim": ("kv_channels",),
    "num_key_value_heads": ("num_kv_heads", "n_head_kv"),
    "num_experts": ("moe_num_experts",),
    "num_experts_per_tok": ("moe_top_k",),
    "rope_theta": ("rotary_emb_base",),
    "partial_rotary_factor": ("rotary_pct",),
}


def legacy(values: dict, name: str) -> Any:
    """The value of standard field `name` read from the legacy fields in `values`, or None.

    Besides renamed fields: `multi_query` (one key/value head, or `multi_query_group_num`
    with `multi_query_attention`), `rotary_dim` (partial rotary = rotary_dim / head_dim), and
    `rope_parameters` assembled from `rope_scaling` (with `type` or `rope_type`), a top-level
    `rope_theta` and the partial rotary fraction, as transformers standardises them.
    """
    for old in LEGACY_NAMES.get(name, ()):
        if _usable(values.get(old)):
            return values[old]
    if name == "num_key_value_heads":
        if values.get("multi_query_attention") is True and _usable(
            values.get("multi_query_group_num")
        ):
            return values["multi_query_group_num"]
        if values.get("multi_query") is True:
            return 1
    if name == "head_dim":
        hidden = _standard(values, "hidden_size")
        heads = _standard(values, "num_attention_heads")
        if isinstance(hidden, int) and isinstance(heads, int) and heads > 0:
            return hidden // heads
    if name == "partial_rotary_factor":
        rotary_dim, head_dim = values.get("rotary_dim"), _standard(values, "head_dim")
        if isinstance(rotary_dim, int) and isinstance(head_dim, int) and head_dim > 0:
            return rotary_dim / head_dim
    if name == "rope_parameters":
        return _legacy_rope(values)
    return None


def _standard(values: dict, name: str) -> Any:
    value = values.get(name)
    return value if _usable(value) else legacy(values, name)


def _usable(value: Any) -> bool:
    return value is not None and value is not UNKNOWN


def _legacy_rope(values: dict) -> dict | None:
    scaling = values.get("rope_scaling")
    theta = _standard(values, "rope_theta")
    partial = _standard(values, "partial_rotary_factor")
    if not isinstance(scaling, dict) and not _usable(theta):
        return None
    params = dict(scaling) if isinstance(scaling, dict) else {}
    params.setdefault("rope_type", params.get("type", "default"))
    if _usable(theta):
        params.setdefault("rope_theta", theta)
    if _usable(partial):
        params.setdefault("partial_rotary_factor", partial)
    if params["rope_type"] in _ROPE_SCALED_TYPES:
        params.setdefault(
            "original_max_position_embeddings", _standard(values, "max_position_embeddings")
        )
    return params


class ConfigBuilder:
    """Builds `ConfigObj`s; installed as the interpreter's config factory."""

    def __init__(self, interp: Interp) -> None:
        self.interp = interp
        interp.config_factory = self.from_call
        interp.native_config_methods.update(
            {
                "standardize_rope_params": _native_standardize,
                "convert_rope_params_to_dict": _native_convert_rope,
                "nested_rope_parameter_keys": lambda i, cfg, a, k: _nested_keys(i, cfg, a[0]),
                "to_dict": lambda i, cfg, a, k: dict(cfg.attrs),
                "get_text_config": lambda i, cfg, a, k: cfg,
            }
        )
        # super().__post_init__ / super().__init__ reaching PreTrainedConfig
        interp.external_super_post_init = self._base_post_init  # type: ignore[attr-defined]
        interp.external_super_init = self._external_init  # type: ignore[attr-defined]

    # -- construction ---------------------------------------------------------------------
    def build(self, cls: ClassInfo | None, values: dict, prefix: str = "") -> ConfigObj:
        cfg = ConfigObj(cls, prefix)
        cfg.read_log = []  # which keys the code reads (for "ignored by the code" notes)
        # PreTrainedConfig sets these in its own __post_init__; the analysis follows the eager path.
        cfg.attrs["_attn_implementation"] = "eager"
        cfg.attrs["_experts_implementation"] = None
        if cls is None:
            for key, value in values.items():
                cfg.attrs[key] = value
                cfg.origin[key] = "config.json"
            return cfg
        project = self.interp.project
        mro = project.mro(cls)
        fields: set[str] = set()
        for c in reversed(mro):
            for name in c.annotations:
                fields.add(name)
            amap = c.class_attrs.get("attribute_map")
            if amap is not None:
                try:
                    value = self.interp.class_attr_value(c, amap)
                    if isinstance(value, dict):
                        cfg.attribute_map.update(value)
                except Unknown:
                    pass
        # dataclass-style field defaults (base classes first)
        for c in reversed(mro):
            for name in c.annotations:
                if name in c.class_attrs and not self._is_classvar(c, name):
                    try:
                        cfg.attrs[cfg.key(name)] = self.interp.class_attr_value(
                            c, c.class_attrs[name]
                        )
                    except BudgetExceeded:
                        raise
                    except Unknown:
                        cfg.attrs[cfg.key(name)] = UNKNOWN
                    cfg.origin[cfg.key(name)] = "default"
        init = None
        for c in mro:
            if "__init__" in c.methods:
                init = (c, c.methods["__init__"])
                break
        kwargs: dict[str, Any] = {}
        if init is not None:
            # old-style config: `__init__(self, hidden_size=4096, ..., **kwargs)`
            mapped = {cfg.key(k): v for k, v in values.items()}
            owner, fn = init
            declared = {p.name.value for p in fn.params.params} | {
                p.name.value for p in fn.params.kwonly_params
            }
            self.interp.call_function(FuncRef(owner.sf, fn, owner=owner), [cfg], mapped)
            for key in mapped:
                if key in declared:
                    cfg.origin[key] = "config.json"
            return cfg
        # the names fields are stored under (`num_experts` is stored as `num_local_experts`,
        # which is also what `to_dict()` writes to config.json)
        stored = {cfg.key(name) for name in fields}
        for key, value in values.items():
            mapped_key = cfg.key(key)
            if mapped_key in fields or key in fields or key in stored:
                cfg.attrs[mapped_key] = value
                cfg.origin[mapped_key] = "config.json"
            else:
                kwargs[key] = value
        cfg.extra_kwargs = dict(kwargs)
        post = project.find_method(cls, "__post_init__")
        if post is not None:
            owner, fn = post
            try:
                self.interp.call_function(FuncRef(owner.sf, fn, owner=owner), [cfg], kwargs)
            except BudgetExceeded:
                raise
            except Unknown:
                pass
        else:
            self._base_post_init(cfg, cls, [], kwargs, None)
        for key in kwargs:
            cfg.origin[cfg.key(key)] = "config.json"
        return cfg

    def _is_classvar(self, cls: ClassInfo, name: str) -> bool:
        ann = cls.annotations.get(name)
        code = cls.sf.code(ann) if ann is not None else ""
        return code.startswith("ClassVar")

    def from_call(self, interp: Interp, cls: ClassInfo, args, kwargs, site: Site) -> ConfigObj:
        """`SubConfig(**d)` / `SubConfig()` inside interpreted code."""
        values = dict(kwargs)
        return self.build(cls, values)

    # -- PreTrainedConfig behaviour ----------------------------------------------------------
    def _external_init(self, obj, owner, args, kwargs, site):
        if isinstance(obj, ConfigObj):
            bag = kwargs.items if isinstance(kwargs, _KwargsBag) else kwargs
            return self._base_post_init(obj, owner, args, dict(bag), site)
        return None

    def _base_post_init(self, cfg, owner, args, kwargs, site):
        if not isinstance(cfg, ConfigObj):
            return None
        kwargs = dict(kwargs.items if isinstance(kwargs, _KwargsBag) else kwargs)
        self._sub_configs(cfg)
        if "rope_parameters" in cfg.attrs or self._declares(cfg, "rope_parameters"):
            cfg.attrs.setdefault("rope_parameters", None)
            found = (
                self.interp.project.find_method(cfg.cls, "convert_rope_params_to_dict")
                if cfg.cls is not None
                else None
            )
            try:
                if found is not None:
                    owner_cls, fn = found
                    result = self.interp.call_function(
                        FuncRef(owner_cls.sf, fn, owner=owner_cls), [cfg], kwargs
                    )
                    if isinstance(result, dict):
                        kwargs = result
                else:
                    kwargs = _native_convert_rope(self.interp, cfg, [], kwargs)
            except BudgetExceeded:
                raise
            except Unknown:
                pass
        if isinstance(kwargs.get("per_layer_config"), dict):
            kwargs["per_layer_config"] = _per_layer_configs(cfg, kwargs["per_layer_config"])
        for key, value in kwargs.items():
            if key in ("torch_dtype", "name_or_path", "transformers_version", "_commit_hash"):
                continue
            cfg.attrs.setdefault(cfg.key(key), value)
            cfg.origin.setdefault(cfg.key(key), "config.json")
        return None

    def _declares(self, cfg: ConfigObj, name: str) -> bool:
        if cfg.cls is None:
            return False
        return self.interp.project.find_annotation(cfg.cls, name) is not None

    def _sub_configs(self, cfg: ConfigObj) -> None:
        if cfg.cls is None:
            return
        for attr_name in ("sub_configs_defaults", "sub_configs"):
            found = self.interp.project.find_class_attr(cfg.cls, attr_name)
            if found is None:
                continue
            try:
                specs = self.interp.class_attr_value(found[0], found[1])
            except Unknown:
                continue
            if not isinstance(specs, dict):
                continue
            for key, spec in specs.items():
                current = cfg.attrs.get(key)
                if current is UNKNOWN:
                    current = None
                if not (current is None or isinstance(current, dict)):
                    continue
                sub_cls = self._sub_config_class(spec, current)
                if sub_cls is None:
                    continue
                try:
                    sub = self.build(sub_cls, dict(current or {}), prefix=f"{key}.")
                except BudgetExceeded:
                    raise
                except Unknown:
                    continue
                cfg.attrs[key] = sub

    def _sub_config_class(self, spec, values: dict | None) -> ClassInfo | None:
        """The config class of a sub-config: a class, or `SubConfigSpec(AutoConfig, model_type=)`
        resolved through the installed transformers (the config.json's own model_type wins)."""
        if isinstance(spec, ClassRef):
            return spec.cls
        if not (isinstance(spec, CallRec) and spec.name.endswith("SubConfigSpec")):
            return None
        config_class = spec.kwargs.get("config_class", spec.args[0] if spec.args else None)
        if isinstance(config_class, ClassRef):
            return config_class.cls
        model_type = (values or {}).get("model_type") or spec.kwargs.get("model_type")
        if not isinstance(model_type, str):
            return None
        from codegen.analyze.locate import model_type_files

        try:
            _, configuration, class_name = model_type_files(model_type)
        except CodegenError:
            return None
        if configuration is None:
            return None
        sf = self.interp.project.try_load(configuration)
        return sf.classes.get(class_name) if sf is not None else None


def _get(interp: Interp, cfg: ConfigObj, name: str, default: Any = None) -> Any:
    try:
        return cfg.lookup(name)
    except _Missing:
        pass
    if cfg.cls is not None:
        found = interp.project.find_class_attr(cfg.cls, name)
        if found is not None:
            try:
                return interp.class_attr_value(found[0], found[1])
            except Unknown:
                return default
    if default is None and name in NATIVE_CONFIG_ATTRS:
        return NATIVE_CONFIG_ATTRS[name]
    return default


def _nested_keys(interp: Interp, cfg: ConfigObj, rope_parameters) -> list:
    if not isinstance(rope_parameters, dict):
        return []
    labels = _get(interp, cfg, "_rope_type_labels") or _get(interp, cfg, "layer_types") or ()
    if not isinstance(labels, list | tuple | dict | set):
        return []
    return [key for key in rope_parameters if key in labels]


class _LayerConfig(ConfigObj):
    """`config.per_layer_config[i]` of a heterogeneous config (PreTrainedConfig's
    `per_layer_config` kwarg): layer i's overrides (gemma4's full-attention head_dim), the
    config's own values for every other key."""

    def __init__(self, base: ConfigObj, overrides: dict) -> None:
        super().__init__(base.cls, base.prefix)
        self.base, self.overrides = base, overrides
        self.attribute_map = base.attribute_map

    def lookup(self, name: str):
        key = self.key(name)
        if key in self.overrides:
            return self.overrides[key]
        return self.base.lookup(name)


class _PerLayerConfigs(dict):
    """Layer index -> its overrides, as config.json carries them (so a toy written from
    these values keeps them); indexing gives the layer's config view, the config itself for
    a layer without overrides."""

    def __init__(self, base: ConfigObj, overrides: dict) -> None:
        super().__init__(overrides)
        self.base = base

    def __getitem__(self, key):
        for spelled in (key, str(key)):  # config.json spells the layer indices as strings
            if dict.__contains__(self, spelled):
                overrides = dict.__getitem__(self, spelled)
                return _LayerConfig(self.base, {self.base.key(k): v for k, v in overrides.items()})
        return self.base


def _per_layer_configs(cfg: ConfigObj, overrides: dict) -> _PerLayerConfigs:
    return _PerLayerConfigs(cfg, {k: v for k, v in overrides.items() if isinstance(v, dict)})


def _native_convert_rope(interp: Interp, cfg: ConfigObj, args, kwargs) -> dict:
    """PreTrainedConfig.convert_rope_params_to_dict, on plain data."""
    kwargs = dict(kwargs.items if isinstance(kwargs, _KwargsBag) else kwargs)
    rope_scaling = kwargs.pop("rope_scaling", None)
    params = rope_scaling or cfg.attrs.get("rope_parameters")
    if params is UNKNOWN:
        params = None
    params = dict(params) if isinstance(params, dict) else {}
    cfg.attrs["rope_parameters"] = params
    default_theta = _get(interp, cfg, "default_theta", 10_000.0)
    if not isinstance(default_theta, int | float):
        default_theta = 10_000.0
    rope_theta = kwargs.pop("rope_theta", _get(interp, cfg, "rope_theta", default_theta))
    partial = kwargs.pop("partial_rotary_factor", _get(interp, cfg, "partial_rotary_factor"))
    if "rope_theta" in cfg.extra_kwargs or rope_scaling is not None:
        cfg.origin["rope_parameters"] = "config.json"
    nested = _nested_keys(interp, cfg, params)
    groups = [params[k] for k in nested] or [params]
    for group in groups:
        if isinstance(group, dict):
            group.setdefault("rope_theta", rope_theta)
            if partial is not None:
                group.setdefault("partial_rotary_factor", partial)
    _native_standardize(interp, cfg, [], {})
    return kwargs


def _native_standardize(interp: Interp, cfg: ConfigObj, args, kwargs):
    """PreTrainedConfig.standardize_rope_params, on plain data."""
    rope_theta = _get(interp, cfg, "rope_theta")
    partial = _get(interp, cfg, "partial_rotary_factor")
    params = cfg.attrs.get("rope_parameters") or {}
    if not isinstance(params, dict):
        return None
    default_type = _get(interp, cfg, "default_rope_type", "default")
    nested = _nested_keys(interp, cfg, params)
    if not (params or rope_theta):
        return None
    groups = [params[k] for k in nested if isinstance(params.get(k), dict)] if nested else [params]
    for group in groups:
        group.setdefault("rope_type", group.get("type", "default"))
        group.setdefault("rope_theta", rope_theta)
        if partial is not None:
            group.setdefault("partial_rotary_factor", partial)
        if default_type != "default" and group["rope_type"] == "default":
            group["rope_type"] = default_type
        if group["rope_type"] in _ROPE_SCALED_TYPES:
            original = _get(interp, cfg, "original_max_position_embeddings")
            if original is not None and not nested:
                group["original_max_position_embeddings"] = original
            else:
                group.setdefault(
                    "original_max_position_embeddings",
                    _get(interp, cfg, "max_position_embeddings"),
                )
    cfg.attrs["rope_parameters"] = params
    return None


def text_config_values(values: dict, model_type: str | None) -> tuple[dict, str]:
    """The part of a config.json that configures the decoder a text class consumes."""
    if model_type and values.get("model_type") == model_type:
        return values, ""
    for key in ("text_config", "language_config", "llm_config", "thinker_config"):
        sub = values.get(key)
        if isinstance(sub, dict) and (model_type is None or sub.get("model_type") == model_type):
            return sub, f"{key}."
    return values, ""


def find_config_class_file(modeling_path: str) -> str | None:
    """`configuration_x.py` beside `modeling_x.py` (or the only configuration file there)."""
    folder = os.path.dirname(os.path.abspath(modeling_path))
    base = os.path.basename(modeling_path)
    if base.startswith("modeling_"):
        candidate = os.path.join(folder, "configuration_" + base[len("modeling_") :])
        if os.path.isfile(candidate):
            return candidate
    others = sorted(
        f for f in os.listdir(folder) if f.startswith("configuration_") and f.endswith(".py")
    )
    return os.path.join(folder, others[0]) if len(others) == 1 else None


__all__ = [
    "ConfigBuilder",
    "Frame",
    "attr",
    "find_config_class_file",
    "load_json",
    "text_config_values",
]
