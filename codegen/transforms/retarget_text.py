"""Make a package's prose about its target: no reference's name survives the scaffold.

A reference's docstrings, comments and messages speak about that reference (its tagline,
its HF config class, its error prefix, its HF classes' behaviour). In a package generated
for another model they would be false, so each kind of text is handled by what it is:

- a module docstring keeps its summary line, reworded for the target; its other
  paragraphs go when they name a reference (they describe that reference). A parenthesis
  of the summary naming a reference other than the one the package was copied from
  (`origin`: qwen3's "(llama's table plus q_norm / k_norm)") compares the two references,
  not the target with anything: it goes rather than become "(exaone4's table ...)";
- a class or function docstring, or a comment block, that names a reference goes;
- any other string (an error message) is reworded: `qwen3_moe: ...` -> `mixtral: ...`,
  `Qwen3MoeConfig` -> `MixtralConfig`.

A reference's name is recognised in all its spellings (`qwen3_moe`, `Qwen3-MoE`,
`Qwen3MoeConfig`) by `reference_word`; `llama3` (a RoPE kind) is no spelling of `llama`.

A reference's prose also names its HF config's fields and HF functions (`rope_interleave`,
`apply_rotary_pos_emb_interleave`, `num_nextn_predict_layers`). Those the target's HF source
lacks (`foreign_names`, from `foreign_hf_names`) are just as false for the target: a
parenthesis naming only such things goes, and so does the prose that still names one
(a bullet of a module docstring, a class or function docstring, a comment block). A name
the package's own code uses (`head_dim`, `num_experts`) is the package's word, not the HF one.
"""

from __future__ import annotations

import ast
import re
import textwrap
from collections.abc import Iterable, Sequence
from functools import cache
from pathlib import Path

import libcst as cst
import libcst.matchers as m

from codegen.transforms._comment_blocks import CommentBlockEditor
from codegen.transforms.base import Transform

_WORD = re.compile(r"[A-Za-z][A-Za-z0-9_\-]*[A-Za-z0-9]|[A-Za-z]")
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_\-]*[A-Za-z0-9_]|[A-Za-z]")
_PARENTHESIS = re.compile(r" ?\(([^()]*)\)")
_WIDTH = 94  # a module docstring line, with both its quotes, in a 100-column file
_DOCSTRING = m.SimpleStatementLine(body=[m.Expr(value=m.SimpleString())])


class RetargetText(Transform):
    """Reword the reference's prose for the target; drop what only held for the reference."""

    name = "retarget_text"

    def apply(
        self,
        package,
        features=None,
        *,
        name: str,
        title: str,
        references: Sequence[str],
        config_class: str | None = None,
        own: Sequence[str] = (),
        foreign_names: Sequence[str] = (),
        origin: str | None = None,
    ) -> None:
        words = Words(name, title, references, config_class, own)
        words.origin = _norm(origin) if origin else None
        if foreign_names:
            used = _identifiers(package.files.values())
            words.foreign_names = frozenset(foreign_names) - used
        if not words.foreign and not words.foreign_names:
            return
        for filename in list(package.files):
            package.edit(filename, _Retarget(words))


class Words:
    """The spellings of the foreign references and what each becomes in the target."""

    def __init__(self, name, title, references, config_class=None, own_names=()):
        self.name, self.title = name, title
        self.config_class = config_class or f"{_camel(name)}Config"
        self.prefix = self.config_class.removesuffix("Config") or _camel(name)
        # the target's own names (its model types: `qwen2_moe` is not qwen2's) stay as written
        own = {_norm(name), *(_norm(n) for n in own_names)}
        self.known = sorted({_norm(r) for r in references} | own, key=len, reverse=True)
        self.foreign = [n for n in self.known if n not in own]
        self.foreign_names: frozenset[str] = frozenset()  # HF names the target lacks
        self.origin: str | None = None  # the reference the package was copied from

    def owner(self, word: str) -> tuple[str, str] | None:
        """(normalised reference, the rest of the word) when `word` spells a reference."""
        for known in self.known:  # longest first: Qwen3MoeConfig is qwen3_moe's, not qwen3's
            rest = reference_word(word, known)
            if rest is not None:
                return (known, rest) if known in self.foreign else None
        return None

    def mentions(self, text: str) -> bool:
        """Whether `text` names a reference or an HF name the target's source lacks."""
        return any(
            self.owner(word) or word in self.foreign_names for word in _IDENTIFIER.findall(text)
        )

    def prose(self, text: str) -> str | None:
        """`text` without the parentheses that only name foreign HF things (`rope_interleave`
        and HF `apply_rotary_pos_emb_interleave` in one), or None when it still names one."""
        if self.foreign_names:
            text = _PARENTHESIS.sub(lambda found: self._parenthesis(found), text)
        return None if self.mentions(text) else text

    def _parenthesis(self, found: re.Match) -> str:
        """A parenthesis whose every comma-separated item names only foreign HF names goes;
        otherwise only those items go (`(`rope_interleave`, HF `f`)` -> `(HF `f`)`)."""
        items = found[1].split(",")
        kept = [item.strip() for item in items if not self._only_foreign(item)]
        if len(kept) == len(items):
            return found[0]
        return f"{found[0][: found[0].index('(')]}({', '.join(kept)})" if kept else ""

    def _only_foreign(self, text: str) -> bool:
        names = _IDENTIFIER.findall(text)
        foreign = [n for n in names if n in self.foreign_names]
        return bool(foreign) and all(n in self.foreign_names or n == "HF" for n in names)

    def without_comparisons(self, summary: str) -> str:
        """`summary` without its parentheses naming a foreign reference other than the
        origin (nothing goes when the origin is not known)."""
        if self.origin is None:
            return summary

        def compares(found: re.Match) -> bool:
            owners = {self.owner(word) for word in _IDENTIFIER.findall(found[1])} - {None}
            return any(known != self.origin for known, _ in owners)

        return _PARENTHESIS.sub(lambda found: "" if compares(found) else found[0], summary)

    def reword(self, text: str) -> str:
        def replace(match: re.Match) -> str:
            found = self.owner(match[0])
            if found is None:
                return match[0]
            rest = found[1]
            if not rest or rest[0] in "_-":
                return self.title + rest
            return self.config_class if rest == "Config" else self.prefix + rest

        return _WORD.sub(replace, text)


