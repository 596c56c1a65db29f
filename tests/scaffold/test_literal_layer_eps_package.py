"""End to end: block norms at an epsilon written in the code, the final norm at the config's
(CTRL's `nn.LayerNorm(n_embd, eps=1e-6)` beside `eps=config.layer_norm_epsilon`), on a renamed
remote-code copy whose config sets layer_norm_epsilon to 0.1, planned from its analysis
(`norm.layer_eps`, rule `layer_norm_eps`).

The default config holds 1e-6 as well, so the package that reads the config's field for
every norm passed verify and failed only a config with another epsilon (field_sweep). Here
the config makes the difference count: the package verifies; the same package with its block
norms on the config's field (a seeded defect, or the plan without the rule) fails, the first
divergence at the first layer's attention norm."""

from __future__ import annotations

import pytest

from codegen.scaffold.testing import plan_folder, seed, verify_toy, write_planned

pytest.importorskip("transformers.models.ctrl")

NAME = "quillrex"
CONFIG_EPS = 0.1  # the final norm's; the block norms stay at the code's 1e-6
OWN = "self.attention_norm = nn.LayerNorm(args.dim, eps=args.layer_norm_eps)"
CONFIGS = "self.attention_norm = nn.LayerNorm(args.dim, eps=args.norm_eps)"
FINAL = "self.norm = nn.LayerNorm(args.dim, eps=args.norm_eps)"


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    from codegen.verify.remote_fixture import remote_folder

    hub = tmp_path_factory.mktemp("hub")
    return remote_folder("ctrl", hub, name=NAME, config_values={"layer_norm_epsilon": CONFIG_EPS})


@pytest.fixture(scope="module")
def case(folder):
    """The folder's toy config, as its own code builds it."""
    from codegen.verify.remote import load_remote, remote_toy_config
    from codegen.verify.run import Case

    config = remote_toy_config(load_remote(folder, True))
    assert config.layer_norm_epsilon == CONFIG_EPS
    return Case(NAME, config)


@pytest.fixture(scope="module")
def planned(folder):
    return plan_folder(folder, {"layer_norm_eps"})


def test_the_analysis_reads_each_norms_source(planned):
    target, plan = planned
    assert target.features.norm.eps_sources == {
        "block": "literal 1e-06",
        "final": "config.layer_norm_epsilon",
    }
    (step,) = [step for step in plan.steps if step.rule == "layer_norm_eps"]
    assert step.params == {"eps": 1e-6}


def test_package_keeps_the_literal_for_the_layer_norms_and_verifies(tmp_path, planned, case):
    models, name = write_planned(tmp_path / "models", planned)
    model = (models / name / "model.py").read_text()
    args = (models / name / "args.py").read_text()
    assert OWN in model and FINAL in model and CONFIGS not in model
    assert "layer_norm_eps: float = 1e-06  # the layer norms' epsilon: fixed in HF's code" in args
    assert "norm_eps=hf_config.layer_norm_epsilon" in args
    assert "eps=1e-06 in the code" in model  # the header's evidence says where it comes from
    (result,) = verify_toy(models, name, case=case, gradients=False)
    assert result.status == "pass", result.to_json()


def _fails_at_the_first_attention_norm(models, name, case):
    (result,) = verify_toy(models, name, case=case, gradients=False)
    row = result.to_json()
    assert row["status"] == "fail", row
    assert (row.get("first_divergence") or "").startswith("layers.0.attention_norm"), row


def test_seeded_config_epsilon_in_the_layer_norms_fails(tmp_path, planned, case):
    models, name = write_planned(tmp_path / "models", planned)
    seed(models, name, OWN, CONFIGS)
    _fails_at_the_first_attention_norm(models, name, case)


def test_package_without_the_rule_fails(tmp_path, planned, case):
    models, name = write_planned(tmp_path / "models", planned, without="layer_norm_eps")
    assert CONFIGS in (models / name / "model.py").read_text()
    _fails_at_the_first_attention_norm(models, name, case)
