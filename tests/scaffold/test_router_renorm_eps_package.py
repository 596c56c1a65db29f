"""End to end: inkling2's router divides its picked scores by their sum plus 1e-20, so a
token whose picks all score zero (relu, relu2, relu6 are zero for every negative logit) gets
zero weights. The package adds the analysed constant too (score_switch with
`moe.norm_topk_eps`) and verifies under relu2 scores on a toy with 4 experts and one pick, where
tokens whose pick scores zero are common; the same package with the constant removed divides
0 / 0 there, fails, and the first divergence names the MoE's experts."""

from __future__ import annotations

from pathlib import Path

import pytest

from codegen.scaffold.testing import seeded_copy, verify_toy

pytest.importorskip("transformers.models.inkling2")

RENORMALISE = "weights = weights / (weights.sum(dim=-1, keepdim=True) + 1e-20)"


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    from codegen.cli import main

    models = tmp_path_factory.mktemp("built") / "models"
    assert main(["scaffold", "inkling2_text", "--out", str(models)]) == 0
    return models


def _relu2_case():
    from codegen.verify.run import Case
    from codegen.verify.tiny_config import tiny_config

    overrides = {"scoring_func": "relu2", "n_routed_experts": 4, "num_experts_per_tok": 1}
    return Case("inkling2_text+relu2", tiny_config("inkling2_text", **overrides))


def test_relu2_scores_verify(built):
    assert RENORMALISE in (built / "inkling2_text" / "model.py").read_text()
    (result,) = verify_toy(built, "inkling2_text", case=_relu2_case())
    assert result.status == "pass", result.to_json()


def test_without_the_epsilon_relu2_scores_fail_at_the_experts(tmp_path, built):
    bare = "weights = weights / weights.sum(dim=-1, keepdim=True)"
    models = seeded_copy(built, tmp_path / "models", "inkling2_text", RENORMALISE, bare)
    (result,) = verify_toy(models, "inkling2_text", case=_relu2_case())
    row = result.to_json()
    assert row["status"] == "fail", row
    assert (row.get("first_divergence") or "").startswith("layers.0.moe"), row
