"""A modeling file copied under a new name gives the same features.

Each installed model is copied with its configuration file into a temporary folder, with the
class prefix, the snake-case name, the model_type string and the file names rewritten
(`Qwen3Moe` -> `Zorblax`, `qwen3_moe` -> `zorblax`). Both copies are analysed *by path*, so
the only legitimate difference is that transformers converts checkpoints only for its own
model types: fields whose evidence cites `conversion_mapping.py` are compared separately.
"""

from __future__ import annotations

import os

import pytest
from analyze_helpers import rename_model, unrename

from codegen.analyze.analysis import analyze
from codegen.analyze.locate import model_type_files

MODELS = [
    "llama",
    "qwen2",
    "qwen3",
    "qwen3_moe",
    "gemma2",
    "gemma3",
    "olmo2",
    "phi3",
    "cohere",
    "granite",
    "deepseek_v3",
    "gpt_oss",
    "glm4",
    "minimax",
    "dbrx",
    "falcon",
    "gpt_neox",
    "starcoder2",
    "jamba",
    "bert",
]

# not about the architecture: names and paths
_IGNORED = ("model_type", "architectures", "source")


def _normalise(data: dict, modeling: str) -> dict:
    data = {k: v for k, v in data.items() if k not in _IGNORED}
    return data


def _conversion_fields(features) -> set[str]:
    return {k for k, v in features.evidence.items() if "conversion_mapping.py" in v}


@pytest.mark.parametrize("model_type", MODELS)
def test_renamed_copy_gives_the_same_features(model_type: str, tmp_path) -> None:
    modeling, _, _ = model_type_files(model_type)
    original = analyze(modeling)
    copy_path, back = rename_model(model_type, "zorblax", str(tmp_path))
    assert os.path.basename(copy_path) == "modeling_zorblax.py"
    with open(copy_path, encoding="utf-8") as fh:
        text = fh.read()
    assert "Zorblax" in text
    renamed = analyze(copy_path)
    assert renamed.model_type != original.model_type  # the model_type string was renamed too

    expected = _normalise(original.to_dict(), modeling)
    got = unrename(_normalise(renamed.to_dict(), copy_path), back)
    for data in (expected, got):
        # where the disk layout comes from differs by design (installed type vs custom code)
        data["evidence"].pop("moe.expert_layout", None)
        for item in data["unsupported"]:
            if item["feature"] == "moe.expert_layout":
                item["evidence"] = "-"
    # evidence cites files by name: map the renamed file names back as well
    conversion = _conversion_fields(original)
    if conversion:
        # installed model types get transformers' checkpoint conversion, custom code does not:
        # the copy's disk keys are its module keys (fused experts stay fused)
        assert "state_dict.checkpoint" not in renamed.evidence
        assert renamed.state_dict.checkpoint_layer_keys == renamed.state_dict.layer_keys
        if original.moe is not None and original.moe.module_layout == "fused":
            assert renamed.moe.expert_layout == "fused"
        for data in (expected, got):
            if data["moe"] is not None:
                data["moe"].pop("expert_layout")
                data["ffn"].pop("fused_gate_up")
                data["ffn"].pop("gate_up_layout")
            data["state_dict"].pop("checkpoint_layer_keys")
            data["state_dict"].pop("checkpoint_other_keys")
            data["reference"] = None
            data["unsupported"] = [
                u for u in data["unsupported"] if u["feature"] != "moe.expert_layout"
            ]
            data["evidence"] = {k: v for k, v in data["evidence"].items() if k not in conversion}
            data["notes"] = [n for n in data["notes"] if not n.startswith("checkpoint:")]
    assert got == expected


def test_renamer_rewrites_every_occurrence(tmp_path) -> None:
    copy_path, back = rename_model("qwen3_moe", "zorblax", str(tmp_path))
    folder = os.path.dirname(copy_path)
    assert sorted(os.listdir(folder)) == ["configuration_zorblax.py", "modeling_zorblax.py"]
    for name in os.listdir(folder):
        with open(os.path.join(folder, name), encoding="utf-8") as fh:
            text = fh.read()
        assert "Qwen3Moe" not in text and "qwen3_moe" not in text
    with open(os.path.join(folder, "configuration_zorblax.py"), encoding="utf-8") as fh:
        assert 'model_type = "zorblax"' in fh.read()
    assert back["Zorblax"] == "Qwen3Moe"
