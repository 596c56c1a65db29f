"""GuardSwitches: before/after."""

from codegen.transforms.guard_switches import GuardSwitches, config_reads
from codegen.transforms.testing import package_of

BEFORE = """
FIXED_SETTINGS = {"hidden_act": "silu"}


def from_hf_config(hf_config):
    require_settings(hf_config, FIXED_SETTINGS)
    window = getattr(hf_config, "sliding_window", None)
    return Args(bias=hf_config.attention_bias, window=window)
"""

AFTER = """
FIXED_SETTINGS = {"hidden_act": "silu", "qkv_bias": True, "clip_qkv": None}


def from_hf_config(hf_config):
    require_settings(hf_config, FIXED_SETTINGS)
    window = getattr(hf_config, "sliding_window", None)
    return Args(bias=hf_config.attention_bias, window=window)
"""


def test_unread_switches_are_fixed_and_read_ones_left_alone():
    package = package_of({"args.py": BEFORE})
    settings = {
        "attention_bias": False,  # read: the package branches on it
        "sliding_window": 8,  # read through getattr
        "hidden_act": "gelu",  # already listed: not overwritten
        "qkv_bias": True,
        "clip_qkv": None,
    }
    GuardSwitches().apply(package, settings=settings)
    assert package.render()["args.py"] == AFTER


def test_nothing_to_guard_leaves_the_file_as_is():
    package = package_of({"args.py": BEFORE})
    GuardSwitches().apply(package, settings={"attention_bias": True})
    assert package.render()["args.py"] == BEFORE


def test_config_reads_sees_attributes_and_getattr():
    import libcst as cst

    reads = config_reads(cst.parse_module(BEFORE))
    assert reads == {"attention_bias", "sliding_window"}


def test_a_switch_realised_through_a_derived_field_is_not_fixed():
    package = package_of({"args.py": BEFORE})
    GuardSwitches().apply(
        package,
        settings={"use_sliding_window": True},
        derived={"use_sliding_window": ["sliding_window", "layer_types"]},
    )
    assert package.render()["args.py"] == BEFORE


SUB_CONFIG = """
FIXED_SETTINGS = {}


def from_hf_config(hf_config):
    require_settings(hf_config, FIXED_SETTINGS)
    return Args(clip=hf_config.attn_config.clip_qkv)
"""


def test_a_sub_config_switch_is_read_or_fixed_by_its_dotted_name():
    """`attn_config.clip_qkv` is read through `hf_config.attn_config.clip_qkv`; the unread
    `attn_config.softmax_scale` is pinned, and `require_settings` then refuses other values
    in one line naming the field."""
    import types

    import libcst as cst
    import pytest

    from codegen.config_checks import require_settings

    assert config_reads(cst.parse_module(SUB_CONFIG)) == {"attn_config", "attn_config.clip_qkv"}
    package = package_of({"args.py": SUB_CONFIG})
    settings = {"attn_config.clip_qkv": None, "attn_config.softmax_scale": None}
    GuardSwitches().apply(package, settings=settings)
    assert 'FIXED_SETTINGS = {"attn_config.softmax_scale": None}' in package.render()["args.py"]
    fixed = {"attn_config.softmax_scale": None}
    config = types.SimpleNamespace(attn_config=types.SimpleNamespace(softmax_scale=None))
    require_settings(config, fixed)  # the pinned value: accepted
    require_settings(types.SimpleNamespace(attn_config={"softmax_scale": None}), fixed)
    config.attn_config.softmax_scale = 0.5
    with pytest.raises(NotImplementedError, match=r"attn_config\.softmax_scale=0\.5 is not"):
        require_settings(config, fixed)
    with pytest.raises(NotImplementedError, match="softmax_scale=0.25"):
        require_settings(types.SimpleNamespace(attn_config={"softmax_scale": 0.25}), fixed)
