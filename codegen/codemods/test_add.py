"""Tests for `add`: the independent re-read that stops a faulty edit before it is written."""

import pytest

from codegen.codemods import add
from codegen.codemods.dict_entry import DictEntry
from codegen.errors import CodegenError

SOURCE = 'SPECS = {\n    "llama": "llama.spec:SPEC",\n}\n'


def test_an_edit_that_adds_the_wrong_key_is_refused(monkeypatch):
    real_build = DictEntry.build

    def wrong_key(self, template, key, values):
        return real_build(self, template, "not-" + key, values)

    monkeypatch.setattr(DictEntry, "build", wrong_key)
    with pytest.raises(CodegenError, match="did not add exactly 'qwen2'; nothing written"):
        add.add_entry(SOURCE, "SPECS", "qwen2", ["qwen2.spec:SPEC"], path="reg.py")


def test_an_edit_that_would_not_compile_is_refused(monkeypatch):
    class Broken:
        def add(self, wrapper, site, key, values, *, path, **options):
            return add.Outcome("added", SOURCE.replace("}", ""), 1, "", "SPECS")

    monkeypatch.setitem(add.CODEMODS, "dict", Broken())
    with pytest.raises(CodegenError, match="would not compile"):
        add.add_entry(SOURCE, "SPECS", "qwen2", ["qwen2.spec:SPEC"], path="reg.py")


def test_read_entries_reports_what_the_codemods_see():
    site, entries = add.read_entries(SOURCE, "SPECS")
    assert site.kind == "dict" and [(e.key, e.line, e.values) for e in entries] == [
        ("llama", 2, ("llama.spec:SPEC",))
    ]
