"""End to end: transformers' gemma4 text model with `attention_k_eq_v` (its full-attention
layers build no value projection; values are the keys' projection before k_norm and the
rotation), planned from its analysis, scaffolded and verified in both settings of the switch.
Seeded defects, each a slip of where the values are read, fail verify naming the attention of
the first full-attention layer."""

from __future__ import annotations

import pytest

from codegen.models import load_spec
from codegen.scaffold.plan import make_plan
from codegen.scaffold.target import load_target
from codegen.scaffold.testing import seed, verify_toy, write_planned
from codegen.verify.run import Case
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


def _first_full(case) -> int:
    return case.config.layer_types.index("full_attention")


def test_package_verifies_with_keys_as_values(tmp_path, planned, case):
    models, name = write_planned(tmp_path / "models", planned)
    results = verify_toy(models, name, ("fp32", "bf16"), case)
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
    models, name = write_planned(tmp_path / "models", planned)
    case = Case(f"{TARGET}+attention_k_eq_v=True+global_kv=1", config)
    results = verify_toy(models, name, ("fp32", "bf16"), case)
    assert all(r.passed for r in results), [r.error or r.first_divergence for r in results]


def test_package_without_the_rule_refuses_the_setting(tmp_path, planned, case):
    models, name = write_planned(tmp_path / "models", planned, without="keys_as_values")
    spec = load_spec(name, models)
    with pytest.raises(NotImplementedError, match="attention_k_eq_v"):
        spec.args.from_hf_config(case.config)


def test_values_after_the_rotation_fail_in_the_full_layer(tmp_path, planned, case):
    models, name = write_planned(tmp_path / "models", planned)
    seed(
        models,
        name,
        "k = apply_rotary(k, cos, sin)",
        "k = apply_rotary(k, cos, sin)\n"
        "            v = self.v_norm(k) if self.wv is None else v",
    )
    (result,) = verify_toy(models, name, case=case)
    assert not result.passed
    assert result.first_divergence.startswith(f"layers.{_first_full(case)}.attention"), (
        result.first_divergence
    )


def test_values_after_the_key_norm_fail_in_the_full_layer(tmp_path, planned, case):
    models, name = write_planned(tmp_path / "models", planned)
    seed(
        models,
        name,
        "(keys if self.wv is None else self.wv(x))",
        "(self.k_norm(keys.view(batch, seq, -1, self.head_dim)).flatten(2)"
        " if self.wv is None else self.wv(x))",
    )
    (result,) = verify_toy(models, name, case=case)
    assert not result.passed
    assert result.first_divergence.startswith(f"layers.{_first_full(case)}.attention"), (
        result.first_divergence
    )
