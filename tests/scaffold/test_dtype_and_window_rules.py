"""End to end: gpt_neo's unscaled scores and mask-buffer windows, flint's fp32 places.

The planner's own steps verify; the same package without the key step fails: gpt_neo
without `unscaled_attention` or `sliding_window_pattern` in fp32, flint without any one of
`rmsnorm_weight_fp32` in bf16 with attention biases on (the setting whose routing flipped
on a near tie). `fp32_attention_scores` and `keep_fp32_params` alone each stay within HF's
bf16 noise there; with all three the package's bf16 logits equal HF's bit for bit, and
without either they do not.
"""

from __future__ import annotations

import pytest
import torch

from codegen.models import load_spec
from codegen.scaffold.pipeline import scaffold_into
from codegen.scaffold.plan import make_plan
from codegen.scaffold.target import load_target
from codegen.verify.cases import default_cases
from codegen.verify.hf_checkpoint import load_checkpoint, random_hf_model, save_checkpoint
from codegen.verify.run import _load_hf, make_inputs, verify_case

# model type -> (reference, the case label verified, dtype)
CASES = {
    "gpt_neo": ("llama", "gpt_neo", "fp32"),
    "flint": ("qwen3", "flint+attention_bias=True", "bf16"),
}
KEY_STEPS = [
    ("gpt_neo", "unscaled_attention"),
    ("gpt_neo", "sliding_window_pattern"),
    # a rounding defect: caught on every CPU by the same-dtype check (against HF in bf16)
    ("flint", "rmsnorm_weight_fp32"),
]


def _package(tmp_path, model_type: str, without: str | None = None):
    reference, label, dtype = CASES[model_type]
    target = load_target(model_type)
    plan = make_plan(target, reference=reference)
    assert plan.complete, plan.gaps
    rules = [s.rule for s in plan.steps]
    if without is not None:
        assert without in rules
    steps = [s for s in plan.steps if without is None or s.rule != without]
    name = f"gen_{model_type}"
    models = tmp_path / "models"
    scaffold_into(models, reference, name, [model_type], steps, features=target.features)
    spec = load_spec(name, models)
    return spec, next(c for c in default_cases(spec) if c.label == label)


def _results(tmp_path, model_type: str, without: str | None = None):
    spec, case = _package(tmp_path, model_type, without)
    return verify_case(spec, case, [CASES[model_type][2]], gradients=False, export=False)


def _verify(tmp_path, model_type: str, without: str | None = None) -> bool:
    results = _results(tmp_path, model_type, without)
    return bool(results) and all(r.passed for r in results)


def _bf16_equal_to_hf(tmp_path, without: str | None = None) -> bool:
    """The package's bf16 logits equal HF's bf16 logits bit for bit (flint, biases on)."""
    spec, case = _package(tmp_path, "flint", without)
    save_checkpoint(random_hf_model(case.config, 0), tmp_path / "hf")
    _, house, adapter = spec.build(case.config)
    checkpoint = load_checkpoint(tmp_path / "hf")
    kept = {k: v for k, v in checkpoint.items() if k not in adapter.unmapped_keys(checkpoint)}
    house.load_state_dict(adapter.from_hf(kept), strict=False)
    house.eval().to(torch.bfloat16)
    hf = _load_hf(tmp_path / "hf", torch.bfloat16)
    item = make_inputs(case.config.vocab_size, 0)[0]
    with torch.no_grad():
        want = hf(input_ids=item.tokens, position_ids=item.positions).logits
        got = house(item.tokens) if item.positions is None else house(item.tokens, item.positions)
    return torch.equal(got, want)


@pytest.mark.parametrize("model_type", sorted(CASES))
def test_the_planned_package_verifies(tmp_path, model_type):
    assert _verify(tmp_path, model_type)


@pytest.mark.parametrize(("model_type", "rule"), KEY_STEPS)
def test_without_the_key_step_verify_fails(tmp_path, model_type, rule):
    (result,) = _results(tmp_path, model_type, without=rule)
    assert not result.passed
    assert result.first_divergence, "no stage named"
    if rule == "rmsnorm_weight_fp32":  # the first norm, whose input is still HF's
        assert "layers.0.attention_norm" in result.first_divergence, result.first_divergence


def test_flint_bf16_is_hf_bf16_bit_for_bit(tmp_path):
    assert _bf16_equal_to_hf(tmp_path / "all")
    for rule in ("fp32_attention_scores", "keep_fp32_params", "rmsnorm_weight_fp32"):
        assert not _bf16_equal_to_hf(tmp_path / rule, without=rule), rule
