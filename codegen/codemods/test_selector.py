"""Tests for `selector`: the CONTAINER grammar."""

import pytest

from codegen.codemods.selector import parse_selector
from codegen.errors import CodegenError


def test_forms():
    plain = parse_selector("MODEL_SPECS")
    assert (plain.kind, plain.attr, plain.owner, plain.line) == ("name", "MODEL_SPECS", None, None)
    member = parse_selector("Registry.MODELS@12")
    assert (member.owner, member.attr, member.line) == ("Registry", "MODELS", 12)
    assert parse_selector("from ..models").kind == "imports"
    assert parse_selector("if model_type").kind == "chain"
    dotted = parse_selector("if module_config.model_type")
    assert (dotted.kind, dotted.name) == ("chain", "module_config.model_type")
    assert str(parse_selector("from pkg.models @ 3")) == "from pkg.models@3"


@pytest.mark.parametrize("bad", ["", "a b", "a.b.c", ".x", "X@", "from"])
def test_bad_selectors_are_user_errors(bad):
    with pytest.raises(CodegenError, match="bad container"):
        parse_selector(bad)
