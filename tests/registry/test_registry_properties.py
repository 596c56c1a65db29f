"""Property tests: registry files with random formatting, one insert, strong invariants.

Generated files vary what real registries vary: container kind (dict, `OrderedDict` of
pairs, `frozenset`), one-line or one-entry-per-line, quote style, trailing commas, trailing
comments, comment lines and blank lines between entries, header and footer comments,
indentation, value shape, and whether the keys are sorted. After inserting a new key:

- the file still parses, and the container holds the old entries plus exactly the new one;
- the edit only inserted text: the old file is a subsequence of the new one, and at most
  one old line differs (the previous last entry gaining its comma, or a one-line container);
- a sorted container (one entry counts as sorted) stays sorted; an unsorted one gets the
  key after its family (with or without version digits) or last;
- a second insert changes nothing.
"""

from __future__ import annotations

import ast
from collections import Counter

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from codegen.codemods.add import add_entry
from codegen.codemods.order import base_family, family, misplaced

KEYS = st.from_regex(r"[a-z][a-z0-9]{0,4}(_[a-z0-9]{1,3})?", fullmatch=True)


@st.composite
def registries(draw):
    kind = draw(st.sampled_from(["dict", "pairs", "members"]))
    keys = draw(st.lists(KEYS, min_size=1, max_size=8, unique=True))
    if draw(st.booleans()):
        keys.sort()
    new_key = draw(KEYS.filter(lambda k: k not in keys))
    quote = draw(st.sampled_from(['"', "'"]))
    shape = draw(st.sampled_from(["colon", "dotted", "pair"])) if kind != "members" else None
    multiline = draw(st.booleans())
    trailing_comma = draw(st.booleans()) if multiline else False
    indent = " " * draw(st.sampled_from([2, 4, 8]))

    def q(text):
        return f"{quote}{text}{quote}"

    def value(key):
        if shape == "colon":
            return q(f"pkg.{key}.spec:SPEC")
        if shape == "dotted":
            return q(f"pkg.{key}.model.Model")
        return f"({q(key)}, {q(key.upper())})"

    def entry(key):
        if kind == "dict":
            return f"{q(key)}: {value(key)}"
        if kind == "pairs":
            return f"({q(key)}, {value(key)})"
        return q(key)

    opener, closer = {
        "dict": ("{", "}"),
        "pairs": ("OrderedDict([", "])"),
        "members": ("frozenset({", "})"),
    }[kind]
    lines = ["import os", ""]
    if multiline:
        header = "  # keep this" if draw(st.booleans()) else ""
        lines.append(f"REGISTRY = {opener}{header}")
        for index, key in enumerate(keys):
            if index and draw(st.booleans()):
                lines.append("")
            if draw(st.booleans()):
                lines.append(f"{indent}# about {key}")
            last = index == len(keys) - 1
            comma = "," if (not last or trailing_comma) else ""
            note = f"  # note {index}" if draw(st.booleans()) else ""
            lines.append(f"{indent}{entry(key)}{comma}{note}")
        if draw(st.booleans()):
            lines.append(f"{indent}# footer")
        lines.append(closer)
    else:
        lines.append(f"REGISTRY = {opener}{', '.join(entry(k) for k in keys)}{closer}")
    lines += ["", "print(REGISTRY)", ""]
    values = [] if kind == "members" else _values(shape, new_key)
    return multiline, "\n".join(lines), keys, new_key, values


def _values(shape, key):
    if shape == "colon":
        return [f"pkg.{key}.spec:SPEC"]
    if shape == "dotted":
        return [f"pkg.{key}.model.Model"]
    return [key, key.upper()]


def container_keys(source: str) -> list[str]:
    """The keys of REGISTRY, whatever its kind."""
    for node in ast.parse(source).body:
        if isinstance(node, ast.Assign) and node.targets[0].id == "REGISTRY":
            value = node.value
            if isinstance(value, ast.Dict):
                return [k.value for k in value.keys]
            arg = value.args[0]
            if isinstance(arg, ast.List):
                return [item.elts[0].value for item in arg.elts]
            return [item.value for item in arg.elts]
    raise AssertionError("REGISTRY not found")


def is_subsequence(old: str, new: str) -> bool:
    chars = iter(new)
    return all(char in chars for char in old)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(registries())
@example(  # sorted but for one stray entry: the new key goes in sorted order among the rest
    (
        False,
        'import os\n\nREGISTRY = {"b": "pkg.b.spec:SPEC", "a0": "pkg.a0.spec:SPEC", '
        '"c": "pkg.c.spec:SPEC", "c0": "pkg.c0.spec:SPEC", "d": "pkg.d.spec:SPEC", '
        '"e": "pkg.e.spec:SPEC", "f": "pkg.f.spec:SPEC"}\n\nprint(REGISTRY)\n',
        ["b", "a0", "c", "c0", "d", "e", "f"],
        "a",
        ["pkg.a.spec:SPEC"],
    )
)
def test_insert_keeps_every_other_byte(case):
    multiline, source, keys, new_key, values = case
    outcome = add_entry(source, "REGISTRY", new_key, values)
    result = outcome.source
    assert outcome.status == "added"

    compile(result, "<generated>", "exec")
    new_keys = container_keys(result)
    assert Counter(new_keys) == Counter([*keys, new_key])

    assert is_subsequence(source, result), "the edit removed or changed existing text"
    old_lines, new_lines = source.splitlines(), result.splitlines()
    changed = [line for line in old_lines if line not in new_lines]
    assert len(changed) <= 1, changed
    assert len(new_lines) - len(old_lines) == (1 if multiline else 0)

    position = new_keys.index(new_key)
    stray = set(misplaced(keys))
    if keys == sorted(keys):
        assert new_keys == sorted(new_keys)
    elif stray:  # sorted but for a stray entry or two: sorted among the entries in order
        old_index = [j if j < position else j - 1 for j in range(len(new_keys))]
        kept = [k for j, k in enumerate(new_keys) if j == position or old_index[j] not in stray]
        assert kept == sorted(kept) or kept == sorted(kept, key=str.casefold)
    else:
        kin = [i for i, k in enumerate(keys) if family(k) == family(new_key)]
        kin = kin or [i for i, k in enumerate(keys) if base_family(k) == base_family(new_key)]
        assert position == (kin[-1] + 1 if kin else len(keys))

    again = add_entry(result, "REGISTRY", new_key, values)
    assert again.status == "present" and again.source == result
