"""The analyzer's parse skips libcst's per-node checks only while it parses: the tree equals
libcst's own, a syntax error is still libcst's error, and nodes built afterwards are checked."""

from __future__ import annotations

import glob
import os

import libcst as cst
import pytest

from codegen.analyze.source import transformers_dir
from codegen.analyze.trusted_parse import parse_module


def _samples() -> list[str]:
    models = os.path.join(transformers_dir(), "models")
    files = sorted(glob.glob(os.path.join(models, "*", "modeling_*.py")))
    files += sorted(glob.glob(os.path.join(models, "*", "configuration_*.py")))
    return files[::60]


@pytest.mark.parametrize("path", _samples(), ids=os.path.basename)
def test_same_tree_as_libcst(path) -> None:
    with open(path, encoding="utf-8") as fh:
        text = fh.read()
    ours = parse_module(text)
    assert ours.deep_equals(cst.parse_module(text))
    assert ours.code == text


def _invalid_node() -> None:
    cst.SimpleWhitespace("x")  # not whitespace: refused by libcst's check


def test_checks_are_back_after_a_parse_and_after_a_failed_one() -> None:
    parse_module("x = 1\n")
    with pytest.raises(cst.CSTValidationError):
        _invalid_node()
    with pytest.raises(cst.ParserSyntaxError):
        parse_module("def broken(:\n")
    with pytest.raises(cst.CSTValidationError):
        _invalid_node()
