"""A renamed copy whose code windows layers by `layer_types` keeps the pattern (issue 9).

Mellum's copy stores its experts fused (transformers converts no checkpoint of remote code),
which made the qwen3_moe route the cheapest. That reference windows every layer whenever
`sliding_window` is set; the copy sets it (its layers are all typed full) and windows only
"sliding_attention" layers. The pattern rule realises the `layer_types` switch wherever the
reference does not have it, so every plan of the copy windows by layer type.
"""

from __future__ import annotations

from types import SimpleNamespace

from codegen.analyze.switches import Switch, SwitchValue
from codegen.scaffold.plan import _switch_steps, make_plan
from codegen.scaffold.table import load_rules
from codegen.scaffold.target import load_target
from codegen.verify.remote_fixture import neutral_name, remote_folder

PATTERN = "sliding_window_pattern"


def _windows_by_layer_type(plan) -> bool:
    native = next(rule for rule in load_rules() if rule.id == PATTERN).native_in
    return plan.reference in native or PATTERN in {step.rule for step in plan.steps}


def test_the_renamed_mellum_copy_windows_by_layer_type_from_any_reference(tmp_path) -> None:
    folder = remote_folder("mellum", tmp_path, name=neutral_name("mellum"))
    target = load_target(str(folder))
    assert target.features.attention.sliding_window == "none"  # no layer typed sliding
    for reference in ("qwen3", "qwen3_moe"):
        plan = make_plan(target, reference=reference)
        assert _windows_by_layer_type(plan), (reference, [s.rule for s in plan.steps])
    assert _windows_by_layer_type(make_plan(target))


def _layer_types(*operands: str) -> SimpleNamespace:
    values = tuple(SwitchValue(f"layers {o!r}", "layers", o) for o in operands)
    switches = (Switch("layer_types", "per_layer", values),)
    # features that read no other value: rules resolve their feature arguments through .get
    return SimpleNamespace(switches=switches, get=lambda path, default=None: default)


def test_the_pattern_realises_only_a_sliding_layer_types_switch() -> None:
    rules = load_rules()
    sliding = _switch_steps(_layer_types("sliding_attention"), "qwen3_moe", rules, set())
    assert PATTERN in {step.rule for step in sliding}
    native = _switch_steps(_layer_types("sliding_attention"), "qwen3", rules, set())
    assert PATTERN not in {step.rule for step in native}
    hybrid = _switch_steps(_layer_types("linear_attention"), "qwen3_moe", rules, set())
    assert PATTERN not in {step.rule for step in hybrid}
