"""Drop an empty FIXED_SETTINGS table and the check of it.

args.py pins the HF settings its code hard-codes in `FIXED_SETTINGS` and refuses others with
`require_settings(hf_config, FIXED_SETTINGS)` in `from_hf_config`. A package that hard-codes
none (every switch the HF source has is realised) keeps an empty table and a call that
checks nothing: both go (tidy then drops the unused import).

Before::

    # HF settings this package hard-codes: field -> the only value it implements
    FIXED_SETTINGS = {}
    ...
        require_settings(hf_config, FIXED_SETTINGS)
        return cls(...)

After::

        return cls(...)
"""

from __future__ import annotations

import libcst as cst
import libcst.matchers as m

from codegen.transforms.base import Transform
from codegen.transforms.edits import findall

_TABLE = "FIXED_SETTINGS"
_EMPTY_TABLE = m.SimpleStatementLine(
    body=[m.Assign(targets=[m.AssignTarget(target=m.Name(_TABLE))], value=m.Dict(elements=[]))]
)
# a statement that only passes the table to a check: `require_settings(hf_config, FIXED_...)`
_CHECK = m.SimpleStatementLine(
    body=[m.Expr(value=m.Call(args=[m.ZeroOrMore(), m.Arg(value=m.Name(_TABLE)), m.ZeroOrMore()]))]
)


class DropEmptySettings(Transform):
    """An empty `FIXED_SETTINGS` and the statements that only check it are removed from
    args.py; a table that anything else reads is left alone."""

    name = "drop_empty_settings"

    def apply(self, package, features=None) -> None:
        if "args.py" not in package.files:
            return
        module = package.module("args.py")
        tables = [s for s in module.body if m.matches(s, _EMPTY_TABLE)]
        if len(tables) != 1:
            return
        checks = findall(module, _CHECK)
        reads = findall(module, m.Name(_TABLE))
        if len(reads) != 1 + len(checks):  # read elsewhere than the checks: keep it
            return
        package.files["args.py"] = module.visit(_Without({id(s) for s in [*tables, *checks]}))


class _Without(cst.CSTTransformer):
    def __init__(self, dropped: set[int]):
        super().__init__()
        self.dropped = dropped

    def on_leave(self, original, updated):
        if id(original) in self.dropped:
            return cst.RemoveFromParent()
        return updated
