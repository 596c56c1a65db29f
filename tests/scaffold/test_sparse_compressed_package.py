"""End to end: a renamed copy of DeepSeek-V4 mixing sliding, compressed sparse (CSA) and
heavily compressed (HCA) layers, planned from its analysis (`attention.compressed_kv` with
its `sparse` kind), scaffolded and verified in fp32 and bf16. On the CSA layers each entry
pools two windows of the toy's rate (4 tokens: the window's own second halves and the
previous window's first halves), and an indexer picks the toy's `index_topk` (3) of the
entries a query has passed, so the long input's later queries drop some.

Seeded defects fail naming the CSA layer's attention: the indexer's picks ignored (every
passed entry seen), the two halves of the overlapping projections swapped, and the
indexer's queries not turned. Under tp=2 the compressors and the indexer are whole on
every rank. A config whose only compressed layers are CSA scaffolds the same layers
(the class's heavily compressed ones too) and verifies."""

from __future__ import annotations

import json
import shutil

import pytest

from codegen.cli import main
from codegen.scaffold.plan import make_plan
from codegen.scaffold.target import load_target
from codegen.scaffold.testing import seed, verify_shard_plan, write_planned
from codegen.verify.remote_fixture import remote_folder, toy_config_dict

pytest.importorskip("transformers.models.deepseek_v4")

NAME = "quillsift"
SLIDING, POOLED, SPARSE = (
    "sliding_attention",
    "heavily_compressed_attention",
    "compressed_sparse_attention",
)
PICK = "seen = self.indexer(x, q_latent, positions, (cos, sin), window_rope)"
PASSED = "seen = self.compressor.seen(positions, pooled.shape[2])"
HALVES = "kv_prev, kv = kv.split(self.head_dim, dim=-1)"
QTURN = "q = apply_rotary_interleaved(q.float(), cos, sin).to(q.dtype).transpose(1, 2)"


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    toy = toy_config_dict("deepseek_v4")
    # the long input makes more passed entries than the indexer keeps
    assert toy["index_topk"] < 32 // toy["compress_rates"][SPARSE], toy
    values = {"layer_types": [SLIDING, SPARSE, POOLED, SPARSE], "num_hidden_layers": 4}
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
    assert "class OverlapCompressor" in model and "class Indexer" in model
    assert "deepseek" not in model.lower() and "csacompressor" not in model.lower()


def test_shard_plan_under_tp2(folder, built):
    result = verify_shard_plan(folder, *built)
    assert result.status == "pass", result.line()


@pytest.mark.parametrize(
    "old, new",
    [
        (PICK, PASSED),  # every entry the query has passed seen, not the indexer's picks
        (HALVES, "kv, kv_prev = kv.split(self.head_dim, dim=-1)"),  # halves swapped
        (QTURN, "q = q.transpose(1, 2)"),  # the indexer's queries not turned
    ],
    ids=["picks-ignored", "halves-swapped", "index-queries-not-turned"],
)
def test_seeded_defect_fails_at_the_sparse_attention(tmp_path, folder, built, capsys, old, new):
    models = tmp_path / "models"
    shutil.copytree(built[0], models)
    seed(models, built[1], old, new)
    row = _verify(folder, models, capsys, "fp32")[0]
    assert row["status"] == "fail", row
    assert row["first_divergence"].startswith("layers.1.attention"), row["first_divergence"]


def test_sparse_layers_without_pooled_ones_scaffold_every_kind(tmp_path, capsys):
    """A config whose only compressed layers are CSA scaffolds the package of the class: the
    heavily compressed layers its class builds by default are generated too, and the
    package verifies under that config."""
    values = {"layer_types": [SLIDING, SPARSE, SLIDING, SPARSE], "num_hidden_layers": 4}
    folder = remote_folder("deepseek_v4", tmp_path / "hub", NAME + "x", values)
    out = tmp_path / "models"
    argv = ["scaffold", str(folder), "--config", str(folder / "config.json"), "--out", str(out)]
    assert main(argv) in (0, None)
    model = (out / f"{NAME}x" / "model.py").read_text()
    assert "class Compressor" in model and "class OverlapCompressor" in model, model[:400]
    assert POOLED in (out / f"{NAME}x" / "args.py").read_text()
    rows = _verify(folder, out, capsys, "fp32")
    assert rows[0]["status"] == "pass", rows
