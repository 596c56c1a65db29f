"""LayerKvInputs: before/after on the qwen3 reference as `log_scaled_layers` leaves it (layers
windowed by type, a relative position bias, the full layers' `LogScaledAttention`)."""

from __future__ import annotations

import pytest

from codegen.transforms.edits import EditError
from codegen.transforms.layer_kv_inputs import LayerKvInputs
from codegen.transforms.log_scaled_layers import LogScaledLayers
from codegen.transforms.test_log_scaled_layers import FOUND, _before, _method

INPUTS = {
    "norms": {"q": "q_input_layernorm", "k": "k_input_layernorm", "v": "v_input_layernorm"},
    "reads": {"k": ("k_proj",), "v": ("v_proj",)},
}


def _scaled():
    package = _before()
    LogScaledLayers().apply(package, log_scaling=FOUND)
    return package


def _after(inputs=INPUTS) -> dict[str, str]:
    package = _scaled()
    LayerKvInputs().apply(package, inputs=inputs)
    return package.render()


def test_the_full_layers_keys_and_values_read_the_input_through_norms_of_their_own():
    before = _scaled().render()
    assert "key_norm" not in before["model.py"]
    after = _after()
    model = after["model.py"]
    block = _method(model, "TransformerBlock", "__init__")
    built = next(s for s in block if s.startswith("if self.sliding:"))
    assert built.splitlines()[1].strip().startswith("self.attention_norm = ")
    for norm in ("query_norm", "key_norm", "value_norm"):
        assert f"self.{norm} = " in built.split("else:")[1]
    forward = _method(model, "TransformerBlock", "forward")
    assert forward[0] == (
        "h = x + (self.attention(self.attention_norm(x), mask) if self.sliding else"
        " self.attention(self.query_norm(x), mask, log_scale, self.key_norm(x),"
        " self.value_norm(x)))"
    ), forward[0]
    full = _method(model, "LogScaledAttention", "forward")
    assert any("self.wk(xk)" in s for s in full) and any("self.wv(xv)" in s for s in full)
    assert not any("self.wk(x)" in s or "self.wv(x)" in s for s in full)
    # the sliding layers' attention reads one input, as before
    plain = _method(model, "Attention", "forward")
    assert any("self.wk(x)" in s for s in plain) and not any("xk" in s for s in plain)
    adapter = after["state_dict_adapter.py"]
    for hf, house in (("q_input", "query"), ("k_input", "key"), ("v_input", "value")):
        row = f'"model.layers.{{}}.{hf}_layernorm.weight": "layers.{{}}.{house}_norm.weight"'
        assert row in adapter


@pytest.mark.parametrize(
    "inputs",
    [
        {**INPUTS, "reads": {"k": ("k_proj",)}},
        {**INPUTS, "norms": {"q": "q_input_layernorm"}},
        {**INPUTS, "reads": {"k": ("kv_proj",), "v": ("v_proj",)}},  # no adapter row
    ],
)
def test_what_it_cannot_build_is_an_error(inputs):
    with pytest.raises(EditError):
        LayerKvInputs().apply(_scaled(), inputs=inputs)


def test_without_the_full_layers_class_it_is_an_error():
    with pytest.raises(EditError, match="LogScaledAttention"):
        LayerKvInputs().apply(_before(), inputs=INPUTS)


def test_outputs_reaching_other_norms_are_an_error():
    """The block attention residuals' outputs must reach the query, key and value norms."""
    residuals = {
        "layer": {
            "attention_input": {
                "queries": [1, 3],
                "reads": (("q_input_layernorm", "hidden_states"),) * 3,
            }
        }
    }
    with pytest.raises(EditError, match="other norms"):
        LayerKvInputs().apply(_scaled(), inputs=INPUTS, residuals=residuals)
