"""The dynamic cross-check: a built tiny model's observations against the static analysis.

The probes must see what the model really has (llama: separate unbiased q/k/v, RMSNorm
without offset, untied head; gemma: an offset norm and scaled embeddings; qwen2: q/k/v
biases), and a static value that differs from the model must show as a disagreement."""

from __future__ import annotations

import dataclasses

import pytest

from codegen.verify.crosscheck.compare import compare, expected
from codegen.verify.crosscheck.run import agreement, check_one, report


def test_compare_counts_only_observed_fields_and_names_the_difference() -> None:
    static = {"attention.qkv_bias": True, "norm.kind": "rmsnorm", "ffn.bias": False}
    observed = {"attention.qkv_bias": False, "norm.kind": "rmsnorm"}
    results = compare(static, observed)
    assert set(results) == set(observed)
    assert results["norm.kind"][0] and not results["attention.qkv_bias"][0]
    assert "static True, observed False" in results["attention.qkv_bias"][1]


def test_key_sets_differ_by_name() -> None:
    static = {"state_dict.layer_keys": frozenset({"a.weight", "b.weight"})}
    observed = {"state_dict.layer_keys": frozenset({"a.weight", "c.weight"})}
    ok, detail = compare(static, observed)["state_dict.layer_keys"]
    assert not ok and "c.weight" in detail and "b.weight" in detail


def test_agreement_per_field_and_overall() -> None:
    rows = [
        {"model_type": "a", "fields": {"x": [True, ""], "y": [False, "d"]}},
        {"model_type": "b", "fields": {"x": [True, ""]}},
    ]
    per_field, agree, seen = agreement(rows)
    assert per_field == {"x": (2, 2), "y": (0, 1)} and (agree, seen) == (2, 3)
    assert report(rows, "t")[-1].startswith("cross-check (t): 2/3 observable fields agree")


@pytest.mark.parametrize(
    ("model_type", "facts"),
    [
        ("llama", {"attention.qkv_bias": False, "norm.kind": "rmsnorm", "ffn.gated": True}),
        ("qwen2", {"attention.qkv_bias": True, "attention.o_bias": False}),
        ("gemma", {"norm.kind": "rmsnorm_offset", "embedding.scale": True}),
    ],
)
def test_probes_see_the_model_and_agree_with_the_analysis(model_type, facts) -> None:
    row = check_one(model_type)
    assert row["error"] is None
    fields = row["fields"]
    for name, value in facts.items():
        assert name in fields and fields[name][0], (name, fields.get(name))
        assert f"observed {value!r}" in fields[name][1]
    assert all(ok for ok, _ in fields.values()), {k: v for k, v in fields.items() if not v[0]}


def test_a_wrong_static_value_is_a_disagreement() -> None:
    from codegen.scaffold.target import load_target
    from codegen.verify.crosscheck.observe import observe
    from codegen.verify.crosscheck.run import _build

    features = load_target("llama").features
    wrong = dataclasses.replace(
        features, attention=dataclasses.replace(features.attention, qkv_bias=True)
    )
    import tempfile
    from pathlib import Path

    _, model, config = _build("llama", Path(tempfile.mkdtemp()), renamed=False)
    results = compare(expected(wrong), observe(model, config))
    assert not results["attention.qkv_bias"][0]
    assert sum(not ok for ok, _ in results.values()) == 1


def test_a_renamed_copy_is_observed_and_agrees() -> None:
    row = check_one("llama", renamed=True)
    assert row["error"] is None and row["fields"]
    assert all(ok for ok, _ in row["fields"].values())


def test_renamed_folder_count_names_what_failed() -> None:
    from codegen.verify.crosscheck.sweep import renamed_folders

    outcomes = renamed_folders(["no_such_model_type"])
    assert outcomes["no_such_model_type"].startswith("fixture: ")


