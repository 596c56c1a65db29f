"""_hf_source: reading the target's HF modeling file as a syntax tree."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from codegen.transforms._hf_source import hf_config_read, scaled_operand_at, with_hf_config
from codegen.transforms.edits import EditError, expression


def _features(tmp_path, source: str, evidence: str):
    path = tmp_path / "modeling_x.py"
    path.write_text(source)
    return SimpleNamespace(
        source=SimpleNamespace(modeling=str(path)), evidence={"head.logit_scale": evidence}
    )


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("logits = logits * self.logit_scale", ("*", "self.logit_scale")),
        (
            "logits = logits / self.config.logits_scaling  # / 2 in a comment",
            ("/", "self.config.logits_scaling"),
        ),
        ("logits = 2 * (logits * self.scale.to(logits.dtype))", ("*", "self.scale.to")),
        ("logits = (logits * 2) / config.scale[0]", ("/", "config.scale")),
        ("logits = logits * 2", None),
    ],
)
def test_the_scaled_operand_is_read_on_the_evidence_line(tmp_path, line, expected):
    features = _features(tmp_path, f"x = 1\n{line}\n", "modeling_x.py:2 (logits x 0.5)")
    assert scaled_operand_at(features, "head.logit_scale") == expected


def test_only_a_product_starting_on_the_evidence_line_counts(tmp_path):
    source = "logits = logits * self.a\nlogits = (\n    logits * self.b\n)\n"
    features = _features(tmp_path, source, "modeling_x.py:3")
    assert scaled_operand_at(features, "head.logit_scale") == ("*", "self.b")
    features = _features(tmp_path, source, "modeling_x.py:2")
    assert scaled_operand_at(features, "head.logit_scale") is None


def test_evidence_without_a_source_line_is_refused(tmp_path):
    features = _features(tmp_path, "x = 1\n", "config:logit_scale")
    with pytest.raises(EditError, match="no source line in the evidence for head.logit_scale"):
        scaled_operand_at(features, "head.logit_scale")


def test_a_self_attribute_is_followed_to_the_config_field_it_is_first_set_from():
    source = (
        "class M:\n"
        "    def __init__(self, config):\n"
        "        self.scale = 1.0\n"
        "        self.scale = config.logit_scale if config.logit_scale else 1.0\n"
        "        self.other = config.other\n"
    )
    assert hf_config_read(source, "self.scale") == "logit_scale"
    assert hf_config_read(source, "self.config.x") == "x"
    assert hf_config_read(source, "self.missing") is None
    assert hf_config_read(source, "self.scale.to") is None


def test_an_hf_expression_reads_hf_config_on_one_line():
    value = expression("(  # why\n    self.config.a / math.sqrt(config.b)\n)")
    assert with_hf_config(value) == "hf_config.a / sqrt(hf_config.b)"
