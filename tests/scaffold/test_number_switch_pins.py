"""A number switch is pinned (FIXED_SETTINGS) on the side of its comparisons where the
source does nothing more, and left free where it is a size the code only scales by."""

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
