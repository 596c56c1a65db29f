"""kv_heads_expression: the kv head count an attention computes, restated over hf_config."""

from types import SimpleNamespace

from codegen.transforms._kv_heads import kv_heads_expression

BIGCODE = """
class Attention:
    def __init__(self, config):
        self.multi_query = config.multi_query
        self.num_heads = config.num_attention_heads
        self.kv_heads = 1 if self.multi_query else self.num_heads
"""

PLAIN = """
class Attention:
    def __init__(self, config):
        self.num_key_value_heads = config.num_key_value_heads
"""


def _features(tmp_path, source, switches=()):
    path = tmp_path / "modeling_x.py"
    path.write_text(source)
    return SimpleNamespace(source=SimpleNamespace(modeling=str(path)), switches=switches)


def test_a_count_chosen_by_a_switch_is_restated(tmp_path):
    """gpt_bigcode reads no kv field: one kv head under multi_query, else one per head."""
    restated = kv_heads_expression(_features(tmp_path, BIGCODE))
    assert restated == "1 if hf_config.multi_query else hf_config.num_attention_heads"


def test_a_switch_read_elsewhere_too_is_folded_to_its_setting(tmp_path):
    model = "\nclass Model:\n    def f(self, config):\n        return config.multi_query\n"
    source = BIGCODE + model
    switches = (SimpleNamespace(field="multi_query", configured=True),)
    assert kv_heads_expression(_features(tmp_path, source, switches)) == "1"


def test_a_plain_field_is_left_to_config_alignment(tmp_path):
    assert kv_heads_expression(_features(tmp_path, PLAIN)) is None
