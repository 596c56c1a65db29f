"""LogitScale: multiply (cohere) or divide (granite), composed with other return rewrites."""

from types import SimpleNamespace

import pytest

from codegen.models import references_dir
from codegen.scaffold.source import SourcePackage
from codegen.transforms import logit_scale
from codegen.transforms.head_bias import SetHeadBias
from codegen.transforms.logit_scale import LogitScale
from codegen.transforms.logit_softcap import LogitSoftcap


def _llama() -> SourcePackage:
    return SourcePackage.from_directory(references_dir() / "llama")


@pytest.mark.parametrize(
    ("field", "op", "meaning"),
    [("logit_scale", "*", "multiplied by"), ("logits_scaling", "/", "divided by")],
)
def test_a_bias_free_head_takes_the_scale_on_its_input(field, op, meaning):
    """The logits are never written twice: the head is linear, so its input is scaled."""
    package = _llama()
    LogitScale().apply(package, field=field, op=op)
    files = package.render()
    assert f"return self.output(h {op} self.args.{field})\n" in files["model.py"]
    assert f"{field}: float = 1.0  # output logits are {meaning} this" in files["args.py"]
    assert f"{field}=hf_config.{field}," in files["args.py"]


@pytest.mark.parametrize(("field", "op"), [("logit_scale", "*"), ("logits_scaling", "/")])
def test_a_head_with_a_bias_keeps_the_scale_on_its_logits(field, op):
    package = _llama()
    SetHeadBias().apply(package)
    LogitScale().apply(package, field=field, op=op)
    assert f"return self.output(h) {op} self.args.{field}\n" in package.render()["model.py"]


@pytest.mark.parametrize("scale", [0.0625, 0.3])
def test_the_head_input_scaled_gives_the_logits_scaled(scale):
    """The two placements are one model: exactly for a power of two, to rounding otherwise."""
    import torch

    torch.manual_seed(0)
    head = torch.nn.Linear(64, 1000, bias=False)
    hidden = torch.randn(2, 16, 64)
    on_logits, on_input = head(hidden) * scale, head(hidden * scale)
    if scale == 0.0625:
        assert torch.equal(on_logits, on_input)
    torch.testing.assert_close(on_input, on_logits, rtol=1e-5, atol=1e-6)


def test_on_input_the_head_input_is_scaled_and_the_logits_are_not():
    package = _llama()
    LogitScale().apply(package, field="logits_scaling", op="/", on="input")
    files = package.render()
    assert "return self.output(h / self.args.logits_scaling)\n" in files["model.py"]
    assert "logits_scaling: float = 1.0  # the head's input is divided by this" in files["args.py"]


def test_on_input_is_read_from_the_features(tmp_path):
    path = tmp_path / "modeling_x.py"
    path.write_text("x = 1\nhidden_states = hidden_states / self.config.logits_scaling\n")
    features = SimpleNamespace(
        source=SimpleNamespace(modeling=str(path)),
        evidence={"head.logit_scale": "modeling_x.py:2 (head input / 10)"},
        head=SimpleNamespace(logit_scale_on="input"),
    )
    package = _llama()
    LogitScale().apply(package, features)
    assert "self.output(h / self.args.logits_scaling)" in package.render()["model.py"]


def test_an_unknown_site_is_refused():
    with pytest.raises(ValueError):
        LogitScale().apply(_llama(), field="x", op="*", on="middle")


def test_scaling_a_softcapped_return_keeps_precedence():
    package = _llama()
    LogitSoftcap().apply(package, field="final_logit_softcapping")
    LogitScale().apply(package, field="logit_scale", op="*")
    model = package.render()["model.py"]
    assert "return logits * cap * self.args.logit_scale\n" in model


def test_a_bad_operator_is_refused():
    with pytest.raises(ValueError):
        LogitScale().apply(_llama(), field="x", op="+")


@pytest.mark.parametrize(
    ("lines", "expected"),
    [
        (
            [
                "self.logit_scale = config.logit_scale",
                "logits = logits * self.logit_scale  # main diff from Llama",
            ],
            ("*", "logit_scale"),
        ),
        (
            ["x = 1", "logits = logits / self.config.logits_scaling  # main diff with Llama"],
            ("/", "logits_scaling"),
        ),
    ],
)
def test_detects_operator_and_field_from_the_evidence_line(tmp_path, lines, expected):
    path = tmp_path / "modeling_x.py"
    path.write_text("\n".join(lines) + "\n")
    features = SimpleNamespace(
        source=SimpleNamespace(modeling=str(path)),
        evidence={"head.logit_scale": "modeling_x.py:2 (logits x 0.0625)"},
    )
    assert logit_scale.detect(features) == expected


@pytest.mark.parametrize(
    ("assignment", "expected"),
    [
        ("self.logit_scale = config.logit_scale if config.logit_scale is not None else 1.0", "1.0"),
        ("self.logit_scale = config.logit_scale", None),
        ("self.logit_scale = config.logit_scale if config.other is not None else 1.0", None),
    ],
)
def test_the_scale_hf_uses_for_an_unset_field_is_read(assignment, expected):
    source = f"class M:\n    def __init__(self, config):\n        {assignment}\n"
    assert logit_scale.unset_value(source, "logit_scale") == expected


def test_an_unset_field_maps_to_the_value_hf_uses():
    package = _llama()
    LogitScale().apply(package, field="logit_scale", op="*", unset="1.0")
    args = package.render()["args.py"]
    expected = "logit_scale=hf_config.logit_scale if hf_config.logit_scale is not None else 1.0,"
    assert expected in args
