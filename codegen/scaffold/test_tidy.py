"""tidy: unused imports and unused ModelArgs fields leave; everything else stays."""

import libcst as cst

from codegen.scaffold.source import SourcePackage
from codegen.scaffold.tidy import tidy

MODEL = """from __future__ import annotations

import math
import torch.nn.functional as F
from torch import nn, Tensor
from .args import ModelArgs
from .spec import registered  # noqa: F401

__all__ = ["Tensor"]


class Attention(nn.Module):
    def __init__(self, args: ModelArgs):
        self.x = F.silu(args.dim)
"""

MODEL_AFTER = """from __future__ import annotations

import torch.nn.functional as F
from torch import nn, Tensor
from .args import ModelArgs
from .spec import registered  # noqa: F401

__all__ = ["Tensor"]


class Attention(nn.Module):
    def __init__(self, args: ModelArgs):
        self.x = F.silu(args.dim)
"""

ARGS = """from dataclasses import dataclass


@dataclass
class ModelArgs:
    dim: int = 4
    unused_option: bool = False  # nothing reads it any more
    tie_word_embeddings: bool = False

    @classmethod
    def from_hf_config(cls, hf_config):
        return cls(
            dim=hf_config.hidden_size,
            unused_option=hf_config.unused_option,
            tie_word_embeddings=hf_config.tie_word_embeddings,
        )
"""

ARGS_AFTER = """from dataclasses import dataclass


@dataclass
class ModelArgs:
    dim: int = 4
    tie_word_embeddings: bool = False

    @classmethod
    def from_hf_config(cls, hf_config):
        return cls(
            dim=hf_config.hidden_size,
            tie_word_embeddings=hf_config.tie_word_embeddings,
        )
"""


def test_tidy_removes_only_what_nothing_uses():
    package = SourcePackage(
        "x", {"model.py": cst.parse_module(MODEL), "args.py": cst.parse_module(ARGS)}
    )
    tidy(package)
    rendered = package.render()
    assert rendered["model.py"] == MODEL_AFTER
    assert rendered["args.py"] == ARGS_AFTER


def test_tidy_is_idempotent():
    package = SourcePackage("x", {"model.py": cst.parse_module(MODEL_AFTER)})
    tidy(package)
    assert package.render()["model.py"] == MODEL_AFTER


def test_ruff_formats_without_ruff_on_path(monkeypatch):
    """ruff is a runtime dependency: the binary its package ships is found with an empty
    PATH, so generated code is never left unformatted."""
    from codegen.scaffold.tidy import ruff_format

    monkeypatch.setenv("PATH", "")
    files = ruff_format({"m.py": "import os\nx=( 1,\n 2)\nprint(os, x)\n"})
    assert files["m.py"] == "import os\n\nx = (1, 2)\nprint(os, x)\n"


def test_without_ruff_anywhere_scaffold_says_so(monkeypatch):
    import builtins

    import pytest

    from codegen.errors import CodegenError
    from codegen.scaffold import tidy

    real_import = builtins.__import__

    def no_ruff(name, *args, **kwargs):
        if name.startswith("ruff"):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_ruff)
    monkeypatch.setenv("PATH", "")
    with pytest.raises(CodegenError, match="ruff is required"):
        tidy.ruff_format({"m.py": "x = 1\n"})


def test_a_line_only_a_long_string_makes_long_is_marked_not_left_failing():
    from codegen.scaffold.tidy import ruff_format

    key = "model_with_a_long_name.layers.{}.attention.query_key_value.weight"
    code = f'MAP = {{\n    "{key}": "layers.{{}}.attention.wqkv.weight",\n}}\n'
    formatted = ruff_format({"adapter.py": code})["adapter.py"]
    (line,) = [line for line in formatted.splitlines() if key in line]
    assert len(line) > 100 and line.endswith("# noqa: E501")
    short = ruff_format({"a.py": "X = {'a': 1}\n"})["a.py"]
    assert "noqa" not in short


def test_tidy_removes_a_function_whose_last_call_was_folded_away():
    model = (
        "def window_mask(n):\n    return n\n\n\nclass Model:\n"
        "    def forward(self, x):\n        mask = None\n        return x, mask\n"
    )
    package = SourcePackage("x", {"model.py": cst.parse_module(model)})
    tidy(package)
    assert "window_mask" not in package.render()["model.py"]
    assert "class Model" in package.render()["model.py"]
