"""Every rule over its own VALID and INVALID examples (Fixit's way of testing rules)."""

import pytest

from codegen.quality.check import check_sources
from codegen.quality.rules import RULES


def _files(example):
    return example if isinstance(example, dict) else {"model.py": example}


CASES = [
    pytest.param(rule, example, expect, id=f"{rule.code}-{expect}-{i}")
    for rule in RULES
    for expect, examples in (("valid", rule.VALID), ("invalid", rule.INVALID))
    for i, example in enumerate(examples)
]


@pytest.mark.parametrize("rule, example, expect", CASES)
def test_rule_examples(rule, example, expect):
    findings = [f for f in check_sources(_files(example)) if f.code == rule.code]
    if expect == "valid":
        assert findings == []
    else:
        assert findings, "no finding"


def test_every_rule_has_examples_of_both_kinds():
    for rule in RULES:
        assert rule.VALID and rule.INVALID, rule.code
        assert rule.__doc__, rule.code


def test_codes_are_unique():
    assert len({rule.code for rule in RULES}) == len(RULES)
