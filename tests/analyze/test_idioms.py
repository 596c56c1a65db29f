"""The analyzer on remote code it has never seen (issue 9): our own fixtures, one per group of
idioms real hub checkpoints use (`tests/analyze/idioms/`), each analysed right field by
field; where the rule table covers the features, scaffolded and verified from the folder's
own code; where it does not, the plan stops naming what is missing.
"""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from codegen.analyze import analyze
from codegen.analyze.features import Attention
from codegen.cli import main
from codegen.scaffold.plan import make_plan
from codegen.scaffold.target import load_target
from tests.analyze.idioms import FIXTURES, alibi, flashy, handmoe, packed
from tests.analyze.idioms.score import wrong_fields


def _name(module) -> str:
    return module.__name__.rsplit(".", 1)[-1]


@pytest.mark.parametrize("module", FIXTURES, ids=_name)
def test_every_labelled_field_is_right(module, tmp_path) -> None:
    wrong, count = wrong_fields(module, tmp_path)
    assert count >= 15
    assert wrong == {}


def test_flash_import_fallback_and_value_passed_for_dtype(tmp_path) -> None:
    """The `except ImportError` path is the one that runs here (no flash_attn): the eager
    class is analysed; v handed to the rotary module for its dtype does not feed q and k."""
    features = analyze(str(flashy.folder(tmp_path)))
    assert features.attention.fused_qkv is False and features.attention.num_kv_heads == 4
    assert features.evidence["attention.kind"].startswith("modeling_flashy.py:")
    # `config.use_flash_attn and HAS_FLASH` never holds here: the field switches nothing
    assert "use_flash_attn" not in {switch.field for switch in features.switches}
    # the flash-only class (flash_attn_func and nothing else) is softmax attention too
    folder = flashy.folder(tmp_path / "forced")
    modeling = folder / "modeling_flashy.py"
    modeling.write_text(
        modeling.read_text().replace(
            "use_flash = config.use_flash_attn and HAS_FLASH", "use_flash = True"
        )
    )
    forced = analyze(str(folder))
    assert forced.category == "decoder" and forced.attention.kind == "gqa"
    assert forced.block.mixers == ("attention",)


def test_auto_map_names_the_causal_lm(tmp_path) -> None:
    """config.json's `architectures` names a class the file lacks; the class without a
    conventional suffix that auto_map names is the entry, not the base model."""
    features = analyze(str(packed.folder(tmp_path)))
    assert features.source.model_class == "PackedGenerator"
    assert features.state_dict.prefix == "transformer.blocks"
    assert "embed_out.weight" in features.state_dict.other_keys


def test_fused_qkv_layouts_of_installed_models() -> None:
    """The row layout read from the view before the split, on transformers' own files."""
    assert analyze("phi3").attention.qkv_layout == "contiguous"
    assert analyze("bloom").attention.qkv_layout == "interleaved"
    assert analyze("gpt_neox").attention.qkv_layout == "interleaved"
    assert analyze("llama").attention.qkv_layout == "none"


def test_an_unknown_feature_stops_the_plan(tmp_path) -> None:
    target = load_target(str(flashy.folder(tmp_path)), None)
    assert make_plan(target).complete
    unknown = replace(
        target.features, attention=replace(target.features.attention, sinks="unknown")
    )
    plan = make_plan(replace(target, features=unknown), reference="llama")
    assert not plan.complete
    assert [(gap.feature, gap.value) for gap in plan.gaps] == [("attention.sinks", "unknown")]
    assert plan.gaps[0].evidence.startswith("modeling_flashy.py:")


