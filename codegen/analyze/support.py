"""What codegen can generate today, as data: the union of what the references implement.

A feature value outside `SUPPORTED` (or an always-unsupported finding from a detector, such as
learned attention sinks via an output gate) is listed in `Features.unsupported` with its
evidence. When issue 4's rule table lands, `EXTRA_SUPPORTED` is where a rule that realises a
delta (e.g. QK-norm "full", sliding window patterns) declares the values it covers.
"""

from __future__ import annotations

from codegen.analyze.features import Features, Unsupported
from codegen.analyze.reference import ANY, COMPARED, REFERENCES, compared_value

# Values covered by transform rules on top of the references (filled by the rule table).
EXTRA_SUPPORTED: dict[str, tuple] = {}


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
                    detail=f"{name} = {features.get(name)!r}",
                    evidence=features.evidence.get(
                        name.split(".")[0] if name == "moe" else name, "?"
                    ),
                )
            )
    for extra in extras:
        if extra.feature not in EXTRA_SUPPORTED:
            out.append(extra)
    return tuple(out)
