"""A value a config field picks out of a table of the analysed sources carries that lookup
(the field and the subscript's line), whatever kind of entry the table holds: an external
function, an external class (built after the lookup), a module instance (`nn.ReLU()`), a class
or a function of the analysed file, an ACT2FN activation. Plain data stays plain, and a
literal key records nothing."""

from __future__ import annotations

import libcst as cst

from codegen.analyze.evaluate import (
    ActRec,
    ClassRef,
    ConfigObj,
    ExtRef,
    Frame,
    FuncRef,
    Interp,
    ModuleRec,
)
from codegen.analyze.source import Project

SOURCE = """
import torch
from torch import nn
from transformers.activations import ACT2FN, gelu_new


def local_swish(x):
    return x * torch.sigmoid(x)


class LocalGelu(nn.Module):
    def forward(self, x):
        return gelu_new(x)


FUNCTIONS = {"gelu": gelu_new, "swish": local_swish, "act2fn": ACT2FN["gelu_new"]}
MODULES = {"relu": nn.ReLU(), "tanh": nn.Tanh()}
CLASSES = {"relu": nn.ReLU, "gelu": LocalGelu}
SIZES = {"small": 4}
"""


def _pick(tmp_path, expr: str, **fields):
    path = tmp_path / "modeling_tables.py"
    path.write_text(SOURCE)
    project = Project()
    sf = project.load(str(path))
    config = ConfigObj(None)
    config.attrs.update(fields)
    return Interp(project).eval(cst.parse_expression(expr), Frame(sf, locals={"config": config}))


def _field(value) -> str:
    lookup = value.table_lookup
    assert lookup is not None, value
    return lookup.field


def test_an_external_function_carries_the_field(tmp_path):
    value = _pick(tmp_path, "FUNCTIONS[config.afn]", afn="gelu")
    assert isinstance(value, ExtRef) and value.last == "gelu_new"
    assert _field(value) == "afn"


def test_a_module_instance_carries_the_field(tmp_path):
    value = _pick(tmp_path, "MODULES[config.afn]", afn="relu")
    assert isinstance(value, ModuleRec) and value.kind == "ReLU"
    assert _field(value) == "afn"


def test_a_function_of_the_file_carries_the_field(tmp_path):
    value = _pick(tmp_path, "FUNCTIONS[config.afn]", afn="swish")
    assert isinstance(value, FuncRef) and value.name == "local_swish"
    assert _field(value) == "afn"


def test_a_class_of_the_file_carries_the_field_into_its_instance(tmp_path):
    picked = _pick(tmp_path, "CLASSES[config.afn]", afn="gelu")
    assert isinstance(picked, ClassRef) and _field(picked) == "afn"
    built = _pick(tmp_path, "CLASSES[config.afn]()", afn="gelu")
    assert isinstance(built, ModuleRec) and built.cls.name == "LocalGelu"
    assert _field(built) == "afn"


def test_an_external_class_carries_the_field_into_its_instance(tmp_path):
    built = _pick(tmp_path, "CLASSES[config.afn]()", afn="relu")
    assert isinstance(built, ModuleRec) and built.kind == "ReLU"
    assert _field(built) == "afn"


def test_an_act2fn_entry_takes_the_tables_field(tmp_path):
    value = _pick(tmp_path, "FUNCTIONS[config.afn]", afn="act2fn")
    assert isinstance(value, ActRec) and (value.name, value.field) == ("gelu_new", "afn")


def test_one_entry_looked_up_by_two_fields_keeps_each_field(tmp_path):
    value = _pick(
        tmp_path, "(MODULES[config.afn], MODULES[config.head_afn])", afn="relu", head_afn="relu"
    )
    first, second = value
    assert (_field(first), _field(second)) == ("afn", "head_afn")


def test_plain_data_and_literal_keys_record_nothing(tmp_path):
    assert _pick(tmp_path, "SIZES[config.size]", size="small") == 4
    assert _pick(tmp_path, "MODULES['relu']").table_lookup is None
