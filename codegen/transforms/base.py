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

    def resolved_params(self, params: dict, features: Any = None) -> dict:
        """`params` as `apply` will read them (a value the transform settles from the source
        replaced by what it settles on), for the tables keyed on them (the shard plan)."""
        return params

    @classmethod
    def summary(cls) -> str:
        return (cls.__doc__ or cls.name).strip().splitlines()[0]
