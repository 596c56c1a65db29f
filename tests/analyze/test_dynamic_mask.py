"""attention.dynamic_mask: a score bias the attention computes from its own values (doge's
exp(A * softplus(dt_proj(v))) per kv head, top-k kept past keep_window_size), read by
structure through a module-level `AttentionInterface()` of the file's own (an instance of
an imported class, whose `get_interface` is read like the imported registry's)."""

from __future__ import annotations

from analyze_helpers import rename_model

from codegen.analyze.analysis import analyze

DOGE = {"proj": "dt_proj", "scale": "A", "window": "keep_window_size"}


def test_doge_attention_is_read_and_its_dynamic_mask_named() -> None:
    features = analyze("doge")
    attention = features.attention
    assert attention.dynamic_mask == DOGE
    # the kernel is found through the file's own AttentionInterface() instance
    assert attention.qk_norm == "per_head"
    assert (attention.qkv_bias, attention.o_bias, attention.fused_qkv) == (False, False, False)
    assert (attention.sinks, attention.softcap, attention.scale) == (False, False, "default")
    assert attention.output_gate == "none"
    assert features.evidence["attention.dynamic_mask"].startswith("modeling_doge.py:")
    assert not features.unsupported


def test_a_renamed_copy_reads_the_same(tmp_path) -> None:
    copy_path, _ = rename_model("doge", "zorblax", str(tmp_path))
    assert analyze(copy_path).attention.dynamic_mask == DOGE


def test_plain_attention_has_none() -> None:
    assert analyze("qwen3").attention.dynamic_mask is None
    assert analyze("llama").attention.dynamic_mask is None
