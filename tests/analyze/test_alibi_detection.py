"""ALiBi is named wherever the per-head slope bias reaches the attention scores.

Bloom hands the bias to its kernel as an input; MPT crops it to the query/key lengths first
(`bias[:, q0:, k0:]`) and adds it to the scores. Both are `attention.alibi`, cited with the
slopes' function and the attention site, on renamed copies too, so the plan never goes ahead
with positions it does not realise.
"""

from __future__ import annotations

import re

import pytest
from analyze_helpers import rename_model

from codegen.analyze.analysis import analyze

CITE = re.compile(r"^modeling_\w+\.py:\d+$")


def _alibi(features):
    found = [u for u in features.unsupported if u.feature == "attention.alibi"]
    assert len(found) == 1, features.unsupported
    return found[0]


@pytest.mark.parametrize("model_type", ["bloom", "mpt"])
def test_alibi_is_named_with_its_evidence(model_type: str, tmp_path) -> None:
    for target in (model_type, rename_model(model_type, "zorblax", str(tmp_path))[0]):
        features = analyze(target)
        gap = _alibi(features)
        assert CITE.match(gap.evidence), gap.evidence
        assert re.search(r"slopes at modeling_\w+\.py:\d+", gap.detail), gap.detail
        assert features.rope.type == "none"
        assert "ALiBi" in features.evidence["rope.type"]
