"""bench_forward accounts for every package it was asked for: a package it could not measure
is named with why, and the run exits 1, so a sweep cannot silently come up short."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPTS = Path(__file__).resolve().parents[2] / "scripts"
sys.path.insert(0, str(SCRIPTS))
import bench_forward  # noqa: E402 - the script is not a package


@pytest.fixture
def args(monkeypatch):
    monkeypatch.setattr(sys, "argv", ["bench_forward.py"])
    parsed = bench_forward.parse_args()
    monkeypatch.setattr(bench_forward, "ARGS", parsed, raising=False)
    return parsed


def test_a_failing_model_is_named_with_its_error(args, monkeypatch, capsys):
    def time_pair(name):
        if name == "broken":
            raise KeyError("checkpoint key without a mapping")
        return 0.9, 1.0, 1.01, {side: SAME_WORK for side in ("house", "hf")}

    monkeypatch.setattr(bench_forward, "time_pair", time_pair)
    monkeypatch.setattr(bench_forward, "peak_memory", lambda name, which: 10.0)
    rows, missed = bench_forward.measure(["fine", "broken"])
    assert [row["model"] for row in rows] == ["fine"]
    assert list(missed) == ["broken"]
    assert "KeyError" in missed["broken"] and "without a mapping" in missed["broken"]
    bench_forward.report(rows, missed, 2)
    out = capsys.readouterr().out
    assert "1/2 packages measured" in out
    assert "not measured: broken: KeyError" in out


SAME_WORK = {"flop": 100, "bytes_written": 1000}


def test_work_counts_matmul_flops_and_bytes_written_but_not_views():
    import torch

    linear = torch.nn.Linear(4, 8)
    tokens = torch.randn(2, 4)

    def plain(model, x):
        return model(x).view(-1)

    def extra_copy(model, x):
        return (model(x) * 1.0).view(-1)

    plain_work = bench_forward.forward_work(plain, linear, tokens)
    assert plain_work == {"flop": 2 * 2 * 4 * 8, "bytes_written": 2 * 8 * 4}
    copied = bench_forward.forward_work(extra_copy, linear, tokens)
    assert copied["flop"] == plain_work["flop"]
    assert copied["bytes_written"] == 2 * plain_work["bytes_written"]


def test_a_submodule_handed_a_parameter_is_counted_and_left_trainable():
    """DBRX's experts get their weight slices as arguments: the flop counter's module
    tracker used to fail on them under no_grad ("Expected gradient function to be set")."""
    import torch

    class Expert(torch.nn.Module):
        def forward(self, x, weight):
            return x @ weight.t()

    class Experts(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.weight = torch.nn.Parameter(torch.randn(8, 4))  # two 4x4 experts
            self.expert = Expert()

        def forward(self, x):
            # a view made under no_grad: requires grad, has no grad_fn (as DBRX's slices)
            return self.expert(x, self.weight.view(2, 4, 4)[0])

    model = Experts()

    def run(m, x):
        with torch.no_grad():
            return m(x)

    work = bench_forward.forward_work(run, model, torch.randn(2, 4))
    assert work["flop"] == 2 * 2 * 4 * 4
    assert model.weight.requires_grad


@pytest.mark.parametrize(
    ("a_shape", "b_shape", "offsets", "expected"),
    [
        ((10, 4), (3, 4, 8), [3, 7, 10], 2 * 10 * 4 * 8),  # tokens sorted by expert
        ((3, 5, 4), (3, 4, 8), None, 2 * 3 * 5 * 4 * 8),  # one batch per group
        ((8, 16), (16, 8), [4, 12, 16], 2 * 8 * 16 * 8),  # groups split the shared K
        # rows past the last offset (a package's identity-expert slots) are skipped
        ((10, 4), (3, 4, 8), [2, 5, 7], 2 * 7 * 4 * 8),
        ((8, 16), (16, 8), [4, 10], 2 * 8 * 10 * 8),
    ],
)
def test_grouped_matmuls_count_every_row_against_its_group(a_shape, b_shape, offsets, expected):
    """Stacked experts run as `F.grouped_mm`, which torch's counter has no formula for: a
    package's experts counted as free would hide work (DBRX's HF loop counted, ours not)."""
    import torch
    import torch.nn.functional as F

    b = torch.randn(b_shape).mT.contiguous().mT if len(b_shape) == 3 else torch.randn(b_shape)
    offs = None if offsets is None else torch.tensor(offsets, dtype=torch.int32)

    def multiply(_, a):
        return F.grouped_mm(a, b, offs=offs)

    assert bench_forward.forward_work(multiply, None, torch.randn(a_shape))["flop"] == expected


def test_attention_on_the_cpu_kernel_counts_its_two_products():
    import torch
    import torch.nn.functional as F

    q, v = torch.randn(1, 2, 16, 8), torch.randn(1, 2, 16, 4)

    def attend(_, x):
        return F.scaled_dot_product_attention(x, x, v, is_causal=True)

    def twice(_, x):
        return attend(_, x) + attend(_, x)

    once = bench_forward.forward_work(attend, None, q)["flop"]
    assert once == 2 * 2 * 16 * 16 * (8 + 4)  # q k^T and p v, per head
    assert bench_forward.forward_work(twice, None, q)["flop"] == 2 * once


def test_a_package_doing_more_work_is_listed_even_when_its_time_is_under(args, monkeypatch, capsys):
    heavier = {"flop": 100, "bytes_written": 1500}
    monkeypatch.setattr(
        bench_forward,
        "time_pair",
        lambda name: (0.95, 1.0, 1.0, {"house": heavier, "hf": SAME_WORK}),
    )
    monkeypatch.setattr(bench_forward, "peak_memory", lambda name, which: 10.0)
    rows, missed = bench_forward.measure(["copies"])
    bench_forward.report(rows, missed, 1)
    out = capsys.readouterr().out
    assert "0/1 packages do no more work than HF" in out
    assert "over: copies time 0.950" in out and "written 1.500" in out


def test_a_failed_scaffold_is_named_with_its_last_error_line(args, tmp_path):
    written, missed = bench_forward.scaffold(["no_such_model_type_xyz"], tmp_path / "models")
    assert written == []
    assert missed["no_such_model_type_xyz"].startswith("scaffold failed: ")
    assert len(missed["no_such_model_type_xyz"].splitlines()) == 1


@pytest.mark.parametrize("content", [None, "{not json", json.dumps({"rows": 1})])
def test_a_bad_coverage_file_is_one_line_and_exit_2(tmp_path, content):
    path = tmp_path / "coverage.json"
    if content is not None:
        path.write_text(content)
    done = subprocess.run(
        [sys.executable, str(SCRIPTS / "bench_forward.py"), "--sweep", str(path)],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 2
    assert done.stdout == ""
    assert len(done.stderr.strip().splitlines()) == 1
    assert "not a coverage.json" in done.stderr


def test_verified_names_are_the_rows_whose_verify_passed(tmp_path):
    path = tmp_path / "coverage.json"
    rows = [
        {"model_type": "a", "verify": {"passed": True}},
        {"model_type": "b", "verify": {"passed": False}},
        {"model_type": "c", "verify": None},
    ]
    path.write_text(json.dumps(rows))
    assert bench_forward.verified_names(path) == ["a"]


def test_a_peak_memory_child_that_fails_is_an_error_not_a_hang(args):
    with pytest.raises(RuntimeError, match="peak-memory child: .*no_such_package_xyz"):
        bench_forward.peak_memory("no_such_package_xyz", "house")


# --- the benchmark config: sizes land where the class stores them, never on derived fields ---


def _bench_toy(model_type: str) -> tuple[type, dict]:
    from codegen.verify.tiny_config import hf_config_class, tiny_config

    return hf_config_class(model_type), tiny_config(model_type).to_dict()


def test_sizes_go_to_the_names_the_class_stores():
    config_class, toy = _bench_toy("dbrx")  # d_model, n_heads, n_layers
    sizes = bench_forward.bench_sizes(config_class, toy)
    assert sizes["d_model"] == bench_forward.BENCH_SIZES["hidden_size"]
    assert sizes["n_heads"] == bench_forward.BENCH_SIZES["num_attention_heads"]
    assert "hidden_size" not in sizes


def test_a_field_the_class_derives_is_left_to_it():
    # DBRX's top-level num_key_value_heads mirrors attn_config.kv_n_heads (its attention's)
    config_class, toy = _bench_toy("dbrx")
    assert "num_key_value_heads" not in bench_forward.bench_sizes(config_class, toy)
    config = config_class(**{**toy, **bench_forward.bench_sizes(config_class, toy)})
    assert config.num_key_value_heads == config.attn_config.kv_n_heads


@pytest.mark.parametrize("model_type", ["llama", "deepseek_v32"])
def test_kv_heads_as_many_as_the_heads_stay_so(model_type):
    config_class, toy = _bench_toy(model_type)
    toy["num_key_value_heads"] = toy["num_attention_heads"]
    toy.pop("transformers_version", None)
    toy.pop("model_type", None)
    config = config_class(**{**toy, **bench_forward.bench_sizes(config_class, toy)})
    assert config.num_attention_heads == bench_forward.BENCH_SIZES["num_attention_heads"]
    assert config.num_key_value_heads == config.num_attention_heads


def test_a_per_layer_list_follows_its_field():
    config_class, toy = _bench_toy("laguna")
    heads = toy["num_attention_heads"]
    assert set(toy["num_attention_heads_per_layer"]) == {heads}
    sizes = bench_forward.bench_sizes(config_class, toy)
    assert sizes["num_attention_heads_per_layer"] == [sizes["num_attention_heads"]] * len(
        toy["num_attention_heads_per_layer"]
    )


def test_a_list_with_an_entry_per_layer_follows_the_layer_count():
    """beam's mlp_layer_types has one entry per toy layer; the class rejects a list longer
    than the benchmark's layers, so it keeps the toy's first ones."""
    config_class, toy = _bench_toy("beam")
    assert len(toy["mlp_layer_types"]) == toy["num_hidden_layers"]
    sizes = bench_forward.bench_sizes(config_class, toy)
    layers = sizes["num_hidden_layers"]
    assert sizes["mlp_layer_types"] == toy["mlp_layer_types"][:layers]
    bench = {key: value for key, value in {**toy, **sizes}.items() if key != "layer_types"}
    config_class(**bench)  # the class accepts it (build() sets layer_types apart)


def test_a_table_keyed_by_layer_keeps_the_layers_that_remain():
    """gemma4_unified's per_layer_config overrides layer 5 of the toy's six; the class rejects
    an index past the benchmark's layers, so only the remaining layers' entries stay."""
    config_class, toy = _bench_toy("gemma4_unified_text")
    assert any(int(k) >= 4 for k in toy["per_layer_config"])
    sizes = bench_forward.bench_sizes(config_class, toy)
    layers = sizes["num_hidden_layers"]
    kept = sizes["per_layer_config"]
    assert kept == {k: v for k, v in toy["per_layer_config"].items() if int(k) < layers}
    bench = {key: value for key, value in {**toy, **sizes}.items() if key != "layer_types"}
    config_class(**bench)


def test_a_layers_overrides_are_resized_with_the_fields_they_override():
    """dots3's sliding layers override the latent sizes, their head_dim the whole q/k head
    (the class checks it): at the benchmark's sizes the overrides grow in ratio and the
    whole head stays whole, so the class accepts the config."""
    config_class, toy = _bench_toy("dots3_note_text")
    sizes = bench_forward.bench_sizes(config_class, toy)
    bench = {key: value for key, value in {**toy, **sizes}.items() if key != "layer_types"}
    bench["head_dim"] = bench["qk_rope_head_dim"]  # as build() sets it for latent attention
    for overrides in bench["per_layer_config"].values():
        nope = overrides.get("qk_nope_head_dim", bench["qk_nope_head_dim"])
        assert overrides["head_dim"] == nope + bench["qk_rope_head_dim"]
        assert overrides["qk_nope_head_dim"] > toy["qk_nope_head_dim"]
    config_class(**bench, layer_types=toy["layer_types"])


def test_a_field_the_class_derives_from_the_layer_count_is_left_to_it():
    """hrm_text stores its layers per stack and rewrites num_hidden_layers to the cache's
    slot count (one per attention call over the cycles): at the benchmark's layer count the
    toy's per-stack count would leave too few slots for the cycles' calls."""
    config_class, toy = _bench_toy("hrm_text")
    values = bench_forward.bench_values(config_class, toy)
    values.pop("transformers_version", None)
    values.pop("model_type", None)
    config = config_class(**values)
    layers = bench_forward.BENCH_SIZES["num_hidden_layers"]
    assert config.num_layers_per_stack == layers
    assert config.num_hidden_layers == layers * config.H_cycles * (config.L_cycles + 1)


def test_timing_runs_once_more_under_the_reuse_allocator(tmp_path):
    """The script re-runs itself once with glibc's heap kept for reuse (page faults then do
    not follow the order the models ran in), and does not loop: the second run returns."""
    probe = tmp_path / "probe.py"
    probe.write_text(
        "import os, sys\n"
        f"sys.path.insert(0, {str(SCRIPTS)!r})\n"
        "import bench_forward\n"
        "print('run', flush=True)\n"
        "bench_forward.timing_allocator()\n"
        "print(*(os.environ[k] for k in bench_forward.TIMING_MALLOC))\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    done = subprocess.run(
        [sys.executable, str(probe)], capture_output=True, text=True, env=env, check=True
    )
    lines = done.stdout.split("\n")
    assert lines.count("run") == 2  # once as started, once re-run under the setting
    assert lines[-2] == " ".join(bench_forward.TIMING_MALLOC.values())


@pytest.mark.parametrize("model_type", ["deepseek_v3", "deepseek_v4"])
def test_a_rotary_slice_gets_a_head_of_its_own_size(model_type):
    # MLA's keys share one rotary head (head_dim = qk_rope_head_dim); DeepSeek-V4 has no
    # latent key and derives its rotary slice from head_dim, which must stay at bench size
    # (set to the slice, it left a 1-wide rotation neither model could run)
    config = bench_forward.bench_config(model_type, 64)
    assert config.qk_rope_head_dim % 2 == 0 and config.qk_rope_head_dim >= 8
    if model_type == "deepseek_v3":
        assert config.head_dim == config.qk_rope_head_dim
    else:
        assert config.head_dim == bench_forward.BENCH_SIZES["head_dim"]


def test_logits_apart_from_hfs_at_the_benchmark_size_are_listed(args, monkeypatch, capsys):
    import torch

    hf = torch.tensor([[[2.0, -4.0], [1.0, 0.5]]])
    assert bench_forward.logit_divergence(hf.clone(), hf) == (0.0, 0.0)
    drift, apart = bench_forward.logit_divergence(hf + torch.tensor([[0.0, 0.4], [0.0, 0.0]]), hf)
    assert drift == pytest.approx(0.1) and apart == 0.5  # 0.4 of the largest |logit|, 4.0
    works = {
        "drifts": {"house": SAME_WORK, "hf": SAME_WORK, "logit_diff": 0.1, "tokens_apart": 0.5},
        "flips": {"house": SAME_WORK, "hf": SAME_WORK, "logit_diff": 0.1, "tokens_apart": 0.001},
        "same": {"house": SAME_WORK, "hf": SAME_WORK, "logit_diff": 0.0, "tokens_apart": 0.0},
    }
    monkeypatch.setattr(bench_forward, "time_pair", lambda name: (0.9, 1.0, 1.0, works[name]))
    monkeypatch.setattr(bench_forward, "peak_memory", lambda name, which: 10.0)
    rows, missed = bench_forward.measure(list(works))
    bench_forward.report(rows, missed, 3)
    out = capsys.readouterr().out
    # a share of the tokens apart diverges; one isolated token (a top-k tie) is named apart
    assert "2/3 packages give HF's logits at the benchmark size" in out
    assert "1 with isolated tokens apart: flips)" in out
    assert "over: drifts time 0.900" in out and "(50.00% of tokens apart)" in out
    assert "over: same" not in out


def _fake_clock_slots(monkeypatch, house_s: float, hf_s: float):
    """Three slots whose forwards advance a fake CPU clock by a fixed time each."""
    clock = [0.0]
    monkeypatch.setattr(bench_forward.time, "process_time", lambda: clock[0])

    def spending(seconds):
        def forward(model, tokens):
            clock[0] += seconds

        return forward

    return [
        ("house", None, spending(house_s)),
        ("hf", None, spending(hf_s)),
        ("hf_again", None, spending(hf_s)),
    ]


@pytest.mark.parametrize(("house_s", "rounds"), [(0.9, 5), (1.1, 30)])
def test_only_a_slower_house_side_gets_the_confirming_rounds_and_every_slot_gets_them(
    args, monkeypatch, house_s, rounds
):
    args.repeat, args.confirm = 5, [10, 15]
    timings = {"house": [], "hf": [], "hf_again": []}
    bench_forward.timed_rounds(_fake_clock_slots(monkeypatch, house_s, 1.0), None, timings)
    assert {label: len(times) for label, times in timings.items()} == dict.fromkeys(timings, rounds)
    # a package truly slower than HF stays slower: the extension sharpens, it does not retry
    assert min(timings["house"]) / min(timings["hf"]) == pytest.approx(house_s)


def test_the_confirming_stages_stop_once_the_pooled_minimum_is_no_slower(args, monkeypatch):
    """A stage runs only while the house side's fastest run so far is slower than HF's: one
    disturbed early house round is outrun by the first stage, and the second never runs."""
    args.repeat, args.confirm = 5, [10, 15]
    clock = [0.0]
    monkeypatch.setattr(bench_forward.time, "process_time", lambda: clock[0])
    house_runs = iter([1.2] * 5 + [0.95] * 100)

    def house(model, tokens):
        clock[0] += next(house_runs)

    def hf(model, tokens):
        clock[0] += 1.0

    timings = {"house": [], "hf": [], "hf_again": []}
    slots = [("house", None, house), ("hf", None, hf), ("hf_again", None, hf)]
    bench_forward.timed_rounds(slots, None, timings)
    assert {label: len(times) for label, times in timings.items()} == dict.fromkeys(timings, 15)
    assert min(timings["house"]) == pytest.approx(0.95)


def test_jobs_split_the_models_and_account_for_each_in_the_asked_order():
    """With --jobs 2 the models are dealt to two children (here: llama and the second bad
    name to one, the first bad name to the other): every model comes back, measured or named
    with why, in the order asked, and the run exits 1."""
    command = [sys.executable, str(SCRIPTS / "bench_forward.py"), "--work-only", "--json"]
    command += ["llama", "no_such_package_a", "no_such_package_b", "--jobs", "2"]
    done = subprocess.run(command, capture_output=True, text=True)
    assert done.returncode == 1
    result = json.loads(done.stdout)
    assert [row["model"] for row in result["rows"]] == ["llama"]
    assert result["rows"][0]["flop_ratio"] == pytest.approx(1.0, abs=0.01)
    assert list(result["not_measured"]) == ["no_such_package_a", "no_such_package_b"]
    assert "no_such_package_a" in result["not_measured"]["no_such_package_a"]
    assert "llama" in done.stderr  # the child's row line, printed as it was counted
