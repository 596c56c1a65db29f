"""`decide`: the truth of a test when the constructor parameters it reads each hold only the
values the reachable calls give them (moshi's `config.num_codebooks if use_flexible_linear
else 1`, the flag never True), None when those do not settle it; a test the values settle
only by an error at run time (`None < 1`) is not decided."""

from __future__ import annotations

import libcst as cst
import pytest

from codegen.analyze.constructor_values import decide


@pytest.mark.parametrize(
    "test, fixed, decided",
    [
        ("flag", {"flag": {False}}, False),
        ("not flag", {"flag": {False}}, True),
        ("flag", {"flag": {False, True}}, None),
        ("flag and config.x", {"flag": {False}}, False),
        ("flag and config.x", {"flag": {True}}, None),  # then config.x decides
        ("flag or config.x", {"flag": {True}}, True),
        ("config.x or flag", {"flag": {False}}, None),
        ("kind == 'wide'", {"kind": {"narrow"}}, False),
        ("size is None", {"size": {None}}, True),
        ("size > 1", {"size": {1, 2}}, None),
        ("size < 1", {"size": {None}}, None),  # an error at run time: not decided
        ("other", {"flag": {False}}, None),
    ],
)
def test_what_the_parameters_decide(test, fixed, decided) -> None:
    values = {k: frozenset(v) for k, v in fixed.items()}
    assert decide(cst.parse_expression(test), values) is decided
