"""The test file written beside a generated package: the verify protocol, as pytest."""

from __future__ import annotations

TEMPLATE = '''"""{title}: parity of the generated package with transformers (codegen verify)."""

from pathlib import Path

import pytest

from codegen.models import load_spec
from codegen.verify.cases import default_cases
from codegen.verify.run import declined, verify_case

SPEC = load_spec("{name}", Path(__file__).resolve().parents[1])


@pytest.mark.parametrize("case", default_cases(SPEC), ids=lambda case: case.label)
def test_parity_with_transformers(case):
    """The default config and every config switch setting: parity, or (for a setting
    only) a one-line refusal from from_hf_config."""
    results = verify_case(SPEC, case, ["fp32", "bf16"])
    if declined(results):
        pytest.skip(declined(results))
    for result in results:
        assert not result.missing_keys, result.missing_keys
        assert not result.unexpected_keys, result.unexpected_keys
        assert result.roundtrip_exact
        assert result.status != "fail", result
'''


def test_file(name: str, title: str) -> tuple[str, str]:
    """(filename, text) of the generated test."""
    return f"test_{name}.py", TEMPLATE.format(name=name, title=title)
