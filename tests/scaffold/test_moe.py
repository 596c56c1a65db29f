"""MoE transforms end to end: real transformers MoE models scaffolded from dense references.

Each plan is a reference plus explicit steps; the generated package must pass `codegen
verify` (fp32, every default case: tied / untied, both norm_topk_prob settings), and the
same plan with the MoE delta seeded wrong must fail, so every test has teeth.
"""

from __future__ import annotations

import dataclasses
import subprocess
from pathlib import Path

import pytest

from codegen.models import load_spec
from codegen.scaffold.build import Step
from codegen.scaffold.pipeline import scaffold_into, verify_generated
from codegen.verify.cases import default_cases
from codegen.verify.run import verify_case

ROOT = Path(__file__).resolve().parents[2]
HEAD_DIM = (
    "getattr(hf_config, 'head_dim', None) or hf_config.hidden_size // hf_config.num_attention_heads"
)

# model_type -> (reference, steps). Steps a reviewer can read as the MoE delta of each model.
PLANS: dict[str, tuple[str, list[Step]]] = {
    # Qwen3-MoE from the dense qwen3: the whole MoE block comes from add_moe's snippets.
    "qwen3_moe": (
        "qwen3",
        [
            Step("set_sliding_window", {"mode": "all"}, rule="sliding_window_all"),
            Step("add_moe", {"dense_rule": "sparse_step", "norm_topk_prob": "config"}, "moe"),
            Step("map_config_fields", {"fields": {"head_dim": HEAD_DIM}}),
        ],
    ),
    # Mixtral from llama: every layer MoE, softmax over all experts, top-k, renormalised.
    "mixtral": (
        "llama",
        [
            Step("set_sliding_window", {"mode": "all"}, rule="sliding_window_all"),
            Step("add_moe", {"dense_rule": "all", "norm_topk_prob": "always"}, "moe"),
            Step(
                "map_config_fields",
                {
                    "fields": {
                        "num_experts": "hf_config.num_local_experts",
                        "moe_intermediate_size": "hf_config.intermediate_size",
                    }
                },
            ),
            Step(
                "rename_hf_keys",
                {
                    "mapping": {
                        "mlp.gate": "block_sparse_moe.gate",
                        "mlp.experts": "block_sparse_moe.experts",
                        "gate_proj": "w1",
                        "up_proj": "w3",
                        "down_proj": "w2",
                    }
                },
            ),
        ],
    ),
    # Qwen2-MoE from qwen2 (q/k/v biases and the window pattern are native there): MoE on
    # the decoder_sparse_step layers plus a shared expert behind a sigmoid gate.
    "qwen2_moe": (
        "qwen2",
        [
            Step("add_moe", {"dense_rule": "sparse_step", "norm_topk_prob": "config"}, "moe"),
            Step(
                "add_shared_experts",
                {"size": "shared_expert_intermediate_size", "hf_name": "shared_expert"},
                rule="moe_shared_experts",
            ),
            Step("add_shared_expert_gate", {}, rule="moe_shared_expert_gate"),
        ],
    ),
    # Qwen2-MoE again, from llama: q/k/v biases by set_qkv_bias, the window pattern added.
    "qwen2_moe_from_llama": (
        "llama",
        [
            Step("set_qkv_bias", {"enabled": True}, rule="qkv_bias"),
            Step("set_o_bias", {"enabled": False}, rule="o_bias"),  # llama's switch biases o too
            Step("set_fixed_settings", {"settings": {"hidden_act": "silu"}}),
            Step("set_sliding_window", {"mode": "pattern"}, rule="sliding_window_pattern"),
            Step("add_moe", {"dense_rule": "sparse_step", "norm_topk_prob": "config"}, "moe"),
            Step(
                "add_shared_experts",
                {"size": "shared_expert_intermediate_size", "hf_name": "shared_expert"},
                rule="moe_shared_experts",
            ),
            Step("add_shared_expert_gate", {}, rule="moe_shared_expert_gate"),
        ],
    ),
    # OLMoE from llama: QK RMSNorm over the whole projection, every layer MoE.
    "olmoe": (
        "llama",
        [
            Step("set_qk_norm", {"kind": "full"}, rule="qk_norm_full"),
            Step("add_moe", {"dense_rule": "all", "norm_topk_prob": "config"}, "moe"),
            Step(
                "map_config_fields",
                {"fields": {"moe_intermediate_size": "hf_config.intermediate_size"}},
            ),
        ],
    ),
    # GLM-4-MoE from llama: partial rotary; sigmoid router with correction bias and grouped
    # top-k, routed scaling, one shared expert, the first k layers dense.
    "glm4_moe": (
        "llama",
        [
            Step("partial_rotary", {}, rule="partial_rotary"),
            Step("add_moe", {"dense_rule": "first_k", "norm_topk_prob": "config"}, "moe"),
            Step(
                "set_moe_router",
                {"router": "grouped_topk", "correction_bias": True},
                rule="moe_router",
            ),
            Step("set_routed_scaling", {}, rule="moe_routed_scaling"),
            Step("add_shared_experts", {"size": "n_shared_experts"}, rule="moe_shared_experts"),
            Step("map_config_fields", {"fields": {"num_experts": "hf_config.n_routed_experts"}}),
        ],
    ),
}
MODEL_TYPE = {"qwen2_moe_from_llama": "qwen2_moe"}


