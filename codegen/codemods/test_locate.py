"""Tests for `locate`: which node a selector names, and the errors when it is unclear."""

import pytest

from codegen.codemods.add import add_entry
from codegen.errors import CodegenError


def error(source, container, key="k", values=("v",)):
    with pytest.raises(CodegenError) as err:
        add_entry(source, container, key, values, path="reg.py")
    return str(err.value)


def test_not_found_and_wrong_kind():
    assert (
        error("X = {}\nS = {1}\n", "Y") == "reg.py: container 'Y' not found (containers here: X, S)"
    )
    assert error("X = make()\n", "X").startswith("reg.py:1: 'X' is bound here to an expression")


def test_ambiguous_binding_names_lines_and_at_line_picks_one():
    assert "bound at lines 1, 2" in error("X = {}\nX = {}\n", "X")
    out = add_entry("X = {}\nX = {}\n", "X@2", "k", ["v"])
    assert out.source == 'X = {}\nX = {"k": "v"}\n'


def test_class_attribute_is_distinct_from_module_binding():
    source = 'X = {"a": "A"}\nclass C:\n    X = {"a": "A"}\n'
    assert "ambiguous" in error(source, "X")
    out = add_entry(source, "C.X", "b", ["B"])
    assert out.source.endswith('    X = {"a": "A", "b": "B"}\n')


def test_update_call_wins_over_an_uneditable_rebinding():
    source = 'N = base()\nN.update({"a": "A"})\nN = OrderedDict(**N)\n'
    out = add_entry(source, "N", "b", ["B"])
    assert 'N.update({"a": "A", "b": "B"})' in out.source


def test_plain_name_falls_back_to_a_chain_when_its_binding_is_not_editable():
    source = (
        "def get(config):\n"
        "    model_type = config.model_type\n"
        '    if model_type == "a":\n'
        "        return A\n"
        "    else:\n"
        "        raise ValueError(model_type)\n"
    )
    out = add_entry(source, "model_type", "b", ["return B"])
    assert '    elif model_type == "b":\n        return B\n' in out.source
