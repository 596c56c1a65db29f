"""Tests for `shape`: quoting, style adaptation, pragmas."""

import libcst as cst

from codegen.codemods.shape import adapt, is_pragma, render_string, style, value_texts


def test_render_string_copies_the_quote_style_and_escapes():
    assert render_string("a'b", cst.SimpleString("'x'")) == "'a\\'b'"
    assert render_string('a"b', cst.SimpleString('"x"')) == '"a\\"b"'
    assert render_string("x", cst.SimpleString('"""doc"""')) == '"""x"""'
    assert render_string("x", None) == '"x"'


def test_style_and_adapt():
    assert style(["a.b:C", "d:E"]) == "colon"
    assert style(["a.b.C", "d.E"]) == "dotted"
    assert style(["a.b.C", "d:E"]) is None
    assert adapt(["pkg.mod:Cls"], [["x.y.Z"]], 1) == ["pkg.mod.Cls"]
    assert adapt(["pkg.mod.Cls"], [["x.y:Z"]], 1) == ["pkg.mod:Cls"]
    assert adapt(["llama:Llama"], [["qwen2"], ["Qwen2"]], 2) == ["llama", "Llama"]
    assert adapt(["free text"], [["x.y.Z"]], 1) == ["free text"]


def test_value_texts_flatten_tuples_and_reject_other_shapes():
    assert value_texts(cst.parse_expression('("a", ("b", C))')) == ("a", "b", "C")
    assert value_texts(cst.parse_expression('("a", {"b"})')) is None


def test_pragmas():
    assert is_pragma(cst.Comment("# noqa: F401"))
    assert is_pragma(cst.Comment("#type: ignore[import]"))
    assert not is_pragma(cst.Comment("# the baseline"))
    assert not is_pragma(None)
