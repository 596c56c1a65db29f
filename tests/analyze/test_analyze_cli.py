"""`codegen analyze` from the command line: output, JSON contract, errors, static-only."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap

import pytest

from codegen.analyze.locate import model_type_files
from codegen.cli import main

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# The `--json` contract of issue 5 (values per feature as listed there).
REQUIRED_KEYS = {
    "model_type": None,
    "architectures": None,
    "category": {"decoder", "hybrid", "encoder", "multimodal", "other"},
    "attention.kind": {"mha", "gqa", "mqa", "mla"},
    "attention.qk_norm": {"none", "per_head", "full"},
    "attention.qkv_bias": {True, False},
    "attention.o_bias": {True, False},
    "attention.fused_qkv": {True, False},
    "attention.sliding_window": {"none", "all", "pattern"},
    "attention.sinks": {True, False},
    "attention.softcap": {True, False},
    "rope.type": {"default", "linear", "dynamic", "yarn", "llama3", "longrope", "none", "other"},
    "rope.partial_rotary": None,
    "rope.interleaved": {True, False},
    "rope.nope_layers": {True, False},
    "ffn.kind": {"swiglu", "geglu", "gelu_mlp", "relu2", "mlp", "other"},
    "ffn.bias": {True, False},
    "ffn.fused_gate_up": {True, False},
    "moe": None,
    "norm.kind": {"rmsnorm", "rmsnorm_offset", "layernorm"},
    "norm.placement": {"pre", "post", "sandwich", "parallel"},
    "embedding.tied": {True, False},
    "embedding.scale": {True, False},
    "head.logit_softcap": {True, False},
    "head.logit_scale": {True, False},
    "reference.closest": {"llama", "qwen2", "qwen3", "qwen3_moe", "deepseek_v3"},
    "reference.delta": None,
    "unsupported": None,
    "evidence": None,
}
MOE_KEYS = {
    "num_experts",
    "top_k",
    "router",
    "router_bias",
    "norm_topk_prob",
    "shared_experts",
    "shared_expert_gate",
    "dense_layers",
    "expert_layout",
}


def _get(data: dict, dotted: str):
    for part in dotted.split("."):
        assert part in data, f"missing key {dotted}"
        data = data[part]
    return data


def run_json(capsys, *args) -> list[dict]:
    rc = main(["analyze", *args, "--json"])
    out = capsys.readouterr()
    assert rc == 0, out.err
    return json.loads(out.out)


def test_json_has_the_issue_keys_and_vocabulary(capsys) -> None:
    data = run_json(capsys, "qwen3", "deepseek_v3")
    assert [d["model_type"] for d in data] == ["qwen3", "deepseek_v3"]
    for obj in data:
        for key, allowed in REQUIRED_KEYS.items():
            value = _get(obj, key)
            if allowed is not None:
                assert value in allowed, (key, value)
        assert 0 < obj["rope"]["partial_rotary"] <= 1
        assert isinstance(obj["reference"]["delta"], list)
    assert data[0]["moe"] is None
    assert MOE_KEYS <= set(data[1]["moe"])
    assert data[1]["moe"]["router"] == "grouped_topk"
    assert data[1]["moe"]["dense_layers"] == [0, 1, 2]
    assert data[0]["evidence"]["attention.qk_norm"].startswith("modeling_qwen3.py:")


def test_human_output_is_a_checklist(capsys) -> None:
    rc = main(["analyze", "qwen3"])
    out = capsys.readouterr().out
    assert rc == 0
    assert "feature" in out and "evidence" in out
    row = next(line for line in out.splitlines() if line.startswith("QK-norm"))
    assert "per_head" in row and "modeling_qwen3.py:" in row
    assert "closest reference: qwen3" in out
    assert "delta: none" in out
    assert "unsupported: none" in out


def test_human_output_lists_delta_and_unsupported(tmp_path, capsys) -> None:
    """gpt_oss differs from every reference (the delta) but each difference has a rule; a
    phi3 checkpoint configured with longrope has a feature no rule realises yet."""
    rc = main(["analyze", "gpt_oss"])
    out = capsys.readouterr().out
    assert rc == 0
    assert "attention.sinks" in out.split("delta:", 1)[1]
    assert out.split("unsupported:", 1)[1].strip().startswith("none")

    rope = {
        "rope_type": "longrope",
        "rope_theta": 10000.0,
        "short_factor": [1.0] * 48,
        "long_factor": [2.0] * 48,
        "original_max_position_embeddings": 4096,
    }
    config = {"model_type": "phi3", "rope_parameters": rope, "max_position_embeddings": 131072}
    (tmp_path / "config.json").write_text(json.dumps(config))
    assert main(["analyze", str(tmp_path)]) == 0
    unsupported = capsys.readouterr().out.split("unsupported:", 1)[1]
    assert "- rope.type: rope.type = 'longrope'" in unsupported
    assert "no rule yet" in unsupported and "config:rope_parameters" in unsupported


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["no_such_model_type"], "unknown model_type 'no_such_model_type'"),
        (["./missing/modeling_x.py"], "no such file or directory"),
        (["qwen3", "--config", "/nonexistent/config.json"], "no such file"),
    ],
)
def test_user_errors_are_one_line_exit_2(capsys, args, message) -> None:
    rc = main(["analyze", *args])
    err = capsys.readouterr().err
    assert rc == 2
    assert err.count("\n") == 1 and err.startswith("codegen: error: ")
    assert message in err
    assert "Traceback" not in err


def test_syntax_error_names_file_and_line(tmp_path, capsys) -> None:
    bad = tmp_path / "modeling_bad.py"
    bad.write_text("import torch\n\nclass Broken(:\n    pass\n")
    rc = main(["analyze", str(bad)])
    err = capsys.readouterr().err
    assert rc == 2
    assert err.count("\n") == 1
    assert f"{bad}:3: syntax error" in err


def test_checkpoint_folder_with_config_json(tmp_path, capsys) -> None:
    """A folder with only config.json: the installed file of its model_type, its values."""
    config = {
        "model_type": "qwen2",
        "architectures": ["Qwen2ForCausalLM"],
        "hidden_size": 256,
        "num_attention_heads": 8,
        "num_key_value_heads": 2,
        "num_hidden_layers": 4,
        "use_sliding_window": True,
        "sliding_window": 64,
        "max_window_layers": 2,
        "tie_word_embeddings": True,
        "rope_scaling": {"type": "yarn", "factor": 4.0, "original_max_position_embeddings": 4096},
        "rotary_dim": 16,  # a legacy field the qwen2 code never reads
    }
    (tmp_path / "config.json").write_text(json.dumps(config))
    (obj,) = run_json(capsys, str(tmp_path))
    assert obj["architectures"] == ["Qwen2ForCausalLM"]
    assert obj["attention"]["kind"] == "gqa"
    assert obj["attention"]["sliding_window"] == "pattern"  # layers >= max_window_layers slide
    assert obj["attention"]["layer_types"] == ["full", "full", "sliding", "sliding"]
    assert obj["attention"]["window"] == 64
    assert obj["rope"]["type"] == "yarn"
    assert obj["embedding"]["tied"] is True
    assert obj["evidence"]["rope.type"].startswith("config:rope_parameters.rope_type")
    assert any(n.startswith("config:rotary_dim=16 is not read") for n in obj["notes"])


def test_config_override_and_remote_code_folder(tmp_path, capsys) -> None:
    """A remote-code folder: its own modeling file is read (never run), --config overrides."""
    modeling, configuration, _ = model_type_files("qwen3")
    shutil.copy(modeling, tmp_path / "modeling_qwen3.py")
    shutil.copy(configuration, tmp_path / "configuration_qwen3.py")
    (tmp_path / "config.json").write_text(
        json.dumps(
            {
                "model_type": "qwen3",
                "auto_map": {"AutoModelForCausalLM": "modeling_qwen3.Qwen3ForCausalLM"},
                "num_attention_heads": 16,
                "num_key_value_heads": 16,
            }
        )
    )
    override = tmp_path / "other.json"
    override.write_text(
        json.dumps({"model_type": "qwen3", "num_attention_heads": 16, "num_key_value_heads": 4})
    )
    (plain,) = run_json(capsys, str(tmp_path))
    assert plain["attention"]["kind"] == "mha"
    assert plain["source"]["modeling"] == str(tmp_path / "modeling_qwen3.py")
    (overridden,) = run_json(capsys, str(tmp_path), "--config", str(override))
    assert overridden["attention"]["kind"] == "gqa"
    assert overridden["source"]["config"] == str(override)


def test_analysed_file_is_never_executed(tmp_path, capsys) -> None:
    marker = tmp_path / "executed"
    modeling, configuration, _ = model_type_files("llama")
    with open(modeling, encoding="utf-8") as fh:
        source = fh.read()
    trap = textwrap.dedent(
        f"""
        open({str(marker)!r}, "w").write("ran")
        print("MODELING FILE EXECUTED")
        raise SystemExit("the analysed file must never run")
        """
    )
    (tmp_path / "modeling_llama.py").write_text(trap + source)
    shutil.copy(configuration, tmp_path / "configuration_llama.py")
    with open(tmp_path / "configuration_llama.py", "a", encoding="utf-8") as fh:
        fh.write(trap)
    (obj,) = run_json(capsys, str(tmp_path / "modeling_llama.py"))
    assert obj["category"] == "decoder" and obj["ffn"]["kind"] == "swiglu"
    assert not marker.exists()


def test_static_analysis_imports_neither_torch_nor_transformers() -> None:
    code = textwrap.dedent(
        """
        import io, json, sys, contextlib
        from codegen.cli import main
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            rc = main(["analyze", "qwen3", "--json"])
        assert rc == 0
        assert json.loads(out.getvalue())[0]["model_type"] == "qwen3"
        loaded = sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "transformers"))
        print(json.dumps(loaded))
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.strip().splitlines()[-1]) == []


