"""Prose check: a generated package's comments and docstrings say nothing about another model.

A package starts as a reference's copy, and the reference's prose speaks of that reference:
its name and HF classes (`Qwen3MoeConfig`), its HF config's fields (`num_nextn_predict_layers`,
`max_window_layers`). Where the target's HF config class has no such field, or the name is a
reference's, the sentence is false for the target. A field name the package's own code uses
(`head_dim`, `num_experts`) is the package's word, not a claim about the HF config.

Static like the rest of `codegen.quality`: the config classes' fields are read from the
installed transformers' configuration files (never imported); `python -m codegen.quality`
does not run it (it needs the target's configuration file), the coverage sweep does.
"""

from __future__ import annotations

import ast
import io
import re
import tokenize
from pathlib import Path

from codegen.transforms.retarget_text import Words, config_field_names

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_\-]*[A-Za-z0-9_]|[A-Za-z]")
# a Features path (`attention.sliding_window = 'none'` in a rule's reason) is codegen's
# vocabulary for a feature, not a config field
_FEATURE_PATH = re.compile(
    r"\b(?:attention|rope|ffn|moe|norm|embedding|head|block|state_dict)\.[\w.]+"
)


def said_names(text: str) -> set[str]:
    """The words of a comment or docstring that could name something, feature paths aside."""
    return set(_NAME.findall(_FEATURE_PATH.sub("", text)))


def prose(text: str):
    """(line, text) of each comment and docstring of a module's source."""
    for token in tokenize.generate_tokens(io.StringIO(text).readline):
        if token.type == tokenize.COMMENT:
            yield token.start[0], token.string
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            docstring = ast.get_docstring(node)
            if docstring:
                yield getattr(node, "lineno", 1), docstring


def code_names(text: str) -> set[str]:
    """Names, attributes and parameters the module's code uses."""
    names = set()
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, ast.Name):
            names.add(node.id)
        elif isinstance(node, ast.Attribute):
            names.add(node.attr)
        elif isinstance(node, ast.arg):
            names.add(node.arg)
    return names


def foreign_mentions(
    files: dict[str, str],
    name: str,
    configuration: str | None,
    references: list[str],
    own: tuple[str, ...] = (),
) -> list[str]:
    """`file:line: names X` for each comment or docstring of the package (`files`:
    {filename: source}; `name` and `own`: the package's and target's names) that names a
    reference (`references`, minus the target's own) or a field of a reference's HF config
    that the target's (`configuration`: its configuration file) lacks."""
    from codegen.analyze.source import transformers_dir

    own_names = {name, *own}
    words = Words(name, name, [r for r in references if r not in own_names], own_names=own_names)
    root = transformers_dir()
    theirs: set[str] = set()
    for reference in references if root else ():
        folder = Path(root) / "models" / reference
        theirs |= config_field_names(str(folder / f"configuration_{reference}.py"))
    fields = theirs - config_field_names(configuration or "") if configuration else set()
    used = set().union(*(code_names(text) for text in files.values()))
    found = []
    for filename, text in sorted(files.items()):
        for line, said in prose(text):
            said_words = said_names(said)
            named = sorted(
                {w for w in said_words if w in fields and w not in used}
                | {w for w in said_words if words.owner(w)}
            )
            if named:
                found.append(f"{filename}:{line}: names {', '.join(named)}")
    return found
