"""config_reads: which `hf_config` reads count, and which fields a real config answers to."""

import libcst as cst
import pytest

from codegen.scaffold.build import _config_answers
from codegen.scaffold.config_reads import MissingConfigFields, check_config_reads, config_reads
from codegen.scaffold.target import load_target

ARGS = """from dataclasses import dataclass


@dataclass
class ModelArgs:
    @classmethod
    def from_hf_config(cls, hf_config):
        extra = hf_config.extra if hasattr(hf_config, "extra") else 0
        if hasattr(hf_config, "window"):
            window = hf_config.window
        guarded = hasattr(hf_config, "gate") and hf_config.gate
        per_layer = hf_config.to_dict().get("per_layer_config")
        return cls(
            dim=hf_config.hidden_size,
            head_dim=getattr(hf_config, "head_dim", None) or hf_config.d_model // 2,
            other=hf_config.window,
        )
"""


def test_plain_reads_are_flagged_with_their_lines():
    assert config_reads(cst.parse_module(ARGS)) == [
        ("hidden_size", 14),
        ("d_model", 15),
        ("window", 16),  # outside the hasattr test's branch
    ]


def test_getattr_hasattr_guards_and_method_calls_are_not_reads():
    fields = {field for field, _ in config_reads(cst.parse_module(ARGS))}
    assert not fields & {"head_dim", "extra", "gate", "to_dict"}


def test_a_read_the_config_lacks_is_one_line_naming_field_line_and_fix():
    with pytest.raises(MissingConfigFields) as err:
        check_config_reads(ARGS, {"hidden_size", "window"}, target="toy", config_class="ToyConfig")
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith("toy: from_hf_config would read hf_config.d_model (args.py:15),")
    assert "ToyConfig does not have" in message and "CONFIG_ALIASES" in message
    assert err.value.reads == [("d_model", 15)]


def test_a_field_read_twice_is_named_once_with_its_lines():
    with pytest.raises(MissingConfigFields) as err:
        check_config_reads(
            "a = hf_config.a\nb = hf_config.b + hf_config.a", {"b"}, target="toy", config_class=None
        )
    assert "would read hf_config.a (args.py:1, 2), which its config class" in str(err.value)


def test_attribute_map_names_and_properties_are_fields_the_config_has():
    """WhisperConfig answers to `hidden_size` only through its attribute_map (d_model);
    FalconConfig's `head_dim` is a property and `model_type` a class attribute."""
    whisper = _config_answers([], load_target("whisper"))
    check_config_reads(
        "x = hf_config.hidden_size + hf_config.d_model",
        whisper,
        target="whisper",
        config_class="WhisperConfig",
    )
    with pytest.raises(MissingConfigFields, match=r"hf_config\.intermediate_size \(args.py:1\)"):
        check_config_reads(
            "x = hf_config.intermediate_size", whisper, target="whisper", config_class=None
        )
    falcon = _config_answers([], load_target("falcon"))
    check_config_reads(
        "x = (hf_config.head_dim, hf_config.model_type)",
        falcon,
        target="falcon",
        config_class="FalconConfig",
    )
