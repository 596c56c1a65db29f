"""Identity ("zero-computation") experts (codegen/analyze/zero_experts.py): LongCat-Flash's
router scores `n_routed_experts + zero_expert_num` experts, and its experts module passes a
token picked for one past the routed experts on through an nn.Identity. Read by structure:
a renamed copy reads the same; MoE models without them read None."""

from __future__ import annotations

import pytest
from analyze_helpers import rename_model

from codegen.analyze.analysis import analyze

LONGCAT = {"count": "config.zero_expert_num or 0", "rows": ("gate_up_proj",)}


def test_longcat_flash_reads_its_identity_experts(tmp_path):
    modeling, _ = rename_model("longcat_flash", "wombat", str(tmp_path))
    for source in ("longcat_flash", modeling):
        features = analyze(source)
        assert features.moe.zero_experts == LONGCAT
        assert "256 identity experts" in features.evidence["moe.zero_experts"]
        assert "moe.zero_experts" in features.reference.delta
        assert features.moe.shared_experts == 0
        assert not features.unsupported


@pytest.mark.parametrize("model_type", ["deepseek_v3", "qwen3_moe", "mixtral", "glm4_moe"])
def test_moe_models_without_them_read_none(model_type):
    assert analyze(model_type).moe.zero_experts is None
