"""`verify --fp8` fails when the release leaves the model's routed experts, or a layer's
sublayer, high precision: counted off the HF model (and the package model), not off the key
table that chose what to quantize. A package whose table hides its expert stacks loads them
bf16 and passed every other check (stop 30's finding); now it fails naming them.

Seeded: granitemoe (3-D stacks) and dbrx (flat 2-D stacks) with tables that no longer show
their stack rows; llama with its attention and qwen3_moe with half its experts put back to
bf16 in the release. Controls pass with every expert quantized: mixtral, qwen3_moe,
deepseek_v3, and a dense llama; through the CLI, one FAIL line per block naming the stack and
the counts printed. One block size each but the CLI test; about 2 min on 2 shared cores."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from codegen.adapter import is_fp8
from codegen.cli import main
from codegen.models import load_spec
from codegen.scaffold.plan import make_plan
from codegen.scaffold.target import load_target
from codegen.scaffold.testing import seeded_copy, write_planned
from codegen.verify.cases import base_config
from codegen.verify.fp8 import plain_dequantized, scale_key, verify_fp8_case
from codegen.verify.fp8_coverage import Experts, coverage, expert_counts
from codegen.verify.run import Case

# model_type -> the aligned block size of its toy
BLOCKS = {"granitemoe": 16, "dbrx": 8, "mixtral": 8, "qwen3_moe": 8, "deepseek_v3": 8, "llama": 16}


@pytest.fixture(scope="module")
def scaffolded(tmp_path_factory):
    """(the models folder, model_type -> package name) of three scaffolded packages."""
    models = tmp_path_factory.mktemp("fp8cov") / "models"
    names = {}
    for model_type in ("granitemoe", "dbrx", "mixtral"):
        target = load_target(model_type)
        names[model_type] = write_planned(models, (target, make_plan(target)))[1]
    return models, names


def _spec(model_type, scaffolded):
    models, names = scaffolded
    return load_spec(names[model_type], models) if model_type in names else load_spec(model_type)


def _run(model_type, spec, **kwargs):
    config, _ = base_config(model_type)
    block = BLOCKS[model_type]
    (result,) = verify_fp8_case(spec, Case(model_type, config), block=block, **kwargs)
    return result


def hiding_stacks(spec):
    """The package with a key table that no longer shows its expert-stack rows; the adapter
    still converts by them, so it loads every weight as before."""

    def __init__(self, *args, **kwargs):
        spec.adapter.__init__(self, *args, **kwargs)
        self.from_hf_map = {
            hf: house
            for hf, house in type(self).from_hf_map.items()
            if house is None or ".moe.experts." not in house
        }

    hidden = type("Hidden", (spec.adapter,), {"__init__": __init__})
    return dataclasses.replace(spec, adapter=hidden)


@pytest.mark.parametrize(
    "model_type, stack",
    [
        ("granitemoe", "model.layers.0.block_sparse_moe.input_linear.weight"),
        ("dbrx", "transformer.blocks.0.ffn.experts.mlp."),
    ],
)
def test_a_key_table_hiding_the_expert_stacks_fails_naming_them(model_type, stack, scaffolded):
    result = _run(model_type, hiding_stacks(_spec(model_type, scaffolded)))
    assert not result.passed
    assert "expert weights of the model's routed experts left unquantized" in result.error
    assert stack in result.error, result.error
    assert result.quantized_experts == result.experts_quantized == 0
    assert result.model_experts > 0


@pytest.mark.parametrize("model_type", ["mixtral", "qwen3_moe", "deepseek_v3", "llama"])
def test_packages_quantizing_every_expert_pass_and_report_the_counts(model_type, scaffolded):
    result = _run(model_type, _spec(model_type, scaffolded))
    assert result.passed, result.to_json()
    assert result.quantized > 0
    assert result.experts_quantized == result.model_experts
    assert (result.model_experts > 0) == (model_type != "llama")
    assert (result.quantized_experts > 0) == (model_type != "llama")


# the package's adapter base, as each file imports it, and the seeded one hiding the stacks
IMPORT = "from .adapter_base import StateDictAdapter as _KeyMapAdapter\n"
HIDING = """from .adapter_base import StateDictAdapter as _Shown


class _KeyMapAdapter(_Shown):
    \"\"\"Seeded: the table it shows no longer lists the expert stacks it converts by.\"\"\"

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        table = type(self).from_hf_map
        self.from_hf_map = {k: v for k, v in table.items() if v is None or ".moe.experts." not in v}
