"""Model types with no modeling file of their own run the class transformers' auto mapping
names for them; analyze follows the mapping as transformers does instead of stopping."""

from __future__ import annotations

import os

import pytest

from codegen.analyze.locate import causal_lm_classes, model_type_files
from codegen.errors import CodegenError


def _parts(path: str | None) -> tuple[str, str]:
    assert path is not None
    return os.path.basename(os.path.dirname(path)), os.path.basename(path)


@pytest.mark.parametrize(
    ("model_type", "modeling", "configuration", "config_class"),
    [
        # the folder ships only a configuration: the modeling file of the mapped class
        ("internlm3", ("llama", "modeling_llama.py"),
         ("internlm3", "configuration_internlm3.py"), "InternLM3Config"),
        # no folder of its own at all: both from the mapped class's folder
        ("gpt-sw3", ("gpt2", "modeling_gpt2.py"), ("gpt2", "configuration_gpt2.py"), "GPT2Config"),
        # several modeling files in one folder: the one that defines the causal-LM class
        ("data2vec-text", ("data2vec", "modeling_data2vec_text.py"),
         ("data2vec", "configuration_data2vec_text.py"), "Data2VecTextConfig"),
    ],
)  # fmt: skip
def test_files_follow_the_auto_mapping(model_type, modeling, configuration, config_class) -> None:
    found_modeling, found_configuration, found_class = model_type_files(model_type)
    assert _parts(found_modeling) == modeling
    assert _parts(found_configuration) == configuration
    assert found_class == config_class


def test_the_mapping_is_read_statically() -> None:
    classes = causal_lm_classes()
    assert classes["internlm3"] == classes["llama"] == "LlamaForCausalLM"
    assert classes["gpt-sw3"] == "GPT2LMHeadModel"


def test_an_unknown_model_type_is_one_line() -> None:
    with pytest.raises(CodegenError, match="unknown model_type"):
        model_type_files("no_such_model_type")
