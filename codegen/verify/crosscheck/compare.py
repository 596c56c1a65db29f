"""The static analysis in the observer's terms, and the per-field comparison.

`expected(features)` maps `Features` onto the observed field names (`observe.py`): most are
the analyzer's own dotted names; `ffn.gated` folds `ffn.gate_up_layout` ("none" is ungated), key
sets drop the "[layers ...]" note. A field is compared only when the observer measured it.
"""

from __future__ import annotations

import re
from typing import Any

from codegen.analyze.features import UNKNOWN, Features
from codegen.analyze.latent_extras import LATENT_NORM_EPS

_LAYER_NOTE = re.compile(r"\s*\[layers? [^\]]*\]$")
_SHIFT = re.compile(r"\{[+-]\d+\}")


def expected(features: Features, config=None) -> dict[str, Any]:
    """The static facts under the observed names; `config` (the built model's) gives the
    latent norms' epsilon of latent attention (MLA) as the number the analysis names."""
    sd = features.state_dict
    out: dict[str, Any] = {
        "state_dict.layer_keys": _keys(sd.layer_keys),
        "state_dict.other_keys": _keys(sd.other_keys),
        "state_dict.checkpoint.layer_keys": _keys(sd.checkpoint_layer_keys or sd.layer_keys),
        "state_dict.checkpoint.other_keys": _keys(sd.checkpoint_other_keys or sd.other_keys)
        - frozenset(sd.tied_keys),
    }
    a, ffn, norm = features.attention, features.ffn, features.norm
    for name in ("fused_qkv", "qkv_bias", "o_bias", "qk_norm", "sinks"):
        out[f"attention.{name}"] = getattr(a, name)
    if a.kind == "mla":
        out["attention.latent_norms"] = a.latent_norms
        out["attention.latent_norm_eps"] = _latent_eps(a.latent_norm_eps, config)
    layout = ffn.gate_up_layout
    out["ffn.gated"] = layout if layout == UNKNOWN else layout != "none"
    out["ffn.fused_gate_up"] = ffn.fused_gate_up
    out["ffn.bias"] = ffn.bias
    moe = features.moe
    if moe is not None:
        out["moe.num_experts"] = moe.num_experts
        out["moe.router_bias"] = moe.router_bias
        # shared experts the router scores with the routed ones (inkling's) are `scored_shared`
        out["moe.shared_experts"] = bool(moe.shared_experts) or moe.scored_shared is not None
        out["moe.shared_expert_gate"] = moe.shared_expert_gate
        out["moe.expert_layout"] = moe.expert_layout
        out["moe.module_layout"] = moe.module_layout
    out["norm.kind"] = norm.kind
    out["norm.bias"] = norm.bias
    out["rope.partial_rotary"] = _fraction(features.rope.partial_rotary)
    out["embedding.tied"] = features.embedding.tied
    out["embedding.scale"] = features.embedding.scale
    out["head.logit_scale"] = features.head.logit_scale
    out["head.logit_softcap"] = features.head.logit_softcap
    return out


def _latent_eps(kind: str, config):
    """`attention.latent_norm_eps` as a number: 1e-6 (default), the config's rms_norm_eps
    (norm_eps); "other" stays a name."""
    if kind == "default":
        return LATENT_NORM_EPS
    if kind == "norm_eps" and config is not None:
        return float(getattr(config, "rms_norm_eps", None) or 0.0) or kind
    return kind


def _keys(keys) -> frozenset[str]:
    """Key templates without the layer note; a shifted index (`{-1}`: stored one below the
    layer's own) is a `{}` to the observer, which sees indices, not which layer they mean."""
    return frozenset(_SHIFT.sub("{}", _LAYER_NOTE.sub("", k)) for k in keys)


def _fraction(value):
    return (
        round(value, 4) if isinstance(value, float | int) and not isinstance(value, bool) else value
    )


def compare(static: dict[str, Any], observed: dict[str, Any]) -> dict[str, tuple[bool, str]]:
    """field -> (agrees, detail) for every observed field."""
    out: dict[str, tuple[bool, str]] = {}
    for name, seen in sorted(observed.items()):
        if name.startswith("moe.") and name not in static:
            out[name] = (False, f"observed {seen!r}, static: no MoE")
            continue
        said = static.get(name, "missing")
        if isinstance(seen, frozenset):
            said = said if isinstance(said, frozenset) else frozenset()
            missing, extra = sorted(seen - said), sorted(said - seen)
            detail = f"not predicted {missing[:4]}, predicted but absent {extra[:4]}"
            out[name] = (not missing and not extra, detail)
        else:
            out[name] = (said == seen, f"static {said!r}, observed {seen!r}")
    return out
