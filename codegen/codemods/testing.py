"""Before/after test helpers for the codemods (the role libcst's `CodemodTest` plays).

Each codemod's sibling test lists cases as plain `before`/`after` source strings; these
helpers run the insert, compare the whole file, check that it still compiles, and run it a
second time to prove the edit is idempotent.
"""

from __future__ import annotations

import textwrap
from collections.abc import Sequence

import pytest

from codegen.codemods.add import add_entry
from codegen.errors import CodegenError


def code(text: str) -> str:
    """Dedent a triple-quoted fixture and drop its first newline."""
    return textwrap.dedent(text).lstrip("\n")


def assert_adds(
    before: str,
    container: str,
    key: str,
    values: Sequence[str] = (),
    *,
    after: str,
    section: str | None = None,
    **options,
) -> None:
    before, after = code(before), code(after)
    outcome = add_entry(before, container, key, values, section=section, **options)
    assert outcome.status == "added"
    assert outcome.source == after, "\n" + outcome.source
    compile(outcome.source, "<after>", "exec")
    again = add_entry(outcome.source, container, key, values, section=section, **options)
    assert again.status == "present"
    assert again.source == outcome.source


def assert_refuses(
    before: str,
    container: str,
    key: str,
    values: Sequence[str] = (),
    *,
    match: str,
    section: str | None = None,
) -> None:
    with pytest.raises(CodegenError, match=match):
        add_entry(code(before), container, key, values, section=section)
