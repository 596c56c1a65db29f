"""codegen.analyze.differential: the lambda_init expression is evaluated, never run."""

import ast
import math

from codegen.analyze.differential import _evaluate, _evaluates_to


def _value(code: str, index: int = 0):
    return _evaluate(ast.parse(code, mode="eval").body, index)


def test_arithmetic_of_the_layer_index_and_math_functions():
    assert math.isclose(
        _value("0.8 - 0.6 * math.exp(-0.3 * layer_id)", 2), 0.8 - 0.6 * math.exp(-0.6)
    )
    assert _evaluates_to("0.8 - 0.6 * math.exp(-0.3 * layer_id)", 0, 0.2)
    assert not _evaluates_to("0.8 - 0.6 * math.exp(-0.3 * layer_id)", 1, 0.2)


def test_anything_else_is_not_evaluated():
    for code in ("__import__('os').getcwd()", "math.__dict__", "other + 1", "math.exp(1, 2)"):
        assert _value(code) is None
    assert _value("1 / 0") is None
