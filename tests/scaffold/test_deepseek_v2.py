"""DeepSeek-V2 through the planner: from the deepseek_v3 reference (MLA), the rules of
`rules/router.py` turn its sigmoid / correction-bias / grouped Gate into V2's softmax router
with the `topk_method` switch, and fix the rope layout V2's config has no switch for.

The package is written by `codegen scaffold` with no hand-written steps and must pass
`codegen verify` (fp32 and bf16, every default case) and a group_limited_greedy config with
V2's routed scaling. Seeded defects (sigmoid scores, greedy and group-limited confused, V3's
group score, renormalised weights, halves instead of pairs) must fail.
"""

from __future__ import annotations

import dataclasses
import shutil
import subprocess
from pathlib import Path

import pytest

from codegen.cli import main
from codegen.models import load_spec
from codegen.scaffold.pipeline import scaffold_into, verify_generated
from codegen.verify.run import Case, verify_case
from codegen.verify.tiny_config import tiny_config

ROOT = Path(__file__).resolve().parents[2]
NAME = "deepseek_v2"
GROUPED = 'return hf_config.topk_method == "group_limited_greedy"'


def grouped_case() -> Case:
    """DeepSeek-V2 (not Lite) routes group-limited (toy: 2 groups of 4, 1 kept), scaled by 16."""
    config = tiny_config(NAME, topk_method="group_limited_greedy", routed_scaling_factor=16.0)
    return Case(f"{NAME}+group_limited_greedy", config)


def greedy_case() -> Case:
    return Case(NAME, tiny_config(NAME))


def failures(results) -> list:
    return [(r.case, r.dtype, r.cosine, r.error) for r in results if r.status == "fail"]


def verify(models: Path, case: Case):
    return verify_case(load_spec(NAME, models), case, ["fp32"])


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> Path:
    """`codegen scaffold deepseek_v2 --out DIR`: the planner's plan, nothing hand-written."""
    models = tmp_path_factory.mktemp("dsv2") / "models"
    assert main(["scaffold", NAME, "--out", str(models)]) == 0
    return models


def test_plan_starts_from_deepseek_v3_with_the_router_rules():
    from codegen.scaffold.plan import make_plan
    from codegen.scaffold.target import load_target

    plan = make_plan(load_target(NAME))
    assert plan.complete and plan.reference == "deepseek_v3"
    rules = [(step.rule, step.transform) for step in plan.steps if step.rule]
    assert rules == [
        ("ffn_bias", "set_ffn_bias"),  # mlp_bias switches the dense MLP's biases
        ("router_softmax_gate", "set_softmax_gate"),
        ("router_mla_rope_layout", "fix_rope_layout"),
        # HF adds no number to a sum (it renormalises nothing): where the reference's Gate
        # adds 1e-20, the step would drop it; set_softmax_gate left no division to edit
        ("router_renorm_eps", "router_renorm_eps"),
        ("rope_fp32", "rope_fp32"),
    ]


def test_scaffolded_package_passes_verify(models):
    results = verify_generated(models, NAME, ("fp32", "bf16"))
    cases = {r.case for r in results}
    assert {NAME, f"{NAME}+tie_word_embeddings=True", f"{NAME}+q_lora_rank=None"} <= cases
    assert f"{NAME}+topk_method='group_limited_greedy'" in cases
    assert results and not failures(results), failures(results)
    assert all(r.roundtrip_exact and not r.missing_keys for r in results if r.status == "pass")


def test_group_limited_greedy_with_routed_scaling_passes(models):
    results = verify(models, grouped_case())
    assert not failures(results), failures(results)


