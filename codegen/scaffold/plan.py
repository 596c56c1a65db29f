"""Plan a package: the reference to start from and the ordered rule steps that close the gap.

The gap is the analyzer's delta between the target's Features and the reference's row
(`codegen.analyze.reference`). Each differing feature must be realised by a rule of the
table in `rules/` whose values include the target's; a feature no rule realises stops the
plan (nothing is written), named with its evidence. So does a compared feature the analyzer
left `unknown`, and a finding no feature represents (ALiBi, a normalised output head).
After the feature rules come the steps every package needs: the target checkpoint's key
names and config field names, and the settings the generated code hard-codes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import cache

from codegen.analyze import reference as references
from codegen.errors import CodegenError
from codegen.scaffold.build import Step
from codegen.scaffold.table import load_rules
from codegen.transforms._ffn_edits import ACTIVATIONS


@dataclass(frozen=True)
class Gap:
    """A differing feature no rule realises."""

    feature: str
    value: object
    evidence: str

    def __str__(self) -> str:
        return f"{self.feature} = {self.value!r} ({self.evidence})"


@dataclass(frozen=True)
class Plan:
    name: str
    model_types: tuple[str, ...]
    reference: str
    steps: tuple[Step, ...]
    gaps: tuple[Gap, ...] = ()
    unsupported: tuple = field(default=())  # the analyzer's own unsupported findings

    @property
    def complete(self) -> bool:
        return not self.gaps


def make_plan(target, name: str | None = None, reference: str | None = None) -> Plan:
    """The plan for a `codegen.scaffold.target.Target`.

    Without `reference`, the closest reference whose plan is complete wins (fewest rules,
    then the analyzer's order); if none is complete, the one with the fewest gaps (the
    analyzer's closest breaking ties), so the gaps are what no reference and rule realise
    (beam's scaled residual stream, not deepseek_v3's want of MLA).
    """
    if reference is None:
        best = _fewest_rules(target, name)
        if best is not None:
            return best
        reference = _fewest_gaps(target, name)
    return _plan_from(target, name, reference)


def _fewest_gaps(target, name: str | None) -> str:
    closest = target.features.reference.closest
    order = sorted(references.ORDER, key=lambda ref: ref != closest)  # stable: closest first
    partial = {ref: _plan_from(target, name, ref, own_code=False) for ref in order}
    return min(order, key=lambda ref: len(partial[ref].gaps))


def _fewest_rules(target, name: str | None) -> Plan | None:
    """The complete plan with the fewest rules, the analyzer's order breaking ties.

    A plan's steps that depend on the reference's own code (`_fixing_steps`,
    `_unreachable_steps`: they read its files) only add to the steps without them, so those
    cheaper partial plans bound each reference's count from below: a reference whose bound
    cannot beat the best full plan so far is never planned in full."""
    partial = [_plan_from(target, name, ref, own_code=False) for ref in references.ORDER]
    bounds = sorted(
        (len(_rule_steps(plan)), index) for index, plan in enumerate(partial) if plan.complete
    )
    best, best_key = None, None
    for bound, index in bounds:
        if best_key is not None and (bound, index) > best_key:
            break
        plan = _plan_from(target, name, references.ORDER[index])
        key = (len(_rule_steps(plan)), index)
        if best_key is None or key < best_key:
            best, best_key = plan, key
    return best


def _rule_steps(plan: Plan) -> list[Step]:
    """The steps that close a feature gap (hard-coding a switch the target lacks is not one)."""
    return [step for step in plan.steps if step.rule and not step.reason.startswith(_FIXING)]


def _plan_from(target, name: str | None, reference: str, *, own_code: bool = True) -> Plan:
    features = target.features
    name = name or package_name(features.model_type)
    if isinstance(name, str) and not name.isidentifier():
        raise CodegenError(f"package name {name!r} is not a Python identifier; pass another --name")
    if reference not in references.REFERENCES:
        known = ", ".join(references.ORDER)
        raise CodegenError(f"no reference named {reference!r}; references: {known}")
    differing = references.delta(features, reference)
    rules = load_rules()
    steps: list[Step] = []
    gaps: list[Gap] = []
    reads, _ = _reference_switches(reference)
    for feature in differing:
        value = references.compared_value(features, feature)
        matching = [r for r in rules if r.feature == feature and value in r.values]
        # a rule removing code the config reaches through `reached_by` fields edits only a
        # reference that reads one (deepseek_v3's expert groups: not qwen3's plain MoE)
        matching = [r for r in matching if not r.reached_by or reads & set(r.reached_by)]
        matching = _switched_instead(features, rules, feature, value, matching)
        if not matching:
            gaps.append(Gap(feature, value, _evidence(target, feature)))
            continue
        for rule in matching:
            reason = f"{feature} = {_shown(target, feature)!r} ({_evidence(target, feature)})"
            step = Step(rule.transform, rule.resolve(features), rule.id, reason)
            # a step another feature's rule already takes (GPT-Neo's window condition: the
            # window pattern's step carries it) adds nothing
            if not any((s.transform, s.params) == (step.transform, step.params) for s in steps):
                steps.append(step)
    # an undetermined feature is no match: the package would silently assume the reference's
    # value, so it stops the plan with what the analyzer could not read
    for feature in references.undetermined(features):
        gaps.append(Gap(feature, "unknown", _evidence(target, feature)))
    # findings no compared feature represents (ALiBi, a normalised head, several layer
    # stacks...): nothing realises them; listed first, as they explain the unknowns (jetmoe's
    # routed attention leaves its o_bias unread)
    compared = set(references.COMPARED)
    findings = [
        Gap(finding.feature, finding.detail, finding.evidence)
        for finding in getattr(features, "unsupported", ())
        if finding.feature not in compared
    ]
    gaps = findings + gaps
    steps += _switch_steps(features, reference, rules, {step.rule for step in steps})
    if own_code:  # the steps that read the reference's files (see `_fewest_rules`)
        fixing = _fixing_steps(target, reference, rules, {step.rule for step in steps})
        # a switch the reference lacks replaces the rule's step for the analysed constant
        replaced = {step.rule for step in fixing}
        steps = [step for step in steps if step.rule not in replaced] + fixing
        steps += _unreachable_steps(target, reference, rules, {step.rule for step in steps})
    steps.sort(key=lambda step: _rule_order(rules, step.rule))
    steps += _naming_steps(target)
    model_types = (features.model_type,) if features.model_type else (name,)
    return Plan(name, model_types, reference, tuple(steps), tuple(gaps), features.unsupported)


def _switch_steps(features, reference: str, rules, planned: set[str]) -> list[Step]:
    """Rules that realise a config switch of the HF source in all its settings, where the
    analysed config happens to sit on the reference's side of it."""
    switched = {switch.field: switch for switch in getattr(features, "switches", ())}
    # a feature a planned rule already changes sits on the other side of the switch there
    # (gpt-neox is parallel by default): that rule's layout stands, the switch is guarded
    changed = {rule.feature for rule in rules if rule.id in planned}
    steps = []
    for rule in rules:
        field, _, operand = rule.switch.partition("=")
        switch = switched.get(field) if field else None
        if operand and switch is not None and operand not in {v.operand for v in switch.values}:
            switch = None  # the field switches something else here (linear-attention layers)
        if switch is None or rule.id in planned or reference in rule.native_in:
            continue
        if rule.feature in changed:
            continue
        evidence = ", ".join(dict.fromkeys(e for v in switch.values for e in v.evidence[:1]))
        reason = f"config switch {switch.name} ({evidence or 'HF source'})"
        steps.append(Step(rule.transform, rule.resolve(features), rule.id, reason))
    return steps


def _switched_instead(features, rules, feature: str, value, matching: list) -> list:
    """The rule that realises `feature` in every setting of a config switch the source has,
    where the analysed value is one of those settings (`covers`), instead of the rules for
    that constant value."""
    switched = {switch.field: switch for switch in getattr(features, "switches", ())}
    for rule in rules:
        if rule.feature != feature or value not in rule.covers:
            continue
        field, _, operand = rule.switch.partition("=")
        switch = switched.get(field)
        if switch is not None and (not operand or operand in {v.operand for v in switch.values}):
            return [rule]
    return matching


_FIXING = "no config switch: "


def _fixing_steps(target, reference: str, rules, planned: set[str]) -> list[Step]:
    """Bias rules (`fixes`, `bias_of`) where the reference switches the biases on a config
    field: the target's own bool switch for exactly those biases is read instead
    (StableLM's `use_qkv_bias`); where no switch of the target covers them (mistral has no
    `attention_bias`, helium's switches q/k/v but never o_proj) the analysed value is
    hard-coded, so a field never decides biases the HF code does not switch. Where the
    reference fixes the biases (reads no `fixes` field) and the target switches exactly
    those, the rule reads the target's switch (doge's `mlp_bias` from qwen3), in place of
    its step for the analysed value, if planned: the package realises both settings."""
    from codegen.transforms.catalog import TRANSFORMS

    features = target.features
    reads, switched = _reference_switches(reference)
    covered = {name for rule in rules for name in rule.bias_of}
    steps = []
    for rule in rules:
        if not rule.fixes:
            continue
        if rule.fixes not in reads:
            switch = _bias_switch(features, rule.bias_of, covered=covered)
            if switch is not None:
                params = {**rule.resolve(features), "enabled": switch.field}
                evidence = ", ".join(switch.values[0].evidence[:1])
                reason = f"config switch {switch.field} ({evidence})"
                steps.append(Step(rule.transform, params, rule.id, reason))
            continue
        if rule.id in planned:
            continue
        if not set(getattr(TRANSFORMS.get(rule.transform), "modules", ())) <= switched:
            continue  # the reference's field switches other projections (DeepSeek's wq_a)
        if _bias_switch(features, rule.bias_of, field=rule.fixes) is not None:
            continue  # the reference's own reading realises it
        switch = _bias_switch(features, rule.bias_of, covered=covered)
        if switch is not None:
            params = {**rule.resolve(features), "enabled": switch.field}
            evidence = ", ".join(switch.values[0].evidence[:1])
            reason = f"config switch {switch.field} ({evidence})"
        else:
            value = features.get(rule.feature)
            if not isinstance(value, bool):
                continue
            params = {**rule.resolve(features), "enabled": value}
            evidence = _evidence(features, rule.feature)
            reason = f"{_FIXING}{rule.feature} = {value!r} ({evidence})"
        steps.append(Step(rule.transform, params, rule.id, reason))
    return steps


def _unreachable_steps(target, reference: str, rules, planned: set[str]) -> list[Step]:
    """Rules that remove reference code no config of the target reaches (`reached_by`):
    qwen2 reads `sliding_window`/`layer_types`, Glm4Config has neither and the Glm4 source
    branches on no window field, so qwen2's window path would be dead code in glm4."""
    features = target.features
    reads, _ = _reference_switches(reference)
    switched = {switch.field for switch in getattr(features, "switches", ())}
    steps = []
    for rule in rules:
        fields = set(rule.reached_by)
        if not fields or rule.id in planned or reference in rule.native_in:
            continue
        if not references.applies(features, rule.feature):
            continue  # an MoE layer rule says nothing of a dense target (minicpm3)
        if not reads & fields or switched & fields:
            continue
        value = references.compared_value(features, rule.feature)
        if value not in rule.values:
            continue
        evidence = _evidence(target, rule.feature)
        reason = f"{_FIXING}{rule.feature} = {_shown(target, rule.feature)!r} ({evidence})"
        steps.append(Step(rule.transform, rule.resolve(features), rule.id, reason))
    return steps


def _bias_switch(features, projections: tuple[str, ...], *, field=None, covered=None):
    """The target's bool switch (named `field`, if given) whose True setting biases (at
    least) `projections`; with `covered`, only one that biases nothing else than those
    (StarCoder2's `use_bias` also biases c_fc/c_proj: read for attention alone, its other
    setting would load half a model). Where the keys are the values (`attention.kv_same`),
    the key projection's bias stands for the values' too; where the query is projected
    from a latent (`attention.low_rank_q`, whose two stages the analysis finds unbiased),
    no switch biases it and none needs to."""
    stand_ins = _stand_ins(features)
    attention = getattr(features, "attention", None)
    kv_same = getattr(attention, "kv_same", False) is True
    if isinstance(getattr(attention, "low_rank_q", None), dict) and set(projections) - {"q_proj"}:
        projections = tuple(name for name in projections if name != "q_proj")
    for switch in getattr(features, "switches", ()):
        if switch.kind != "bool" or switch.container or field not in (None, switch.field):
            continue
        for value in switch.values:
            biased = {stand_ins.get(name, name) for name in _biased(value.selects)}
            biased |= {_canonical(name) for name in biased}  # modernbert's Wo is an o_proj
            biased |= {part for name in biased for part in _fused_parts(name)}
            if kv_same and "k_proj" in biased:
                biased.add("v_proj")  # the keys' projection is the values' (no projection)
            if value.label != "True" or not set(projections) <= biased:
                continue
            if covered is None or biased <= covered:
                return switch
    return None


def _stand_ins(features) -> dict[str, str]:
    """HF projections that stand for a reference's q/k/v ones: a convolutional projection's
    (`attention.conv_projection`) query and key projections, and the two halves of its values,
    which the package builds as `wv` and `wv_delayed` with v's bias."""
    conv = getattr(getattr(features, "attention", None), "conv_projection", None)
    if not isinstance(conv, dict):
        return {}
    return {
        conv["q"]: "q_proj",
        conv["k"]: "k_proj",
        conv["value"]: "v_proj",
        conv["delayed"]: "v_proj",
    }


def _canonical(name: str) -> str:
    """A projection's name as its synonym group's first (`rules/names.py`)."""
    from codegen.scaffold.table import load_names

    return next((g[0] for g in load_names().KEY_SYNONYMS if name in g), name)


def _fused_parts(name: str) -> tuple[str, ...]:
    """The projections a fused one stands for (`rules/names.py`), none for another name."""
    from codegen.scaffold.table import load_names

    return load_names().FUSED_PROJECTIONS.get(name, ())


def _biased(selects: str) -> set[str]:
    """`bias on q_proj, k_proj, v_proj; ...` (the analyzer's description) -> the names."""
    for part in selects.split("; "):
        if part.startswith("bias on "):
            return {name.strip() for name in part.removeprefix("bias on ").split(",")}
    return set()


def _reference_switches(reference: str) -> tuple[frozenset[str], frozenset[str]]:
    """The config fields the reference's `from_hf_config` reads, and the projections its
    model builds with a bias that is not a literal (`bias=args.attention_bias`)."""
    from codegen.scaffold.build import read_reference_files

    files = read_reference_files(reference)
    return _switches_of(files["model.py"], files["args.py"])


@cache
def _switches_of(model_text: str, args_text: str) -> tuple[frozenset[str], frozenset[str]]:
    """`_reference_switches` of these file contents (parsed once per process, shared with
    the build of the package: `parse_source`)."""
    from codegen.scaffold.source import parse_source
    from codegen.transforms.align_hf_keys import switched_biases
    from codegen.transforms.guard_switches import config_reads

    reads = config_reads(parse_source(args_text))
    return frozenset(reads), frozenset(switched_biases(parse_source(model_text)))


def package_name(model_type: str | None) -> str | None:
    """A Python package name for a model_type: remote code uses any spelling
    (`RefinedWebModel`, `phi-msft`); the package keeps the model_type in
    `supported_model_types` and is named `refinedwebmodel`, `phi_msft`."""
    if not model_type:
        return model_type
    name = re.sub(r"\W+", "_", model_type.lower()).strip("_")
    return f"m_{name}" if name[:1].isdigit() else name or None


def _evidence(source, feature: str) -> str:
    """The feature's evidence under the real config (what the package may cite), else its
    evidence under the toy with the toy's values left out (config fields are cited with the
    real config's values): a toy size is no fact about the target.

    `source` is a `Target`, or bare toy `Features` (then no real value is known)."""
    target = source if hasattr(source, "features") else None
    features = target.features if target is not None else source
    defaults = target.defaults if target is not None else {}
    real = _lookup(target.evidence if target is not None else {}, feature)
    if real is not None:  # its config values are the real ones; a bare field gets its value
        items = real.split("; ")
        cited = [_cited(i, defaults) if _bare_field(i) else i for i in items]
        return "; ".join(filter(None, cited)) or "?"
    toy = _lookup(features.evidence, feature)
    if toy is None:
        return "?"
    cited = [_without_toy_values(item, defaults) for item in toy.split("; ")]
    return "; ".join(filter(None, cited)) or "?"


def _shown(source, feature: str):
    """The feature's value as the text cites it (`references.shown_value`): the analysed
    number under the real config, not the category the references are compared on.

    `source` is a `Target`, or bare toy `Features` (then the category: no real value)."""
    target = source if hasattr(source, "features") else None
    features = target.features if target is not None else source
    return references.shown_value(features, feature, getattr(target, "described", None))


def _bare_field(item: str) -> bool:
    return item.startswith("config:") and "=" not in item and " " not in item


def _lookup(evidence: dict, feature: str) -> str | None:
    """The feature's own evidence, else the first evidence of its section (e.g. for `moe`)."""
    if feature in evidence:
        return evidence[feature]
    prefix = feature + "."
    found = [value for key, value in evidence.items() if key.startswith(prefix)]
    return found[0] if found else None


def _without_toy_values(item: str, defaults: dict) -> str:
    """`config:sliding_window=8` -> `config:sliding_window=4096` (the real value);
    `modeling_x.py:12 (x 9.79796)` -> `modeling_x.py:12`."""
    if not item.startswith("config:"):
        return item.split(" (", 1)[0]
    return _cited(item.split("=", 1)[0], defaults)


def _cited(item: str, defaults: dict) -> str:
    """`config:sliding_window` -> `config:sliding_window=4096`: the real config's value, when
    it is a plain one (a 26-entry `layer_types` stays a bare field); "" for a field the
    config does not have (Glm4Config has no `sliding_window`: no evidence about it)."""
    path = item.removeprefix("config:")
    if defaults and path.split(".")[0] not in defaults:
        return ""
    value = defaults
    for part in path.split("."):
        if not isinstance(value, dict) or part not in value:
            return f"config:{path}"
        value = value[part]
    plain = value is None or isinstance(value, bool | int | float | str)
    return f"config:{path}={value!r}" if plain else f"config:{path}"


def _rule_order(rules, rule_id: str) -> int:
    for index, rule in enumerate(rules):
        if rule.id == rule_id:
            return index
    return len(rules)


def config_alignment(target) -> Step:
    """The planner's config-field step alone, for a hand-picked step list: the reference's
    config reads become what `target`'s config has (or the value its code fixes)."""
    return Step(
        "align_config_fields",
        {"fields": sorted(target.config_fields), "config": _settings(target.config)},
    )


def _naming_steps(target) -> list[Step]:
    """Key names, config fields and fixed settings: computed from the package as transformed."""
    fields = sorted(target.config_fields)
    checkpoint = target.features.state_dict
    return [
        Step(
            "align_hf_keys",
            {
                "prefix": checkpoint.checkpoint_prefix or checkpoint.prefix,
                "layer_keys": [_bare(key) for key in checkpoint.checkpoint_layer_keys],
                "other_keys": list(checkpoint.checkpoint_other_keys) + list(checkpoint.tied_keys),
                **({"chunked": checkpoint.chunked} if checkpoint.chunked else {}),
            },
        ),
        *(
            [Step("interleaved_tensors", {"tensors": checkpoint.interleaved})]
            if checkpoint.interleaved
            else []
        ),
        *(
            [Step("stack_keys", {"stacks": target.features.block.recurrent_stacks})]
            if getattr(target.features.block, "recurrent_stacks", None)
            else []
        ),
        # before align_config_fields: the field it reads is read under the config's name
        *_activation_steps(target.features),
        Step("align_config_fields", {"fields": fields, "config": _settings(target.config)}),
        # before guard_switches: the width's switches (lfm2's auto-adjust) become reads
        Step("computed_ffn_width", {}),
        # before guard_switches: the guard reads the list, so no FIXED_SETTINGS pin for it
        Step("guard_per_layer_copies", {}),
        *(
            [Step("guard_layer_lists", {"fields": lists})]
            if (lists := _unrealised_layer_lists(target))
            else []
        ),
        Step("guard_switches", _guard_params(target)),
        Step("set_arg_defaults", {"config": getattr(target, "defaults", {})}),
    ]


def _activation_steps(features) -> list[Step]:
    """The FFN applies the activation the config names where HF looks it up in ACT2FN by a
    config field (any name of the table is a config the class accepts) and no head
    transform pins the same field. In a MoE, only where its routed experts (and its shared
    expert, if any) look theirs up by that same field too: one that hard-codes its
    activation keeps the package's pin."""
    ffn = features.ffn
    head_field = getattr(getattr(features, "head", None), "transform_activation_field", "")
    if (
        not ffn.activation_by_name
        or ffn.activation not in ACTIVATIONS
        or head_field == ffn.activation_field
    ):
        return []
    named = {"activation": ffn.activation, "field": ffn.activation_field}
    moe = getattr(features, "moe", None)
    if moe is None and ffn.source not in ("dense", "inline"):
        return []
    if moe is not None:
        parts = [ffn.experts_activation] + ([ffn.shared_activation] if moe.shared_experts else [])
        if any(part != named for part in parts):
            return []
    params = {**named, **({"experts": True} if moe is not None else {})}
    return [Step("activation_by_name", params)]


def _unrealised_layer_lists(target) -> list[str]:
    """The fields the HF code takes as an int or a per-layer list (`int_or_list` switches)
    that no rule gives each layer an entry of (`moe.layer_top_k` does the router's top-k,
    `moe.layer_experts` its width)."""
    moe = target.features.moe
    realised = {getattr(moe, "layer_top_k", None), getattr(moe, "layer_experts", None)}
    return [
        switch.name
        for switch in getattr(target.features, "switches", ())
        if switch.kind == "int_or_list" and not switch.container and switch.name not in realised
    ]


def _guard_params(target) -> dict:
    settings = _switch_settings(target)
    derived = {field: sorted(target.derived_fields.get(field, ())) for field in settings}
    return {"settings": settings, "derived": derived}


def _switch_settings(target) -> dict:
    """Each top-level config switch of the HF source -> its value in the config the package
    is planned for; `guard_switches` fixes those the generated code does not read. Only
    values that name a setting (a flag, a choice, None, the side of a threshold such as
    `partial_rotary_factor < 1`) are pinned: a toy size (a window of 8, a head_dim) is no
    setting to hold real checkpoints to."""
    settings = {}
    for switch in getattr(target.features, "switches", ()):
        holder = target.config
        if getattr(switch, "sub_config", False):  # attn_config.clip_qkv: pinned by that name
            holder = target.config.get(switch.container)
            holder = {switch.name: holder[switch.field]} if switch.field in (holder or {}) else {}
        elif switch.container:
            continue
        if switch.name not in holder:
            continue
        value = holder[switch.name]
        same = [v.operand for v in switch.values if v.test == "same"]
        if same and not switch.container and value is not None and value == holder.get(same[0]):
            # equal to another field (OPT's word_embed_proj_dim == hidden_size): pinned as
            # that relation, not as a toy width
            settings[switch.name] = {"same_as": same[0]}
            continue
        numeric_side = switch.kind == "threshold" and isinstance(value, (int, float))
        # a number a choice names as a case of its own (shared_intermediate_size == 0: no
        # shared MLP), not a size that merely falls in its "other" branch
        named_number = switch.kind == "choice" and any(
            v.operand == value and not isinstance(v.operand, bool) for v in switch.values
        )
        # a number a sub-config holds where None switches its computation off (DBRX's
        # ffn_config.moe_normalize_expert_weights: the p of the expert weights' norm), or a
        # spec it holds (ffn_config.ffn_act_fn: the experts' activation by name): an operand
        # of the forward, not a toy size
        operand = (
            switch.kind == "optional"
            and getattr(switch, "sub_config", False)
            and isinstance(value, (int, float, dict))
            and not any("creates " in v.selects for v in switch.values)
        )
        if isinstance(value, (bool, str)) or value is None or numeric_side or named_number:
            settings[switch.name] = value
        elif operand or (switch.kind == "number" and _selects_nothing(switch, value)):
            settings[switch.name] = value
    return settings


_COMPARE = {
    "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b,
    ">": lambda a, b: a > b,
    ">=": lambda a, b: a >= b,
    "==": lambda a, b: a == b,
    "!=": lambda a, b: a != b,
}


def _selects_nothing(switch, value) -> bool:
    """A number at 0 on the side of its comparisons where the source does nothing more
    (laguna's router softcap of 0: `> 0` applies a tanh, `<= 0` nothing): a feature switched
    off, a setting to hold checkpoints to; a size (max_window_layers=28 on its `> 0` side)
    is not one."""
    if not isinstance(value, (int, float)) or isinstance(value, bool) or value != 0:
        return False
    sides = [
        v
        for v in switch.values
        if v.test == "cmp" and v.op in _COMPARE and _COMPARE[v.op](value, v.operand)
    ]
    return bool(sides) and not any(v.selects for v in sides)


def _bare(key: str) -> str:
    """'mlp.gate_proj.weight [layers 0]' -> 'mlp.gate_proj.weight' (the table has one row)."""
    return key.split(" [", 1)[0]


def _settings(config: dict) -> dict:
    """The scalar settings of the toy config (what FIXED_SETTINGS entries are checked against)."""
    return {k: v for k, v in config.items() if isinstance(v, (bool, int, float, str)) or v is None}
