"""The config field a router's score activation is looked up by (`self.score_fn =
ACT2FN[config.scoring_func]` in inkling2's TopKRouter, whose forward picks by `topk`) is
read from the structure on a renamed remote copy: `moe.score_field` with file:line evidence,
and a config switch whose values are the configured activation and the other router scores
(no `if` branches on it, yet each value computes another model), which the switch sweep
puts the package to. A router that scores by a
call the code names itself (qwen3_moe's softmax) reads none."""

from __future__ import annotations

from codegen.analyze.analysis import analyze
from codegen.analyze.switches import switches_of_file
from codegen.verify.remote_fixture import remote_folder


def test_renamed_router_reads_its_score_field(tmp_path):
    folder = remote_folder("inkling2", tmp_path, name="quillette")
    features = analyze(str(folder))
    assert features.moe.score_field == "scoring_func"
    cite = features.evidence["moe.score_field"]
    assert cite.startswith("modeling_quillette.py:"), cite
    line = int(cite.split(":")[1])
    text = (folder / "modeling_quillette.py").read_text().splitlines()[line - 1]
    assert "ACT2FN[config.scoring_func]" in text, text
    (switch,) = [s for s in features.switches if s.name == "scoring_func"]
    assert switch.kind == "choice" and switch.configured == "sigmoid"
    assert [v.label for v in switch.values] == [
        "'sigmoid'",
        "'sqrtsoftplus'",
        "'relu2'",
        "other (a ACT2FN key)",
    ]
    assert switch.reads == (cite,)
    # the sweep runs the other router scores (which the package realises)
    from transformers import Inkling2TextConfig

    from codegen.verify.switch_settings import plan_settings

    plan = plan_settings([switch], {}, config_class=Inkling2TextConfig)
    assert [s.label for s in plan.settings] == [
        "scoring_func='sqrtsoftplus'",
        "scoring_func='relu2'",
    ]
    assert plan.covered == ["scoring_func 'sigmoid'"]


def test_renamed_router_reads_the_constant_its_renormalisation_adds(tmp_path):
    """`weights / (weights.sum(dim=-1, keepdim=True) + 1e-20)` in the renamed copy's router:
    `moe.norm_topk_eps` is 1e-20, cited at that line; mixtral divides by the sum alone."""
    folder = remote_folder("inkling2", tmp_path, name="quillette")
    features = analyze(str(folder))
    assert features.moe.norm_topk_eps == 1e-20
    cite = features.evidence["moe.norm_topk_eps"]
    assert cite.startswith("modeling_quillette.py:"), cite
    line = int(cite.split(":")[1])
    text = (folder / "modeling_quillette.py").read_text().splitlines()[line - 1]
    assert ".sum(dim=-1, keepdim=True) + 1e-20)" in text, text
    mixtral = analyze("mixtral").moe
    assert mixtral.norm_topk_by == "division" and mixtral.norm_topk_eps is None


def test_a_named_softmax_router_reads_no_score_field():
    import transformers.models.qwen3_moe.modeling_qwen3_moe as qwen3_moe

    assert not [s for s in switches_of_file(qwen3_moe.__file__) if s.name == "scoring_func"]
    assert analyze("qwen3_moe").moe.score_field is None
