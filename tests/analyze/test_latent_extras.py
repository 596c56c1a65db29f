"""Latent attention steps the reference lacks (codegen/analyze/latent_extras.py).

dots3's latent attention scales its normed q/kv latents by sqrt(hidden / rank), norms the
shared rope key (`k_rope_only_layernorm`) and builds its latent norms with the config's
epsilon. Nothing read them, so the plan wrote a package that loaded every weight but the
rope-key norm's and diverged at layers.0.attention; now each is a feature with its rule."""

from __future__ import annotations

import json

from analyze_helpers import rename_model

from codegen.analyze.analysis import analyze, analyze_target
from codegen.analyze.locate import resolve
from codegen.scaffold.plan import make_plan
from codegen.scaffold.target import load_target

RULES = {"latent_scale", "latent_norm_eps", "k_rope_norm"}


def test_dots3_reads_each_step(tmp_path):
    modeling, _ = rename_model("dots3_note", "wombat", str(tmp_path))
    for source in ("dots3_note_text", modeling):
        features = analyze(source)
        attention = features.attention
        assert attention.latent_norm_eps == "norm_eps"
        assert attention.latent_scale == "q_kv"
        assert attention.k_rope_norm == {"module": "k_rope_only_layernorm", "eps": "norm_eps"}
        assert not features.unsupported
    plan = make_plan(load_target("dots3_note_text"))
    assert not plan.gaps
    assert RULES <= {step.rule for step in plan.steps}


def test_scaled_latents_elsewhere_are_read_too(tmp_path):
    # LongCat-Flash scales its kv latent by sqrt(hidden / kv_lora_rank) (mla_scale_kv_lora)
    # and both parts of its up-projected query by sqrt(hidden / q_lora_rank): the same as
    # scaling the q latent (q_b_proj has no bias), not a softmax scale counted once per part
    modeling, _ = rename_model("longcat_flash", "wombat", str(tmp_path))
    for source in ("longcat_flash", modeling):
        attention = analyze(source).attention
        assert attention.latent_scale == "q_kv"
        assert attention.scale == "default"


def test_the_references_latent_attention_has_none():
    # axk2's query latent norm is as wide as its down-projection's output (its up-projection
    # reads the latent twice): a latent norm, not an extra one
    for model_type in ("deepseek_v3", "deepseek_v32", "glm_moe_dsa", "axk2", "deepseek_v2"):
        features = analyze(model_type)
        attention = features.attention
        assert (attention.latent_norm_eps, attention.latent_scale) == ("default", "none")
        assert attention.k_rope_norm is None
        assert attention.latent_norms == "q_kv"
        assert "attention.latent_extra_norm" not in {u.feature for u in features.unsupported}


def test_the_latents_normed_are_read(tmp_path):
    # without a query latent (q_lora_rank None: the query projected from the hidden states)
    # only the kv latent is normed; a dense attention has no latents
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"model_type": "deepseek_v2", "q_lora_rank": None}))
    assert analyze_target(resolve("deepseek_v2", str(config))).attention.latent_norms == "kv"
    assert analyze("dots3_note_text").attention.latent_norms == "q_kv"
    assert analyze("llama").attention.latent_norms is None
