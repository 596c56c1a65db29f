"""derived_fields: which config fields a configuration class computes from which."""

from codegen.analyze.derived_fields import derived_fields

SOURCE = """
class ToyConfig:
    def __post_init__(self, **kwargs):
        self.sliding_window = self.sliding_window if self.use_sliding_window else 0
        if self.layer_types is None:
            self.layer_types = [
                "sliding_attention" if i < self.max_window_layers and self.use_sliding_window
                else "full_attention"
                for i in range(self.num_hidden_layers)
            ]
        self.head_dim = self.head_dim or self.hidden_size // self.num_attention_heads
"""


def test_switches_map_to_the_fields_they_become():
    derived = derived_fields(SOURCE)
    assert derived["use_sliding_window"] == {"sliding_window", "layer_types"}
    assert derived["max_window_layers"] == {"layer_types"}
    assert "head_dim" in derived["hidden_size"]


def test_a_field_is_not_derived_from_itself():
    assert "sliding_window" not in derived_fields(SOURCE).get("sliding_window", set())


def test_the_real_qwen2_moe_configuration():
    import os

    import transformers

    path = os.path.join(
        os.path.dirname(transformers.__file__),
        "models",
        "qwen2_moe",
        "configuration_qwen2_moe.py",
    )
    with open(path) as handle:
        derived = derived_fields(handle.read())
    assert "layer_types" in derived["use_sliding_window"]
