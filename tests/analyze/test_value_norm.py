"""A norm on the attention's values (gemma4's v_norm) is reported (`attention.v_norm`, per head
or not, learned scale or not) with file:line, not passed over; the q/k norms of the same
attention are not mistaken for it."""

from __future__ import annotations

from analyze_helpers import write_synth

from codegen.analyze.analysis import analyze

_VALUE = "value = self.v_proj(hidden_states).view(shape).transpose(1, 2)"
_O_PROJ = "        self.o_proj = nn.Linear("


def _synth(tmp_path, *, v_norm: bool) -> str:
    path = write_synth(
        str(tmp_path), q_norm=True, qkv_bias=False, o_bias=False, mlp_bias=False, post_norm=False
    )
    source = open(path, encoding="utf-8").read()
    assert _VALUE in source and _O_PROJ in source
    if v_norm:
        source = source.replace(
            _O_PROJ, "        self.v_norm = SynthRMSNorm(self.head_dim)\n" + _O_PROJ
        )
        source = source.replace(
            _VALUE, "value = self.v_norm(self.v_proj(hidden_states).view(shape)).transpose(1, 2)"
        )
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(source)
    return path


def _attention(target: str):
    features = analyze(target)
    return features.attention, features.evidence.get("attention.v_norm", "")


def test_qk_norms_alone_are_no_value_norm(tmp_path):
    attention, _ = _attention(_synth(tmp_path, v_norm=False))
    assert attention.v_norm == "none"


def test_value_norm_is_named(tmp_path):
    attention, evidence = _attention(_synth(tmp_path, v_norm=True))
    assert (attention.v_norm, attention.v_norm_weight) == ("per_head", True)
    assert evidence.startswith("modeling_synth.py:")


def test_gemma4_value_norm_is_weightless_per_head():
    attention, evidence = _attention("gemma4_text")
    assert (attention.v_norm, attention.v_norm_weight) == ("per_head", False)
    assert evidence.startswith("modeling_gemma4.py:")
    assert "attention.v_norm" not in {u.feature for u in analyze("gemma4_text").unsupported}
