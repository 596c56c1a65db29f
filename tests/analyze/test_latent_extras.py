"""Latent attention steps the reference lacks are findings (codegen/analyze/latent_extras.py).

dots3's latent attention scales its normed q/kv latents by sqrt(hidden / rank), norms the
shared rope key (`k_rope_only_layernorm`) and builds its latent norms with the config's
epsilon. Nothing read them, so the plan wrote a package that loaded every weight but the
rope-key norm's and diverged at layers.0.attention; now each is named and the plan stops."""

from __future__ import annotations

from analyze_helpers import rename_model

from codegen.analyze.analysis import analyze
from codegen.scaffold.plan import make_plan
from codegen.scaffold.target import load_target

FINDINGS = {
    "attention.latent_norm_eps",
    "attention.latent_extra_norm",
    "attention.latent_scale",
}


def test_dots3_names_each_step(tmp_path):
    modeling, _ = rename_model("dots3_note", "wombat", str(tmp_path))
    for source in ("dots3_note_text", modeling):
        found = {u.feature: u for u in analyze(source).unsupported}
        assert FINDINGS <= set(found)
        assert "k_rope_only_layernorm" in found["attention.latent_extra_norm"].detail
        scaled = found["attention.latent_scale"].detail
        assert "q_a_layernorm" in scaled and "kv_a_layernorm" in scaled
    plan = make_plan(load_target("dots3_note_text"))
    assert FINDINGS <= {gap.feature for gap in plan.gaps}


def test_a_scaled_kv_latent_elsewhere_is_named_too():
    # LongCat-Flash scales its kv latent (mla_scale_kv_lora)
    found = {u.feature for u in analyze("longcat_flash").unsupported}
    assert "attention.latent_scale" in found


def test_the_references_latent_attention_has_none():
    # axk2's query latent norm is as wide as its down-projection's output (its up-projection
    # reads the latent twice): a latent norm, not an extra one
    for model_type in ("deepseek_v3", "deepseek_v32", "glm_moe_dsa", "axk2", "deepseek_v2"):
        assert not FINDINGS & {u.feature for u in analyze(model_type).unsupported}