"""


def test_cli_fails_a_package_hiding_its_stacks_in_one_line_and_prints_the_counts(
    scaffolded, tmp_path, capsys
):
    built, names = scaffolded
    name = names["granitemoe"]
    models = seeded_copy(built, tmp_path / "models", name, IMPORT, HIDING, "state_dict_adapter.py")
    assert main(["verify", name, "--models", str(models), "--fp8"]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines if not line.startswith(" ")] == ["FAIL", "FAIL"]
    why = [line for line in lines if line.startswith(f"      {name}: ")]
    assert len(why) == 2
    assert all(
        "left unquantized (model.layers.0.block_sparse_moe.input_linear.weight" in w for w in why
    )
    counted = [line.strip() for line in lines if line.strip().startswith("quantized:")]
    assert (
        counted
        == ["quantized: 16 weights, 0 of them expert weights (0 of the model's 64 routed experts)"]
        * 2
    )

    assert main(["verify", name, "--models", str(built), "--fp8"]) == 0
    counted = [
        line.strip() for line in capsys.readouterr().out.splitlines() if "quantized:" in line
    ]
    assert (
        counted
        == ["quantized: 24 weights, 8 of them expert weights (64 of the model's 64 routed experts)"]
        * 2
    )


def unquantizing(keep, block):
    """A release edit putting the fp8 weights `keep` rejects back to bf16, scales dropped."""

    def edit(release):
        for key in [k for k, v in release.items() if is_fp8(v) and not keep(k)]:
            pair = {key: release[key], scale_key(key): release.pop(scale_key(key))}
            release[key] = plain_dequantized(pair, block)[key].to(torch.bfloat16)

    return edit


def test_a_release_leaving_a_layers_attention_bf16_fails_naming_the_sublayer():
    edit = unquantizing(_not_attention, BLOCKS["llama"])
    result = _run("llama", load_spec("llama"), mutate=edit)
    assert not result.passed
    assert result.error.startswith("no projection of ")
    assert "sublayers was quantized: layer 0 `self_attn` (4: " in result.error, result.error
    assert "model.layers.0.self_attn.q_proj.weight" in result.error


def _not_attention(key):
    return ".self_attn." not in key


def test_a_release_leaving_half_the_experts_bf16_fails_naming_them():
    edit = unquantizing(_low, BLOCKS["qwen3_moe"])
    result = _run("qwen3_moe", load_spec("qwen3_moe"), mutate=edit)
    assert not result.passed
    assert "left unquantized (model.layers.1.mlp.experts.8." in result.error, result.error
    assert 0 < result.experts_quantized < result.model_experts


def _low(key):
    parts = key.split(".")
    return "experts" not in parts or int(parts[parts.index("experts") + 1]) < 8


# --- the counting, on shapes alone -----------------------------------------------------------


def test_experts_are_3d_stacks_and_alike_matrices_under_a_second_index_not_convs():
    from torch import nn

    class Stacked(nn.Module):
        def __init__(self):
            super().__init__()
            self.gate_up_proj = nn.Parameter(torch.zeros(4, 8, 6))
            self.conv = nn.Conv1d(6, 6, 3, groups=6)  # 3-D, no experts
            self.seq = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 6))

    class Listed(nn.Module):
        def __init__(self):
            super().__init__()
            self.experts = nn.ModuleList(nn.Linear(6, 8) for _ in range(3))

    class Model(nn.Module):
        def __init__(self):
            super().__init__()
            self.layers = nn.ModuleList([Stacked(), Listed()])
            self.altup = nn.ModuleList(nn.Linear(6, 6) for _ in range(3))  # not the layers

    experts = Experts.of(2, Model())
    assert experts.per_layer == {0: 4, 1: 3}
    assert experts.no_experts == {"conv.weight", "conv.bias"}
    assert expert_counts({"layers.0.conv.weight": (6, 1, 3), "layers.1.x": (1,)}, 2) == {0: 6}


def test_a_flat_stack_counts_the_layers_experts_and_bias_stacks_are_no_projections():
    release = {
        "blocks.0.attn.qkv.weight": torch.zeros(12, 6, dtype=torch.float8_e4m3fn),
        "blocks.0.ffn.router.weight": torch.zeros(4, 6),
        "blocks.0.ffn.experts.w1": torch.zeros(4 * 5, 6, dtype=torch.float8_e4m3fn),
        "blocks.0.ffn.experts.w2": torch.zeros(4 * 5, 6),
        "blocks.0.ffn.experts.w1_bias": torch.zeros(4, 6),
    }
    result = coverage(
        release,
        layers=1,
        experts=Experts({0: 4}),
        hidden=6,
        is_router=lambda key: key.endswith("router.weight"),
    )
    assert (result.weights, result.expert_weights, result.experts) == (2, 1, 4)
    assert result.problems == [
        "1 expert weights of the model's routed experts left unquantized "
        "(blocks.0.ffn.experts.w2); the release quantizes what the package's key table "
        "(from_hf_map) shows"
    ]


def test_a_release_holding_fewer_experts_than_the_layer_routes_to_fails_counting_them():
    fp8 = torch.zeros(4, 6, dtype=torch.float8_e4m3fn)
    release = {f"model.layers.0.mlp.experts.{i}.w.weight": fp8 for i in (0, 1)}
    result = coverage(release, layers=1, experts=Experts({0: 4}), hidden=6)
    assert (result.weights, result.expert_weights, result.experts) == (2, 2, 2)
    assert result.problems == [
        "fewer experts quantized than the model routes to: layer 0: 2 of its 4"
    ]
