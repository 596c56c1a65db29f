"""Tests for `read` and `resolve`: what lint sees without importing anything."""

import textwrap

import pytest

from codegen.codemods.selector import parse_selector
from codegen.lint.read import Unreadable, find_containers, parse_file, top_level_names
from codegen.lint.resolve import module_file, spec_attr, spec_fields, string_members


def parsed(tmp_path, source):
    path = tmp_path / "m.py"
    path.write_text(textwrap.dedent(source).lstrip())
    return parse_file(path)


def test_top_level_names_follow_if_and_try_and_give_up_on_star(tmp_path):
    names = top_level_names(
        parsed(
            tmp_path,
            """
            from .args import ModelArgs as Args
            import os.path
            try:
                import fast as impl
            except ImportError:
                impl = None
            if True:
                class Model: ...
            SPEC: object = None
            """,
        ).tree
    )
    assert {"Args", "os", "impl", "Model", "SPEC"} <= names
    assert top_level_names(parsed(tmp_path, "from x import *\n").tree) is None


def test_containers_of_every_kind_with_lines(tmp_path):
    source = parsed(
        tmp_path,
        """
        A = {"x": "m:X", "y": ("m", "Y")}
        B: dict = OrderedDict([("k", "K", 1)])
        C = frozenset({"p", "q"})
        D = Literal["u", "v"]
        class K:
            E = ["e"]
        """,
    )
    found = {
        name: [
            (e.key, e.values, e.line)
            for e in find_containers(source, parse_selector(name))[0].entries
        ]
        for name in ("A", "B", "C", "D", "K.E")
    }
    assert found == {
        "A": [("x", ("m:X",), 1), ("y", ("m", "Y"), 1)],
        "B": [("k", ("K", "1"), 2)],
        "C": [("p", (), 3), ("q", (), 3)],
        "D": [("u", (), 4), ("v", (), 4)],
        "K.E": [("e", (), 6)],
    }


def test_unreadable_file_carries_its_line(tmp_path):
    path = tmp_path / "bad.py"
    path.write_text("x = 1\ny = (\n")
    with pytest.raises(Unreadable) as err:
        parse_file(path)
    assert err.value.line == 2 and str(err.value).startswith("syntax error")


def test_spec_reading_and_module_files(tmp_path):
    spec = parsed(
        tmp_path,
        """
        MY_SPEC = ModelSpec(name="llama", supported_model_types=frozenset({"llama", "llama4"}))
        """,
    )
    assert spec_attr(spec) == "MY_SPEC"
    fields = spec_fields(spec, "MY_SPEC")
    assert fields["name"].value == "llama"
    assert string_members(fields["supported_model_types"]) == [("llama", 1), ("llama4", 1)]
    assert spec_fields(spec, "OTHER") is None
    (tmp_path / "pkg" / "sub").mkdir(parents=True)
    (tmp_path / "pkg" / "sub" / "__init__.py").write_text("")
    (tmp_path / "pkg" / "mod.py").write_text("")
    assert module_file([tmp_path], "pkg.mod") == tmp_path / "pkg" / "mod.py"
    assert module_file([tmp_path], "pkg.sub") == tmp_path / "pkg" / "sub" / "__init__.py"
    assert module_file([tmp_path], "pkg.gone") is None
