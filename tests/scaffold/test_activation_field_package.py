"""A package pins its activation under the config field the code looks it up by, whatever
that field is called: falcon's `activation` (no alias of hidden_act) and a renamed copy's
`act_kind`. A config naming another activation is refused in one line by
`from_hf_config`, not run with the package's gelu."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

from codegen.models import load_spec
from codegen.scaffold.pipeline import scaffold_into
from codegen.scaffold.plan import make_plan
from codegen.scaffold.target import load_target
from codegen.verify.cases import base_config

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "analyze"))
from analyze_helpers import rename_field, rename_model  # noqa: E402


def _scaffold(source: str, models: Path, name: str):
    target = load_target(source)
    plan = make_plan(target)
    assert plan.complete, plan.gaps
    scaffold_into(models, plan.reference, name, [source], plan.steps, features=target.features)
    return models / name


def _fixed_settings(package: Path) -> dict:
    module = ast.parse((package / "args.py").read_text())
    (value,) = [
        node.value
        for node in module.body
        if isinstance(node, ast.Assign) and node.targets[0].id == "FIXED_SETTINGS"
    ]
    return ast.literal_eval(value)


def test_falcon_refuses_another_activation(tmp_path):
    package = _scaffold("falcon", tmp_path / "models", "gen_falcon")
    assert _fixed_settings(package)["activation"] == "gelu"
    spec = load_spec("gen_falcon", tmp_path / "models")
    config, _ = base_config("falcon")
    spec.args.from_hf_config(config)  # the configured gelu runs
    config.activation = "relu"
    with pytest.raises(NotImplementedError) as refused:
        spec.args.from_hf_config(config)
    message = str(refused.value)
    assert "\n" not in message and "activation='relu'" in message and "'gelu'" in message


def test_renamed_field_is_pinned(tmp_path):
    copy, _ = rename_model("falcon", "zorblax", str(tmp_path))
    rename_field(copy, "activation", "act_kind")
    package = _scaffold(copy, tmp_path / "models", "gen_zorblax")
    settings = _fixed_settings(package)
    assert settings["act_kind"] == "gelu" and "activation" not in settings
