"""The static interpreter and config reading: plain data only, unknown instead of guesses."""

from __future__ import annotations

import libcst as cst

from codegen.analyze.config import ConfigBuilder
from codegen.analyze.evaluate import UNKNOWN, ConfigObj, Frame, Interp, Unknown
from codegen.analyze.locate import auto_mappings, model_type_files
from codegen.analyze.source import Project


def _eval(tmp_path, source: str, expr: str):
    path = tmp_path / "mod.py"
    path.write_text(source)
    project = Project()
    sf = project.load(str(path))
    interp = Interp(project)
    try:
        return interp.eval(cst.parse_expression(expr), Frame(sf))
    except Unknown:
        return UNKNOWN


def test_plain_data_is_evaluated(tmp_path) -> None:
    src = "N = 4\nTABLE = {'a': [i * N for i in range(3)]}\ndef f(x, y=2):\n    return x ** y\n"
    assert _eval(tmp_path, src, "TABLE['a'][2] + f(3)") == 17
    assert _eval(tmp_path, src, "sorted({3, 1, 2})") == [1, 2, 3]
    assert _eval(tmp_path, src, "'x' if N > 3 else 'y'") == "x"


def test_nothing_outside_the_whitelist_runs(tmp_path) -> None:
    src = "import os\n"
    for expr in (
        "__import__('os').system('true')",
        "open('/etc/passwd').read()",
        "os.system('true')",
        "eval('1 + 1')",
        "exec('x = 1')",
        "getattr(os, 'system')('true')",
        "(lambda: 0).__globals__",
        "'x' * 10 ** 9",
        "2 ** 10 ** 9",
    ):
        value = _eval(tmp_path, src, expr)
        assert value is UNKNOWN or type(value).__name__ in ("CallRec", "ExtRef"), expr


def test_loops_are_bounded(tmp_path) -> None:
    src = "def spin():\n    x = 0\n    while True:\n        x += 1\n    return x\n"
    assert _eval(tmp_path, src, "spin()") is UNKNOWN  # `while` is not interpreted
    assert _eval(tmp_path, src, "[i for i in range(10 ** 8)]") is UNKNOWN


def _config(model_type: str, values: dict | None = None) -> ConfigObj:
    _, configuration, name = model_type_files(model_type)
    project = Project()
    cls = project.load(configuration).classes[name]
    return ConfigBuilder(Interp(project)).build(cls, values or {})


def test_config_defaults_and_post_init() -> None:
    qwen2 = _config("qwen2")
    assert qwen2.attrs["sliding_window"] is None  # use_sliding_window=False in __post_init__
    assert qwen2.attrs["num_key_value_heads"] == 32
    assert qwen2.attrs["rope_parameters"] == {"rope_theta": 10000.0, "rope_type": "default"}
    gemma3 = _config("gemma3_text")
    assert gemma3.attrs["layer_types"][:6] == ["sliding_attention"] * 5 + ["full_attention"]
    assert gemma3.attrs["rope_parameters"]["full_attention"]["rope_theta"] == 1_000_000.0


def test_config_json_values_and_legacy_rope_scaling() -> None:
    cfg = _config(
        "llama",
        {
            "num_key_value_heads": 8,
            "rope_scaling": {"type": "linear", "factor": 2.0},
            "rope_theta": 5e5,
        },
    )
    assert cfg.attrs["num_key_value_heads"] == 8
    assert cfg.origin["num_key_value_heads"] == "config.json"
    assert cfg.attrs["rope_parameters"]["rope_type"] == "linear"
    assert cfg.attrs["rope_parameters"]["rope_theta"] == 5e5


def test_attribute_map_and_nested_sub_configs() -> None:
    dbrx = _config("dbrx", {"attn_config": {"kv_n_heads": 4}})
    assert dbrx.attrs["attn_config"].attrs["kv_n_heads"] == 4
    assert dbrx.attrs["num_key_value_heads"] == 4
    moe = _config("qwen3_moe")
    assert moe.lookup("num_experts") == moe.attrs["num_local_experts"] == 128  # attribute_map alias


def test_model_type_mapping_is_read_statically() -> None:
    configs, special = auto_mappings()
    assert configs["qwen3"] == "Qwen3Config"
    assert special["gemma3_text"] == "gemma3"


def test_a_copied_config_keeps_its_values_and_its_edits_stay_its_own(tmp_path) -> None:
    path = tmp_path / "mod.py"
    path.write_text("import copy\n")
    project = Project()
    sf = project.load(str(path))
    interp = Interp(project)
    config = ConfigObj(None)
    config.attrs["decoder_layers"] = 3
    frame = Frame(sf)
    frame.locals["config"] = config
    copied = interp.eval(cst.parse_expression("copy.deepcopy(config)"), frame)
    assert isinstance(copied, ConfigObj) and copied is not config
    assert copied.attrs["decoder_layers"] == 3
    copied.attrs["is_decoder"] = True
    assert "is_decoder" not in config.attrs


def test_the_else_of_a_missing_packages_import_is_the_code_indexed(tmp_path) -> None:
    path = tmp_path / "mod.py"
    path.write_text(
        "if probe():\n"
        "    from surely_no_such_package_here import Block\n"
        "else:\n"
        "    class Block:\n"
        "        def forward(self, x):\n"
        "            return x\n"
        "if probe():\n"
        "    import os\n"
        "else:\n"
        "    class Other:\n"
        "        pass\n"
    )
    sf = Project().load(str(path))
    assert "forward" in sf.classes["Block"].methods
    assert "Other" not in sf.classes  # os is found: the body is what runs
