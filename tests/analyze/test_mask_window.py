"""Windows cut into an attention's own causal-mask buffer (GPT-Neo's local layers), and
scores that enter the softmax unscaled.

GPT-Neo builds `bias = tril(ones)` in `__init__` and, where `attention_type == "local"`,
removes `tril(bias, -window_size)`: those layers see the last `window_size` keys. The
analysis reads the window, which layers take it (restated over the config: the attention
received `config.attention_layers[i]`), and that its inline softmax(q @ k^T) has no scale.
"""

from __future__ import annotations

from analyze_helpers import rename_model

from codegen.analyze.analysis import analyze

RULE = 'hf_config.attention_layers[i] == "local"'


def test_gpt_neo_local_layers_slide_by_the_config() -> None:
    attention = analyze("gpt_neo").attention
    assert attention.sliding_window == "pattern"
    assert attention.window == 256  # GPTNeoConfig's window_size
    assert attention.window_rule == RULE
    assert attention.window_field == "hf_config.window_size"
    assert attention.layer_types[:4] == ("full", "sliding", "full", "sliding")
    assert attention.scale == "none"


def test_a_renamed_copy_reads_the_same(tmp_path) -> None:
    copy, _ = rename_model("gpt_neo", "zorblax", str(tmp_path))
    attention = analyze(copy).attention
    assert (attention.window_rule, attention.window_field) == (RULE, "hf_config.window_size")
    assert attention.scale == "none"


def _edited(tmp_path, old: str, new: str) -> str:
    copy, _ = rename_model("gpt_neo", "zorblax", str(tmp_path))
    with open(copy, encoding="utf-8") as fh:
        source = fh.read()
    assert source.count(old) == 1
    with open(copy, "w", encoding="utf-8") as fh:
        fh.write(source.replace(old, new))
    return copy


def test_the_and_not_spelling_of_the_cut_is_read(tmp_path) -> None:
    copy = _edited(
        tmp_path,
        "bias = torch.bitwise_xor(bias, torch.tril(bias, -config.window_size))",
        "bias = bias & ~torch.tril(bias, -config.window_size)",
    )
    attention = analyze(copy).attention
    assert attention.window_rule == RULE
    assert attention.sliding_window == "pattern"


def test_a_mask_that_is_not_a_window_is_no_window(tmp_path) -> None:
    """A positive diagonal keeps future keys: not a sliding window, nothing is claimed."""
    copy = _edited(
        tmp_path,
        "torch.tril(bias, -config.window_size)",
        "torch.tril(bias, config.window_size)",
    )
    attention = analyze(copy).attention
    assert attention.sliding_window == "none"
    assert attention.window_rule is None


def test_scaled_inline_scores_are_not_unscaled(tmp_path) -> None:
    copy = _edited(
        tmp_path,
        "attn_weights = torch.matmul(query, key.transpose(-1, -2))",
        "attn_weights = torch.matmul(query, key.transpose(-1, -2)) / 8.0",
    )
    assert analyze(copy).attention.scale != "none"
