"""What codegen can generate today: what the references implement plus what the rules add.

A feature value outside `SUPPORTED` (or an always-unsupported finding from a detector, such as
learned attention sinks via an output gate) is listed in `Features.unsupported` with its
evidence, and with the reason `rules/unsupported.py` gives where it gives one.
`EXTRA_SUPPORTED` is read from the rule table (`rules/`): a value some rule realises is
supported. Loading the table imports no torch or transformers.
"""

from __future__ import annotations

from codegen.analyze.features import Features, Unsupported
from codegen.analyze.reference import ANY, COMPARED, REFERENCES, compared_value


def _rule_values() -> dict[str, tuple]:
    from codegen.scaffold.table import load_rules

    table: dict[str, tuple] = {}
    for rule in load_rules():
        table[rule.feature] = table.get(rule.feature, ()) + tuple(rule.values)
    return table


def _reasons() -> dict[tuple, str]:
    import importlib

    from codegen.scaffold.table import load_rules

    load_rules()  # mounts the rules package
    return importlib.import_module("codegen.rules.unsupported").UNSUPPORTED


# Values covered by transform rules on top of the references (the rule table).
EXTRA_SUPPORTED: dict[str, tuple] = _rule_values()
REASONS: dict[tuple, str] = _reasons()


def supported_values() -> dict[str, set]:
    table: dict[str, set] = {}
    for name in COMPARED:
        values: set = set()
        rows = [row[name] for row in REFERENCES.values() if name in row]
        if not rows:
            values = {ANY}
        for allowed in rows:
            values |= set(allowed)
        values |= set(EXTRA_SUPPORTED.get(name, ()))
        table[name] = values
    return table


SUPPORTED = supported_values()


def realised(features: Features, name: str) -> bool:
    """Whether a rule realises the target's (compared) value of `name`."""
    return compared_value(features, name) in EXTRA_SUPPORTED.get(name, ())


def unsupported(features: Features, extras: list[Unsupported]) -> tuple[Unsupported, ...]:
    out: list[Unsupported] = []
    for name, values in SUPPORTED.items():
        if ANY in values:
            continue
        if name.startswith("moe.") and features.moe is None:
            continue
        value = compared_value(features, name)
        if value == "unknown":
            continue
        if "same_as_qkv" in values and name == "attention.o_bias":
            if value in (False,) or value == features.attention.qkv_bias:
                continue
        if value not in values:
            out.append(
                Unsupported(
                    feature=name,
                    detail=_detail(name, features.get(name), value),
                    evidence=features.evidence.get(
                        name.split(".")[0] if name == "moe" else name, "?"
                    ),
                )
            )
    for extra in extras:
        if extra.feature not in EXTRA_SUPPORTED:
            out.append(extra)
    return tuple(out)


def _detail(name: str, raw, compared) -> str:
    reason = REASONS.get((name, compared))
    return f"{name} = {raw!r}" + (f": {reason}" if reason else ": no reference or rule realises it")
