"""zaya's attention parts read from the code's structure as facts a rule realises: the
convolutional q/k projection with its delayed value half (`attention.conv_projection`) and the
L2 q/k norm with its per-kv-head key scale (`attention.l2_qk_norm`), each cited where the
attention builds it; neither is named unsupported any more, and models without them read
none."""

from __future__ import annotations

import linecache

import pytest
from analyze_helpers import rename_model

from codegen.analyze.analysis import analyze
from codegen.analyze.locate import model_type_files

pytest.importorskip("transformers.models.zaya")


@pytest.fixture(scope="module")
def zaya():
    return analyze("zaya")


def _line(evidence: str) -> str:
    name, line = evidence.split(" ", 1)[0].split(":")
    modeling = model_type_files("zaya")[0]
    assert modeling.endswith(name)
    return linecache.getline(modeling, int(line))


def test_the_convolutional_projection_is_read(zaya):
    assert zaya.attention.conv_projection == {
        "module": "qkv_proj",
        "q": "q_proj",
        "k": "k_proj",
        "value": "v_proj_current",
        "delayed": "v_proj_delayed",
        "depthwise": "conv_qk_depthwise",
        "grouped": "conv_qk_grouped",
        "kernels": (2, 2),
        "kernel_fields": ("cca_time0", "cca_time1"),
        "conv_bias": True,
        "bias": False,
    }
    assert zaya.attention.qkv_bias is False  # its projections' bias, read through it
    assert "self.qkv_proj = " in _line(zaya.evidence["attention.conv_projection"])


def test_the_l2_norm_is_read(zaya):
    assert zaya.attention.l2_qk_norm == {
        "module": "qk_norm",
        "key_scale": "temp",
        "scale": "head_dim",
    }
    assert "self.qk_norm = " in _line(zaya.evidence["attention.l2_qk_norm"])


def test_neither_is_unsupported(zaya):
    named = {u.feature for u in zaya.unsupported}
    assert not named & {"attention.convolutions", "attention.qkv_modules"}


@pytest.mark.parametrize(
    "old, new, feature",
    [
        # an L1 norm of the queries: no rule's L2 norm, the module stays named
        ("query_states.norm(p=2,", "query_states.norm(p=1,", "attention.qkv_modules"),
        # the values not delayed (no `[:, :-1]`): the convolution stays named
        ("delayed_v_state[:, :-1]", "delayed_v_state[:, 1:]", "attention.convolutions"),
    ],
)
def test_another_form_stays_named_unsupported(tmp_path, old, new, feature):
    path, _ = rename_model("zaya", "zorblax", str(tmp_path))
    with open(path) as handle:
        source = handle.read()
    assert source.count(old) == 1
    with open(path, "w") as handle:
        handle.write(source.replace(old, new))
    features = analyze(path)
    assert feature in {u.feature for u in features.unsupported}


@pytest.mark.parametrize("model_type", ["llama", "qwen3", "deepseek_v3"])
def test_models_without_them_read_none(model_type):
    features = analyze(model_type)
    assert features.attention.conv_projection is None
    assert features.attention.l2_qk_norm is None
