"""zaya's parts no rule realises yet are each named from the code's structure, where the code
does them: its router (logits from an MLP over a down-projection, with a state handed between
layers and a skip class) and the learned per-channel shift and scale of its embeddings (its
attention's parts are facts now: test_zaya_attention_facts); its experts are counted from
the experts, not the router's down-projection. A renamed copy names the same parts; models
without them name none."""

from __future__ import annotations

import linecache

import pytest
from analyze_helpers import rename_model

from codegen.analyze.analysis import analyze
from codegen.analyze.locate import model_type_files

pytest.importorskip("transformers.models.zaya")

FINDINGS = (
    "moe.router_logits",
    "embedding.learned_scale",
)


@pytest.fixture(scope="module")
def zaya():
    return analyze("zaya")


def _found(features) -> dict:
    return {u.feature: u for u in features.unsupported}


def _line(evidence: str) -> str:
    name, line = evidence.split(" ", 1)[0].split(":")
    modeling = model_type_files("zaya")[0]
    assert modeling.endswith(name)
    return linecache.getline(modeling, int(line))


@pytest.mark.parametrize(
    ("feature", "details", "code"),
    [
        (
            "moe.router_logits",
            ("router_mlp (ZayaRouterMLP) over down_proj", "router_states", "17 rows for 16"),
            "torch.softmax(router_logits",
        ),
        (
            "embedding.learned_scale",
            ("input_hidden_states_scale", "after adding another (input_hidden_states_bias)"),
            "self.input_hidden_states_scale",
        ),
    ],
)
def test_parts_are_named_where_the_code_does_them(zaya, feature, details, code):
    finding = _found(zaya)[feature]
    assert all(d in finding.detail for d in details), finding.detail
    assert code in _line(finding.evidence)


def test_the_experts_are_counted_by_the_experts(zaya):
    assert zaya.moe.num_experts == 16  # the router's down-projection is 256 wide


def test_a_renamed_copy_names_the_same_parts(tmp_path, zaya):
    path, _ = rename_model("zaya", "zorblax", str(tmp_path))
    assert set(_found(analyze(path))) == set(_found(zaya)) >= set(FINDINGS)


@pytest.mark.parametrize(
    "model_type", ["llama", "qwen3_moe", "deepseek_v3", "deepseek_v32", "deepseek_v4"]
)
def test_models_without_these_parts_get_none(model_type):
    """deepseek_v4's compressor extends the keys (attention.compressed_kv names it)."""
    assert not set(_found(analyze(model_type))) & set(FINDINGS)
