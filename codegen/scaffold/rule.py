"""The shape of one row of the rule table in `rules/`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class FromFeature:
    """A rule parameter read from the target's Features (e.g. the window pattern)."""

    path: str


@dataclass(frozen=True)
class Rule:
    """When the target's `feature` has one of `values` and the reference's differs, run
    `transform` with `params` (literals, or FromFeature reads)."""

    id: str
    feature: str  # dotted Features path, e.g. "attention.qk_norm"
    values: tuple[Any, ...]  # target values this rule realises
    transform: str  # a name in codegen.transforms.catalog.TRANSFORMS
    description: str  # one line: what the generated code does differently
    params: dict[str, Any] = field(default_factory=dict)
    native_in: tuple[str, ...] = ()  # references that already have these values
    # a config switch this rule realises in every setting: when the target's HF source
    # branches on `switch` (e.g. partial_rotary_factor), the rule runs even though the
    # analysed config sits on the side the reference already has (factor 1.0);
    # `field=value`: only where one setting the source branches on is that value
    # (layer_types=sliding_attention: a window pattern, not linear-attention layers)
    switch: str = ""
    # values of the feature that one setting of `switch` gives, which the rule realises as
    # well (a window pattern whose layers are all typed sliding: 'all'): where the target
    # has the switch, the rule is planned for them instead of a rule for the constant,
    # which would ignore the switch (ministral)
    covers: tuple[Any, ...] = ()
    # a config field the reference reads as a switch for this feature (attention_bias) and
    # the HF projections whose bias the rule sets: the rule runs with the target's own bool
    # switch for exactly these biases (StableLM's use_qkv_bias), else, where the target has
    # no switch for them (mistral; helium's o_proj), with the analysed value, so the package
    # never reads a field that does not switch them; a reference that reads no `fixes`
    # field (fixed biases) takes the target's switch for exactly these biases (doge's
    # mlp_bias from qwen3)
    fixes: str = ""
    bias_of: tuple[str, ...] = ()
    # config fields through which a reference's code for the feature's other values is
    # reached (a window: sliding_window, layer_types): where the reference reads one and
    # the target's source branches on none, no target config reaches that code, so the
    # rule removes it although the reference's row accepts the target's value (glm4 from
    # qwen2, olmoe from qwen3_moe)
    reached_by: tuple[str, ...] = ()

    def resolve(self, features) -> dict[str, Any]:
        return {
            key: features.get(value.path) if isinstance(value, FromFeature) else value
            for key, value in self.params.items()
        }
