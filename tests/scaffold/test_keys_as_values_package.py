"""End to end: transformers' gemma4 text model with `attention_k_eq_v` (its full-attention
layers build no value projection; values are the keys' projection before k_norm and the
rotation), planned from its analysis, scaffolded and verified in both settings of the switch.
Seeded defects, each a slip of where the values are read, fail verify naming the attention of
the first full-attention layer."""

from __future__ import annotations

import pytest

from codegen.models import load_spec
from codegen.scaffold.pipeline import scaffold_into
from codegen.scaffold.plan import make_plan
from codegen.scaffold.target import load_target
from codegen.verify.run import Case, verify_case
from codegen.verify.tiny_config import tiny_config

TARGET = "gemma4_text"


@pytest.fixture(scope="module")
def planned():
    target = load_target(TARGET)
    plan = make_plan(target)
    assert plan.complete, plan.gaps
    assert "keys_as_values" in {step.rule for step in plan.steps}
    return target, plan


@pytest.fixture(scope="module")
def case():
    config = tiny_config(TARGET, attention_k_eq_v=True)
    return Case(f"{TARGET}+attention_k_eq_v=True", config)


def _package(tmp_path, planned, without: str | None = None):
    target, plan = planned
    models = tmp_path / "models"
    steps = [step for step in plan.steps if step.rule != without]
    scaffold_into(
        models,
        plan.reference,
        plan.name,
        list(plan.model_types),
        steps,
        features=target.features,
        target=target,
    )
    return models, plan.name


def _verify(models, name, case, dtypes=("fp32",)):
    return verify_case(load_spec(name, models), case, list(dtypes))


def _seed(models, name, old: str, new: str) -> None:
    path = models / name / "model.py"
    source = path.read_text()
    assert source.count(old) == 1, old
    path.write_text(source.replace(old, new))


def _first_full(case) -> int:
    return case.config.layer_types.index("full_attention")


def test_package_verifies_with_keys_as_values(tmp_path, planned, case):
    models, name = _package(tmp_path, planned)
    results = _verify(models, name, case, ("fp32", "bf16"))
    assert all(r.passed for r in results), [r.error or r.first_divergence for r in results]
    spec = load_spec(name, models)
    args = spec.args.from_hf_config(case.config)
    assert args.attention_k_eq_v
    model = spec.model(args)
    for layer, kind in zip(model.layers, case.config.layer_types, strict=True):
        assert (layer.attention.wv is None) == (kind == "full_attention")


def test_full_layers_with_kv_heads_of_their_own(tmp_path, planned, case):
    """As the real checkpoints: the config derives the full layers' kv heads from
    num_global_key_value_heads when attention_k_eq_v is set (the toy's explicit
    per_layer_config leaves them equal, so it is rebuilt without it)."""
    fields = case.config.to_dict()
    fields.pop("per_layer_config")
    config = type(case.config)(**{**fields, "num_global_key_value_heads": 1})
    full = _first_full(case)
    assert config.per_layer_config[full].num_key_value_heads == 1
    assert config.per_layer_config[0].num_key_value_heads != 1
    models, name = _package(tmp_path, planned)
    results = _verify(
        models, name, Case(f"{TARGET}+attention_k_eq_v=True+global_kv=1", config), ("fp32", "bf16")
    )
    assert all(r.passed for r in results), [r.error or r.first_divergence for r in results]


def test_package_without_the_rule_refuses_the_setting(tmp_path, planned, case):
    models, name = _package(tmp_path, planned, without="keys_as_values")
    spec = load_spec(name, models)
    with pytest.raises(NotImplementedError, match="attention_k_eq_v"):
        spec.args.from_hf_config(case.config)


def test_values_after_the_rotation_fail_in_the_full_layer(tmp_path, planned, case):
    models, name = _package(tmp_path, planned)
    _seed(
        models,
        name,
        "q, k = apply_rotary(q, cos, sin), apply_rotary(k, cos, sin)",
        "q, k = apply_rotary(q, cos, sin), apply_rotary(k, cos, sin)\n"
        "        v = self.v_norm(k) if self.wv is None else v",
    )
    (result,) = _verify(models, name, case)
    assert not result.passed
    assert result.first_divergence.startswith(f"layers.{_first_full(case)}.attention"), (
        result.first_divergence
    )


def test_values_after_the_key_norm_fail_in_the_full_layer(tmp_path, planned, case):
    models, name = _package(tmp_path, planned)
    _seed(
        models,
        name,
        "(keys if self.wv is None else self.wv(x))",
        "(self.k_norm(keys.view(batch, seq, -1, self.head_dim)).flatten(2)"
        " if self.wv is None else self.wv(x))",
    )
    (result,) = _verify(models, name, case)
    assert not result.passed
    assert result.first_divergence.startswith(f"layers.{_first_full(case)}.attention"), (
        result.first_divergence
    )
