"""End to end: transformers' hrm_text (two alike layer stacks run in nested cycles, only the
last inner runs with gradients; its checkpoint fuses gate/q/k/v and gate/up), planned from
its analysis, scaffolded and verified against the installed transformers model. Seeded
defects of the recurrence fail verify and name the stack where they live. The package is
built once; each defect breaks a copy."""

from __future__ import annotations

import shutil

import pytest

from codegen.models import load_spec
from codegen.scaffold.plan import make_plan
from codegen.scaffold.target import load_target
from codegen.scaffold.testing import seed, verify_toy, write_planned
from codegen.verify.run import Case
from codegen.verify.tiny_config import tiny_config

TARGET = "hrm_text"


@pytest.fixture(scope="module")
def planned():
    target = load_target(TARGET)
    plan = make_plan(target)
    assert plan.complete, plan.gaps
    assert "recurrent_stacks" in {step.rule for step in plan.steps}
    return target, plan


@pytest.fixture(scope="module")
def built(tmp_path_factory, planned):
    return write_planned(tmp_path_factory.mktemp("hrm") / "models", planned)


def _copy(built, tmp_path):
    models, name = built
    shutil.copytree(models, tmp_path / "models")
    return tmp_path / "models", name


def test_the_toy_runs_some_inner_runs_without_gradients():
    config = tiny_config(TARGET)
    assert config.H_cycles >= 2 and config.L_cycles >= 2
    padded = [1] * max(0, config.H_cycles - len(config.L_bp_cycles)) + list(config.L_bp_cycles)
    assert any(runs < config.L_cycles for runs in padded[: config.H_cycles])


def test_package_verifies(built):
    models, name = built
    results = verify_toy(models, name, ("fp32", "bf16"))
    assert all(r.passed for r in results), [r.error or r.first_divergence for r in results]
    assert all(r.gradients_match for r in results)


def test_prefix_lm_is_a_setting_of_the_package(built):
    """The prefix block the token types open is the package's too: it reads prefix_lm and
    verifies with it off (tests/scaffold/test_type_block_package.py: with types)."""
    models, name = built
    off = Case(f"{TARGET}+prefix_lm=False", tiny_config(TARGET, prefix_lm=False))
    (result,) = verify_toy(models, name, case=off, gradients=False)
    assert result.passed, result.error or result.refused or result.first_divergence
    spec = load_spec(name, models)
    assert "prefix_lm" not in spec.args.from_hf_config.__globals__.get("FIXED_SETTINGS", {})


@pytest.mark.parametrize("grad_cycles", [[3], [1, 2, 3]])
def test_other_gradient_lists_verify(built, grad_cycles):
    """Every inner run with gradients in the last cycle; a list longer than the cycles
    (HF reads its first entries)."""
    models, name = built
    case = Case(f"{TARGET}+L_bp_cycles={grad_cycles}", tiny_config(TARGET, L_bp_cycles=grad_cycles))
    (result,) = verify_toy(models, name, case=case)
    assert result.passed and result.gradients_match, result.error or result.first_divergence


def test_package_without_the_rule_misses_the_second_stack(tmp_path, planned):
    _, plan = planned
    steps = [s for s in plan.steps if s.transform not in ("recurrent_stacks", "stack_keys")]
    models, name = write_planned(tmp_path / "models", planned, steps=steps)
    (result,) = verify_toy(models, name)
    assert not result.passed
    assert "model.H_module.layers.0" in (result.error or ""), result.error


DEFECTS = {
    # the stacks swapped: the outer stack's layers run in the inner loop
    "swapped": (
        [
            (
                "inner = self.inner(inner + h, rope, mask)",
                "inner = self.outer(inner + h, rope, mask)",
            ),
            ("h = self.outer(h + inner, rope, mask)", "h = self.inner(h + inner, rope, mask)"),
        ],
        "outer.layers.0 (HF model.H_module.layers.0) runs 6 times per forward, HF's 2",
    ),
    # the inner loop runs the outer count (2 of 3 runs per cycle)
    "cycle count": (
        [("inner_cycles=hf_config.L_cycles", "inner_cycles=hf_config.H_cycles", "args.py")],
        "inner.layers.0 (HF model.L_module.layers.0) runs 4 times per forward, HF's 6",
    ),
}


@pytest.mark.parametrize("defect", DEFECTS)
def test_seeded_recurrence_defects_fail_naming_the_stack(tmp_path, built, defect):
    models, name = _copy(built, tmp_path)
    edits, named = DEFECTS[defect]
    for edit in edits:
        seed(models, name, *edit)
    (result,) = verify_toy(models, name, gradients=False)
    assert not result.passed
    assert result.first_divergence.startswith(named), result.first_divergence


def test_every_inner_run_with_gradients_fails_naming_the_inner_stack(tmp_path, built):
    """Without the no-grad schedule the logits are HF's, the gradients are not: the inner
    stack's runs carry autograd where HF cuts them off (cycle 0: only run 3; cycle 1: runs
    5 and 6), and the outer stack's gradients are the first tensor off (its first cycle's
    output reaches the loss through those runs)."""
    models, name = _copy(built, tmp_path)
    seed(
        models,
        name,
        "torch.is_grad_enabled() and step >= grad_from",
        "torch.is_grad_enabled()",
    )
    (result,) = verify_toy(models, name)
    assert not result.passed and not result.gradients_match
    assert result.first_divergence is None
    assert result.first_gradient_divergence.startswith(
        "inner.layers.0 (HF model.L_module.layers.0) carries gradients on calls"
        " [1, 2, 3, 4, 5, 6], HF's on [3, 5, 6]; first tensor: model.H_module.layers."
    ), result.first_gradient_divergence
