"""A package reads its activation from the config field the code looks it up by, whatever
that field is called: falcon's `get_activation(config.activation)` (no alias of hidden_act)
and a renamed copy's `act_kind` are HF ACT2FN names, which the package follows (a name
outside its table is refused in one line); a model-local table's (openai-gpt's
`ACT_FNS[config.afn]`) entry is pinned at the value it was scaffolded with, here the module
instance `nn.ReLU()`, and another value is refused, not run with the package's activation."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

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
    """The package's FIXED_SETTINGS ({} when it pins nothing)."""
    module = ast.parse((package / "args.py").read_text())
    values = [
        node.value
        for node in module.body
        if isinstance(node, ast.Assign) and node.targets[0].id == "FIXED_SETTINGS"
    ]
    return ast.literal_eval(values[0]) if values else {}


def test_falcon_follows_another_activation(tmp_path):
    package = _scaffold("falcon", tmp_path / "models", "gen_falcon")
    assert "activation" not in _fixed_settings(package)
    spec = load_spec("gen_falcon", tmp_path / "models")
    config, _ = base_config("falcon")
    assert spec.args.from_hf_config(config).hidden_act == "gelu"
    config.activation = "relu"
    assert spec.args.from_hf_config(config).hidden_act == "relu"


def test_a_renamed_field_is_read(tmp_path):
    copy, _ = rename_model("falcon", "zorblax", str(tmp_path))
    rename_field(copy, "activation", "act_kind")
    package = _scaffold(copy, tmp_path / "models", "gen_zorblax")
    assert "hidden_act=hf_config.act_kind" in (package / "args.py").read_text()
    assert not {"act_kind", "activation"} & set(_fixed_settings(package))


def test_a_module_instance_picked_from_a_model_local_table_is_pinned(tmp_path):
    """openai-gpt's `ACT_FNS[config.afn]`, in a renamed remote-code copy configured with
    afn="relu": the entry is the module instance `nn.ReLU()`. The package pins afn at "relu":
    it verifies on that config and refuses afn="gelu" in one line, not run as relu."""
    from codegen.scaffold.testing import plan_folder, verify_toy, write_planned
    from codegen.verify.remote import load_remote, remote_toy_config
    from codegen.verify.remote_fixture import remote_folder
    from codegen.verify.run import Case

    folder = remote_folder("openai-gpt", tmp_path / "hub", "quokkel", {"afn": "relu"})
    models, name = write_planned(tmp_path / "models", plan_folder(folder))
    assert _fixed_settings(models / name).get("afn") == "relu"
    remote = load_remote(folder, True)
    results = {
        afn: verify_toy(
            models,
            name,
            case=Case(f"quokkel+afn={afn}", remote_toy_config(remote, afn=afn), may_refuse=True),
            gradients=False,
        )[0]
        for afn in ("relu", "gelu")
    }
    assert results["relu"].status == "pass", results["relu"].to_json()
    refused = results["gelu"]
    assert refused.status == "refused", refused.to_json()
    assert "\n" not in refused.refused and "afn='gelu'" in refused.refused, refused.refused
