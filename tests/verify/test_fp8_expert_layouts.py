"""`verify --fp8` on three ways transformers stores an MoE layer's experts as 3-D stacks:
gpt_oss's fused `gate_up_proj`/`down_proj` beside per-expert biases, llama4_text's the same
stacks stored transposed (in, out) on its MoE layers only, and granitemoe's fused
`input_linear`/`output_linear` `.weight`s behind a `router.layer` router. Each scaffolded
package passes at its toy's aligned block size (transformers' scale names), every expert
stack in the release is fp8 with a block scale per expert (biases and the router stay high
precision), and an adapter that drops the experts' scale fails naming the stack.

One block size each (the aligned one, the largest that divides every quantized shape: the
whole layout at one run); both sizes and the other scale names run in `codegen verify
--fp8`. Wall time on 2 shared cores, scaffold included: 10 to 26 s a layout, about 1 min in all."""

from __future__ import annotations

import dataclasses
import math
import re

import pytest
import torch

from codegen.adapter import StateDictAdapter, is_fp8
from codegen.models import load_spec
from codegen.scaffold.plan import make_plan
from codegen.scaffold.target import load_target
from codegen.scaffold.testing import write_planned
from codegen.verify.cases import base_config
from codegen.verify.fp8 import scale_key, verify_fp8_case
from codegen.verify.run import Case

# model_type -> (aligned block of its toy, the expert stacks of one MoE layer under
# `model.layers.{}.`, the checkpoint key the first expert stack's mismatch names)
LAYOUTS = {
    "gpt_oss": (
        16,
        ("mlp.experts.gate_up_proj", "mlp.experts.down_proj"),
        "layers.0.moe.experts.w13 (model.layers.0.mlp.experts.gate_up_proj)",
    ),
    "llama4_text": (
        8,
        ("feed_forward.experts.gate_up_proj", "feed_forward.experts.down_proj"),
        "layers.1.moe.experts.w13 (model.layers.1.feed_forward.experts.gate_up_proj)",
    ),
    "granitemoe": (
        16,
        ("block_sparse_moe.input_linear.weight", "block_sparse_moe.output_linear.weight"),
        "layers.0.moe.experts.w13 (model.layers.0.block_sparse_moe.input_linear.weight)",
    ),
}
# the high-precision tensors beside the stacks: gpt_oss's expert biases, the routers
KEPT = re.compile(r"_bias$|\.router\.")


@pytest.fixture(scope="module", params=list(LAYOUTS))
def packaged(request, tmp_path_factory):
    model_type = request.param
    target = load_target(model_type)
    models, name = write_planned(
        tmp_path_factory.mktemp("fp8") / "models", (target, make_plan(target))
    )
    return model_type, load_spec(name, models)


def _run(model_type, spec, **kwargs):
    config, _ = base_config(model_type)
    block = LAYOUTS[model_type][0]
    (result,) = verify_fp8_case(spec, Case(model_type, config), block=block, **kwargs)
    return result, config


def test_every_expert_stack_gets_a_scale_and_the_package_passes(packaged):
    model_type, spec = packaged
    release: dict[str, torch.Tensor] = {}
    result, config = _run(model_type, spec, mutate=release.update)  # records, changes nothing
    assert result.passed, result.to_json()
    assert result.first_mismatch is None and result.roundtrip_exact and result.keep_matches
    block, stacks, _ = LAYOUTS[model_type]
    found = [
        key
        for key in release
        if any(re.fullmatch(rf"model\.layers\.\d+\.{re.escape(s)}", key) for s in stacks)
    ]
    assert len(found) >= 2, sorted(release)
    experts = config.num_local_experts
    for key in found:
        values, scale = release[key], release.get(scale_key(key))
        assert is_fp8(values), (key, values.dtype)
        assert scale is not None, f"{key}: no scale"
        rows, cols = values.shape[-2:]
        assert tuple(scale.shape) == (experts, math.ceil(rows / block), math.ceil(cols / block))
    # nothing else 3-D went to fp8, and what stays high precision did
    scales = {scale_key(key) for key in found}
    other = [k for k, v in release.items() if is_fp8(v) and v.dim() == 3 and k not in found]
    assert not other, other
    kept = [k for k in release if KEPT.search(k) and k not in scales]
    assert any(".router." in k for k in kept), sorted(release)
    assert all(not is_fp8(release[k]) for k in kept), kept


def test_an_adapter_that_drops_the_expert_scale_fails_naming_the_stack(packaged):
    model_type, spec = packaged

    def unscaled(self, key, weight, scale):
        if weight.dim() == 3:  # an expert stack: its raw fp8 values
            return weight.to(self.dtype)
        return StateDictAdapter.dequantize(self, key, weight, scale)

    seeded = dataclasses.replace(
        spec, adapter=type("Seeded", (spec.adapter,), {"dequantize": unscaled})
    )
    result, _ = _run(model_type, seeded)
    assert not result.passed
    named = LAYOUTS[model_type][2]
    assert result.first_mismatch.startswith(f"{named}: max diff"), result.first_mismatch
