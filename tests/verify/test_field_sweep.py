"""scripts/field_sweep.py has teeth: a package that ignores a config value HF's code reads
fails the sweep at the module that ignores it, and the same package honouring (here:
refusing) the value does not fail."""

from __future__ import annotations

import sys
from pathlib import Path

SCRIPTS = Path(__file__).resolve().parents[2] / "scripts"
sys.path.insert(0, str(SCRIPTS))
import field_sweep  # noqa: E402 - the script is not a package

from codegen.scaffold.pipeline import scaffold_into  # noqa: E402
from codegen.scaffold.plan import make_plan  # noqa: E402
from codegen.scaffold.target import load_target  # noqa: E402


def test_values_are_moved_by_their_type_alone():
    assert field_sweep.perturbed(1e-6) == 0.5  # an epsilon or a floor: enough to reach values
    assert field_sweep.perturbed(0.5) == 0.25
    assert field_sweep.perturbed(10000.0) == 15000.0
    assert field_sweep.perturbed(0.0) == 0.25
    assert field_sweep.perturbed([1.0, 2.0, 3.0]) == [1.0, 3.0, 3.0]  # made non-uniform
    assert field_sweep.perturbed([0.95, 0.95, 0.0]) == [0.95, 0.475, 0.0]  # a share stays < 1
    assert field_sweep.perturbed("gelu") == "relu" and field_sweep.perturbed("relu") == "gelu"
    for untouched in (4, True, None, "sliding_attention", [1, 2], {"rope_theta": 1.0}):
        assert field_sweep.perturbed(untouched) is None


def test_an_ignored_activation_fails_at_the_feed_forward(tmp_path):
    target = load_target("falcon")
    plan = make_plan(target)
    models = tmp_path / "models"
    scaffold_into(
        models, plan.reference, "falcon", ["falcon"], plan.steps, features=target.features
    )
    (row,) = field_sweep.sweep_model("falcon", models, {"activation"})
    assert row["status"] == "pass", row  # the package follows the config's activation

    # seeded defect: the package runs gelu whatever the config says
    model = models / "falcon" / "model.py"
    text = model.read_text()
    assert "self.w2(self.act(self.w1(x)))" in text
    model.write_text(text.replace("self.w2(self.act(self.w1(x)))", "self.w2(F.gelu(self.w1(x)))"))
    for module in [m for m in sys.modules if m == "models" or m.startswith("models.")]:
        del sys.modules[module]
    (row,) = field_sweep.sweep_model("falcon", models, {"activation"})
    assert row["status"] == "fail", row
    assert row["why"].startswith("layers.0.feed_forward"), row