def test_findings_without_a_rule_stop_the_plan(tmp_path, capsys) -> None:
    """Logn scaling and a normalised head are named, and scaffold stops in one line naming
    each, writing nothing (the ALiBi beside them has a rule: it is no gap)."""
    folder = alibi.folder(tmp_path / "hub")
    out = tmp_path / "models"
    capsys.readouterr()
    assert main(["scaffold", str(folder), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    for name in ("attention.logn_scale", "head.normalized"):
        assert name in err
    assert "attention.alibi" not in err and "nothing written" in err
    assert not out.exists() or not any(out.iterdir())


def test_config_keys_not_read_only_when_the_code_was_understood(tmp_path) -> None:
    understood = analyze(str(packed.folder(tmp_path)))
    assert not any("is not read" in note for note in understood.notes)
    folder = flashy.folder(tmp_path / "broken")
    modeling = folder / "modeling_flashy.py"
    # layers kept in a plain list: no decoder stack, so nothing can be said about the keys
    modeling.write_text(modeling.read_text().replace("nn.ModuleList(", "list("))
    features = analyze(str(folder))
    assert features.category != "decoder"
    assert not any("is not read" in note for note in features.notes)
    assert any("config keys not checked" in note for note in features.notes)


def test_a_transform_failing_on_the_source_is_one_line(tmp_path, capsys) -> None:
    """A MoE whose dense-layer condition add_moe cannot express: one line naming the rule
    and its evidence, no traceback, nothing written."""
    folder = handmoe.folder(tmp_path / "hub")
    modeling = folder / "modeling_handmoe.py"
    modeling.write_text(
        modeling.read_text().replace(
            "if index < config.first_k_dense_replace:", "if index % 3 == 0:"
        )
    )
    out = tmp_path / "models"
    capsys.readouterr()
    assert main(["scaffold", str(folder), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert "rule moe" in err and "cannot be realised" in err and "nothing written" in err
    assert not (out / "handmoe").exists()


def test_features_json_carries_the_layout(tmp_path, capsys) -> None:
    capsys.readouterr()
    assert main(["analyze", str(packed.folder(tmp_path)), "--json"]) == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert row["attention"]["qkv_layout"] == "grouped"
    assert Attention().qkv_layout == "unknown"


@pytest.mark.slow
@pytest.mark.parametrize("module", [flashy, packed, handmoe], ids=_name)
def test_scaffolded_and_verified_from_the_folders_code(module, tmp_path, capsys) -> None:
    folder = module.folder(tmp_path / "hub")
    out = tmp_path / "models"
    assert main(["scaffold", str(folder), "--out", str(out)]) == 0
    capsys.readouterr()
    main(
        ["verify", str(folder), "--models", str(out), "--trust-remote-code"]
        + ["--dtype", "fp32", "--json"]
    )
    rows = json.loads(capsys.readouterr().out)
    base = [row for row in rows if "+" not in row["case"]]
    assert base and base[0]["status"] == "pass", base
    assert all(row["status"] in ("pass", "refused", "skipped") for row in rows), rows


def test_dynamic_ntk_written_in_the_code_is_not_plain_rope(tmp_path) -> None:
    """A rotary module that grows its base with the sequence length by itself (a flag, no
    rope_scaling) is not the default RoPE: the type is `other`, so the plan stops."""
    folder = flashy.folder(tmp_path)
    modeling = folder / "modeling_flashy.py"
    text = modeling.read_text()
    plain = "        inv_freq = 1.0 / (self.base ** (steps / self.dim))\n"
    assert plain in text
    dynamic = (
        "        base = self.base\n"
        "        if seq_len > 64:\n"
        "            alpha = 2 ** math.ceil(math.log(seq_len / 64, 2) + 1) - 1\n"
        "            base = base * alpha ** (self.dim / (self.dim - 2))\n"
        "        inv_freq = 1.0 / (base ** (steps / self.dim))\n"
    )
    modeling.write_text(text.replace(plain, dynamic))
    features = analyze(str(folder))
    assert features.rope.type == "other"
    assert "dynamic NTK" in features.evidence["rope.type"]
    assert "rope.type" in {u.feature for u in features.unsupported}


@pytest.mark.parametrize(
    "build",
    [
        "        self.layers = nn.ModuleList()\n"
        "        for i in range(config.num_hidden_layers):\n"
        "            self.layers.append(build_layer(config, i))",
        "        self.layers = nn.ModuleList(\n"
        "            map(lambda i: build_layer(config, i), range(config.num_hidden_layers))\n"
        "        )",
    ],
    ids=["append-loop", "map-lambda"],
)
def test_layer_lists_grown_by_append_or_map(build, tmp_path) -> None:
    folder = flashy.folder(tmp_path)
    modeling = folder / "modeling_flashy.py"
    text = modeling.read_text()
    comprehension = (
        "        self.layers = nn.ModuleList(\n"
        "            [build_layer(config, i) for i in range(config.num_hidden_layers)]\n"
        "        )"
    )
    assert comprehension in text
    modeling.write_text(text.replace(comprehension, build))
    features = analyze(str(folder))
    assert features.category == "decoder" and features.block.num_layers == 4
    assert features.attention.kind == "gqa" and features.state_dict.prefix == "model.layers"
