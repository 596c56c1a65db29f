"""_kv_heads: the kv head count an attention computes from switches, restated over hf_config."""

from types import SimpleNamespace

from codegen.models import references_dir
from codegen.scaffold.source import SourcePackage
from codegen.transforms._kv_heads import kv_heads_expression, set_kv_heads_from_source

ATTENTION = """
class Attention(nn.Module):
    def __init__(self, config):
        self.split_layout = config.split_layout
        self.one_kv = config.one_kv
        self.num_kv_heads = config.num_kv_heads if (self.split_layout or not self.one_kv) else 1


class Layer(nn.Module):
    def __init__(self, config):
        if config.split_layout:  # read elsewhere too: another structure, not only the count
            self.extra = Norm()
"""


def _features(tmp_path, source, **configured):
    path = tmp_path / "modeling_x.py"
    path.write_text(source)
    switches = tuple(SimpleNamespace(field=k, configured=v) for k, v in configured.items())
    return SimpleNamespace(source=SimpleNamespace(modeling=str(path)), switches=switches)


def test_switches_only_the_attention_reads_stay_and_others_fold(tmp_path):
    features = _features(tmp_path, ATTENTION, split_layout=False, one_kv=True)
    assert kv_heads_expression(features) == "hf_config.num_kv_heads if not hf_config.one_kv else 1"
    folded_on = _features(tmp_path, ATTENTION, split_layout=True, one_kv=True)
    assert kv_heads_expression(folded_on) == "hf_config.num_kv_heads"


def test_a_plain_field_or_a_count_without_kv_field_is_left_to_config_alignment(tmp_path):
    plain = ATTENTION.replace(
        "config.num_kv_heads if (self.split_layout or not self.one_kv) else 1",
        "config.num_key_value_heads",
    )
    assert kv_heads_expression(_features(tmp_path, plain)) is None
    no_kv_field = ATTENTION.replace(
        "config.num_kv_heads if (self.split_layout or not self.one_kv) else 1",
        "1 if self.one_kv else config.num_attention_heads",
    )
    assert kv_heads_expression(_features(tmp_path, no_kv_field, one_kv=True)) is None


def test_from_hf_config_computes_the_count(tmp_path):
    package = SourcePackage.from_directory(references_dir() / "llama")
    before = package.render()["args.py"]
    assert "n_kv_heads=hf_config.num_key_value_heads," in before
    features = _features(tmp_path, ATTENTION, split_layout=False, one_kv=True)
    set_kv_heads_from_source(package, features)
    after = package.render()["args.py"]
    assert "n_kv_heads=hf_config.num_kv_heads if not hf_config.one_kv else 1," in after
    assert (
        after.replace(
            "hf_config.num_kv_heads if not hf_config.one_kv else 1", "hf_config.num_key_value_heads"
        )
        == before
    )
