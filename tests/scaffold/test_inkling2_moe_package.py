"""End to end: inkling2's MoE. Its router, whose score function is an activation looked up
by name (`ACT2FN[config.scoring_func]`, sigmoid), read as the sigmoid top-k it is: experts
picked on the scores plus a selection-only correction bias, weighted by the unbiased scores
renormalised over the picks and multiplied by the routed scaling, all in fp32. Its experts'
softcapped SwiGLU: c_g * tanh(g / c_g) * sigmoid(g) * c_u * tanh(u / c_u), the sigmoid on
the raw gate, the caps config fields, in fp32. Planned from the analysis, scaffolded and
verified against a renamed copy of transformers' inkling2 text decoder (`inkling2_fixture`:
its attention a plain one, its block attention residuals a plain residual stream). Seeded
defects, each a bug of the class these parts bring, fail verify and name the MoE (the
experts for the activation's)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from codegen.scaffold.testing import plan_folder, seeded_copy, verify_folder, write_planned

sys.path.insert(0, str(Path(__file__).parent))
from inkling2_fixture import inkling2_folder  # noqa: E402

pytest.importorskip("transformers.models.inkling2")

RULES = {"moe_router", "moe_routed_scaling", "moe_router_fp32", "experts_softcapped_swiglu"}


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    return inkling2_folder(tmp_path_factory.mktemp("hub"), plain_residual=True)


@pytest.fixture(scope="module")
def planned(folder):
    target, plan = plan_folder(folder, RULES)
    moe, ffn = target.features.moe, target.features.ffn
    assert (moe.router, moe.router_bias) == ("sigmoid_topk", True)
    caps = {"gate": "hf_config.mlp_gate_softcap", "up": "hf_config.mlp_up_softcap", "fp32": True}
    assert (ffn.kind, ffn.softcaps) == ("softcapped_swiglu", caps)
    return target, plan


@pytest.fixture(scope="module")
def built(tmp_path_factory, planned) -> tuple[Path, str]:
    """The package, built once; each seeded defect edits a copy."""
    return write_planned(tmp_path_factory.mktemp("built") / "models", planned)


def _verify(folder: Path, models: Path, capsys, *flags: str) -> list[dict]:
    return verify_folder(folder, models, capsys, *flags, dtypes=())


def test_package_verifies_in_fp32_and_bf16(folder, built, capsys):
    models, _ = built
    rows = _verify(folder, models, capsys, "--dtype", "fp32", "--dtype", "bf16")
    base = [row for row in rows if "+" not in row["case"]]
    assert len(base) == 2 and all(row["status"] == "pass" for row in base), rows


@pytest.mark.parametrize(
    ("old", "new", "where"),
    [
        # the experts picked on the raw scores: the correction bias dropped
        (
            "indices = (scores + self.e_score_correction_bias).topk(",
            "indices = scores.topk(",
            "layers.0.moe",
        ),
        # the picked scores left unnormalised
        (
            "weights = weights / (weights.sum(dim=-1, keepdim=True) + 1e-20)",
            "weights = weights / 1.0",
            "layers.0.moe",
        ),
        # the routed scaling dropped
        ("weights = weights * self.routed_scaling", "weights = weights * 1.0", "layers.0.moe"),
        # softmax scores where the config names sigmoid
        (
            "scores = router_scores(logits.float(), self.scoring_func)",
            "scores = logits.float().softmax(dim=-1)",
            "layers.0.moe",
        ),
        # the gate's linear factor uncapped
        (
            "capped_gate = torch.tanh(g / gate_cap) * gate_cap",
            "capped_gate = g",
            "layers.0.moe.experts",
        ),
        # up uncapped
        ("capped_up = torch.tanh(u / up_cap) * up_cap", "capped_up = u", "layers.0.moe.experts"),
        # the sigmoid of the capped gate, not of the raw one
        (
            "torch.sigmoid(g) * capped_up",
            "torch.sigmoid(capped_gate) * capped_up",
            "layers.0.moe.experts",
        ),
        # the two caps swapped
        (
            "self.gate_cap, self.up_cap)",
            "self.up_cap, self.gate_cap)",
            "layers.0.moe.experts",
        ),
    ],
)
def test_seeded_defects_fail_and_name_the_module(tmp_path, folder, built, capsys, old, new, where):
    models, name = tmp_path / "models", built[1]
    seeded_copy(built[0], models, name, old, new)
    rows = _verify(folder, models, capsys, "--dtype", "fp32")
    (row,) = [row for row in rows if "+" not in row["case"]]
    assert row["status"] == "fail", row
    assert (row.get("first_divergence") or "").startswith(where), row


def test_tensor_parallel_matches_one_device(tmp_path, folder, built, capsys):
    """tp=2: the softcapped product is elementwise, so each rank's half of the experts'
    inner width (gate and up halves alike) gives the single-device logits and gradients;
    the fused gate/up split as one block (a rank's gate paired with another's up) fails."""
    rows = _verify(folder, built[0], capsys, "--parallel", "tp=2")
    (row,) = [row for row in rows if "+" not in row["case"]]
    assert row["status"] == "pass", row
    models = seeded_copy(
        built[0],
        tmp_path / "models",
        built[1],
        '"layers.*.moe.experts.w13": "expert_colwise_gate_up"',
        '"layers.*.moe.experts.w13": "expert_colwise"',
        file="parallelize.py",
    )
    rows = _verify(folder, models, capsys, "--parallel", "tp=2")
    (row,) = [row for row in rows if "+" not in row["case"]]
    assert row["status"] == "fail", row
