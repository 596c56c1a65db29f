"""Switches on the fields of a sub-config (issue 8): MPT's `config.attn_config.clip_qkv` and
`softmax_scale` are branched on in the modeling code, so they are switches, named
`attn_config.<field>`, with the branch lines as evidence; reached directly, through an
attribute holding the sub-config, through a local alias, or getattr. A renamed copy of MPT
has the same switches (nothing keys on the model's name)."""

from __future__ import annotations

import json
import os
import re
import textwrap

import pytest
from analyze_helpers import rename_model, unrename

from codegen.analyze.analysis import analyze
from codegen.analyze.locate import model_type_files
from codegen.analyze.switches import switches_of_file

CONFIG = """
from transformers.configuration_utils import PreTrainedConfig


class SnipAttnConfig(PreTrainedConfig):
    base_config_key = "attn_config"
    clip_qkv: float | None = None
    softmax_scale: float | None = None
    qk_ln: bool = False
    alibi_bias_max: int = 8
    unread: bool = False


class SnipFfnConfig(PreTrainedConfig):
    base_config_key = "ffn_config"
    normalize: float | None = None
    act: str | None = None

    def __post_init__(self, **kwargs):
        if self.act is None:  # L:subclass
            self.act = "silu"
        super().__post_init__(**kwargs)


class SnipConfig(PreTrainedConfig):
    model_type = "snip"
    sub_configs = {"attn_config": SnipAttnConfig, "ffn_config": SnipFfnConfig}
    hidden_size: int = 64
    attn_config: dict | SnipAttnConfig | None = None

    def __post_init__(self, **kwargs):
        if self.attn_config is None:
            self.attn_config = SnipAttnConfig()
        super().__post_init__(**kwargs)
"""

MODELING = """
import torch
from torch import nn

from .configuration_snip import SnipConfig


class SnipAttention(nn.Module):
    def __init__(self, config: SnipConfig):
        super().__init__()
        self.attn_config = config.attn_config
        if self.attn_config.qk_ln:  # L:attribute
            self.q_ln = nn.LayerNorm(config.hidden_size)
        attn = config.attn_config
        self.scale = attn.softmax_scale
        if self.scale is None:  # L:alias
            self.scale = config.hidden_size**-0.5
        self.bias_max = getattr(config.attn_config, "alibi_bias_max", 8)
        self.wide = self.bias_max > 8  # L:getattr

    def forward(self, x):
        if config_clip(x) and self.attn_config is not None:
            x = x
        return x


def config_clip(x):
    return x


class SnipExpert(nn.Module):
    def __init__(self, config):
        super().__init__()
        if config.normalize is not None:  # L:passedon
            self.norm = nn.LayerNorm(4)


class SnipRouter(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.expert = SnipExpert(config)


class SnipModel(nn.Module):
    def __init__(self, config: SnipConfig):
        super().__init__()
        self.router = SnipRouter(config.ffn_config)
        self.attn = SnipAttention(config)
        self.config = config

    def forward(self, x):
        if self.config.attn_config.clip_qkv:  # L:direct
            x = x.clamp(-self.config.attn_config.clip_qkv, self.config.attn_config.clip_qkv)
        return self.attn(x)
"""


def _marks(text: str) -> dict[str, int]:
    return {m.group(1): text[: m.start()].count("\n") + 1 for m in re.finditer(r"# L:(\w+)", text)}


@pytest.fixture(scope="module")
def snippet(tmp_path_factory):
    folder = tmp_path_factory.mktemp("snip")
    (folder / "configuration_snip.py").write_text(textwrap.dedent(CONFIG))
    path = folder / "modeling_snip.py"
    path.write_text(textwrap.dedent(MODELING))
    found = {s.name: s for s in switches_of_file(str(path))}
    return found, {**_marks(textwrap.dedent(MODELING)), **_marks(textwrap.dedent(CONFIG))}


@pytest.mark.parametrize(
    "name, mark, tests",
    [
        ("attn_config.clip_qkv", "direct", {"set", "none"}),
        ("attn_config.qk_ln", "attribute", {"true", "false"}),
        ("attn_config.softmax_scale", "alias", {"none", "set"}),
        ("attn_config.alibi_bias_max", "getattr", {"cmp"}),
        # a class built from the sub-config (`Router(config.ffn_config)`), and one that class
        # builds from its own config parameter
        ("ffn_config.normalize", "passedon", {"none", "set"}),
        # the sub-config class's own __post_init__
        ("ffn_config.act", "subclass", {"none", "set"}),
    ],
)
def test_each_way_of_reaching_a_sub_config_field(snippet, name, mark, tests) -> None:
    found, marks = snippet
    assert name in found, sorted(found)
    switch = found[name]
    assert switch.container == name.split(".")[0] and switch.sub_config
    assert {v.test for v in switch.values} == tests
    file = "configuration_snip.py" if mark == "subclass" else "modeling_snip.py"
    assert {e for v in switch.values for e in v.evidence} == {f"{file}:{marks[mark]}"}


def test_the_sub_config_itself_and_unread_fields_are_no_switches(snippet) -> None:
    found, _ = snippet
    assert "attn_config" not in found  # `self.attn_config is None`: the object, not a setting
    assert not any(name.endswith("unread") for name in found)
    assert "clip_qkv" not in found  # only under its sub-config's name
    assert "normalize" not in found and "act" not in found


def _folder(model_type: str) -> str:
    return os.path.dirname(model_type_files(model_type)[0])


def _lines(model_type: str, pattern: str) -> set[str]:
    path = model_type_files(model_type)[0]
    with open(path, encoding="utf-8") as fh:
        numbers = {i for i, text in enumerate(fh, 1) if re.search(pattern, text)}
    return {f"{os.path.basename(path)}:{n}" for n in numbers}


@pytest.fixture(scope="module")
def mpt():
    return analyze("mpt")


def test_mpt_attention_config_switches_cite_their_branches(mpt) -> None:
    found = {s.name: s for s in mpt.switches}
    clip = found["attn_config.clip_qkv"]
    scale = found["attn_config.softmax_scale"]
    assert {v.test for v in clip.values} == {"none", "set"}
    assert {v.test for v in scale.values} == {"none", "set"}
    # the branch lines, found in the installed source by text search
    assert {e for v in clip.values for e in v.evidence} == _lines("mpt", r"if self\.clip_qkv:")
    expected = _lines("mpt", r"if self\.softmax_scale is None:")
    assert {e for v in scale.values for e in v.evidence} == expected
    assert any("self.clip_qkv" in read for read in clip.reads)
    data = mpt.to_dict()["switches"]
    plain = {f"{s['container']}.{s['field']}" for s in data if s["container"]}
    assert {"attn_config.clip_qkv", "attn_config.softmax_scale"} <= plain
    assert json.dumps(data)


def test_renamed_mpt_has_the_same_sub_config_switches(mpt, tmp_path) -> None:
    copy, back = rename_model("mpt", "zorblax", str(tmp_path))
    original = json.loads(json.dumps(mpt.to_dict()["switches"]))
    assert unrename(analyze(copy).to_dict()["switches"], back) == original
