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
