"""The prose check over small packages: what it reports, and what it leaves alone."""

from codegen.quality.prose import foreign_mentions


def _config(tmp_path, fields: str) -> str:
    path = tmp_path / "configuration_t.py"
    path.write_text(f"class TConfig:\n{fields}")
    return str(path)


def test_a_reference_config_field_the_target_lacks_is_reported(tmp_path):
    configuration = _config(tmp_path, "    hidden_size: int = 8\n")
    files = {
        "args.py": '"""Args."""\n\n\ndef f(x):\n'
        '    """Not mapped: num_nextn_predict_layers (the MTP head)."""\n    return x\n'
    }
    found = foreign_mentions(files, "t", configuration, ["deepseek_v3"])
    assert found == ["args.py:4: names num_nextn_predict_layers"]


def test_a_reference_name_is_reported(tmp_path):
    configuration = _config(tmp_path, "    hidden_size: int = 8\n")
    files = {"model.py": "X = 1  # as Qwen3MoeConfig does\n"}
    assert foreign_mentions(files, "t", configuration, ["qwen3_moe"]) == [
        "model.py:1: names Qwen3MoeConfig"
    ]


def test_the_targets_fields_its_code_and_feature_paths_are_not_reported(tmp_path):
    # sliding_window: the target's field; head_dim: the package's word; a rule's reason
    # names the feature attention.sliding_window, not a config field
    configuration = _config(tmp_path, "    sliding_window: int = 8\n")
    files = {
        "model.py": '"""- no_window (attention.layer_types = \'none\')."""\n\n'
        "# sliding_window keys; head_dim wide\nhead_dim = 4\n"
    }
    assert foreign_mentions(files, "t", configuration, ["qwen2"]) == []
