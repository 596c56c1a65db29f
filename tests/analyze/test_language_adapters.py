"""X-MOD's per-language bottleneck adapters are read whole (`block.language_adapters`): the
sublayer and ModuleDict holding them, their two linears in call order, the config fields of
their width, keys and default language, and the three bool switches choosing their norm and
residual. The reading rests on structure (a renamed copy with renamed parts reads the same
fields); a layer that runs them otherwise is still named as unsupported."""

from __future__ import annotations

from analyze_helpers import rename_model

from codegen.analyze.analysis import analyze

XMOD = {
    "owner": "output",
    "bank": "adapter_modules",
    "down": "dense1",
    "up": "dense2",
    "reduction": "adapter_reduction_factor",
    "languages": "languages",
    "default": "default_language",
    "own_norm": "adapter_layer_norm",
    "own_norm_module": "adapter_layer_norm",
    "reuse_norm": "adapter_reuse_layer_norm",
    "residual_after_norm": "ln_before_adapter",
}


def test_xmod_adapters_are_read_with_their_switches():
    features = analyze("xmod")
    assert features.block.language_adapters == XMOD
    assert "block.layer_modules" not in {u.feature for u in features.unsupported}
    assert features.evidence["block.language_adapters"].startswith("modeling_xmod.py:427")
    # the FFN itself is still the BERT pair, its norms the two post-norms
    assert dict(features.ffn.block_names) == {
        "up_proj": "intermediate.dense",
        "down_proj": "output.dense",
    }
    assert dict(features.norm.block_names) == {
        "post_attention_norm": "attention.output.LayerNorm",
        "post_ffn_norm": "output.LayerNorm",
    }


def _renamed(tmp_path, extra=()):
    path, _ = rename_model("xmod", "zorblax", str(tmp_path))
    source = open(path, encoding="utf-8").read()
    for old, new in (
        ("adapter_modules", "banks"),
        ("lang_adapter", "route"),
        ("ZorblaxAdapter", "ZorblaxSide"),
        ("dense1", "squeeze"),
        ("dense2", "expand"),
        ("self.ln_before_adapter", "self.late_residual"),
        ("self.adapter_reuse_layer_norm", "self.share_norm"),
        ("self.adapter_layer_norm", "self.side_norm"),
        *extra,
    ):
        assert old in source, old
        source = source.replace(old, new)
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(source)
    return path


def test_renamed_copy_with_renamed_parts_reads_the_same_fields(tmp_path):
    found = analyze(_renamed(tmp_path)).block.language_adapters
    assert found == {
        **XMOD,
        "bank": "banks",
        "down": "squeeze",
        "up": "expand",
        "own_norm_module": "side_norm",
    }


def test_adapters_run_otherwise_stay_unsupported(tmp_path):
    """Without the residual taken after the norm (`if self.x: residual = ...`), the
    adapters' residual is not what the package builds: named, not read."""
    drop = ("        if self.late_residual:\n            residual = hidden_states\n", "")
    path = _renamed(tmp_path)
    source = open(path, encoding="utf-8").read()
    assert drop[0] in source
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(source.replace(*drop))
    features = analyze(path)
    assert features.block.language_adapters is None
    found = {u.feature: u for u in features.unsupported}
    assert "output.banks (ModuleDict of 1 ZorblaxSide)" in found["block.layer_modules"].detail


def test_every_language_has_its_adapter_keys(tmp_path):
    """The bank is filled in a loop with one record per language (the same `Adapter(config)`
    record each time): each language still keys its own weights, where a ModuleList's
    repeats collapse to one `{}`."""
    import json

    config = tmp_path / "config.json"
    config.write_text(json.dumps({"languages": ["en_XX", "de_DE", "fr_XX"]}))
    keys = analyze(_renamed(tmp_path), str(config)).state_dict.layer_keys
    banks = sorted({k.split(".")[2] for k in keys if k.startswith("output.banks.")})
    assert banks == ["de_DE", "en_XX", "fr_XX"]
    assert "output.banks.fr_XX.expand.bias" in keys
