"""BERT-family causal LMs through the planner: megatron-bert (pre-LN, an embeddings module
without a norm, the prediction head, a head bias shared with cls.predictions.bias) and
rembert (post-LN, narrower tables normed then projected, a head of its own width) are
scaffolded with no hand-written step and pass verify in fp32; the same plans without the
embeddings module's row, the prediction head, or with a wrong head activation fail."""

from __future__ import annotations

import dataclasses

import pytest

from codegen.scaffold.pipeline import scaffold_into, verify_generated
from codegen.scaffold.plan import make_plan
from codegen.scaffold.target import load_target


def _scaffold(tmp_path, model_type: str, edit=None):
    target = load_target(model_type)
    plan = make_plan(target)
    rules = [step.rule for step in plan.steps]
    assert {"embedding_module", "head_transform"} <= set(rules)
    steps = list(plan.steps) if edit is None else edit(list(plan.steps))
    models = tmp_path / "models"
    name = model_type.replace("-", "_")
    scaffold_into(models, plan.reference, name, [model_type], steps, features=target.features)
    return verify_generated(models, name, ("fp32",), switches=False)


def _failed(results) -> bool:
    return any(r.status == "fail" for r in results)


@pytest.mark.parametrize("model_type", ["megatron-bert", "rembert"])
def test_planned_package_verifies(tmp_path, model_type):
    results = _scaffold(tmp_path, model_type)
    assert results and not _failed(results), [(r.case, r.error) for r in results]


def _without(rule: str):
    return lambda steps: [s for s in steps if s.rule != rule]


def _activation(name: str):
    def edit(steps):
        return [
            dataclasses.replace(s, params={**s.params, "activation": name})
            if s.rule == "head_transform"
            else s
            for s in steps
        ]

    return edit


@pytest.mark.parametrize(
    "model_type, edit",
    [
        ("rembert", _without("embedding_module")),
        ("megatron-bert", _without("head_transform")),
        ("megatron-bert", _activation("gelu_new")),
    ],
)
def test_without_the_step_or_with_a_wrong_one_verify_fails(tmp_path, model_type, edit):
    assert _failed(_scaffold(tmp_path, model_type, edit))


@pytest.mark.parametrize(
    "model_type, field",
    [("modernbert-decoder", "classifier_activation"), ("megatron-bert", "hidden_act")],
)
def test_the_planned_head_pins_the_field_its_activation_is_read_from(model_type, field):
    """ModernBERT-decoder's head looks its activation up by classifier_activation, not the
    FFN's field: the plan pins it, so a config naming another one is refused."""
    (step,) = [s for s in make_plan(load_target(model_type)).steps if s.rule == "head_transform"]
    assert step.params["activation_field"] == field
