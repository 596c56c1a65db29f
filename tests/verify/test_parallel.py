"""The references' shard plans, proven on 2 CPU ranks (gloo) against one device.

Each run forks 2 processes on the toy config (a few seconds). Seeded defects show the check
fails, naming the module or the parameter: o_proj sharded column-wise, a per-head QK-norm
left replicated (its gradient never summed over the ranks), MLA's shared RoPE key without
its gradient sum, experts whose partial outputs are never all-reduced. Plan errors (an
entry naming no module, a parameter no entry covers, a style on the wrong module) are
checked in-process, before anything is sharded.
"""

from __future__ import annotations

import pytest

from codegen.cli import main
from codegen.errors import CodegenError
from codegen.models import load_spec
from codegen.verify.cases import base_config
from codegen.verify.parallel import parse_setting, plan_module, verify_parallel

RUNS = [
    (model, setting)
    for model in ("llama", "qwen3", "qwen3_moe", "deepseek_v3")
    for setting in ("tp=2", "fsdp=2", "ep=2")
    if setting != "ep=2" or model in ("qwen3_moe", "deepseek_v3")
]


def _run(model: str, setting: str, **plan_changes):
    spec = load_spec(model)
    plan = {**plan_module(spec).PLAN, **plan_changes} if plan_changes else None
    return verify_parallel(spec, base_config(model)[0], setting, plan=plan)


@pytest.mark.parametrize(("model", "setting"), RUNS)
def test_reference_plan_matches_one_device(model, setting):
    result = _run(model, setting)
    assert result.passed, result.line()
    assert result.logits_diff <= 1e-4


def test_o_proj_sharded_column_wise_fails_naming_it():
    result = _run("qwen3", "tp=2", **{"layers.*.attention.wo": "colwise"})
    assert not result.passed
    assert "in layers.0.attention.wo:" in result.error


def test_qk_norm_without_gradient_sum_fails_naming_it():
    result = _run("qwen3", "tp=2", **{"layers.*.attention.q_norm": "replicate"})
    assert not result.passed
    assert result.error.startswith("first differing gradient: layers.3.attention.q_norm.weight")


def test_mla_rope_key_without_gradient_sum_fails_naming_it():
    result = _run("deepseek_v3", "tp=2", **{"layers.*.attention.wkv_a": "replicate"})
    assert not result.passed
    assert "attention.wkv_a.weight" in result.error


def test_experts_outputs_never_summed_fail(monkeypatch):
    # the forked ranks inherit the defect: each keeps its own experts' partial outputs
    import codegen.layers.parallel as parallel

    monkeypatch.setattr(parallel, "_sum_outputs", lambda tensor, mesh: tensor)
    result = _run("qwen3_moe", "ep=2")
    assert not result.passed
    assert result.error.startswith("logits differ")


def _plan_error(model: str, plan: dict) -> str:
    from codegen.layers.parallel import PlanError, check_plan

    spec = load_spec(model)
    _, built, _ = spec.build(base_config(model)[0])
    with pytest.raises(PlanError) as info:
        check_plan(built, plan)
    return str(info.value)


def test_plan_entry_naming_no_module_fails():
    plan = {**plan_module(load_spec("llama")).PLAN, "layers.*.attention.wqkv": "colwise"}
    assert _plan_error("llama", plan) == (
        "plan entry 'layers.*.attention.wqkv' names no module or parameter of Model"
    )


def test_parameter_left_out_of_the_plan_fails():
    plan = dict(plan_module(load_spec("qwen3")).PLAN)
    del plan["layers.*.attention.k_norm"]
    assert _plan_error("qwen3", plan) == (
        "parameter layers.0.attention.k_norm.weight is not covered by the plan"
    )


def test_style_on_the_wrong_kind_of_module_fails():
    plan = {**plan_module(load_spec("llama")).PLAN, "layers.*.ffn_norm": "colwise"}
    assert _plan_error("llama", plan) == "layers.0.ffn_norm: style 'colwise' needs an nn.Linear"


def test_expert_parallel_on_a_dense_model_fails():
    result = _run("llama", "ep=2")
    assert not result.passed
    assert "ep=2 but the plan shards no experts" in result.error


@pytest.mark.parametrize("text", ["tp=8", "pp=2", "tp", "tp=2,fsdp=4"])
def test_bad_setting_is_one_line(text, capsys):
    with pytest.raises(CodegenError):
        parse_setting(text)
    assert main(["verify", "llama", "--parallel", text]) == 2
    err = capsys.readouterr().err
    assert err.startswith("codegen: error: --parallel") and err.count("\n") == 1


def test_settings_name_the_mesh_dims():
    assert parse_setting("fsdp=2") == {"dp_shard": 2}
    assert parse_setting("tp=2,ep=1") == {"tp": 2}
    assert list(parse_setting("tp=2,fsdp=2")) == ["dp_shard", "tp"]  # outer to inner


def test_tensor_parallel_inside_fsdp_on_four_ranks():
    result = _run("qwen3", "tp=2,fsdp=2")
    assert result.passed, result.line()


def test_a_scaffolded_package_carries_its_plan(tmp_path):
    """glm4 from qwen2: the fused [gate | up] projection's rule adds its strided split."""
    assert main(["scaffold", "glm4", "--out", str(tmp_path)]) == 0
    text = (tmp_path / "glm4" / "parallelize.py").read_text()
    assert '"layers.*.feed_forward.w13": "colwise_gate_up"' in text
    assert "from .parallel import apply_plan" in text
    spec = load_spec("glm4", tmp_path)
    result = verify_parallel(spec, base_config("glm4")[0], "tp=2")
    assert result.passed, result.line()


def test_attention_sinks_are_split_with_the_heads(tmp_path):
    """llama + the sinks rule: its row in rules/sharding.py splits `sinks` per head."""
    from codegen.scaffold.build import Step, build_package

    files = build_package("llama", "sinky", ["llama"], [Step("add_attention_sinks", {})])
    assert '"layers.*.attention.sinks": "head_param"' in files["parallelize.py"]
    (tmp_path / "sinky").mkdir()
    (tmp_path / "__init__.py").write_text('MODEL_SPECS = {"sinky": "sinky.spec:SPEC"}\n')
    for name, text in files.items():
        (tmp_path / "sinky" / name).write_text(text)
    result = verify_parallel(load_spec("sinky", tmp_path), base_config("llama")[0], "tp=2")
    assert result.passed, result.line()
