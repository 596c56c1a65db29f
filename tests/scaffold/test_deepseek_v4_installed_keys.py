"""End to end on the installed deepseek_v4 type, whose conversion mapping renames top-level
keys with anchored patterns (`^embed\\.weight` -> `embed_tokens.weight`, `^hc_head_fn` ->
`hc_head.hc_fn`, `^head\\.weight` -> `lm_head.weight`): scaffolded under a config whose
layers all slide (its compressed layers have no rule), the package's adapter names
`model.embed_tokens.weight` and `model.hc_head.hc_*` as HF saves them and `head.weight`
for the head, and verify's all-sliding setting passes in fp32 (with the rename undone
inside the key, `model.embed.weight`, the embedding and the stream collapse were missing)."""

from __future__ import annotations

import json

import pytest

from codegen.cli import main
from codegen.verify.remote_fixture import toy_config_dict

pytest.importorskip("transformers.models.deepseek_v4")


def test_top_level_keys_pair_and_the_sliding_setting_verifies(tmp_path, capsys):
    values = dict(toy_config_dict("deepseek_v4"), model_type="deepseek_v4")
    values["layer_types"] = ["sliding_attention"] * values["num_hidden_layers"]
    config = tmp_path / "config.json"
    config.write_text(json.dumps(values))
    out = tmp_path / "models"
    main(["scaffold", "deepseek_v4", "--config", str(config), "--out", str(out), "--force"])
    adapter = (out / "deepseek_v4" / "state_dict_adapter.py").read_text()
    for key in ("model.embed_tokens.weight", "model.hc_head.hc_fn", '"head.weight"'):
        assert key in adapter, key
    capsys.readouterr()
    main(["verify", "deepseek_v4", "--models", str(out), "--dtype", "fp32", "--json"])
    rows = json.loads(capsys.readouterr().out)
    (row,) = [r for r in rows if r["case"].endswith("'sliding_attention' on every layer]")]
    assert row["status"] == "pass", row
    assert not row["missing_keys"] and not row["unexpected_keys"], row
