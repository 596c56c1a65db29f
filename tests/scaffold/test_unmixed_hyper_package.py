"""End to end: a decoder whose sublayers are joined by HY-V4's hyper-connections (the
remote-code folder of `hyper_fixture.unmixed_folder`: llama with HY-V4's own modules: the
streams added back unmixed, `post` the config's magnitude times a sigmoid plus eps, the sum
in fp32), planned from its analysis, scaffolded and verified in fp32 and bf16 for every
switch setting, and its shard plan under tp=2. Seeded defects of the form (DeepSeek-V4's
`post` = twice a sigmoid in place of the config's magnitude; the streams written back
mixed, each replaced by their mean) fail verify naming the first layer's hyper-connection."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from codegen.scaffold.testing import (
    plan_folder,
    seed,
    verify_folder,
    verify_shard_plan,
    write_planned,
)

sys.path.insert(0, str(Path(__file__).parent))
from hyper_fixture import unmixed_folder  # noqa: E402

pytest.importorskip("transformers.models.hy_v4")


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return unmixed_folder(tmp_path_factory.mktemp("hub"))


@pytest.fixture(scope="module")
def planned(folder):
    target, plan = plan_folder(folder)
    (step,) = [step for step in plan.steps if step.rule == "hyper_connections"]
    assert step.params["hyper"]["mix"] is None
    return target, plan


@pytest.fixture(scope="module")
def built(tmp_path_factory, planned):
    return write_planned(tmp_path_factory.mktemp("models"), planned)


def test_package_verifies(folder, built, capsys):
    models, name = built
    model = (models / name / "model.py").read_text()
    assert "self.post_magnitude * torch.sigmoid(post * post_scale + post_base) + self.eps" in (
        model
    )
    assert "comb" not in model and "sinkhorn" not in model
    rows = verify_folder(folder, models, capsys, dtypes=("fp32", "bf16"))
    assert len(rows) >= 8 and all(row["status"] == "pass" for row in rows), rows


def test_shard_plan_under_tp2(folder, built):
    result = verify_shard_plan(folder, *built, "tp=2")
    assert result.status == "pass", result.line()


@pytest.mark.parametrize(
    ("old", "new"),
    [
        # DeepSeek-V4's output weights: twice a sigmoid, not the config's magnitude
        ("post = self.post_magnitude * torch.sigmoid(", "post = 2 * torch.sigmoid("),
        # the streams mixed on the way back: each replaced by their mean
        (
            "+ h.float()).to(h.dtype)",
            "+ h.float().mean(dim=2, keepdim=True)).to(h.dtype)",
        ),
    ],
    ids=["twice-sigmoid", "mixed-streams"],
)
def test_another_form_fails_at_the_hyper_connection(tmp_path, folder, planned, capsys, old, new):
    models, name = write_planned(tmp_path / "models", planned)
    seed(models, name, old, new)
    row = verify_folder(folder, models, capsys)[0]
    assert row["status"] == "fail", row
    assert row["first_divergence"].startswith("layers.0"), row["first_divergence"]
