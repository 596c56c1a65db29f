"""Legacy config fields remote code still uses (issue 9): the static analyzer's config reads
and the toy shrink understand `n_embd`/`n_head`/`n_layer`, `seq_length`,
`layer_norm_epsilon`, `multi_query`, `kv_channels`, `rotary_pct`/`rotary_dim`, a top-level
`rope_theta` and `rope_scaling` with `type` or `rope_type`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from legacy_fixture import CONFIG, legacy_folder

from codegen.analyze.analysis import analyze
from codegen.analyze.config import legacy
from codegen.cli import main
from codegen.verify.remote import load_remote, remote_toy_config, shrink_legacy
from codegen.verify.tiny_config import SHRINK_RULES


def test_the_analysis_reads_legacy_rope_fields(tmp_path) -> None:
    features = analyze(str(legacy_folder(tmp_path)))
    assert features.rope.theta == 500000.0  # top-level rope_theta
    assert features.rope.partial_rotary == 0.5  # rotary_pct
    assert features.rope.parameters["rope_type"] == "linear"  # rope_scaling {"type": ...}
    assert features.rope.parameters["factor"] == 2.0
    assert features.rope.type != "default"  # a linear scaling is never read as plain RoPE
    assert features.attention.kind == "mqa" and features.attention.num_kv_heads == 1
    assert features.attention.head_dim == 128  # kv_channels


@pytest.mark.parametrize("key", ["type", "rope_type"])
def test_rope_scaling_with_either_key(key) -> None:
    values = {"rope_scaling": {key: "yarn", "factor": 4.0}, "rope_theta": 1e6, "seq_length": 8}
    params = legacy(values, "rope_parameters")
    assert params["rope_type"] == "yarn" and params["rope_theta"] == 1e6
    assert params["original_max_position_embeddings"] == 8  # from seq_length


def test_legacy_names_answer_standard_fields() -> None:
    values = {
        "n_embd": 96,
        "n_head": 4,
        "n_layer": 3,
        "seq_length": 64,
        "layer_norm_epsilon": 1e-5,
        "multi_query": True,
        "rotary_dim": 12,
    }
    assert legacy(values, "hidden_size") == 96
    assert legacy(values, "num_attention_heads") == 4
    assert legacy(values, "num_hidden_layers") == 3
    assert legacy(values, "max_position_embeddings") == 64
    assert legacy(values, "layer_norm_eps") == 1e-5
    assert legacy(values, "num_key_value_heads") == 1
    assert legacy(values, "head_dim") == 24
    assert legacy(values, "partial_rotary_factor") == 0.5  # rotary_dim / head_dim
    chatglm = {"multi_query_attention": True, "multi_query_group_num": 2}
    assert legacy(chatglm, "num_key_value_heads") == 2
    assert legacy({"kv_channels": 40, "n_embd": 96, "n_head": 4}, "head_dim") == 40
    assert legacy({"n_embd": 96}, "rope_parameters") is None  # nothing about RoPE: no guess


def test_shrink_understands_legacy_names() -> None:
    toy = shrink_legacy(dict(CONFIG), {})
    assert toy["n_embd"] == SHRINK_RULES["hidden_size"]
    assert toy["n_head"] == SHRINK_RULES["num_attention_heads"]
    assert toy["n_layer"] == 4 and toy["vocab_size"] == SHRINK_RULES["vocab_size"]
    assert toy["ffn_hidden_size"] == SHRINK_RULES["intermediate_size"]
    assert toy["seq_length"] < CONFIG["seq_length"]
    assert toy["kv_channels"] == SHRINK_RULES["head_dim"]({})
    assert toy["multi_query"] is True and toy["rotary_pct"] == 0.5  # features stay on
    assert "hidden_size" not in toy and "num_attention_heads" not in toy  # no new fields


def test_shrink_keeps_rotary_dim_partial_and_scaled_contexts_short() -> None:
    values = {
        "n_embd": 4096,
        "n_head": 32,
        "rotary_dim": 64,
        "rope_scaling": {"type": "yarn", "factor": 4.0, "original_max_position_embeddings": 4096},
    }
    toy = shrink_legacy(values, {})
    head_dim = toy["n_embd"] // toy["n_head"]
    assert toy["rotary_dim"] == head_dim // 2  # 64 of 128 stays half
    assert toy["rope_scaling"]["original_max_position_embeddings"] < 32
    full = shrink_legacy({"n_embd": 4096, "n_head": 32, "rotary_dim": 128}, {})
    assert full["rotary_dim"] == full["n_embd"] // full["n_head"]


def test_the_hf_side_builds_a_toy_of_a_legacy_folder(tmp_path) -> None:
    remote = load_remote(legacy_folder(tmp_path), trust_remote_code=True)
    assert remote.config_class.__module__.startswith("transformers_modules")
    config = remote_toy_config(remote)
    assert (config.n_embd, config.n_head, config.n_layer) == (
        SHRINK_RULES["hidden_size"],
        SHRINK_RULES["num_attention_heads"],
        4,
    )
    assert config.multi_query and config.rope_theta == 500000.0


def test_a_folder_without_config_json_is_one_line(tmp_path: Path) -> None:
    from codegen.errors import CodegenError

    with pytest.raises(CodegenError, match="no config.json"):
        load_remote(tmp_path, trust_remote_code=True)


def test_loading_a_folder_is_offline(tmp_path, monkeypatch) -> None:
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    load_remote(legacy_folder(tmp_path), trust_remote_code=True)
    assert constants.is_offline_mode()


def _rows(args: list[str], capsys) -> dict[str, dict]:
    capsys.readouterr()
    main(["verify", *args, "--json"])
    rows = json.loads(capsys.readouterr().out)
    return {(row["case"].partition("+")[2], row["dtype"]): row for row in rows}


@pytest.mark.parametrize(
    "config",
    [
        {},  # multi-query, kv_channels, rotary_pct, top-level rope_theta, rope_scaling `type`
        {"multi_query": False, "kv_channels": None, "rope_scaling": None, "rotary_pct": 0.25},
    ],
    ids=["as-shipped", "multi-head-no-scaling"],
)
def test_a_legacy_folder_scaffolds_and_verifies_in_every_switch_setting(
    config, tmp_path, capsys
) -> None:
    """The package reads the legacy names the folder's config stores (`n_embd`, `multi_query`,
    `kv_channels`, `rotary_pct`, `seq_length`, top-level `rope_theta`/`rope_scaling`): every
    switch setting (one kv head or one per head, a rotated fraction of 1) passes, none is
    pinned and refused."""
    folder = legacy_folder(tmp_path / "hub", **config)
    out = tmp_path / "models"
    assert main(["scaffold", str(folder), "--out", str(out)]) == 0
    args = (out / "oldnet" / "args.py").read_text()
    assert "hf_config.n_embd" in args and "hf_config.hidden_size" not in args
    rows = _rows([str(folder), "--models", str(out), "--trust-remote-code"], capsys)
    settings = {setting for setting, _ in rows}
    assert {"", "rotary_pct=1.0"} <= settings
    assert any(setting.startswith("multi_query=") for setting in settings)
    for (setting, dtype), row in rows.items():
        assert row["status"] == "pass", (setting, dtype, row)
