"""The CONTAINER argument: which container in a file an entry goes into.

Why a small grammar instead of a bare name: registries are not always a variable. Four forms
cover every shape codegen edits, and the optional `@LINE` picks one of several bindings:

    NAME            a module-level (or function-level) binding: `NAME = {...}`,
                    `NAME: Dict[...] = OrderedDict([...])`, `NAME.update({...})`, ...
    Class.NAME      a class-body attribute, e.g. a `ClassVar` dict
    from PKG        side-effect imports of PKG's sub-modules (lines or a parenthesised list)
    if NAME         an `if NAME == "...": ... elif ...: ... else: raise` dispatch chain

Pure Python (no libcst) so `codegen lint` can share it without the import cost.
"""

from __future__ import annotations

import keyword
import re
from dataclasses import dataclass

from codegen.errors import CodegenError

_DOTTED = r"\.*[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*|\.+"
_PATTERN = re.compile(rf"^(?:(?P<kw>from|if)\s+)?(?P<name>{_DOTTED})(?:\s*@\s*(?P<line>[0-9]+))?$")


@dataclass(frozen=True)
class Selector:
    """A parsed CONTAINER argument."""

    kind: str  # "name" | "imports" | "chain"
    name: str  # NAME, Class.NAME, PKG (may start with dots) or the compared name
    line: int | None = None

    @property
    def owner(self) -> str | None:
        """The class for `Class.NAME`, else None."""
        return self.name.rsplit(".", 1)[0] if self.kind == "name" and "." in self.name else None

    @property
    def attr(self) -> str:
        """The bound name itself (last component of `Class.NAME`)."""
        return self.name.rsplit(".", 1)[-1] if self.kind == "name" else self.name

    def __str__(self) -> str:
        prefix = {"name": "", "imports": "from ", "chain": "if "}[self.kind]
        suffix = f"@{self.line}" if self.line is not None else ""
        return f"{prefix}{self.name}{suffix}"


def parse_selector(text: str) -> Selector:
    """Parse `NAME`, `Class.NAME`, `from PKG` or `if NAME`, each with an optional `@LINE`."""
    match = _PATTERN.match(text.strip())
    if not match:
        raise CodegenError(
            f"bad container {text!r}: expected NAME, Class.NAME, 'from PKG' or 'if NAME', "
            "optionally followed by @LINE"
        )
    word, name, line = match["kw"], match["name"], match["line"]
    if any(keyword.iskeyword(part) for part in name.split(".")):
        raise CodegenError(f"bad container {text!r}: a Python keyword is not a name")
    kind = {"from": "imports", "if": "chain", None: "name"}[word]
    if kind != "imports" and name.startswith("."):
        raise CodegenError(f"bad container {text!r}: only 'from PKG' may be relative")
    if kind == "name" and name.count(".") > 1:
        raise CodegenError(f"bad container {text!r}: use NAME or Class.NAME")
    if kind == "chain" and "." in name:
        raise CodegenError(f"bad container {text!r}: 'if NAME' takes a plain name")
    return Selector(kind=kind, name=name, line=int(line) if line else None)
