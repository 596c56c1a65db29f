"""End to end: a renamed copy of DeepSeek-V4 whose layers alternate sliding attention and
heavily compressed attention (windows of the toy's compress rate, 8 tokens, pooled into one
key/value entry each: the long input makes four, seen by its later queries only), planned
from its analysis (`attention.compressed_kv`), scaffolded and verified in fp32 and bf16.

Seeded defects fail naming the compressed layer's attention: an entry seen one window early
(a query seeing the window it is still in), and entries not rotated. The package is the
class's whatever mix the config has: scaffolded from a config without CSA layers it still
takes a config that types a layer CSA (the CSA layers the class builds by default are
generated too: test_sparse_compressed_package verifies them). Under tp=2 the
compressor is whole on every rank, the gradient of its entries summed over the ranks."""

from __future__ import annotations

import json
import shutil

import pytest

from codegen.cli import main
from codegen.scaffold.plan import make_plan
from codegen.scaffold.target import load_target
from codegen.scaffold.testing import seed, verify_shard_plan, write_planned
from codegen.verify.remote_fixture import remote_folder, toy_config_dict

NAME = "quillpool"
SLIDING, POOLED, INDEXED = (
    "sliding_attention",
    "heavily_compressed_attention",
    "compressed_sparse_attention",
)
SEEN = "< (positions[..., None] + 1) // self.rate"
ROTATED = "pooled = apply_rotary_interleaved(pooled.float(), cos, sin).to(pooled.dtype)"


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    rates = toy_config_dict("deepseek_v4")["compress_rates"]
    assert rates[POOLED] < 32, rates  # the toy's rate makes entries at the test length
    values = {"layer_types": [SLIDING, POOLED, SLIDING, POOLED], "num_hidden_layers": 4}
    return remote_folder("deepseek_v4", tmp_path_factory.mktemp("hub"), NAME, values)


@pytest.fixture(scope="module")
def built(tmp_path_factory, folder):
    target = load_target(str(folder), str(folder / "config.json"))
    plan = make_plan(target)
    assert plan.complete, plan.gaps
    assert "compressed_kv" in {step.rule for step in plan.steps}
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
    model = (built[0] / built[1] / "model.py").read_text()
    assert "deepseek" not in model.lower() and "hcacompressor" not in model.lower()


def test_shard_plan_under_tp2(folder, built):
    result = verify_shard_plan(folder, *built)
    assert result.status == "pass", result.line()


def test_shard_plan_without_compressed_layers(folder, built):
    """A layer pattern with no compressed layer (a switch setting the sweep runs) builds no
    compressor: its plan entries are optional, not an error."""
    from transformers import AutoConfig

    from codegen.models import load_spec
    from codegen.verify.parallel import verify_parallel

    config = AutoConfig.from_pretrained(folder, trust_remote_code=True)
    config.layer_types = [SLIDING] * config.num_hidden_layers
    result = verify_parallel(load_spec(built[1], built[0]), config, "tp=2")
    assert result.status == "pass", result.line()


@pytest.mark.parametrize(
    "old, new",
    [
        (SEEN, SEEN + " + 1"),  # the window a query is still in, seen
        (ROTATED, "pooled = pooled.float().to(pooled.dtype)"),  # entries not rotated
    ],
    ids=["seen-a-window-early", "not-rotated"],
)
def test_seeded_defect_fails_at_the_compressed_attention(tmp_path, folder, built, capsys, old, new):
    models = tmp_path / "models"
    shutil.copytree(built[0], models)
    seed(models, built[1], old, new)
    row = _verify(folder, models, capsys, "fp32")[0]
    assert row["status"] == "fail", row
    assert row["first_divergence"].startswith("layers.1.attention"), row["first_divergence"]


def test_every_layer_compressed_verifies(tmp_path, capsys):
    """No layer typed sliding: the compressed layers still attend over the window."""
    values = {"layer_types": [POOLED] * 4, "num_hidden_layers": 4}
    folder = remote_folder("deepseek_v4", tmp_path / "hub", NAME + "all", values)
    target = load_target(str(folder), str(folder / "config.json"))
    models, _ = write_planned(tmp_path / "models", (target, make_plan(target)))
    row = _verify(folder, models, capsys, "fp32")[0]
    assert row["status"] == "pass", row


def test_package_takes_a_config_typing_a_layer_csa(folder, built):
    import importlib
    import sys

    from transformers import AutoConfig

    sys.path.insert(0, str(built[0].parent))
    try:
        args = importlib.import_module(f"{built[0].name}.{built[1]}.args")
    finally:
        sys.path.remove(str(built[0].parent))
    config = AutoConfig.from_pretrained(str(folder), trust_remote_code=True)
    config.layer_types = [SLIDING, POOLED, SLIDING, INDEXED]
    assert args.ModelArgs.from_hf_config(config).layer_types[3] == INDEXED
