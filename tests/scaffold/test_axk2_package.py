"""End to end: A.X-K2 from the deepseek_v3 reference.

Its attention cuts an output gate out of the query projection (each head's rows: its query,
then its gate; the sigmoid in fp32), that projection reads the query latent normed and as it
is, and its block norms are gated RMSNorms (the post-attention one on MoE layers only). The
package verifies; with the gate cut from the other end of each head's rows (same shapes),
verify fails and names the attention of layer 0; with the gated norms' activation another
one, it names the layer's norm.
"""

from __future__ import annotations

import dataclasses

from codegen.models import load_spec
from codegen.scaffold.pipeline import scaffold_into
from codegen.scaffold.plan import make_plan
from codegen.scaffold.target import load_target
from codegen.verify.cases import default_cases
from codegen.verify.run import verify_case

TYPE = "axk2"


def _results(tmp_path, **params):
    """Verify the default case in fp32, the steps' params overridden by `params` (rule id ->
    params to merge in, or a function of the step's params giving them)."""
    target = load_target(TYPE)
    plan = make_plan(target)
    rules = [s.rule for s in plan.steps]
    assert {"output_gate_fused_q", "q_latent_concat", "gated_norm"} <= set(rules)
    steps = [
        dataclasses.replace(s, params=_merged(s.params, params[s.rule])) if s.rule in params else s
        for s in plan.steps
    ]
    models = tmp_path / "models"
    scaffold_into(models, plan.reference, "gen_axk2", [TYPE], steps, features=target.features)
    spec = load_spec("gen_axk2", models)
    case = next(c for c in default_cases(spec) if c.label == TYPE)
    return verify_case(spec, case, ["fp32"], gradients=False, export=False)


def _merged(old: dict, new) -> dict:
    return new(old) if callable(new) else {**old, **new}


def test_the_package_verifies(tmp_path):
    results = _results(tmp_path)
    assert results and all(r.passed and not r.refused for r in results)
    assert all(r.roundtrip_exact for r in results)


def test_gate_cut_from_the_other_end_fails_at_the_attention(tmp_path):
    (result,) = _results(tmp_path, output_gate_fused_q={"layout": "per_head_gate_q"})
    assert not result.passed
    assert result.first_divergence.startswith("layers.0.attention (HF model.layers.0.self_attn)")


def test_gated_norms_with_another_activation_fail_at_the_first_norm(tmp_path):
    def gelu(params):
        return {"parts": {**params["parts"], "act": "gelu"}}

    (result,) = _results(tmp_path, gated_norm=gelu)
    assert not result.passed
    assert result.first_divergence.startswith(
        "layers.0.attention_norm (HF model.layers.0.input_layernorm)"
    )
