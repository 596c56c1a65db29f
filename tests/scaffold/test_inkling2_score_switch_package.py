"""End to end: inkling2's router looks its score function up by a config field
(`ACT2FN[config.scoring_func]`), a switch no `if` shows. The package realises it: the router
scores by `args.scoring_func`, the sigmoid (the default), sqrt(softplus(logits)) or another
activation of the package's table, and `from_hf_config` refuses any other value in one
line. Planned from the analysis, scaffolded and verified against a renamed copy of
transformers' inkling2 text decoder (`inkling2_fixture`, plain residual stream): verify runs
the sqrtsoftplus setting and it passes. Seeded defects of the switch (ignored: sigmoid
scores whatever the config says; softplus without its square root) fail that setting and
name the MoE."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from codegen.scaffold.testing import plan_folder, seeded_copy, verify_folder, write_planned

sys.path.insert(0, str(Path(__file__).parent))
from inkling2_fixture import inkling2_folder  # noqa: E402

pytest.importorskip("transformers.models.inkling2")

SWITCHED = "scoring_func='sqrtsoftplus'"


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    return inkling2_folder(tmp_path_factory.mktemp("hub"), plain_residual=True)


@pytest.fixture(scope="module")
def built(tmp_path_factory, folder) -> tuple[Path, str]:
    target, plan = plan_folder(folder, {"router_score_switch"})
    (step,) = [step for step in plan.steps if step.rule == "router_score_switch"]
    assert step.params == {"field": "scoring_func", "eps": 1e-20}
    return write_planned(tmp_path_factory.mktemp("built") / "models", (target, plan))


def _switched(rows: list[dict]) -> dict:
    (row,) = [row for row in rows if SWITCHED in row["case"]]
    return row


def test_both_score_functions_verify(folder, built, capsys):
    models, name = built
    rows = verify_folder(folder, models, capsys, dtypes=("fp32", "bf16"))
    assert not [row for row in rows if row["status"] == "refused"], rows
    switched = [row for row in rows if SWITCHED in row["case"]]
    assert len(switched) == 2 and all(row["status"] == "pass" for row in switched), rows
    assert all(row["status"] == "pass" for row in rows if "+" not in row["case"]), rows
    args = (models / name / "args.py").read_text()
    assert "scoring_func=hf_config.scoring_func" in args
    table = args.split("FIXED_SETTINGS = ", 1)[1:]  # none where the package pins nothing
    assert not table or '"scoring_func"' not in table[0].split("\n", 1)[0]
    # the package's docstring lists the settings it builds, not the refused other activations
    doc = (models / name / "__init__.py").read_text()
    assert "scoring_func = 'sigmoid' by default; 'sqrtsoftplus': " in doc, doc
    assert "ACT2FN key" not in doc, doc


def test_another_score_function_is_refused_in_one_line(built):
    from transformers import AutoConfig

    from codegen.models import load_spec

    models, name = built
    spec = load_spec(name, models)
    config = AutoConfig.for_model("inkling2_text")
    config.scoring_func = "softmax"
    with pytest.raises(NotImplementedError) as err:
        spec.args.from_hf_config(config)
    line = str(err.value)
    assert "\n" not in line and "scoring_func='softmax'" in line and "sqrtsoftplus" in line


def test_the_other_activations_of_the_table_are_read(built):
    """Activation names beside the sigmoid and sqrt(softplus) (refused before the package's
    table held them) are read into the args, not refused."""
    from transformers import AutoConfig

    from codegen.models import load_spec

    models, name = built
    spec = load_spec(name, models)
    config = AutoConfig.for_model("inkling2_text")
    for activation in ("silu", "gelu_pytorch_tanh", "tanh", "relu", "relu2", "relu6"):
        config.scoring_func = activation
        assert spec.args.from_hf_config(config).scoring_func == activation


def test_the_renamed_copy_renormalises_with_its_epsilon(built):
    """The renamed copy's router adds 1e-20 to the sum its picked scores are divided by
    (read by structure, `moe.norm_topk_eps`): the package's route adds it too."""
    models, name = built
    model = (models / name / "model.py").read_text()
    assert "weights = weights / (weights.sum(dim=-1, keepdim=True) + 1e-20)" in model
    assert '"relu2": lambda x: F.relu(x).square(),' in model


@pytest.mark.parametrize(
    ("old", "new"),
    [
        # the switch ignored: sigmoid scores whatever the config names
        (
            "return ROUTER_SCORES[scoring_func](logits)",
            'return ROUTER_SCORES["sigmoid"](logits)',
        ),
        # softplus without its square root
        ('"sqrtsoftplus": lambda x: F.softplus(x).sqrt(),', '"sqrtsoftplus": F.softplus,'),
    ],
)
def test_seeded_defects_fail_the_setting_and_name_the_moe(
    tmp_path, folder, built, capsys, old, new
):
    models = seeded_copy(built[0], tmp_path / "models", built[1], old, new)
    row = _switched(verify_folder(folder, models, capsys))
    assert row["status"] == "fail", row
    assert (row.get("first_divergence") or "").startswith("layers.0.moe"), row