def reference_word(word: str, known: str) -> str | None:
    """The rest of `word` after a spelling of `known` (normalised: `qwen3moe`), or None.

    The spelling must end at a word boundary: the word's end, `_` or `-`, or a capital
    (`Qwen3MoeDecoderLayer` -> `DecoderLayer`); `llama3` and `qwen2x` are other words."""
    seen = ""
    for index, char in enumerate(word):
        if char.isalnum():
            seen += char.lower()
        if seen == known:
            rest = word[index + 1 :]
            if not rest or rest[0] in "_-" or rest[0].isupper():
                return rest
            return None
        if not known.startswith(seen):
            return None
    return None


def _norm(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())


def _camel(name: str) -> str:
    return "".join(part[:1].upper() + part[1:] for part in re.split(r"[_\-]", name))


class _Retarget(CommentBlockEditor):
    def __init__(self, words: Words):
        super().__init__()
        self.words = words
        # ids of docstring nodes (not reworded in place) and of strings used as keys (kept)
        self.docstrings: set[int] = set()

    # -- docstrings ---------------------------------------------------------------------
    def visit_Module(self, node):
        self._note_docstring(node.body)

    def visit_ClassDef(self, node):
        self._note_docstring(getattr(node.body, "body", ()))

    def visit_FunctionDef(self, node):
        self._note_docstring(getattr(node.body, "body", ()))

    def _note_docstring(self, body) -> None:
        if body and m.matches(body[0], _DOCSTRING):
            self.docstrings.add(id(body[0].body[0].value))

    def leave_Module(self, original, updated):
        if not (updated.body and m.matches(updated.body[0], _DOCSTRING)):
            return updated
        first = updated.body[0]
        string = first.body[0].value
        text = self._module_docstring(string.value)
        expr = first.body[0].with_changes(value=string.with_changes(value=text))
        line = first.with_changes(body=[expr])
        return updated.with_changes(body=[line, *updated.body[1:]])

    def _module_docstring(self, literal: str) -> str:
        quote = literal[:3] if literal[:3] in ('"""', "'''") else literal[0]
        inner = literal[len(quote) : -len(quote)]
        paragraphs = inner.strip("\n").split("\n\n")
        summary = self.words.reword(self.words.without_comparisons(paragraphs[0]))
        if summary != paragraphs[0] and max(map(len, summary.splitlines())) > _WIDTH:
            summary = textwrap.fill(" ".join(summary.split()), _WIDTH, break_on_hyphens=False)
        kept = [summary]
        kept += [p for p in map(self._paragraph, paragraphs[1:]) if p]
        text = "\n\n".join(kept)
        closing = "\n" if "\n" in text else ""
        return f"{quote}{text}{closing}{quote}"

    def _paragraph(self, paragraph: str) -> str:
        """The paragraph as it holds for the target ("" when nothing does): a bullet list
        loses only the bullets naming a foreign thing."""
        items = re.split(r"\n(?=- )", paragraph) if paragraph.startswith("- ") else [paragraph]
        kept = []
        for item in items:
            text = self.words.prose(item)
            if text is not None and text != item:  # a parenthesis went: the lines are refilled
                bullet = "  " if text.startswith("- ") else ""
                flat = " ".join(text.split())
                text = textwrap.fill(
                    flat, _WIDTH + 2, subsequent_indent=bullet, break_on_hyphens=False
                )
            if text is not None:
                kept.append(text)
        return "\n".join(kept)

    def leave_ClassDef(self, original, updated):
        return self._drop_docstring(updated)

    def leave_FunctionDef(self, original, updated):
        return self._drop_docstring(updated)

    def _drop_docstring(self, node):
        body = getattr(node.body, "body", ())
        if len(body) > 1 and m.matches(body[0], _DOCSTRING):
            string = body[0].body[0].value
            text = self.words.prose(string.value)
            if text is not None and text != string.value:
                expr = body[0].body[0].with_changes(value=string.with_changes(value=text))
                line = body[0].with_changes(body=[expr])
                return node.with_changes(body=node.body.with_changes(body=[line, *body[1:]]))
            if text is None:
                first = body[1]
                lines = list(first.leading_lines)
                while lines and lines[0].comment is None:
                    lines.pop(0)  # the block now starts at its first statement
                rest = [first.with_changes(leading_lines=lines), *body[2:]]
                return node.with_changes(body=node.body.with_changes(body=rest))
        return node

    # -- other strings ------------------------------------------------------------------
    def visit_SubscriptElement(self, node):
        # a key (`rope_parameters["llama_4_scaling_beta"]`) names data, not the reference
        if isinstance(node.slice, cst.Index) and isinstance(node.slice.value, cst.SimpleString):
            self.docstrings.add(id(node.slice.value))

    def visit_Call(self, node):
        if m.matches(node.func, m.Attribute(attr=m.Name("get"))) and node.args:
            if isinstance(node.args[0].value, cst.SimpleString):
                self.docstrings.add(id(node.args[0].value))  # `.get("key")`: a key too

    def leave_SimpleString(self, original, updated):
        if id(original) in self.docstrings:
            return updated
        return updated.with_changes(value=self.words.reword(updated.value))

    def leave_FormattedStringText(self, original, updated):
        return updated.with_changes(value=self.words.reword(updated.value))

    # -- comments -----------------------------------------------------------------------
    def leave_TrailingWhitespace(self, original, updated):
        if updated.comment is not None and self.words.mentions(updated.comment.value):
            return updated.with_changes(comment=None, whitespace=cst.SimpleWhitespace(""))
        return updated

    def comment_block(self, block: list[cst.EmptyLine]) -> list[cst.EmptyLine]:
        """A run of comment lines in which one line names a reference goes whole."""
        return [] if any(self.words.mentions(line.comment.value) for line in block) else block


