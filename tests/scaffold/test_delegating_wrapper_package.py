"""End to end: moshi's text decoder (llama with projections wrapped in a module that only
delegates to its inner nn.Linear, checkpoint keys `q_proj.linear.weight`; a fused [gate |
up] projection as wide as `ffn_dim`, each half the FFN's width; a word table one row taller
than the head; RMSNorm weights applied in fp32), planned from its analysis, scaffolded and
verified against the installed transformers model (fp32). Seeded defects fail verify."""

from __future__ import annotations

import pytest

from codegen.models import load_spec
from codegen.scaffold.testing import seeded_copy, write_planned
from codegen.verify.run import Case, verify_case
from codegen.verify.tiny_config import tiny_config


@pytest.fixture(scope="module")
def planned():
    from codegen.scaffold.plan import make_plan
    from codegen.scaffold.target import load_target

    target = load_target("moshi")
    plan = make_plan(target)
    assert plan.complete, plan.gaps
    assert {"extra_word_rows", "fused_gate_up"} <= {s.rule for s in plan.steps}
    return target, plan


@pytest.fixture(scope="module")
def package(planned, tmp_path_factory):
    return write_planned(tmp_path_factory.mktemp("wrapped") / "models", planned)


def _verify(models, name):
    case = Case("moshi+test", tiny_config("moshi"))
    (result,) = verify_case(load_spec(name, models), case, ["fp32"], gradients=False)
    return result


def test_the_package_reads_the_wrapped_keys_and_verifies(package):
    models, name = package
    adapter = (models / name / "state_dict_adapter.py").read_text()
    assert '"model.layers.{}.self_attn.q_proj.linear.weight"' in adapter
    args = (models / name / "args.py").read_text()
    assert "hidden_dim=hf_config.ffn_dim // 2" in args
    assert "audio_encoder_config" not in args  # the audio encoder's fields are not the decoder's
    result = _verify(models, name)
    assert result.passed, result.error or result.first_divergence


@pytest.mark.parametrize(
    "old, new, file",
    [
        ("args.vocab_size + 1,", "args.vocab_size,", "model.py"),
        ("hidden_dim=hf_config.ffn_dim // 2", "hidden_dim=hf_config.ffn_dim", "args.py"),
    ],
)
def test_a_seeded_defect_fails(package, tmp_path, old, new, file):
    models, name = package
    broken = seeded_copy(models, tmp_path / "models", name, old, new, file=file)
    assert not _verify(broken, name).passed