def test_the_fixture_names_a_causal_lm_not_called_for_causal_lm(tmp_path) -> None:
    import json

    from codegen.verify.remote_fixture import remote_folder

    folder = remote_folder("gpt2", tmp_path, name="zephtest")
    auto_map = json.loads((folder / "config.json").read_text())["auto_map"]
    module, cls = auto_map["AutoModelForCausalLM"].split(".")
    assert cls.endswith("LMHeadModel") and "GPT2" not in cls
    assert f"class {cls}(" in (folder / f"{module}.py").read_text()


def test_a_correction_bias_passed_into_the_router_module_is_a_router_bias() -> None:
    """minimax_m2 hands its buffer to the gate (`self.gate(x, self.e_score_correction_bias)`);
    the cross-check saw the buffer while the analysis said no router bias."""
    from codegen.analyze.analysis import analyze

    assert analyze("minimax_m2").moe.router_bias is True
    assert analyze("qwen3_moe").moe.router_bias is False


# --- probes that used to misread a model (each disagreed in the full sweep before) ---------


def test_a_pipelines_indices_are_kept_and_a_repeat_lists_templated() -> None:
    """CTRL's FFN is nn.Sequential(Linear, ReLU, Linear): ffn.0 and ffn.2 are different
    weights (the analysis keeps them); a list of repeats outside the layers (gemma3n's
    altup_projections) is one `{}` pattern, as the analysis writes it."""
    import torch

    from codegen.verify.crosscheck.observe import _keys, _pipelines

    class Layer(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.ffn = torch.nn.Sequential(
                torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 4)
            )
            self.experts = torch.nn.ModuleList(torch.nn.Linear(4, 4) for _ in range(2))

    class Model(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.layers = torch.nn.ModuleList(Layer() for _ in range(2))
            self.side = torch.nn.ModuleList(torch.nn.Linear(4, 4, bias=False) for _ in range(3))
            self.gains = torch.nn.ParameterList(torch.nn.Parameter(torch.ones(4)) for _ in range(2))

    model = Model()
    state = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    keys = _keys(state, "layers", "state_dict", _pipelines(model))
    assert keys["state_dict.layer_keys"] == {
        "ffn.0.weight",
        "ffn.0.bias",
        "ffn.2.weight",
        "ffn.2.bias",
        "experts.{}.weight",
        "experts.{}.bias",
    }
    assert keys["state_dict.other_keys"] == {"side.{}.weight", "gains.{}"}


def test_a_learned_affine_map_of_the_embeddings_is_seen() -> None:
    """zaya's (x + b) * s per channel starts at s = 1, b = 0: invisible as a ratio, seen once
    moved; a per-token offset (positions added) is no per-channel map."""
    import torch

    from codegen.verify.crosscheck.observe import _per_channel_affine

    rows = torch.randn(1, 8, 6, generator=torch.Generator().manual_seed(0))
    scale, shift = torch.rand(6) + 0.5, torch.randn(6)
    assert _per_channel_affine((rows + shift) * scale, rows)
    assert not _per_channel_affine(rows, rows)  # no map at all
    assert not _per_channel_affine(rows + torch.randn(1, 8, 6), rows)


@pytest.mark.parametrize(
    ("model_type", "renamed", "facts"),
    [
        # weightless q/k norms (one L2 norm called on q and k; two weightless RMSNorms)
        ("llama4_text", False, {"attention.qk_norm": "per_head"}),
        ("nanochat", True, {"attention.qk_norm": "per_head"}),
        # experts' rows stacked in one matrix per projection: layout and count
        ("dbrx", True, {"moe.expert_layout": "flat", "moe.num_experts": 16}),
        # a learned affine embedding map at its start, a router bias over a skip expert too
        ("zaya", False, {"embedding.scale": "learned_affine", "moe.router_bias": True}),
        # a logit scale whose configured value is 1.0
        ("cohere_compass_text", True, {"head.logit_scale": True}),
        # per-token sinks; the checkpoint's layers under another prefix, a shifted index
        ("inkling2_text", False, {"attention.sinks": "per_token"}),
        # shared experts the router scores
        ("inkling_text", False, {"moe.shared_experts": True}),
        # per-layer config attributes (reading them on the global config raises)
        ("gemma4_text", False, {"attention.fused_qkv": False}),
        # blocks of two attentions and two MLPs (num_hidden_layers counts the attentions:
        # the stack found as the largest list of blocks), experts holding rows the identity
        # experts never read (the count is the router's width), a selection bias over them
        (
            "longcat_flash",
            True,
            {
                "moe.num_experts": 24,
                "moe.router_bias": True,
                "ffn.gated": True,
                "attention.latent_norms": "q_kv",
            },
        ),
    ],
)
def test_probes_that_once_disagreed_now_see_the_model(model_type, renamed, facts) -> None:
    row = check_one(model_type, renamed=renamed)
    assert row["error"] is None
    fields = row["fields"]
    for name, value in facts.items():
        assert name in fields, name
        assert f"observed {value!r}" in fields[name][1], (name, fields[name])
    assert all(ok for ok, _ in fields.values()), {k: v for k, v in fields.items() if not v[0]}


def _seeded(model_type: str, part: str, **wrong) -> dict:
    """The cross-check of `model_type`'s tiny model against its analysis with the fields
    `wrong` of the features' `part` (attention, rope) seeded: field -> (agrees, detail)."""
    import tempfile
    from pathlib import Path

    from codegen.scaffold.target import load_target
    from codegen.verify.crosscheck.observe import observe
    from codegen.verify.crosscheck.run import _build

    features = load_target(model_type).features
    seeded = dataclasses.replace(
        features, **{part: dataclasses.replace(getattr(features, part), **wrong)}
    )
    _, model, config = _build(model_type, Path(tempfile.mkdtemp()), renamed=False)
    return compare(expected(seeded, config), observe(model, config))


@pytest.mark.parametrize(
    ("model_type", "part", "wrong"),
    [
        # latent attention (MLA): its projections read by their sizes
        ("deepseek_v3", "attention", {"qkv_bias": True}),
        ("deepseek_v3", "attention", {"o_bias": True}),
        ("deepseek_v3", "attention", {"fused_qkv": True}),
        ("dots3_note_text", "attention", {"o_bias": True}),
        ("dots3_note_text", "attention", {"sinks": True}),
        # MLA's q/kv latent norms: their eps (deepseek_v3's 1e-6, dots3's rms_norm_eps; the
        # deepseek_v3 toy's rms_norm_eps is 1e-6 too, so only "other" differs there)
        ("deepseek_v3", "attention", {"latent_norm_eps": "other"}),
        ("deepseek_v3", "attention", {"latent_norms": "kv"}),  # the q latent's norm missed
        ("deepseek_v3", "attention", {"latent_norms": "none"}),
        ("dots3_note_text", "attention", {"latent_norm_eps": "default"}),
        # the first layer's rotary table, one per layer type (and a dynamic rope's copy)
        ("gemma4_text", "rope", {"partial_rotary": 0.5}),
        ("phi", "rope", {"partial_rotary": 1.0}),
        # MLA: the rope part of the q/k head (64 of 192 in deepseek)
        ("deepseek_v3", "rope", {"partial_rotary": 1.0}),
        # LongCat-Flash: 24 experts scored (16 computed, 8 identity), a correction bias
        ("longcat_flash", "moe", {"num_experts": 16}),
        ("longcat_flash", "moe", {"router_bias": False}),
    ],
)
def test_a_seeded_wrong_value_of_a_field_once_unobserved_is_a_disagreement(
    model_type, part, wrong
) -> None:
    results = _seeded(model_type, part, **wrong)
    (field,) = [f"{part}.{name}" for name in wrong]
    assert field in results and not results[field][0], results.get(field)
    # the unseeded model agrees on that field
    assert _seeded(model_type, part)[field][0]
