"""The references' shard plans, proven on 2 CPU ranks (gloo) against one device.

Each run forks 2 processes on the toy config (a few seconds). Seeded defects show the check
fails, naming the module or the parameter: o_proj sharded column-wise, a per-head QK-norm
left replicated (its gradient never summed over the ranks), MLA's shared RoPE key without
its gradient sum, experts whose partial outputs are never all-reduced. Plan errors (an
entry naming no module, a parameter no entry covers, a style on the wrong module) are
checked in-process, before anything is sharded.
"""

from __future__ import annotations

import importlib

import pytest
import torch

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
    # the forked ranks inherit the defect: each keeps its hidden-dim shard's partial outputs
    import codegen.layers.parallel as parallel

    monkeypatch.setattr(parallel, "_sum_outputs", lambda tensor, mesh: tensor)
    result = _run("qwen3_moe", "tp=2")
    assert not result.passed
    assert result.error.startswith("logits differ")


def test_pairs_dispatched_to_the_wrong_rank_fail(monkeypatch):
    # expert parallel: each (token, expert) pair goes to the other rank than its expert's
    import codegen.layers.parallel as parallel

    monkeypatch.setattr(parallel, "_owner", lambda experts, local, *_: 1 - experts // local)
    result = _run("qwen3_moe", "ep=2")
    assert not result.passed
    assert "layers.1.moe.experts" in result.error


def test_experts_rows_split_in_the_wrong_order_fail_naming_the_experts(monkeypatch):
    # the stacked experts' rows loaded rolled by half: each ep rank holds the other's experts
    # while the dispatch sends it the pairs of its own
    import codegen.layers.parallel as parallel

    original = parallel._held_rows

    def rolled(module):
        count = getattr(module, "num_experts", None)
        return original(module) if count is None else torch.arange(count).roll(count // 2)

    monkeypatch.setattr(parallel, "_held_rows", rolled)
    result = _run("qwen3_moe", "ep=2")
    assert not result.passed
    assert result.error.startswith("logits differ"), result.error
    assert "the forward first differs at layers.1.moe.experts (" in result.error, result.error


@pytest.mark.parametrize("setting", ["ep=2", "fsdp=2,ep=2"])
def test_combine_dropping_the_routing_weights_fails_naming_the_experts(monkeypatch, setting):
    # the pairs' outputs come back unweighted: every token sums its k experts' outputs
    import codegen.layers.parallel as parallel

    original = parallel._dispatch_combine

    def unweighted(forward, x, indices, weights, local, mesh):
        def run(rows, experts, got):
            return forward(rows, experts, torch.ones_like(got))

        return original(run, x, indices, weights, local, mesh)

    monkeypatch.setattr(parallel, "_dispatch_combine", unweighted)
    result = _run("qwen3_moe", setting)
    assert not result.passed
    assert "the forward first differs at layers.1.moe.experts (" in result.error, result.error


def test_router_rows_loaded_rolled_fail_naming_the_router(monkeypatch):
    # each rank's router scores the experts under each other's rows: it routes apart
    import codegen.layers.parallel as parallel

    original = parallel.load_full_state_dict

    def rolled(model, state):
        state = {k: v.roll(1, 0) if k.endswith("moe.gate.weight") else v for k, v in state.items()}
        original(model, state)

    monkeypatch.setattr(parallel, "load_full_state_dict", rolled)
    result = _run("qwen3_moe", "ep=2")
    assert not result.passed
    assert "the forward first differs at layers.1.moe.gate (" in result.error, result.error


def test_expert_gradients_not_averaged_over_ep_fail(monkeypatch):
    # each ep rank runs its own tokens: an expert's gradient, summed over the ranks' tokens
    # by the all-to-all, must be divided by ep like the dense ones FSDP2 averages
    import codegen.layers.parallel as parallel

    monkeypatch.setattr(parallel._MeanGrad, "backward", staticmethod(lambda ctx, g: (g, None)))
    result = _run("qwen3_moe", "ep=2")
    assert not result.passed
    assert result.error.startswith("first differing gradient: layers.3.moe.experts")


def test_dense_gradients_not_averaged_over_ep_fail(monkeypatch):
    # without data parallelism over ep the dense parameters keep their rank's tokens' part
    import codegen.layers.parallel as parallel

    monkeypatch.setattr(parallel, "_data_parallel", lambda *args: None)
    result = _run("qwen3_moe", "ep=2")
    assert not result.passed
    assert result.error.startswith("first differing gradient: output.weight")


def test_ep_ranks_run_their_own_tokens(tmp_path, monkeypatch):
    """Under ep=2 each rank routes its own half of the batch (one 32-token row of two),
    not a copy of the whole batch."""
    import codegen.layers.parallel as parallel

    original = parallel._dispatch_combine

    def spy(forward, x, indices, weights, local, mesh):
        seen = tmp_path / f"rank{mesh.get_local_rank()}"
        if not seen.exists():
            seen.write_text(str(x.shape[0]))
        return original(forward, x, indices, weights, local, mesh)

    monkeypatch.setattr(parallel, "_dispatch_combine", spy)
    result = _run("qwen3_moe", "ep=2")
    assert result.passed, result.line()
    assert [(tmp_path / f"rank{r}").read_text() for r in (0, 1)] == ["32", "32"]


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


def test_plan_over_a_model_without_layers_applies():
    """num_hidden_layers=0 (a switch setting verify runs) leaves `layers.*` entries nothing to
    shard; that is not a misnamed module (hy_v3's setting failed here)."""
    from codegen.layers.parallel import check_plan

    spec = load_spec("llama")
    config = base_config("llama")[0]
    config.num_hidden_layers = 0
    _, built, _ = spec.build(config)
    check_plan(built, plan_module(spec).PLAN)  # raises PlanError on a bad plan


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


def _package(tmp_path, reference: str, name: str, steps: list[tuple[str, dict]]):
    """`reference` + the steps, written under tmp_path; (spec, parallelize.py's text)."""
    from codegen.scaffold.build import Step, build_package

    files = build_package(reference, name, [reference], [Step(t, p) for t, p in steps])
    (tmp_path / name).mkdir()
    (tmp_path / "__init__.py").write_text(f'MODEL_SPECS = {{"{name}": "{name}.spec:SPEC"}}\n')
    for file, text in files.items():
        (tmp_path / name / file).write_text(text)
    return load_spec(name, tmp_path), files["parallelize.py"]


def test_attention_sinks_are_split_with_the_heads(tmp_path):
    """llama + the sinks rule: its row in rules/sharding.py splits `sinks` per head."""
    spec, plan = _package(tmp_path, "llama", "sinky", [("add_attention_sinks", {})])
    assert '"layers.*.attention.sinks": "head_param"' in plan
    result = verify_parallel(spec, base_config("llama")[0], "tp=2")
    assert result.passed, result.line()


@pytest.mark.parametrize(
    ("layout", "style", "kv_heads"),
    [
        ("contiguous", "colwise_qkv", 2),
        ("grouped", "colwise_qkv_grouped", 2),
        ("grouped", "colwise_qkv_grouped", 1),
        ("interleaved", "colwise", 4),
    ],
)
def test_fused_qkv_is_split_by_its_row_layout(tmp_path, layout, style, kv_heads):
    """llama's toy has 4 heads: over 2 kv heads each rank holds one kv head's q, k and v,
    whether the fused rows are [q | k | v] (phi3) or grouped per kv head; over one kv head
    (grouped, multi-query) each rank holds its q heads and the whole group's k and v."""
    spec, plan = _package(tmp_path, "llama", "fused", [("fuse_qkv", {"layout": layout})])
    assert f'"layers.*.attention.wqkv": "{style}"' in plan
    config = base_config("llama")[0]
    config.num_key_value_heads = kv_heads
    result = verify_parallel(spec, config, "tp=2")
    assert result.passed, result.line()


def test_grouped_qkv_sharded_as_contiguous_fails_naming_it(tmp_path):
    spec, _ = _package(tmp_path, "llama", "fused", [("fuse_qkv", {"layout": "grouped"})])
    plan = {**plan_module(spec).PLAN, "layers.*.attention.wqkv": "colwise_qkv"}
    result = verify_parallel(spec, base_config("llama")[0], "tp=2", plan=plan)
    assert not result.passed
    assert (
        "the forward first differs at the input of layers.0.attention.wo after "
        "layers.0.attention.wqkv's output agreed"
    ) in result.error


def test_one_kv_group_split_as_it_lies_fails(tmp_path):
    """Grouped rows with one kv head are [q | k | v] of one group: a plain row split gives
    rank 1 the tail of q with k and v, and its attention cannot form a head."""
    spec, _ = _package(tmp_path, "llama", "fused", [("fuse_qkv", {"layout": "grouped"})])
    config = base_config("llama")[0]
    config.num_key_value_heads = 1
    plan = {**plan_module(spec).PLAN, "layers.*.attention.wqkv": "colwise"}
    result = verify_parallel(spec, config, "tp=2", plan=plan)
    assert not result.passed
    assert "in layers.0.attention" in result.error


FUSED_EXPERTS = [
    ("concat", "tp=2"),  # [gate | up]: each rank its slice of both halves
    ("interleaved", "tp=2"),  # gpt_oss: alternating gate/up features split as they lie
    ("concat", "ep=2"),
]


@pytest.mark.parametrize(("layout", "setting"), FUSED_EXPERTS)
def test_fused_biased_experts_are_split_by_their_layout(tmp_path, layout, setting):
    """qwen3_moe's experts held as the checkpoint's transposed fused tensors with biases
    (gpt_oss's form): the hidden dim is found from the forward, the down bias is added
    once under tp."""
    steps = [("fuse_experts", {"layout": layout, "transposed": True}), ("set_expert_bias", {})]
    spec, plan = _package(tmp_path, "qwen3_moe", "fusedmoe", steps)
    want = "expert_colwise_gate_up" if layout == "concat" else "expert_colwise"
    assert f'"layers.*.moe.experts.w13": "{want}"' in plan
    assert '"layers.*.moe.experts.w2_bias": "expert_bias"' in plan
    result = verify_parallel(spec, base_config("qwen3_moe")[0], setting)
    assert result.passed, result.line()


def test_down_bias_added_on_every_rank_fails(tmp_path, monkeypatch):
    import codegen.layers.parallel as parallel

    steps = [("fuse_experts", {"layout": "concat", "transposed": True}), ("set_expert_bias", {})]
    spec, _ = _package(tmp_path, "qwen3_moe", "fusedmoe", steps)
    # the package runs its own copy of parallel.py: seed the defect there
    vendored = importlib.import_module(spec.model.__module__.rpartition(".")[0] + ".parallel")
    for module in (parallel, vendored):
        monkeypatch.setattr(module, "_shard_experts", _every_rank_adds_the_bias(module))
    result = verify_parallel(spec, base_config("qwen3_moe")[0], "tp=2")
    assert not result.passed
    assert result.error.startswith("logits differ")


def _every_rank_adds_the_bias(module):
    original = module._shard_experts

    def shard(*args, **kwargs):
        original(*args, **kwargs)
        return []  # no bias kept for rank 0 alone

    return shard


def test_an_experts_parameter_left_out_of_the_plan_fails(tmp_path):
    from codegen.layers.parallel import PlanError, check_plan

    steps = [("fuse_experts", {"layout": "concat", "transposed": True}), ("set_expert_bias", {})]
    spec, _ = _package(tmp_path, "qwen3_moe", "fusedmoe", steps)
    plan = dict(plan_module(spec).PLAN)
    del plan["layers.*.moe.experts.w13_bias"]
    _, built, _ = spec.build(base_config("qwen3_moe")[0])
    with pytest.raises(PlanError, match="parameter layers.1.moe.experts.w13_bias is not covered"):
        check_plan(built, plan)


def test_an_empty_parameter_is_left_out_of_fsdp():
    """deepseek_v3 with no shared experts builds them zero-wide (as dots1's toy does):
    FSDP2's gradient reduce-scatter refuses an empty tensor, so it is not sharded."""
    spec = load_spec("deepseek_v3")
    config = base_config("deepseek_v3")[0]
    config.n_shared_experts = 0
    _, built, _ = spec.build(config)
    assert any(not param.numel() for param in built.parameters())
    result = verify_parallel(spec, config, "fsdp=2")
    assert result.passed, result.line()


def test_a_config_without_moe_layers_is_replicated_over_ep():
    """qwen3_moe with num_experts=0: its plan's experts entries are optional, nothing is
    split over ep (a dense plan under ep still fails, above)."""
    config = base_config("qwen3_moe")[0]
    config.num_experts = 0
    result = verify_parallel(load_spec("qwen3_moe"), config, "ep=2")
    assert result.passed, result.line()


def test_an_expert_count_ep_does_not_split_is_refused_not_failed():
    """qwen3_moe with 5 experts under ep=2: the plan is right, the model's count cannot be
    split over the mesh; the package declines it before anything is sharded (a refused
    row in one line naming the experts module), as from_hf_config declines a config."""
    config = base_config("qwen3_moe")[0]
    config.num_experts = 5
    result = verify_parallel(load_spec("qwen3_moe"), config, "ep=2")
    assert result.status == "refused", result.line()
    assert result.refused.startswith("layers.1.moe.experts: 5 routed experts do not split")
    assert "\n" not in result.refused and result.line().startswith("REFUSED ep=2")


@pytest.mark.parametrize(
    "step",
    [("fuse_qkv", {"layout": "contiguous"}), ("fuse_gate_up", {"layout": "concat"})],
)
def test_fused_projections_under_tp_inside_fsdp(tmp_path, step):
    """4 ranks: FSDP2 cannot split a [gate | up] weight again on the dim tp strided, so it
    takes dim 1; the gathered [q | k | v] is a plain row split FSDP2 stacks on."""
    spec, _ = _package(tmp_path, "llama", "fused", [step])
    result = verify_parallel(spec, base_config("llama")[0], "tp=2,fsdp=2")
    assert result.passed, result.line()


def _compared(got: float, noise: float):
    from codegen.verify.parallel import ParallelResult, _compare

    logits = torch.ones(1, 2, 3)
    reference = {
        "logits": logits,
        "grads": {"big": torch.tensor([1.0]), "cancelled": torch.tensor([1e-2])},
        "activations": {},
        "noise": {"cancelled": noise},
    }
    parallel = {"logits": logits, "grads": {"big": torch.tensor([1.0]), "cancelled": got}}
    result = ParallelResult("toy", "tp=2")
    _compare(result, reference, parallel)
    return result


def test_a_gradient_off_by_its_own_fp32_rounding_passes():
    """A gradient that is a cancellation (a NoPE query against a key bias) is rounding in
    fp32 already: the sharded one may differ by a few times that, not by more."""
    off = torch.tensor([1e-2 + 3e-6])  # 3e-4 of its own max, 3e-6 of the model's
    assert not _compared(off, noise=0.0).passed
    assert _compared(off, noise=1e-6).passed
    assert not _compared(torch.tensor([2e-2]), noise=1e-6).passed  # a real error still fails


def test_a_setting_the_config_class_rejects_is_skipped(monkeypatch):
    """No config to build (the config class's own validation refused it): reported, not run."""
    import codegen.verify.cases as cases
    from codegen.verify.parallel import run_parallel
    from codegen.verify.run import Case

    case = Case("toy+x=1", None, may_refuse=True, rejected="ValueError: x must be 0")
    monkeypatch.setattr(cases, "default_cases", lambda spec: [case])
    spec = load_spec("llama")
    results = run_parallel([spec], ["tp=2"])
    assert [r.status for r in results] == ["skipped"]
    assert "x must be 0" in results[0].skipped


def test_a_setting_transformers_cannot_build_is_skipped_as_verify_skips_it(monkeypatch):
    """A switch setting the config class takes but transformers' model cannot be built from
    (afmoe's head_dim=None) has no HF model to be right against: verify skips it, and so
    does the parallel check, rather than fail on the package's build of it."""
    import codegen.verify.cases as cases
    from codegen.verify.parallel import run_parallel
    from codegen.verify.run import Case
    from codegen.verify.tiny_config import tiny_config

    config = tiny_config("llama")
    config.num_attention_heads = 0  # transformers divides by it
    monkeypatch.setattr(cases, "default_cases", lambda spec: [Case("llama+heads=0", config, True)])
    results = run_parallel([load_spec("llama")], ["tp=2"])
    assert [r.status for r in results] == ["skipped"]
    assert results[0].skipped.startswith("transformers cannot build this config")


@pytest.mark.parametrize(("style", "passes"), [("sharded_elementwise", True), ("replicate", False)])
def test_learned_activation_slopes_sum_their_gradient_over_the_ranks(tmp_path, style, passes):
    """qwen3 + xIELU (apertus's MLP): the slopes act on the up projection's local
    features, so each rank's gradient is a part of theirs; left replicated it is not summed."""
    spec, plan = _package(tmp_path, "qwen3", "xielu", [("set_xielu_mlp", {})])
    assert '"layers.*.feed_forward.act": "sharded_elementwise"' in plan
    config = base_config("qwen3")[0]
    config.hidden_act = "xielu"
    changed = {**plan_module(spec).PLAN, "layers.*.feed_forward.act": style}
    result = verify_parallel(spec, config, "tp=2", plan=changed)
    assert result.passed is passes, result.line()
    if not passes:
        assert "feed_forward.act.alpha" in result.error


def test_a_single_kv_head_is_kept_whole_on_every_rank(tmp_path):
    """Multi-query [q | k | v] (falcon, gpt_bigcode): one kv head does not split over 2
    ranks; q is split, k and v kept whole and their gradients summed."""
    spec, _ = _package(tmp_path, "llama", "fused", [("fuse_qkv", {"layout": "contiguous"})])
    config = base_config("llama")[0]
    config.num_key_value_heads = 1
    result = verify_parallel(spec, config, "tp=2")
    assert result.passed, result.line()


def _vendored(spec):
    """The package's own copy of parallel.py (a scaffolded package imports that one)."""
    return importlib.import_module(spec.model.__module__.rpartition(".")[0] + ".parallel")


def _seed(monkeypatch, spec, name: str, make):
    """Replace `name` in codegen's parallel.py and the package's copy (forked ranks inherit)."""
    import codegen.layers.parallel as parallel

    for module in {parallel, _vendored(spec)}:
        monkeypatch.setattr(module, name, make(module))


def test_fused_qkv_ranks_hold_only_their_heads_rows(tmp_path, monkeypatch):
    """[q | k | v] with 4 heads over 2 kv heads (phi3's layout): rank r's weight is exactly
    [q rows of heads 2r, 2r+1 | k rows of kv head r | v rows of kv head r], no more."""
    from codegen.verify.parallel import _weights_and_inputs

    spec, _ = _package(tmp_path, "llama", "fused", [("fuse_qkv", {"layout": "contiguous"})])
    config = base_config("llama")[0]
    held = tmp_path / "held"
    held.mkdir()

    def recording(module):
        original = module.load_full_state_dict

        def load(model, state):
            original(model, state)
            local = model.get_submodule("layers.0.attention.wqkv").weight.to_local()
            torch.save(local.detach(), held / f"wqkv.{torch.distributed.get_rank()}.pt")

        return load

    _seed(monkeypatch, spec, "load_full_state_dict", recording)
    result = verify_parallel(spec, config, "tp=2")
    assert result.passed, result.line()
    weight = _weights_and_inputs(spec, config, 0)[0]["layers.0.attention.wqkv.weight"]
    head = config.head_dim
    q, kv = 4 * head, 2 * head
    for rank in (0, 1):
        local = torch.load(held / f"wqkv.{rank}.pt")
        q_rows = weight[rank * q // 2 : (rank + 1) * q // 2]
        k_rows = weight[q + rank * head : q + (rank + 1) * head]
        v_rows = weight[q + kv + rank * head : q + kv + (rank + 1) * head]
        assert torch.equal(local, torch.cat([q_rows, k_rows, v_rows]))


def test_fused_qkv_ranks_reading_the_other_kv_head_fail(tmp_path, monkeypatch):
    """Rank r holding its q heads but the other rank's k and v rows: its wqkv rows are the
    ones it claims, but its heads attend with the wrong key, so wo's input differs."""
    spec, _ = _package(tmp_path, "llama", "fused", [("fuse_qkv", {"layout": "contiguous"})])

    def swapped(module):
        original = module._kv_rows
        return lambda kv, kv_heads, size, rank: original(kv, kv_heads, size, size - 1 - rank)

    _seed(monkeypatch, spec, "_kv_rows", swapped)
    result = verify_parallel(spec, base_config("llama")[0], "tp=2")
    assert not result.passed
    assert (
        "the forward first differs at the input of layers.0.attention.wo after "
        "layers.0.attention.wqkv's output agreed"
    ) in result.error


def test_separate_kv_with_one_kv_head_is_replicated(tmp_path):
    """llama-style q/k/v with num_key_value_heads=1 on 2 ranks: q split, k and v whole on
    each rank ('colwise_kv'); a plain column split cannot form one head."""
    spec = load_spec("llama")
    config = base_config("llama")[0]
    config.num_key_value_heads = 1
    assert plan_module(spec).PLAN["layers.*.attention.wk"] == "colwise_kv"
    assert verify_parallel(spec, config, "tp=2").passed
    plain = {**plan_module(spec).PLAN, "layers.*.attention.wk": "colwise"}
    plain["layers.*.attention.wv"] = "colwise"
    result = verify_parallel(spec, config, "tp=2", plan=plain)
    assert not result.passed
    assert "in layers.0.attention: RuntimeError: shape" in result.error


@pytest.mark.parametrize("fused", [False, True])
def test_a_replicated_kv_head_without_its_gradient_sum_fails(tmp_path, monkeypatch, fused):
    """Each rank's copy of the one kv head sees only its own q heads: its gradient is a
    part, summed over the ranks holding it. Left unsummed, the k/v gradient is named."""
    steps = [("fuse_qkv", {"layout": "contiguous"})] if fused else []
    spec, _ = _package(tmp_path, "llama", "mq", steps)
    config = base_config("llama")[0]
    config.num_key_value_heads = 1

    def unsummed(module):
        class Unsummed(module._SumShared):
            @staticmethod
            def backward(ctx, grad):
                return grad, None, None, None, None

        return Unsummed

    _seed(monkeypatch, spec, "_SumShared", unsummed)
    result = verify_parallel(spec, config, "tp=2")
    assert not result.passed
    weight = "wqkv" if fused else "wv"
    assert result.error.startswith(f"first differing gradient: layers.3.attention.{weight}.")


def test_full_rows_puts_held_rows_back_in_the_linears_order():
    """Rows laid end to end per rank ([q_0 | kv | q_1 | kv], the kv row held by both) come
    back as the Linear's rows, a shared row from its first holder."""
    from codegen.layers.parallel import full_rows

    linear = torch.nn.Linear(1, 3)
    linear.tp_rows = torch.tensor([0, 2, 1, 2])
    gathered = torch.tensor([[10.0], [12.0], [11.0], [99.0]])
    assert full_rows(linear, gathered).flatten().tolist() == [10.0, 11.0, 12.0]
    plain = torch.nn.Linear(1, 3)
    assert full_rows(plain, gathered) is gathered


def test_weights_loaded_in_the_linears_row_order_fail(tmp_path, monkeypatch):
    """Loading after sharding must put a head-sharded [q | k | v] weight in its per-rank
    order; distributed in the Linear's own order, rank 1 gets k/v rows as q heads."""
    import codegen.layers.parallel as parallel

    spec, _ = _package(tmp_path, "llama", "fused", [("fuse_qkv", {"layout": "contiguous"})])
    original = parallel.load_full_state_dict

    def unordered(model, state):
        modules = [m for m in model.modules() if "tp_rows" in m.__dict__]
        saved = [m.__dict__.pop("tp_rows") for m in modules]
        original(model, state)
        for module, order in zip(modules, saved, strict=True):
            module.tp_rows = order

    monkeypatch.setattr(parallel, "load_full_state_dict", unordered)
    result = verify_parallel(spec, base_config("llama")[0], "tp=2")
    assert not result.passed
    assert result.error.startswith("logits differ")


def test_alibi_bias_is_cut_to_each_ranks_heads(tmp_path):
    """llama without RoPE + ALiBi: each rank adds the slopes of its own heads (head_slice);
    left out of the plan, a rank's scores get every head's bias and the run fails."""
    spec, plan = _package(tmp_path, "llama", "alibied", [("no_rope", {}), ("alibi", {})])
    assert '"layers.*.attention.alibi": "head_slice"' in plan
    result = verify_parallel(spec, base_config("llama")[0], "tp=2")
    assert result.passed, result.line()
    whole = {k: v for k, v in plan_module(spec).PLAN.items() if not k.endswith(".alibi")}
    assert not verify_parallel(spec, base_config("llama")[0], "tp=2", plan=whole).passed


@pytest.mark.parametrize(
    ("first", "launches", "passed"),
    [
        ("rank 1: Connection reset by peer", 2, True),  # the loopback transport, not the plan
        ("rank 0: layers.0.attention.wo: shapes differ", 1, False),  # the package: no retry
    ],
)
def test_only_a_lost_transport_is_launched_again(monkeypatch, first, launches, passed):
    import codegen.verify.parallel as parallel

    calls = []
    real = parallel._launch

    def flaky(args, world):
        calls.append(world)
        return (first, None) if len(calls) == 1 else real(args, world)

    monkeypatch.setattr(parallel, "_launch", flaky)
    spec = load_spec("llama")
    result = verify_parallel(spec, base_config("llama")[0], "tp=2")
    assert len(calls) == launches
    assert result.passed is passed, result.line()
    if not passed:
        assert result.error == first


def _logits_compared(shift: float, noise: float):
    from codegen.verify.parallel import LOGITS, ParallelResult, _compare

    logits = torch.linspace(-10.0, 10.0, 24).reshape(1, 2, 12)
    grads = {"w": torch.tensor([1.0])}
    reference = {"logits": logits, "grads": grads, "activations": {}, "noise": {LOGITS: noise}}
    parallel = {"logits": logits + shift, "grads": dict(grads)}
    result = ParallelResult("toy", "tp=2")
    _compare(result, reference, parallel)
    return result


def test_logits_off_by_their_own_fp32_rounding_pass():
    """A deep stack of wide activations rounds its fp32 logits far: gemma3n's renamed copy
    with kv sharing off is 1.5e-4 of max |logit| from fp64 on one device, and tp=2 differs
    from it by 1.2e-4 (past the fixed 1e-4). A sharded run summing in another order may
    differ by a few times the one-device run's own rounding, not by more."""
    off = 1.5e-3  # 1.5e-4 of max |logit| (10)
    assert not _logits_compared(off, noise=0.0).passed
    assert _logits_compared(off, noise=1e-3).passed
    assert not _logits_compared(0.1, noise=1e-3).passed  # a real error still fails
