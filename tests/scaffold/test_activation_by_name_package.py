"""A dense FFN follows the activation its config names (`ACT2FN[config.<field>]`), whatever
the package was scaffolded with: llama (silu) on gelu_new and relu2, gpt2 (gelu_new, read
from activation_function) on relu, and a renamed remote-code copy of starcoder2 on relu
verify against transformers. A name outside the table is refused in one line naming the
field; a package whose table maps a name to the wrong function fails at its FFN. MoE
packages whose HF experts look their activation up by the config field follow it in the
routed experts too (mixtral: the shared Experts; granitemoe: its fused-gate/up copy);
gpt_oss, whose experts hard-code a clamped activation, keeps its pin."""

from __future__ import annotations

import copy

import pytest

from codegen.scaffold.testing import plan_folder, seed, verify_toy, write_planned
from codegen.verify.run import Case

pytestmark = pytest.mark.slow


def _built(tmp_path, source: str):
    """(models, name) of `source` scaffolded through its plan, which follows the name."""
    planned = plan_folder(source)
    assert any(step.transform == "activation_by_name" for step in planned[1].steps)
    return write_planned(tmp_path / "models", planned)


def _verify(models, name, config, label: str):
    return verify_toy(models, name, case=Case(label, config, may_refuse=True), gradients=False)[0]


def _toy(models, name, **values):
    from codegen.models import load_spec
    from codegen.verify.cases import default_cases

    config = copy.deepcopy(default_cases(load_spec(name, models), switches=False)[0].config)
    for field, value in values.items():
        setattr(config, field, value)
    return config


def _args_text(models, name) -> str:
    return (models / name / "args.py").read_text()


def test_llama_runs_the_activation_its_config_names(tmp_path):
    models, name = _built(tmp_path, "llama")
    assert '"hidden_act"' not in _args_text(models, name)  # no pin left
    for act in ("gelu_new", "relu2"):
        result = _verify(models, name, _toy(models, name, hidden_act=act), f"hidden_act={act}")
        assert result.status == "pass", result.to_json()
    refused = _verify(models, name, _toy(models, name, hidden_act="gelu_10"), "gelu_10")
    assert refused.status == "refused", refused.to_json()
    assert "\n" not in refused.refused
    assert refused.refused.startswith("hidden_act='gelu_10' is not supported"), refused.refused


def test_gpt2_follows_activation_function(tmp_path):
    models, name = _built(tmp_path, "gpt2")
    assert "hidden_act=hf_config.activation_function" in _args_text(models, name)
    config = _toy(models, name, activation_function="relu")
    result = _verify(models, name, config, "activation_function=relu")
    assert result.status == "pass", result.to_json()
    refused = _verify(models, name, _toy(models, name, activation_function="mish"), "mish")
    assert refused.status == "refused", refused.to_json()
    assert refused.refused.startswith("activation_function='mish' is not supported")


def test_a_renamed_remote_folder_follows_its_activation(tmp_path):
    from codegen.verify.remote import load_remote, remote_toy_config
    from codegen.verify.remote_fixture import remote_folder

    folder = remote_folder("starcoder2", tmp_path / "hub", "quokkel")
    models, name = write_planned(tmp_path / "models", plan_folder(folder))
    assert '"hidden_act"' not in _args_text(models, name)
    remote = load_remote(folder, True)
    for act in ("gelu_pytorch_tanh", "relu"):
        config = remote_toy_config(remote, hidden_act=act)
        result = _verify(models, name, config, f"quokkel+hidden_act={act}")
        assert result.status == "pass", result.to_json()


def test_a_table_entry_computing_another_function_fails_at_the_ffn(tmp_path):
    models, name = _built(tmp_path, "llama")
    seed(
        models,
        name,
        '"gelu_new": lambda x: F.gelu(x, approximate="tanh")',
        '"gelu_new": lambda x: F.gelu(x)',
        file="activations.py",
    )
    result = _verify(models, name, _toy(models, name, hidden_act="gelu_new"), "gelu_new")
    assert result.status == "fail", result.to_json()
    assert "feed_forward" in result.first_divergence, result.first_divergence


@pytest.mark.parametrize(("source", "act"), [("mixtral", "relu"), ("granitemoe", "relu2")])
def test_routed_experts_run_the_activation_the_config_names(tmp_path, source, act):
    """Gradients too: relu's backward reads its output, which the experts keep."""
    models, name = _built(tmp_path, source)
    assert "act=activation(args.hidden_act)" in (models / name / "model.py").read_text()
    assert '"hidden_act"' not in _args_text(models, name)
    assert 'hidden_act != "silu"' not in _args_text(models, name)
    config = _toy(models, name, hidden_act=act)
    (result,) = verify_toy(models, name, case=Case(f"hidden_act={act}", config))
    assert result.status == "pass", result.to_json()


def test_experts_ignoring_act_fail_at_the_experts(tmp_path):
    models, name = _built(tmp_path, "mixtral")
    seed(models, name, "self.act(grouped_mm(", "F.silu(grouped_mm(", file="experts.py")
    result = _verify(models, name, _toy(models, name, hidden_act="gelu_new"), "gelu_new")
    assert result.status == "fail", result.to_json()
    assert "experts" in result.first_divergence, result.first_divergence


def test_experts_hard_coding_their_activation_keep_the_pin(tmp_path):
    """gpt_oss's experts apply a clamped sigmoid GLU of their own, no ACT2FN lookup."""
    planned = plan_folder("gpt_oss")
    assert not any(step.transform == "activation_by_name" for step in planned[1].steps)
    models, name = write_planned(tmp_path / "models", planned)
    assert "from .activations import" not in (models / name / "model.py").read_text()
    assert '"hidden_act": "silu"' in _args_text(models, name)


def test_experts_writing_the_activation_in_place_fail_the_gradients(tmp_path):
    """The product taken in place overwrites relu's output, which its backward reads."""
    models, name = _built(tmp_path, "mixtral")
    seed(
        models,
        name,
        "hidden = hidden * grouped_mm(rows, self.w3.mT, offs=offsets)",
        "hidden *= grouped_mm(rows, self.w3.mT, offs=offsets)",
        file="experts.py",
    )
    config = _toy(models, name, hidden_act="relu")
    (result,) = verify_toy(models, name, case=Case("hidden_act=relu", config))
    assert result.status == "fail", result.to_json()
