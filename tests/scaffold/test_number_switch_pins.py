"""Config switches in the plan: a number switch is pinned (FIXED_SETTINGS) on the side of
its comparisons where the source does nothing more, and left free where it is a size the
code only scales by; a window every layer is typed for is planned as the layer_types
pattern where the source has that switch."""

from __future__ import annotations

from types import SimpleNamespace

from codegen.analyze.switches import Switch, SwitchValue
from codegen.scaffold.plan import _switch_settings


def _number(field: str, selects_above: str, selects_below: str = "") -> Switch:
    return Switch(
        field,
        "number",
        (
            SwitchValue("<= 0", "cmp", 0, "<=", selects=selects_below),
            SwitchValue("> 0", "cmp", 0, ">", selects=selects_above),
        ),
    )


def _target(config: dict, *switches: Switch):
    return SimpleNamespace(features=SimpleNamespace(switches=switches), config=config)


def test_an_off_cap_is_pinned_and_a_size_is_not():
    """laguna's router softcap of 0 (`> 0` applies a tanh) is a setting; minimax_m3's
    index_local_blocks of 1 sits on the side that builds something: a toy size."""
    cap = _number("moe_router_logit_softcapping", "calls tanh")
    blocks = _number("index_local_blocks", "calls arange, clamp")
    target = _target({"moe_router_logit_softcapping": 0.0, "index_local_blocks": 1}, cap, blocks)
    assert _switch_settings(target) == {"moe_router_logit_softcapping": 0.0}
    on = _target({"moe_router_logit_softcapping": 30.0}, cap)
    assert _switch_settings(on) == {}  # a cap that is on is a value the package must read
    # qwen2's max_window_layers=28: the `== 0` side windows every layer, `> 0` says nothing
    # more, yet 28 is a layer count, not a switched-off feature
    layers = Switch(
        "max_window_layers",
        "number",
        (
            SwitchValue("== 0", "cmp", 0, "==", selects="layer_types: 'sliding_attention'"),
            SwitchValue("> 0", "cmp", 0, ">"),
        ),
    )
    assert _switch_settings(_target({"max_window_layers": 28}, layers)) == {}


def test_a_field_equal_to_another_is_pinned_as_that_relation():
    """OPT's word_embed_proj_dim equal to hidden_size (no projections between them) is
    pinned as the relation, not the toy's width; unequal, the package was planned for the
    other side and nothing is pinned."""
    same = Switch(
        "word_embed_proj_dim",
        "optional",
        (
            SwitchValue("== hidden_size", "same", "hidden_size"),
            SwitchValue("!= hidden_size", "differs", "hidden_size"),
        ),
    )
    equal = _target({"word_embed_proj_dim": 96, "hidden_size": 96}, same)
    assert _switch_settings(equal) == {"word_embed_proj_dim": {"same_as": "hidden_size"}}
    assert _switch_settings(_target({"word_embed_proj_dim": 48, "hidden_size": 96}, same)) == {}


def test_every_layer_typed_sliding_is_planned_as_a_pattern():
    """ministral's layers are all typed sliding by default: the window pattern (which reads
    layer_types) is planned, not a window on every layer that ignores layer_types; mistral,
    with no layer_types switch, keeps the window on every layer."""
    from codegen.scaffold.plan import make_plan
    from codegen.scaffold.target import load_target

    def rules(model_type):
        return {step.rule for step in make_plan(load_target(model_type)).steps}

    assert "sliding_window_pattern" in rules("ministral")
    assert "sliding_window_all" not in rules("ministral")
    assert "sliding_window_all" in rules("mistral")
