"""DBRX holds each expert projection as one 2-D matrix, the experts' rows stacked.

`w1`, `v1` and `w2` are `nn.Parameter(torch.empty(num_experts * ffn, hidden))`, viewed per
expert in the forward: no 3-D tensor per projection (what `fused` means, gpt_oss's
gate_up_proj) and no per-expert modules. Read as `fused`, scaffold failed inside the fused
transform; as `flat` the rule experts_flat_layout splits and flattens them in the adapter.
"""

from __future__ import annotations

from analyze_helpers import rename_model

from codegen.analyze.analysis import analyze
from codegen.scaffold.plan import make_plan
from codegen.scaffold.target import load_target


def test_dbrx_experts_are_flat_and_the_plan_realises_them(tmp_path):
    modeling, _ = rename_model("dbrx", "wombat", str(tmp_path))
    for source in ("dbrx", modeling):
        moe = analyze(source).moe
        assert moe.expert_layout == "flat"
    plan = make_plan(load_target("dbrx"))
    assert not [g for g in plan.gaps if g.feature == "moe.expert_layout"]
    (step,) = [s for s in plan.steps if s.rule == "experts_flat_layout"]
    assert step.transform == "flat_experts"


def test_3d_fused_experts_stay_fused():
    assert analyze("gpt_oss").moe.expert_layout == "fused"
    assert analyze("granitemoe").moe.expert_layout == "fused"
