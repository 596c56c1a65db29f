"""End to end: a decoder whose last layers reuse the keys and values of the last earlier
layer of their kind (transformers' gemma4 text model with `num_kv_shared_layers` set; gemma3n
shares the same way), planned from its analysis, scaffolded and verified against the
installed transformers model with half its layers reusing. Seeded defects, each a slip of
the sharing, fail verify and name the first reusing layer's attention."""

from __future__ import annotations

import pytest

from codegen.scaffold.plan import make_plan
from codegen.scaffold.target import load_target
from codegen.scaffold.testing import seed, verify_toy, write_planned
from codegen.verify.run import Case
from codegen.verify.tiny_config import tiny_config

TARGET = "gemma4_text"


def sharing_case() -> Case:
    """The toy's layer pattern twice over, the second half reusing the first half's states
    (each kind stored by its last layer there); the per-layer head sizes follow."""
    base = tiny_config(TARGET)
    kinds = list(base.layer_types) * 2
    sizes = base.to_dict()["per_layer_config"]
    sizes = {**sizes, **{str(int(k) + len(kinds) // 2): v for k, v in sizes.items()}}
    config = tiny_config(
        TARGET,
        num_hidden_layers=len(kinds),
        layer_types=kinds,
        num_kv_shared_layers=len(kinds) // 2,
        per_layer_config=sizes,
    )
    assert config.kv_sharing_modes.count("store") == 2, config.kv_sharing_modes
    return Case(f"{TARGET}+num_kv_shared_layers={len(kinds) // 2}", config)


@pytest.fixture(scope="module")
def planned():
    target = load_target(TARGET)
    assert target.features.attention.kv_sharing == {
        "field": "num_kv_shared_layers",
        "input": "shared_kv_states",
    }
    plan = make_plan(target)
    assert plan.complete, plan.gaps
    assert "kv_sharing" in {step.rule for step in plan.steps}
    return target, plan


@pytest.fixture(scope="module")
def package(tmp_path_factory, planned):
    return write_planned(tmp_path_factory.mktemp("kv") / "models", planned)


def test_package_verifies_with_half_its_layers_reusing(package):
    models, name = package
    results = verify_toy(models, name, ("fp32", "bf16"), sharing_case())
    assert all(r.passed for r in results), [r.error or r.first_divergence for r in results]


def test_package_without_the_rule_refuses_the_setting(tmp_path, planned):
    models, name = write_planned(tmp_path / "models", planned, without="kv_sharing")
    (result,) = verify_toy(models, name, ("fp32",), sharing_case())
    assert not result.passed
    assert "num_kv_shared_layers" in (result.error or ""), result.error


@pytest.mark.parametrize(
    "old, new",
    [
        # the first layer of each kind stores, not the last
        (
            "self.stores = args.kv_shared_layers > 0 and layer_id == max(",
            "self.stores = args.kv_shared_layers > 0 and layer_id == min(",
        ),
        # the sharing starts a layer late: that layer projects keys the checkpoint lacks
        (
            "first_shared = args.n_layers - args.kv_shared_layers\n",
            "first_shared = args.n_layers - args.kv_shared_layers + 1\n",
        ),
    ],
    ids=["first_layer_stores", "late_start"],
)
def test_sharing_slips_fail_at_the_first_reusing_layer(tmp_path, planned, old, new):
    models, name = write_planned(tmp_path / "models", planned)
    seed(models, name, old, new)
    (result,) = verify_toy(models, name, ("fp32",), sharing_case())
    assert not result.passed
    assert (result.first_divergence or "").startswith(
        "layers.6.attention (HF model.layers.6.self_attn)"
    ), result.first_divergence
