"""DC1: a condition made of literals (`if None:`, `x if True else y`, `False or x`)."""

from __future__ import annotations

from codegen.quality.conditions import decisions, describe
from codegen.quality.facts import code
from codegen.quality.rule import Finding, Rule


class ConstantCondition(Rule):
    """A condition whose outcome its literals already fix: one branch is dead.

    Reported: tests of `if`/`elif`/`x if c else y` that are literal (`if (None):`,
    `if not 0:`, `1 == 1`), a `while` that never runs, and `and`/`or` operands that are
    literal where only their truth counts (`True and x`, `if x or False:`).
    """

    code = "DC1"
    VALID = [
        "if x:\n    y = 1\n",
        "while True:\n    break\n",
        "head_dim = getattr(config, 'head_dim', None) or 64\n",
        "z = x or None\n",  # a value, not a condition: `None` is what falsy x becomes
        "y = a if a is not None else b\n",
    ]
    INVALID = [
        "if None:\n    y = 1\n",
        "if (None):\n    y = 1\nelse:\n    y = 2\n",
        "if True:\n    y = 1\n",
        "if x:\n    pass\nelif False:\n    y = 2\n",
        "y = a if None else b\n",
        "while False:\n    y = 1\n",
        "y = () or ()\n",
        "if x and True:\n    y = 1\n",
        "if not 0:\n    y = 1\n",
    ]

    def check(self, facts):
        for filename, module_facts in facts.files.items():
            for decision in decisions(module_facts):
                yield Finding(
                    filename,
                    module_facts.line(decision.node),
                    self.code,
                    describe(decision, code(decision.node)),
                )
