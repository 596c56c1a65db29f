"""The per-layer base found in the ways a backbone writes the loop over it (`_swapped_base`
on source snippets): a loop over the list, a loop over (type, base) pairs built from a `zip`
(directly or through an attribute), nested loops per type then per base, and which
rope_parameters entry the base is swapped into."""

import libcst as cst
import pytest

from codegen.analyze.layer_rope_bases import _swapped_base

FLAT = {"field": "bases", "base": "rope_parameters.rope_theta"}
PER_TYPE = {
    "field": "bases",
    "base": "rope_parameters[<layer type>].rope_theta",
    "types": "layer_types",
}

FORMS = {
    "one loop over the list": (
        """
for theta in sorted({theta for theta in config.bases if theta}):
    p = {**config.rope_parameters, "rope_theta": theta}
""",
        FLAT,
    ),
    "pairs through an attribute": (
        """
self.keys = sorted({(t, b) for t, b in zip(config.layer_types, config.bases) if b})
for layer_type, theta in self.keys:
    p = {**config.rope_parameters[layer_type], "rope_theta": theta}
""",
        PER_TYPE,
    ),
    "pairs iterated directly": (
        """
for kind, base in sorted(set(zip(self.config.layer_types, self.config.bases))):
    p = {**self.config.rope_parameters[kind], "rope_theta": base}
""",
        PER_TYPE,
    ),
    "a loop per type, then per base": (
        """
for layer_type in sorted(set(config.layer_types)):
    for theta in sorted({b for t, b in zip(config.layer_types, config.bases) if b}):
        p = {**config.rope_parameters[layer_type], "rope_theta": theta}
""",
        PER_TYPE,
    ),
    "one fixed type's entry": (
        """
for theta in config.bases:
    p = {**config.rope_parameters["full_attention"], "rope_theta": theta}
""",
        {"field": "bases", "base": 'rope_parameters["full_attention"].rope_theta'},
    ),
}


@pytest.mark.parametrize("form", sorted(FORMS))
def test_the_base_list_and_the_entry_it_replaces(form):
    body, expected = FORMS[form]
    method = cst.parse_module("def __init__(self, config):\n" + _indent(body)).body[0]
    fact, node = _swapped_base(method)
    assert fact == expected
    assert isinstance(node, cst.Dict)


def test_a_base_from_no_config_list_is_not_one():
    body = 'for theta in (1e4, 1e6):\n    p = {**config.rope_parameters, "rope_theta": theta}\n'
    method = cst.parse_module("def __init__(self, config):\n" + _indent(body)).body[0]
    assert _swapped_base(method) is None


def _indent(text: str) -> str:
    return "".join(f"    {line}\n" for line in text.strip("\n").splitlines())
