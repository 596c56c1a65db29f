"""The rule contract: a class with a code, a docstring, VALID/INVALID examples, `check`.

As in Fixit, the examples are the tests (`test_rules.py` runs every rule over its own): a
VALID example must produce no finding of the rule, an INVALID one at least one. An example
is a package: `{filename: source}`, or a string standing for `model.py` alone.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import ClassVar

from codegen.quality.facts import PackageFacts

Example = str | dict[str, str]


@dataclass(frozen=True, order=True)
class Finding:
    path: str
    line: int
    code: str
    message: str

    def render(self) -> str:
        return f"{self.path}:{self.line}: {self.code} {self.message}"


class Rule:
    code: ClassVar[str]
    VALID: ClassVar[list[Example]] = []
    INVALID: ClassVar[list[Example]] = []

    def check(self, facts: PackageFacts) -> Iterator[Finding]:
        raise NotImplementedError

    @classmethod
    def summary(cls) -> str:
        return (cls.__doc__ or cls.__name__).strip().splitlines()[0]
