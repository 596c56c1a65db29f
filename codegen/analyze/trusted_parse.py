"""`libcst.parse_module` without re-validating the nodes the parser builds.

Every libcst node checks its own fields when constructed (`CSTNode.__post_init__` calls
`_validate`: whitespace holds only whitespace, parentheses balance...). Nodes made by the
parser come from source that just parsed, so those checks cannot fail there, and they are
about a sixth of the parse (libcst's own source marks them as redundant when parsing). The
analyzer parses every modeling and configuration file it reads through here; nodes built
anywhere else (transforms, scaffold) are still validated: the check is off only for the
duration of one parse, and restored even when the parse fails.

The switch is process-wide while it lasts: codegen parses on one thread.
"""

from __future__ import annotations

import libcst as cst
from libcst._nodes.base import CSTNode


def _no_check(self) -> None:
    pass


def parse_module(text: str) -> cst.Module:
    """`cst.parse_module(text)`: the same tree, the same ParserSyntaxError on bad input."""
    check = CSTNode.__dict__["__post_init__"]
    CSTNode.__post_init__ = _no_check
    try:
        return cst.parse_module(text)
    finally:
        CSTNode.__post_init__ = check
