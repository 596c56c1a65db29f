"""Layers the stack hands no rope tables, and the query scale it hands them instead.

beam's stack keys its rope tables by layer type and hands a layer None where the type's
`rope_parameters` entry is None (its full-attention layers: NoPE); for those it computes a
query multiplier, `exp(0.1 * log1p((pos + 1) / 2048))`, which the attention applies in fp32.
The attention traced alone (every input present) rotates and scales nothing: both are read
from what the stack hands each layer. On a copy whose names are rewritten (the helper
functions, the parameters) the findings are the same.
"""

from __future__ import annotations

from analyze_helpers import rename_model

from codegen.analyze import logn_scale
from codegen.analyze.analysis import analyze
from codegen.analyze.dataflow import Term

_RENAMES = (
    ("compute_attention_scaling", "grow"),
    ("attention_scaling", "factor"),
    ("position_embeddings", "tables"),
    ("apply_rotary_pos_emb", "turn"),
)


def _check(features, source: str) -> None:
    rope = features.rope
    assert rope.nope_layers is True
    assert rope.nope_rule == "hf_config.rope_parameters[hf_config.layer_types[i]] is not None"
    assert "layers without RoPE: 5,11,17,23,29,35,41,47,51" in features.evidence["rope.nope_layers"]
    assert features.attention.logn == {
        "form": "power",
        "exponent": 0.1,
        "period": 2048.0,
        "offset": 1.0,
        "positions": "ids",
        "fp32": True,
        "layers": "nope",
    }
    assert features.evidence["attention.logn"].startswith(f"{source}:")
    assert not features.unsupported


def test_beam() -> None:
    _check(analyze("beam"), "modeling_beam.py")


def test_a_renamed_copy(tmp_path) -> None:
    path, _ = rename_model("beam", "zorblax", str(tmp_path))
    with open(path) as f:
        text = f.read()
    for old, new in _RENAMES:
        assert old in text
        text = text.replace(old, new)
    with open(path, "w") as f:
        f.write(text)
    _check(analyze(path), "modeling_zorblax.py")


def _positions() -> Term:
    return Term("input", name="position_ids")


def test_the_power_form_parses_both_spellings() -> None:
    ratio = Term("div", (Term("add", (_positions(), 1)), 2048))
    written = Term(
        "fn", (Term("mul", (0.1, Term("fn", (ratio,), name="torch.log1p"))),), name="torch.exp"
    )
    assert logn_scale.parse_power(written) == (0.1, 2048.0, 1.0, "ids")
    power = Term("pow", (Term("add", (1, ratio)), 0.5))
    assert logn_scale.parse_power(power) == (0.5, 2048.0, 1.0, "ids")
    # a log with no exponent around it is the logn form, not this one
    assert logn_scale.parse_power(Term("fn", (ratio,), name="torch.log1p")) is None


def test_tables_handed_on_in_fp32_turn_q_and_k_in_fp32() -> None:
    """beam's (and olmo3's) rotary embedding casts cos/sin to no dtype and the rotation casts
    q/k back: a bf16 model turns them in fp32, on unrounded tables; llama's casts the tables
    to the input's dtype first."""
    for model_type in ("beam", "olmo3"):
        rope = analyze(model_type).rope
        assert (rope.fp32, rope.tables_fp32) == (True, True), model_type
    rope = analyze("llama").rope
    assert (rope.fp32, rope.tables_fp32) == (False, False)
    rope = analyze("cohere2_moe").rope  # upcasts q itself, on tables in the model's dtype
    assert (rope.fp32, rope.tables_fp32) == (True, False)


def test_a_rotation_that_upcasts_q_itself_still_reads_tables_handed_on_in_fp32() -> None:
    """ERNIE-4.5's rotation calls `q.float()` itself and its rotary embedding keeps cos/sin
    in full precision; DeepSeek-V2's and Llama-4's complex `freqs_cis` stay fp32 and the
    result is cast back with `type_as`: the package must not round the tables to bf16
    before the fp32 product (that rounding moved a bf16 MoE's hidden states enough to flip
    expert picks, which the same-dtype bf16 check caught)."""
    for model_type in ("ernie4_5", "ernie4_5_moe", "deepseek_v2", "llama4_text"):
        rope = analyze(model_type).rope
        assert (rope.fp32, rope.tables_fp32) == (True, True), model_type