def test_sweep_script_runs(tmp_path) -> None:
    out = tmp_path / "sweep.json"
    result = subprocess.run(
        [
            sys.executable,
            "scripts/analyze_sweep.py",
            "--limit",
            "6",
            "--jobs",
            "1",
            "--json",
            str(out),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "modeling files: 6" in result.stdout
    assert "crashed:        0" in result.stdout
    assert "time per file:" in result.stdout
    records = json.loads(out.read_text())
    assert len(records) == 6 and all(r["status"] == "ok" for r in records)


def test_checkpoint_index_gives_the_disk_layout(tmp_path, capsys) -> None:
    """With model.safetensors.index.json the on-disk keys are read, not derived."""
    config = {"model_type": "qwen3_moe", "num_hidden_layers": 2, "num_experts": 4}
    (tmp_path / "config.json").write_text(json.dumps(config))
    keys = {"model.embed_tokens.weight": "a", "lm_head.weight": "a"}
    for layer in range(2):
        keys[f"model.layers.{layer}.mlp.gate.weight"] = "a"
        for expert in range(4):
            for proj in ("gate_proj", "up_proj", "down_proj"):
                keys[f"model.layers.{layer}.mlp.experts.{expert}.{proj}.weight"] = "a"
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps({"weight_map": keys}))
    (obj,) = run_json(capsys, str(tmp_path))
    assert obj["moe"]["num_experts"] == 4
    assert obj["moe"]["expert_layout"] == "per_expert"
    assert obj["moe"]["module_layout"] == "fused"
    assert obj["evidence"]["moe.expert_layout"] == "model.safetensors.index.json"
    assert "mlp.experts.{}.gate_proj.weight" in obj["state_dict"]["checkpoint_layer_keys"]


# -- bad input (issue 13): one line, exit 2, no traceback; a batch reports every target --------


def _one_line_error(capsys, args) -> str:
    rc = main(["analyze", *args])
    captured = capsys.readouterr()
    assert rc == 2, captured.out
    assert captured.err.count("\n") == 1 and captured.err.startswith("codegen: error: ")
    assert captured.out == ""
    return captured.err


def test_config_that_is_not_utf8_is_one_line(tmp_path, capsys) -> None:
    """A checkpoint folder whose config.json is not UTF-8, and `--config` such a file."""
    bad = tmp_path / "config.json"
    bad.write_bytes(b'{"model_type": "llama", "name": "\xff\xfe"}')
    err = _one_line_error(capsys, [str(tmp_path)])
    assert f"{bad}: not UTF-8 text" in err
    err = _one_line_error(capsys, ["llama", "--config", str(bad)])
    assert f"{bad}: not UTF-8 text" in err


@pytest.mark.parametrize(
    "text",
    ["", "import os\n\n\nclass Helper:\n    pass\n\n\ndef f(x):\n    return x\n"],
    ids=["empty", "no-model"],
)
def test_a_file_without_a_model_says_so(tmp_path, capsys, text) -> None:
    path = tmp_path / "modeling_nothing.py"
    path.write_text(text)
    err = _one_line_error(capsys, [str(path)])
    assert f"{path}: no model in this file" in err
    rc = main(["analyze", str(path), "--json"])
    assert rc == 2 and capsys.readouterr().out == ""


def test_rope_parameters_per_layer_type_are_the_config_classes(capsys) -> None:
    """dots3_note_text's config builds its per-layer-type rope entries over
    `set(self.layer_types)` after asking `nested_rope_parameter_keys`: the analysis holds the
    entries the class itself builds, one per layer type, not nested twice."""
    from transformers.models.dots3_note.configuration_dots3_note import Dots3NoteTextConfig

    (obj,) = run_json(capsys, "dots3_note_text")
    assert obj["rope"]["parameters"] == Dots3NoteTextConfig().rope_parameters


def test_json_does_not_depend_on_the_hash_seed() -> None:
    """The same source analyses the same in every process: iterating a set (dots3_note's
    `for layer_type in set(self.layer_types)`) follows a fixed order, not string hashing."""
    code = "from codegen.cli import main; main(['analyze', 'dots3_note_text', '--json'])"
    outputs = set()
    for seed in ("1", "2", "3"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        result = subprocess.run(
            [sys.executable, "-c", code],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert result.returncode == 0, result.stderr
        outputs.add(result.stdout)
    assert len(outputs) == 1


def test_plain_makes_any_leftover_json_data() -> None:
    from codegen.analyze.features import _plain

    class Opaque:
        pass

    value = {"a": (1, 2.5, float("inf")), 3: {"x"}, "o": Opaque()}
    plain = _plain(value)
    assert plain == {"a": [1, 2.5, "inf"], "3": ["x"], "o": "unknown"}
    json.dumps(plain, allow_nan=False)


def test_a_batch_reports_every_target_and_fails_at_the_end(capsys, tmp_path) -> None:
    missing = str(tmp_path / "modeling_gone.py")
    rc = main(["analyze", "qwen3", missing, "llama"])
    captured = capsys.readouterr()
    assert rc == 2
    assert "Traceback" not in captured.err
    assert captured.err == f"codegen: error: 1 of 3 targets failed: {missing}\n"
    out = captured.out
    assert out.index("qwen3  (") < out.index(f"{missing}: error: ") < out.index("llama  (")
    assert f"{missing}: error: {missing}: no such file or directory" in out

    rc = main(["analyze", "qwen3", missing, "no_such_model_type", "--json"])
    captured = capsys.readouterr()
    assert rc == 2
    rows = json.loads(captured.out)
    assert [row["target"] for row in rows] == ["qwen3", missing, "no_such_model_type"]
    assert rows[0]["attention"]["qk_norm"] == "per_head" and "error" not in rows[0]
    assert set(rows[1]) == {"target", "error"} and "no such file" in rows[1]["error"]
    assert "unknown model_type" in rows[2]["error"]
    assert f"2 of 3 targets failed: {missing}, no_such_model_type" in captured.err


def test_text_output_has_the_checkpoint_key_pattern(capsys) -> None:
    """README promises the checkpoint key pattern in the text output."""
    assert main(["analyze", "qwen3_moe"]) == 0
    out = capsys.readouterr().out
    section = out.split("checkpoint keys (", 1)[1].split("\n\n", 1)[0]
    assert "conversion_mapping.py:" in section.splitlines()[0]
    keys = [line.strip() for line in section.splitlines()[1:]]
    assert "model.layers.{}.mlp.experts.{}.gate_proj.weight" in keys
    assert "model.embed_tokens.weight" in keys
    assert main(["analyze", "gemma2"]) == 0
    assert "  lm_head.weight  (tied: not on disk)" in capsys.readouterr().out
