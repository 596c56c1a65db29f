"""The rule table: which transform realises which architecture feature.

Each group file holds a list `RULES` of `codegen.scaffold.rule.Rule` rows. The order of
`GROUPS` is the order transforms run in (structure before sizes, attention before FFN).
Reading a row answers "what does codegen do for <feature>?"; `codegen scaffold --explain`
prints the rows a plan uses, with the evidence that triggered each.
"""

from __future__ import annotations

import importlib

GROUPS = (
    "rope",
    "attention",
    "ffn",
    "norm",
    "moe",
    "experts",
    "router",
    "embedding",
    "positions",
    "layers",
)


def all_rules():
    rules = []
    for group in GROUPS:
        try:
            module = importlib.import_module(f"{__name__}.{group}")
        except ModuleNotFoundError as err:
            if err.name != f"{__name__}.{group}":
                raise
            continue
        rules.extend(module.RULES)
    return rules
