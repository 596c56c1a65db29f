"""The Transform contract shared by every file in this package."""

from __future__ import annotations

from typing import Any, ClassVar


class Transform:
    """One libcst edit of a model package, realising one rule.

    `apply` edits `package` (a `codegen.scaffold.source.SourcePackage`) in place. `params`
    come from the rule table; `features` is the target's `Features`, for evidence and sizes.
    The class docstring is the transform's documentation (`scaffold --explain` quotes its
    first line).
    """

    name: ClassVar[str]

    def apply(self, package, features: Any = None, **params) -> None:
        raise NotImplementedError

    @classmethod
    def summary(cls) -> str:
        return (cls.__doc__ or cls.name).strip().splitlines()[0]