def test_generated_code_is_v2s_router_and_ruff_clean(models):
    package = models / NAME
    model, args = (package / "model.py").read_text(), (package / "args.py").read_text()
    assert "logits.softmax(dim=-1)" in model and "sigmoid" not in model
    assert "e_score_correction_bias" not in model + (package / "state_dict_adapter.py").read_text()
    assert "norm_topk_prob" not in model + args  # HF's V2 router never renormalises
    assert "rope_interleave" not in args  # V2's config has no such field
    assert GROUPED in args
    for command in (["ruff", "check", str(package)], ["ruff", "format", "--check", str(package)]):
        done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
        assert done.returncode == 0, done.stdout + done.stderr


# seeded defect -> (file, text, replacement, the case that must fail)
SEEDS = {
    "sigmoid_scores": ("model.py", "logits.softmax(dim=-1)", "logits.sigmoid()", greedy_case),
    "greedy_routed_as_grouped": ("args.py", GROUPED, "return True", greedy_case),
    "grouped_routed_as_greedy": ("args.py", GROUPED, "return False", grouped_case),
    "v3_group_score": (
        "model.py",
        "scores.amax(dim=-1)",
        "scores.topk(2, dim=-1)[0].sum(dim=-1)",
        grouped_case,
    ),
    "renormalised": (
        "model.py",
        "weights * self.route_scale",
        "weights / weights.sum(dim=-1, keepdim=True) * self.route_scale",
        greedy_case,
    ),
}


@pytest.mark.parametrize("seed", sorted(SEEDS))
def test_seeded_defect_fails(models, tmp_path, seed):
    filename, text, replacement, case = SEEDS[seed]
    seeded = tmp_path / "models"
    shutil.copytree(models, seeded)
    path = seeded / NAME / filename
    source = path.read_text()
    assert text in source
    path.write_text(source.replace(text, replacement))
    assert failures(verify(seeded, case()))


@pytest.mark.parametrize(
    ("transform", "params", "case"),
    [
        ("set_softmax_gate", {"grouped": False}, grouped_case),  # topk_method ignored
        ("fix_rope_layout", {"interleaved": False, "switch": False}, greedy_case),
    ],
)
def test_plan_with_a_wrong_parameter_fails(tmp_path, transform, params, case):
    from codegen.scaffold.plan import make_plan
    from codegen.scaffold.target import load_target

    target = load_target(NAME)
    plan = make_plan(target)
    steps = [
        dataclasses.replace(step, params={**step.params, **params})
        if step.transform == transform
        else step
        for step in plan.steps
    ]
    assert steps != list(plan.steps)
    models = tmp_path / "models"
    scaffold_into(models, plan.reference, NAME, [NAME], steps, features=target.features)
    assert failures(verify(models, case()))


def test_rope_tables_rounded_to_bf16_fail_in_bf16(tmp_path):
    """HF's V2 keeps its complex `freqs_cis` in fp32 and rotates q/k in fp32; the plan with
    the tables rounded to bf16 first (the package as written before the analysis read
    `type_as` casts back) moves the bf16 hidden states off HF's by a rounding at every
    layer and flips expert picks: fails against HF in bf16 where every layer routes."""
    from codegen.scaffold.plan import make_plan
    from codegen.scaffold.target import load_target

    target = load_target(NAME)
    plan = make_plan(target)
    steps = [
        dataclasses.replace(step, params={**step.params, "tables_fp32": False})
        if step.transform == "rope_fp32"
        else step
        for step in plan.steps
    ]
    assert any(s.params.get("tables_fp32") is True for s in plan.steps), "tables not read fp32"
    models = tmp_path / "models"
    scaffold_into(models, plan.reference, NAME, [NAME], steps, features=target.features)
    assert "cos.to(q_pe.dtype)" in (models / NAME / "model.py").read_text()
    every_layer_routes = Case(f"{NAME}+dense=0", tiny_config(NAME, first_k_dense_replace=0))
    (result,) = verify_case(load_spec(NAME, models), every_layer_routes, ["bf16"])
    assert not result.passed, "bf16-rounded rope tables went unnoticed"
    assert "against HF in bf16" in result.first_divergence, result.first_divergence