def scaffold(tmp_path: Path, name: str, steps=None, tag: str = "good") -> Path:
    reference, plan = PLANS[name]
    models = tmp_path / f"models_{tag}"
    scaffold_into(models, reference, name, [MODEL_TYPE.get(name, name)], steps or plan)
    return models


def failures(results) -> list:
    return [
        (r.case, r.dtype, r.cosine, r.error, r.first_divergence)
        for r in results
        if r.status == "fail"
    ]


def replace_step(name: str, transform: str, **params) -> list[Step]:
    """The plan of `name` with one step's parameters changed (a seeded defect)."""
    _, plan = PLANS[name]
    return [
        dataclasses.replace(step, params={**step.params, **params})
        if step.transform == transform
        else step
        for step in plan
    ]


def without(name: str, transform: str) -> list[Step]:
    return [step for step in PLANS[name][1] if step.transform != transform]


@pytest.fixture(scope="module")
def good_models(tmp_path_factory) -> Path:
    """Every plan scaffolded once into one models package."""
    root = tmp_path_factory.mktemp("moe")
    for name in PLANS:
        scaffold(root, name)
    return root / "models_good"


@pytest.mark.parametrize("name", sorted(PLANS))
def test_scaffolded_moe_model_passes_verify(good_models, name):
    models = good_models
    dtypes = ("fp32", "bf16") if name == "qwen3_moe" else ("fp32",)
    # hand-written plans (no guard_switches): the config class defaults only
    results = verify_generated(models, name, dtypes, switches=False)
    assert results and not failures(results), failures(results)
    assert all(r.roundtrip_exact and not r.missing_keys for r in results if r.status == "pass")


def test_qwen3_moe_code_comes_from_the_transforms(good_models):
    """The MoE block of qwen3_moe-from-qwen3 is add_moe's own snippet, not the reference's."""
    models = good_models
    model = (models / "qwen3_moe" / "model.py").read_text()
    from codegen.transforms.add_moe import MOE

    # the experts are the one shared implementation (imported, vendored as experts.py)
    assert "class MoE" in model and MOE.strip().splitlines()[2] in model
    assert "from .experts import Experts" in model and "class Experts" not in model
    assert (models / "qwen3_moe" / "experts.py").is_file()
    assert "generated by codegen." in model and "qwen3 reference" not in model


def test_generated_moe_packages_are_ruff_clean(good_models):
    packages = [str(good_models / name) for name in PLANS]
    for command in (["ruff", "check", *packages], ["ruff", "format", "--check", *packages]):
        done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
        assert done.returncode == 0, done.stdout + done.stderr


# --- the rule table, read with real analyzer Features --------------------------------------


def moe_rule_steps(features, reference: str) -> list[Step]:
    """The rows of rules/moe.py whose feature has one of their values in the target and
    not in the reference (a dense reference takes any MoE layer condition: add_moe's; one
    without a shared expert any shared width: add_shared_experts sizes it; and a MoE
    without one: add_moe builds none)."""
    from codegen.analyze.reference import REFERENCES, accepts, compared_value
    from rules.moe import RULES

    steps = []
    for rule in RULES:
        accepted = rule.feature in ("moe.layer_condition", "moe.shared_size", "moe.shared_experts")
        if accepted and accepts(REFERENCES[reference], features, rule.feature):
            continue
        if rule.feature == "moe.routed_scaling":
            value = "no" if features.get(rule.feature) is None else "yes"
        else:
            value = compared_value(features, rule.feature)
        if value in rule.values and not any(s.transform == rule.transform for s in steps):
            steps.append(Step(rule.transform, rule.resolve(features), rule.id))
    return steps


@pytest.mark.parametrize(
    "name, reference, expected",
    [
        ("mixtral", "llama", ["add_moe"]),
        ("olmoe", "llama", ["add_moe"]),
        ("qwen2_moe", "qwen2", ["add_moe", "add_shared_experts", "add_shared_expert_gate"]),
        (
            "glm4_moe",
            "llama",
            [
                "add_moe",
                "set_moe_router",
                "set_routed_scaling",
                "set_router_fp32",
                "add_shared_experts",
            ],
        ),
    ],
)
def test_moe_rules_with_analyzer_features_pass_verify(tmp_path, name, reference, expected):
    """The planner picks the table's MoE rows from the target's Features ("auto" dense
    rule / renormalisation / shared size read there), in table order; the package
    passes verify."""
    from codegen.scaffold.plan import make_plan
    from codegen.scaffold.target import load_target

    target = load_target(name)
    assert [step.transform for step in moe_rule_steps(target.features, reference)] == expected
    plan = make_plan(target, reference=reference)
    planned = [step.transform for step in plan.steps if step.transform in expected]
    # the router and its correction bias are two rows of one transform (idempotent)
    assert [t for i, t in enumerate(planned) if i == 0 or planned[i - 1] != t] == expected
    models = tmp_path / "models"
    scaffold_into(models, reference, name, [name], list(plan.steps), features=target.features)
    results = verify_generated(models, name)
    assert results and not failures(results), failures(results)