class _Identifiers(cst.CSTVisitor):
    def __init__(self):
        super().__init__()
        self.names: set[str] = set()

    def visit_Name(self, node):
        self.names.add(node.value)

    def visit_Param(self, node):
        self.names.add(node.name.value)


def _identifiers(modules: Iterable[cst.Module]) -> frozenset[str]:
    """Every name the package's code uses (its own words, whatever HF calls them)."""
    visitor = _Identifiers()
    for module in modules:
        module.visit(visitor)
    return frozenset(visitor.names)


def foreign_hf_names(references: Sequence[str], modeling: str | None, configuration: str | None):
    """The config fields and module-level HF functions of the references' HF sources that the
    target's (`modeling`, `configuration`: file paths) lack, sorted. Static: files are read,
    never imported; a reference whose source is not installed contributes nothing."""
    from codegen.analyze.source import transformers_dir

    root = transformers_dir()
    if root is None or not modeling:
        return []
    theirs: set[str] = set()
    for reference in references:
        folder = Path(root) / "models" / reference
        theirs |= config_field_names(str(folder / f"configuration_{reference}.py"))
        theirs |= _function_names(str(folder / f"modeling_{reference}.py"))
    ours = config_field_names(configuration or "") | _function_names(modeling)
    return sorted(theirs - ours)


@cache
def config_field_names(path: str) -> frozenset[str]:
    """Field names a configuration file's config classes declare: class-level annotations,
    `self.x = ...` stores, `__init__` parameters and both sides of attribute_map."""
    module = _parse(path)
    if module is None:
        return frozenset()
    names: set[str] = set()
    for cls in module.body:
        if not (isinstance(cls, ast.ClassDef) and cls.name.endswith("Config")):
            continue
        for node in ast.walk(cls):
            if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
                names.add(node.target.id)
            elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
                if isinstance(node.value, ast.Name) and node.value.id == "self":
                    names.add(node.attr)
            elif isinstance(node, ast.FunctionDef) and node.name == "__init__":
                names |= {arg.arg for arg in node.args.args + node.args.kwonlyargs}
            elif isinstance(node, ast.Assign) and isinstance(node.value, ast.Dict):
                if any(isinstance(t, ast.Name) and t.id == "attribute_map" for t in node.targets):
                    names |= {  # both the alias and the field it names
                        item.value
                        for item in [*node.value.keys, *node.value.values]
                        if isinstance(item, ast.Constant) and isinstance(item.value, str)
                    }
    return frozenset(names - {"self", "kwargs"})


@cache
def _function_names(path: str) -> frozenset[str]:
    """Module-level functions of a modeling file (a line scan: these files are large)."""
    try:
        text = Path(path).read_text()
    except (OSError, UnicodeDecodeError):
        return frozenset()
    return frozenset(re.findall(r"^def (\w+)", text, re.MULTILINE))


def _parse(path: str) -> ast.Module | None:
    """ast, not libcst: only names are read (scaffold stays fast)."""
    try:
        return ast.parse(Path(path).read_text())
    except (OSError, UnicodeDecodeError, SyntaxError, ValueError):
        return None
