"""Norm epsilon sources no rule realises are named, never a silent difference.

A package's block and final norms read one `norm_eps` (the `layer_norm_eps` rule lets the
block norms keep a number of the code's own beside a config-read final norm). On the
synthetic llama-like model: block norms of two sources (`eps=1e-5` beside
`config.rms_norm_eps`), and the reverse of CTRL (block norms on the config's field, the final
norm at a literal or its class's default) are listed as unsupported with their file:line, and
`scaffold` stops in one line, writing nothing. So is a local between a norm and its epsilon
that no reading follows (bound twice to different things, to a conditional, by unpacking):
it may hold the config's epsilon or the code's. The cases a package realises stay silent."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from test_norm_eps_sources import FINAL_CONFIG, INPUT_LITERAL, POST_LITERAL, _synth, block_local

from codegen.analyze.analysis import analyze
from codegen.cli import main

INPUT_CONFIG = (INPUT_LITERAL[0], INPUT_LITERAL[0].replace(")", ", eps=config.rms_norm_eps)"))
POST_CONFIG = (POST_LITERAL[0], POST_LITERAL[0].replace(")", ", config.rms_norm_eps)"))
FINAL_LITERAL = (FINAL_CONFIG[0], FINAL_CONFIG[0].replace(")", ", eps=1e-5)"))
# At the config's default 1e-6 and spelled alike (`eps=`), a literal norm is built with the
# same arguments as a config-read one: each site still has its own source.
INPUT_AT_DEFAULT = (INPUT_LITERAL[0], INPUT_LITERAL[0].replace(")", ", eps=1e-6)"))
POST_CONFIG_KEYWORD = (POST_LITERAL[0], POST_LITERAL[0].replace(")", ", eps=config.rms_norm_eps)"))
FINAL_AT_DEFAULT = (FINAL_CONFIG[0], FINAL_CONFIG[0].replace(")", ", eps=1e-6)"))

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
    "mixed_at_the_config_default": (
        (FINAL_CONFIG, INPUT_AT_DEFAULT, POST_CONFIG_KEYWORD),
        "block norms' eps from literal 1e-06 | config.rms_norm_eps",
        ("input_layernorm", "post_attention_layernorm"),
    ),
    "final_literal_at_the_config_default": (
        (INPUT_CONFIG, POST_CONFIG_KEYWORD, FINAL_AT_DEFAULT),
        "final norm's eps from literal 1e-06, the block norms' from config.rms_norm_eps",
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


def test_a_local_bound_to_the_config_field_agrees_with_it(tmp_path):
    local = (
        INPUT_LITERAL[0],
        "eps = config.rms_norm_eps\n        " + INPUT_LITERAL[0].replace(")", ", eps=eps)"),
    )
    features = analyze(_synth(tmp_path, FINAL_CONFIG, local, POST_CONFIG))
    assert features.norm.eps_sources["block"] == "config.rms_norm_eps"
    assert not _gap(features)


def test_a_split_through_a_local_is_named(tmp_path):
    """The block norms read the config's field through a local, the final norm a literal:
    the split the `final_literal` case names, seen through the local."""
    modeling = _synth(tmp_path, FINAL_LITERAL, *block_local("eps = config.rms_norm_eps"))
    (gap,) = _gap(analyze(modeling))
    assert "final norm's eps from literal 1e-05, the block norms' from config.rms_norm_eps" in (
        gap.detail
    )


def _line(modeling: str, text: str, after: int = 0) -> int:
    """The first line of `modeling` past line `after` holding `text`."""
    lines = Path(modeling).read_text(encoding="utf-8").splitlines()
    return next(i for i, line in enumerate(lines, 1) if i > after and text in line)


UNREAD = {  # the local's bindings; what the finding says of them, the lines it cites
    "bound_twice": (
        ("eps = 1e-5", "if config.tie_word_embeddings:", "    eps = config.rms_norm_eps"),
        "local `eps` bound 2 times",
        ("eps = 1e-5", "eps = config.rms_norm_eps"),
    ),
    "conditional": (
        ("eps = config.rms_norm_eps if config.tie_word_embeddings else 1e-5",),
        "local `eps` = `config.rms_norm_eps if config.tie_word_embeddings else 1e-5`",
        ("eps = config",),
    ),
    "unpacked": (
        ("eps, _ = 1e-5, None",),
        "local `eps` bound by no one expression",
        ("eps, _ = ",),
    ),
}


@pytest.mark.parametrize("case", sorted(UNREAD))
def test_a_local_no_reading_follows_is_named_with_its_bindings(tmp_path, case):
    """It may hold the config's epsilon or the code's: the package's norm_eps would be a
    guess. Named at the block norm, its bindings' lines in the finding."""
    bindings, said, bound = UNREAD[case]
    modeling = _synth(tmp_path, FINAL_CONFIG, *block_local(*bindings))
    (gap,) = _gap(analyze(modeling))
    assert f"block norms' eps from {said} (" in gap.detail, gap.detail
    at = _line(modeling, "class SynthDecoderLayer")
    lines = []
    for text in bound:
        lines.append(_line(modeling, text, lines[-1] if lines else at))
    cited = ", ".join(f"modeling_synth.py:{n}" for n in lines)
    assert f"({cited})" in gap.detail, gap.detail
    # the two block norms are built alike, each at its own line: both are cited
    built = [
        _line(modeling, f"self.{name} = ")
        for name in ("input_layernorm", "post_attention_layernorm")
    ]
    assert gap.evidence == ", ".join(f"modeling_synth.py:{n}" for n in built)


def test_a_qk_norms_local_no_reading_follows_is_named(tmp_path):
    q_norm = "self.q_norm = SynthRMSNorm(self.head_dim)"
    edits = [
        (q_norm, "eps = 1e-5\n        eps += 1e-6\n        " + q_norm.replace(")", ", eps=eps)")),
        (
            "self.k_norm = SynthRMSNorm(self.head_dim)",
            "self.k_norm = SynthRMSNorm(self.head_dim, eps=eps)",
        ),
    ]
    (gap,) = _gap(analyze(_synth(tmp_path, FINAL_CONFIG, *edits, q_norm=True)))
    assert "qk norms' eps from local `eps` bound 2 times" in gap.detail


def test_scaffold_refuses_a_local_no_reading_follows_in_one_line(tmp_path, capsys):
    bindings, said, _ = UNREAD["bound_twice"]
    modeling = _synth(tmp_path / "src", FINAL_CONFIG, *block_local(*bindings))
    models = tmp_path / "models"
    assert main(["scaffold", modeling, "--out", str(models)]) != 0
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert "no rule realises norm.eps_sources = " in err and said in err, err
    assert err.rstrip().endswith("nothing written"), err
    assert not models.exists()


def test_muse_glimmers_post_norms_on_a_field_of_their_own_are_named():
    """Its post-sublayer norms read `config.post_norm_eps` (1e-8), the others
    `config.rms_norm_eps` (1e-5): a package reading one would move the post norms' epsilon."""
    pytest.importorskip("transformers.models.muse_glimmer")
    (gap,) = _gap(analyze("muse_glimmer_text"))
    assert "config.rms_norm_eps | config.post_norm_eps" in gap.detail
    site = r"modeling_muse_glimmer\.py:\d+"
    # each source at the lines of its own norms (two of each per layer)
    assert re.fullmatch(f"{site}, {site}; {site}, {site}", gap.evidence), gap.evidence