# --- teeth: the same plans with the MoE delta seeded wrong must fail -----------------------


def test_bf16_router_without_the_fp32_upcast_fails(tmp_path):
    """HF projects glm4_moe's router input in fp32 and returns fp32 logits; the planned
    package without the moe_router_fp32 row rounds them to bf16: its router returns bf16
    where HF's returns fp32, named on every CPU (the routing flips it causes can sit inside
    HF's own bf16 kernel noise)."""
    from codegen.scaffold.plan import make_plan
    from codegen.scaffold.target import load_target

    target = load_target("glm4_moe")
    steps = [s for s in make_plan(target, reference="llama").steps if s.rule != "moe_router_fp32"]
    assert len(steps) == len(make_plan(target, reference="llama").steps) - 1
    models = tmp_path / "models"
    scaffold_into(models, "llama", "glm4_moe", ["glm4_moe"], steps, features=target.features)
    spec = load_spec("glm4_moe", models)
    (case,) = [c for c in default_cases(spec) if c.label.endswith("partial_rotary_factor=1.0")]
    (result,) = verify_case(spec, case, ["bf16"])
    assert not result.passed, "a bf16 router went unnoticed"
    assert ".moe.gate" in result.first_divergence, result.first_divergence


def test_qwen3_moe_with_experts_reordered_fails(good_models):
    spec = load_spec("qwen3_moe", good_models)

    class Swapped(spec.adapter):
        def from_hf(self, hf_state_dict):
            state = super().from_hf(hf_state_dict)
            for key, tensor in state.items():
                if ".moe.experts." in key:
                    state[key] = tensor[[1, 0, *range(2, tensor.shape[0])]]
            return state

    case = default_cases(spec)[0]
    (result,) = verify_case(dataclasses.replace(spec, adapter=Swapped), case, ["fp32"])
    assert not result.passed
    assert ".moe.experts" in result.first_divergence


@pytest.mark.parametrize(
    "name, steps, case",
    [
        # mixtral always renormalises the top-k softmax weights
        ("mixtral", replace_step("mixtral", "add_moe", norm_topk_prob="never"), "mixtral"),
        # qwen3_moe reads norm_topk_prob from the config; hard-coding it fails one case
        (
            "qwen3_moe",
            replace_step("qwen3_moe", "add_moe", norm_topk_prob="never"),
            "+norm_topk_prob=True",
        ),
        # qwen2_moe's shared expert is gated (unmapped shared_expert_gate + wrong sum)
        ("qwen2_moe", without("qwen2_moe", "add_shared_expert_gate"), "qwen2_moe"),
        # glm4_moe: plain sigmoid top-k instead of group-limited top-k
        ("glm4_moe", replace_step("glm4_moe", "set_moe_router", router="sigmoid_topk"), "glm4_moe"),
        # glm4_moe: grouped top-k without the correction bias (its key left unmapped)
        (
            "glm4_moe",
            replace_step("glm4_moe", "set_moe_router", correction_bias=False),
            "glm4_moe",
        ),
        # glm4_moe without its shared expert
        ("glm4_moe", without("glm4_moe", "add_shared_experts"), "glm4_moe"),
        # olmoe's renormalisation is a config switch (off by default), not mixtral's always
        ("olmoe", replace_step("olmoe", "add_moe", norm_topk_prob="always"), "olmoe"),
    ],
    ids=[
        "mixtral-no-renorm",
        "qwen3_moe-renorm-ignored",
        "qwen2_moe-ungated-shared",
        "glm4_moe-ungrouped",
        "glm4_moe-no-correction-bias",
        "glm4_moe-no-shared",
        "olmoe-always-renormalised",
    ],
)
def test_seeded_moe_defect_fails_verify(tmp_path, name, steps, case):
    """`case`: the default case (label, or its suffix) that exposes the defect."""
    models = scaffold(tmp_path, name, steps, tag="bad")
    spec = load_spec(name, models)
    (chosen,) = [c for c in default_cases(spec) if c.label == case or c.label.endswith(case)]
    (result,) = verify_case(spec, chosen, ["fp32"])
    assert not result.passed, f"{name}: the seeded defect went unnoticed"
