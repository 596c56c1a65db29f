"""End to end: zaya's attention (the convolutional q/k projection with its delayed value half,
the L2 q/k norm with a learned per-kv-head key scale, partial RoPE read from the layer type's
own entry of rope_parameters), planned from its analysis, scaffolded and verified against the
folder's own code. Seeded defects, each a slip of those parts, fail verify and name the
module where it lives; the shard plan keeps the attention whole on every rank.

The HF side is transformers' zaya as a renamed remote-code folder with its MoE, embedding
affine and residual scales taken out (`zaya_fixture`): the real zaya stays named unsupported
for those."""

from __future__ import annotations

from pathlib import Path

import pytest
from zaya_fixture import NAME, derive

from codegen.scaffold.testing import plan_folder, seeded_copy, verify_folder, write_planned

RULES = {"conv_qkv_projection", "l2_qk_norm", "rope_per_layer_type", "partial_rotary"}


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    return derive(tmp_path_factory.mktemp("hub"))


@pytest.fixture(scope="module")
def planned(folder):
    return plan_folder(folder, RULES)


@pytest.fixture(scope="module")
def package(tmp_path_factory, planned) -> Path:
    models, _ = write_planned(tmp_path_factory.mktemp("built") / "models", planned)
    return models


def _verify(folder: Path, models: Path, capsys, *options: str, switches=False) -> list[dict]:
    return verify_folder(folder, models, capsys, *options, dtypes=(), switches=switches)


def test_package_verifies_in_fp32_and_bf16(folder, package, capsys):
    """Every setting: the bias switch on the q/k/v halves, and layers typed "hybrid_sliding"
    (windowed, rotating a quarter of each head with their own theta)."""
    rows = _verify(folder, package, capsys, "--dtype", "fp32", "--dtype", "bf16", switches=True)
    sliding = [row for row in rows if "hybrid_sliding" in row["case"]]
    assert sliding and len([row for row in rows if "+" not in row["case"]]) == 2
    refused = [row for row in rows if row["status"] == "refused"]
    assert all("lm_head_bias" in row["case"] for row in refused), refused
    assert all(row["status"] == "pass" for row in rows if row not in refused), rows


@pytest.mark.parametrize(
    "old, new, module",
    [
        # the delayed value half read at the current token
        (
            "self.wv_delayed(F.pad(x, (0, 0, 1, -1)))",
            "self.wv_delayed(x)",
            "layers.0.attention",
        ),
        # the filters padded on both sides: a position reads the next ones
        (
            "F.pad(x.transpose(1, 2), (self.padding, 0))",
            "F.pad(x.transpose(1, 2), (1, self.padding - 1))",
            "layers.0.attention",
        ),
        # each filter padded with zeros of its own: the first one's bias never reaches
        # the second over the padding
        (
            "return self.grouped(self.depthwise(x)).transpose(1, 2)",
            # the grouped filter's one step of padding: zeros, not the depthwise output
            "return self.grouped(F.pad(self.depthwise(x)[..., 1:], (1, 0))).transpose(1, 2)",
            "layers.0.attention",
        ),
        # the keys' mix taken from the group's first query head, not the group's mean
        ("mixed.mean(dim=3)", "mixed[:, :, :, 0]", "layers.0.attention"),
        # the learned key scale dropped
        (
            "rescale(k, self.head_dim**0.5) * self.key_scale[:, None, None]",
            "rescale(k, self.head_dim**0.5)",
            "layers.0.attention",
        ),
        # the key scale of the other kv head
        (
            "self.key_scale[:, None, None]",
            "self.key_scale.flip(0)[:, None, None]",
            "layers.0.attention",
        ),
    ],
    # HF filters inside its projection module, which has no house twin: a slip in the filters
    # is named by the attention, the module holding them in both
    ids=[
        "value_not_delayed",
        "conv_acausal",
        "padding_per_filter",
        "key_mix",
        "no_key_scale",
        "key_scale_heads",
    ],
)
def test_slips_fail_naming_their_module(tmp_path, folder, package, capsys, old, new, module):
    models = seeded_copy(package, tmp_path / "models", NAME, old, new)
    (row,) = _verify(folder, models, capsys, "--dtype", "fp32")
    assert row["status"] == "fail", row
    assert (row.get("first_divergence") or "").startswith(module), row


def test_partial_rotary_of_the_layer_types_own_entry(package):
    """zaya names its layer types "hybrid" and "hybrid_sliding": each kind's RoPE (and its
    partial factor) is read from its own entry, not a "full_attention" or
    "sliding_attention" one."""
    args = (package / NAME / "args.py").read_text()
    assert 'rope_parameters["hybrid"]' in args
    assert 'rope_parameters["hybrid_sliding"]' in args
    assert 'rope_parameters["full_attention"]' not in args
    assert 'rope_parameters["sliding_attention"]' not in args


def test_shard_plan_keeps_the_attention_whole(folder, package, capsys):
    """tp=2: a rank's share of the value heads would be all current or all delayed heads,
    so the attention is replicated; the MLP and the head are split."""
    (row,) = _verify(folder, package, capsys, "--parallel", "tp=2")
    assert row["status"] == "pass", row
