"""End to end: a renamed copy of DeepSeek-V4 whose layers all attend over a sliding window
(no compressed keys and values: `attention.compressed_kv` has no rule), with the default
mix of hash-routed and learned-router MoE layers, planned from its analysis, scaffolded and
verified in fp32 and bf16, and its shard plan under tp=2. A seeded defect (the latent
query's heads normed in fp32 and cast last, where HF multiplies q by its inverse rms
rounded to q's dtype) fails the bf16 verify naming the first layer's attention."""

from __future__ import annotations

import json
import shutil

import pytest

from codegen.cli import main
from codegen.scaffold.plan import make_plan
from codegen.scaffold.target import load_target
from codegen.scaffold.testing import seed, verify_shard_plan, write_planned
from codegen.verify.remote_fixture import remote_folder, toy_config_dict

NAME = "quillseer"
ROUNDED = "return x * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + self.eps).to(x.dtype)"
CAST_LAST = "return (x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + self.eps)).type_as(x)"


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    layers = toy_config_dict("deepseek_v4")["num_hidden_layers"]
    values = {"layer_types": ["sliding_attention"] * layers}  # the default MLP mix kept
    return remote_folder("deepseek_v4", tmp_path_factory.mktemp("hub"), NAME, values)


@pytest.fixture(scope="module")
def built(tmp_path_factory, folder):
    target = load_target(str(folder), str(folder / "config.json"))
    assert "hash_moe" in target.config["mlp_layer_types"]
    plan = make_plan(target)
    assert plan.complete, plan.gaps
    rules = {step.rule for step in plan.steps}
    assert {"rope_fp32", "low_rank_q", "hyper_connections", "table_routing"} <= rules
    return write_planned(tmp_path_factory.mktemp("models"), (target, plan))


def _verify(folder, models, capsys, *dtypes: str) -> list[dict]:
    capsys.readouterr()
    flags = [x for d in dtypes for x in ("--dtype", d)]
    main(["verify", str(folder), "--models", str(models), "--trust-remote-code", "--json", *flags])
    return json.loads(capsys.readouterr().out)


def test_package_verifies(folder, built, capsys):
    rows = _verify(folder, built[0], capsys, "fp32", "bf16")
    passed = [row for row in rows if row["status"] == "pass"]
    assert {row["dtype"] for row in passed} == {"fp32", "bf16"}, rows
    assert all(row["status"] in ("pass", "refused") for row in rows), rows


def test_shard_plan_under_tp2(folder, built):
    result = verify_shard_plan(folder, *built)
    assert result.status == "pass", result.line()


def test_heads_norm_cast_last_fails_at_the_attention(tmp_path, folder, built, capsys):
    models = tmp_path / "models"
    shutil.copytree(built[0], models)
    seed(models, built[1], ROUNDED, CAST_LAST)
    row = _verify(folder, models, capsys, "bf16")[0]
    assert row["status"] == "fail", row
    assert row["first_divergence"].startswith("layers.0.attention"), row["first_divergence"]
