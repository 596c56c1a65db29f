"""Norm epsilon sources no rule realises are named, never a silent difference.

A package's block and final norms read one `norm_eps` (the `layer_norm_eps` rule lets the
block norms keep a number of the code's own beside a config-read final norm). On the
synthetic llama-like model: block norms of two sources (`eps=1e-5` beside
`config.rms_norm_eps`), and the reverse of CTRL (block norms on the config's field, the final
norm at a literal or its class's default) are listed as unsupported with their file:line, and
`scaffold` stops in one line, writing nothing. The cases a package realises stay silent."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from test_norm_eps_sources import FINAL_CONFIG, INPUT_LITERAL, POST_LITERAL, _synth

from codegen.analyze.analysis import analyze
from codegen.cli import main

INPUT_CONFIG = (INPUT_LITERAL[0], INPUT_LITERAL[0].replace(")", ", eps=config.rms_norm_eps)"))
POST_CONFIG = (POST_LITERAL[0], POST_LITERAL[0].replace(")", ", config.rms_norm_eps)"))
FINAL_LITERAL = (FINAL_CONFIG[0], FINAL_CONFIG[0].replace(")", ", eps=1e-5)"))

CASES = {  # edits, what the finding says, the attributes built at the lines it cites
    "mixed": (
        (FINAL_CONFIG, INPUT_LITERAL, POST_CONFIG),
        "block norms' eps from literal 1e-05 | config.rms_norm_eps",
        ("input_layernorm", "post_attention_layernorm"),
    ),
    "final_literal": (
        (INPUT_CONFIG, POST_CONFIG, FINAL_LITERAL),
        "final norm's eps from literal 1e-05, the block norms' from config.rms_norm_eps",
        ("input_layernorm", "post_attention_layernorm", "norm"),
    ),
    "final_class_default": (
        (INPUT_CONFIG, POST_CONFIG),
        "final norm's eps from class default 1e-06, the block norms' from config.rms_norm_eps",
        ("input_layernorm", "post_attention_layernorm", "norm"),
    ),
}


def _gap(features):
    return [u for u in features.unsupported if u.feature == "norm.eps_sources"]


@pytest.mark.parametrize("case", sorted(CASES))
def test_an_unrealised_split_is_named_with_its_sites(tmp_path, case):
    edits, said, attributes = CASES[case]
    modeling = _synth(tmp_path, *edits)
    features = analyze(modeling)
    (gap,) = _gap(features)
    assert said in gap.detail
    lines = Path(modeling).read_text(encoding="utf-8").splitlines()
    built = [
        next(i for i, line in enumerate(lines, 1) if f"self.{name} = " in line)
        for name in attributes
    ]
    assert re.fullmatch(r"modeling_synth\.py:\d+((, |; )modeling_synth\.py:\d+)*", gap.evidence)
    assert re.findall(r"modeling_synth\.py:(\d+)", gap.evidence) == [str(n) for n in built]
    assert features.norm.layer_eps is None


@pytest.mark.parametrize("case", sorted(CASES))
def test_scaffold_refuses_in_one_line(tmp_path, capsys, case):
    edits, said, _ = CASES[case]
    modeling = _synth(tmp_path / "src", *edits)
    models = tmp_path / "models"
    assert main(["scaffold", modeling, "--out", str(models)]) != 0
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert "no rule realises norm.eps_sources = " in err and said in err, err
    assert err.rstrip().endswith("nothing written"), err
    assert re.search(r"\(modeling_synth\.py:\d+", err), err
    assert not models.exists()


@pytest.mark.parametrize(
    "edits",
    [
        (),  # every norm at its class default
        (FINAL_CONFIG, INPUT_LITERAL, POST_LITERAL),  # layer_norm_eps's case (CTRL)
        (FINAL_CONFIG, INPUT_CONFIG, POST_CONFIG),  # every norm on the config's field
        ((INPUT_LITERAL[0], INPUT_LITERAL[0].replace(")", ", eps=1e-6)")),),  # one number
    ],
    ids=["class_default", "layer_eps", "config", "literal_at_the_class_default"],
)
def test_realised_sources_are_no_gap(tmp_path, edits):
    assert not _gap(analyze(_synth(tmp_path, *edits)))


def test_an_epsilon_from_a_local_is_no_evidence_of_a_split(tmp_path):
    local = (
        INPUT_LITERAL[0],
        "eps = config.rms_norm_eps\n        " + INPUT_LITERAL[0].replace(")", ", eps=eps)"),
    )
    features = analyze(_synth(tmp_path, FINAL_CONFIG, local, POST_CONFIG))
    assert features.norm.eps_sources["block"] == "other | config.rms_norm_eps"
    assert not _gap(features)


def test_muse_glimmers_post_norms_on_a_field_of_their_own_are_named():
    """Its post-sublayer norms read `config.post_norm_eps` (1e-8), the others
    `config.rms_norm_eps` (1e-5): a package reading one would move the post norms' epsilon."""
    pytest.importorskip("transformers.models.muse_glimmer")
    (gap,) = _gap(analyze("muse_glimmer_text"))
    assert "config.rms_norm_eps | config.post_norm_eps" in gap.detail
    assert re.fullmatch(
        r"modeling_muse_glimmer\.py:\d+; modeling_muse_glimmer\.py:\d+", gap.evidence
    )
