"""The architectures issue 4 names: scaffold through the planner, zero manual edits, verify.

Each is planned from its analysis alone (no `--from`, no hand-written steps), written to a
temp models package and checked by the full verify protocol in fp32.
"""

from __future__ import annotations

import pytest

from codegen.cli import main

DONE_WHEN = [
    "cohere",
    "deepseek_v2",
    "deepseek_v3",
    "gemma",
    "gemma2",
    "glm4",
    "gpt_oss",
    "granite",
    "llama",
    "mistral",
    "mixtral",
    "olmo2",
    "olmoe",
    "phi3",
    "qwen2",
    "qwen2_moe",
    "qwen3",
    "qwen3_moe",
    "stablelm",
    "starcoder2",
]


@pytest.mark.parametrize("model_type", DONE_WHEN)
def test_scaffold_then_verify(model_type, tmp_path, capsys):
    models = tmp_path / "models"
    assert main(["scaffold", model_type, "--out", str(models)]) == 0
    capsys.readouterr()
    assert main(["verify", model_type, "--models", str(models), "--dtype", "fp32"]) == 0
    summary = [line for line in capsys.readouterr().out.splitlines() if not line.startswith(" ")]
    assert summary and summary[0].startswith(f"PASS  {model_type}")
