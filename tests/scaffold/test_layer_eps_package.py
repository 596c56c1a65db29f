"""End to end: block norms at an epsilon the code fixes, the final norm at the config's (CTRL's
`nn.LayerNorm(n_embd, eps=1e-6)` beside `eps=config.layer_norm_epsilon`), on renamed
remote-code copies of CTRL whose config sets layer_norm_epsilon to 0.1, planned from their
analysis (`norm.eps_sources`, rule `layer_norm_eps`).

Two ways the code fixes it: the literal in the norms' constructor call (`written`), or a local
`eps = 1e-6` the layer binds once and passes as `eps=eps` (`local`; read as "other" it decided
nothing and the package put the config's 0.1 in the block norms). The default config holds
1e-6 as well, so a package reading the config's field for every norm passes verify on it and
fails every config with another epsilon; the copies' config makes the difference count. Each
package verifies; the same package with its block norms on the config's field (the plan
without the rule, or a seeded defect) fails at the first layer's attention norm. A local bound
twice (1e-6, or the config's field when `n_layer` is large) may hold either: `scaffold` stops
in one line, writing nothing, and `analyze` names it as unsupported with the bindings' lines."""

from __future__ import annotations

import re

import pytest

from codegen.cli import main
from codegen.scaffold.testing import plan_folder, seed, verify_toy, write_planned

pytest.importorskip("transformers.models.ctrl")

CONFIG_EPS = 0.1  # the final norm's; the block norms stay at the code's 1e-6
NORMS = (
    "        self.layernorm1 = nn.LayerNorm(config.n_embd, eps=1e-6)\n"
    "        self.layernorm2 = nn.LayerNorm(config.n_embd, eps=1e-6)\n"
)
THROUGH_EPS = NORMS.replace("eps=1e-6", "eps=eps")
BINDINGS = {  # how the layer's `__init__` fixes the block norms' epsilon
    "written": "",
    "local": "        eps = 1e-6\n",
    "twice": (
        "        eps = 1e-6\n"
        "        if config.n_layer > 48:\n"
        "            eps = config.layer_norm_epsilon\n"
    ),
}
NAMES = {"written": "quillrex", "local": "wrenlock", "twice": "wrenlocktwice"}
SOURCES = "block literal 1e-06, final config.layer_norm_epsilon"
OWN = "self.attention_norm = nn.LayerNorm(args.dim, eps=args.layer_norm_eps)"
CONFIGS = "self.attention_norm = nn.LayerNorm(args.dim, eps=args.norm_eps)"
FINAL = "self.norm = nn.LayerNorm(args.dim, eps=args.norm_eps)"


def _folder(dest, binding: str):
    from codegen.verify.remote_fixture import remote_folder

    folder = remote_folder(
        "ctrl", dest, name=NAMES[binding], config_values={"layer_norm_epsilon": CONFIG_EPS}
    )
    if BINDINGS[binding]:
        (modeling,) = folder.glob("modeling_*.py")
        text = modeling.read_text(encoding="utf-8")
        assert text.count(NORMS) == 1
        modeling.write_text(text.replace(NORMS, BINDINGS[binding] + THROUGH_EPS), encoding="utf-8")
    return folder


@pytest.fixture(scope="module", params=["written", "local"])
def folder(request, tmp_path_factory):
    return _folder(tmp_path_factory.mktemp("hub"), request.param)


@pytest.fixture(scope="module")
def case(folder):
    """The folder's toy config, as its own code builds it."""
    from codegen.verify.remote import load_remote, remote_toy_config
    from codegen.verify.run import Case

    config = remote_toy_config(load_remote(folder, True))
    assert config.layer_norm_epsilon == CONFIG_EPS
    return Case(folder.name, config)


@pytest.fixture(scope="module")
def planned(folder):
    return plan_folder(folder, {"layer_norm_eps"})


def test_analyze_reads_each_norms_source(folder, capsys):
    assert main(["analyze", str(folder)]) == 0
    out = capsys.readouterr().out
    assert SOURCES in out, out
    assert "unsupported:" not in out or "norm.eps_sources" not in out.split("unsupported:")[1]


def test_the_plan_keeps_the_literal_for_the_block_norms(planned):
    target, plan = planned
    assert target.features.norm.eps_sources == {
        "block": "literal 1e-06",
        "final": "config.layer_norm_epsilon",
    }
    (step,) = [step for step in plan.steps if step.rule == "layer_norm_eps"]
    assert step.params == {"eps": 1e-6}


def test_package_keeps_the_literal_for_the_block_norms_and_verifies(tmp_path, planned, case):
    models, name = write_planned(tmp_path / "models", planned)
    model = (models / name / "model.py").read_text()
    args = (models / name / "args.py").read_text()
    assert OWN in model and FINAL in model and CONFIGS not in model
    assert "layer_norm_eps: float = 1e-06  # the layer norms' epsilon: fixed in HF's code" in args
    assert "norm_eps=hf_config.layer_norm_epsilon" in args
    (result,) = verify_toy(models, name, case=case, gradients=False)
    assert result.status == "pass", result.to_json()


def _fails_at_the_first_attention_norm(models, name, case):
    (result,) = verify_toy(models, name, case=case, gradients=False)
    row = result.to_json()
    assert row["status"] == "fail", row
    assert (row.get("first_divergence") or "").startswith("layers.0.attention_norm"), row


def test_seeded_config_epsilon_in_the_block_norms_fails(tmp_path, planned, case):
    models, name = write_planned(tmp_path / "models", planned)
    seed(models, name, OWN, CONFIGS)
    _fails_at_the_first_attention_norm(models, name, case)


def test_package_without_the_rule_fails(tmp_path, planned, case):
    """What the package was while the analysis read the epsilon as the config's."""
    models, name = write_planned(tmp_path / "models", planned, without="layer_norm_eps")
    assert CONFIGS in (models / name / "model.py").read_text()
    _fails_at_the_first_attention_norm(models, name, case)


def test_the_header_cites_the_literal_written_in_the_code(tmp_path):
    planned = plan_folder(_folder(tmp_path / "hub", "written"), {"layer_norm_eps"})
    models, name = write_planned(tmp_path / "models", planned)
    assert "eps=1e-06 in the code" in (models / name / "model.py").read_text()


def test_a_local_bound_twice_is_refused_in_one_line(tmp_path, capsys):
    folder = _folder(tmp_path / "hub", "twice")
    models = tmp_path / "models"
    assert main(["scaffold", str(folder), "--out", str(models)]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert "no rule realises norm.eps_sources = " in err, err
    assert "block norms' eps from local `eps` bound 2 times" in err, err
    assert err.rstrip().endswith("nothing written"), err
    assert not models.exists()
    assert main(["analyze", str(folder)]) == 0
    unsupported = capsys.readouterr().out.split("unsupported:", 1)[1]
    modeling = f"modeling_{folder.name}\\.py"
    assert re.search(rf"bound 2 times \({modeling}:\d+, {modeling}:\d+\)", unsupported)
