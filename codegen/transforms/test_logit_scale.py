"""LogitScale: multiply (cohere) or divide (granite), composed with other return rewrites."""

from types import SimpleNamespace

import pytest

from codegen.models import references_dir
from codegen.scaffold.source import SourcePackage
from codegen.transforms import logit_scale
from codegen.transforms.logit_scale import LogitScale
from codegen.transforms.logit_softcap import LogitSoftcap


def _llama() -> SourcePackage:
    return SourcePackage.from_directory(references_dir() / "llama")


@pytest.mark.parametrize(
    ("field", "op", "meaning"),
    [("logit_scale", "*", "multiplied by"), ("logits_scaling", "/", "divided by")],
)
def test_the_returned_logits_are_scaled(field, op, meaning):
    package = _llama()
    LogitScale().apply(package, field=field, op=op)
    files = package.render()
    assert f"return self.output(self.norm(h)) {op} self.args.{field}\n" in files["model.py"]
    assert f"{field}: float = 1.0  # output logits are {meaning} this" in files["args.py"]
    assert f"{field}=hf_config.{field}," in files["args.py"]


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
