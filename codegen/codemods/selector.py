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
    return Selector(kind=kind, name=name, line=int(line) if line else None)


_DISCOURAGED = re.compile(
    r"\b(should|must|do|does|shall)\s*(not|n't)\b|\bnever\b|\binstead of being added\b",
    re.IGNORECASE,
)


def main_bindings(kinds: list[str]) -> list[int]:
    """Which of several bindings of one name is the registry: the assignment, when the
    others only extend it (`NAME.update({...})`, often under `if`); all of them otherwise
    (ambiguous). `kinds[i]` is "assign" or "update"."""
    assigns = [i for i, kind in enumerate(kinds) if kind == "assign"]
    if len(kinds) > 1 and len(assigns) == 1:
        return assigns
    return list(range(len(kinds)))


def discouraged(comments: list[str]) -> str | None:
    """The comment above a binding that says new entries do not belong there, if any."""
    for comment in comments:
        if _DISCOURAGED.search(comment):
            return comment.strip()
    return None
