"""End to end: inkling2's block attention residuals. Each sublayer's input is a learned
query's attention over the block states (the inputs of the layers that start a block, every
`n_layers_per_attn_res_block` layers) and the current state, each RMS-normalised without a
weight, in fp32; a layer starting a block restarts the stream at its attention's output,
elsewhere the output is added to the input; one more such read comes before the final norm.
Planned from the analysis (with inkling2's MoE), scaffolded and verified against a renamed
copy of transformers' inkling2 text decoder (`inkling2_fixture`: its attention a plain one),
three layers to a block and, as verify sweeps the switch, one (every layer a boundary).
Seeded defects, each a bug of the class these parts bring, fail verify and name the module."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from codegen.scaffold.testing import plan_folder, seeded_copy, verify_folder, write_planned

sys.path.insert(0, str(Path(__file__).parent))
from inkling2_fixture import inkling2_folder  # noqa: E402

pytest.importorskip("transformers.models.inkling2")


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    return inkling2_folder(tmp_path_factory.mktemp("hub"))


@pytest.fixture(scope="module")
def built(tmp_path_factory, folder) -> tuple[Path, str]:
    target, plan = plan_folder(folder)
    assert "attention_residuals" in {step.rule for step in plan.steps}
    return write_planned(tmp_path_factory.mktemp("built") / "models", (target, plan))


def _verify(folder: Path, models: Path, capsys, *flags: str) -> list[dict]:
    return verify_folder(folder, models, capsys, *flags, dtypes=())


def test_both_block_settings_verify_in_fp32_and_bf16(folder, built, capsys):
    rows = _verify(folder, built[0], capsys, "--dtype", "fp32", "--dtype", "bf16")
    ran = [row for row in rows if row["status"] not in ("skipped", "refused")]
    # three layers to a block, and one (n_layers_per_attn_res_block=1), and the router's
    # other score function (scoring_func='sqrtsoftplus'), in both dtypes
    assert len(ran) == 6 and all(row["status"] == "pass" for row in ran), rows
    assert not [row["case"] for row in rows if row["status"] == "refused"], rows
    assert any("n_layers_per_attn_res_block=1" in row["case"] for row in ran), rows
    # built on meta and initialised as HF does (the queries at zero); packed documents alone
    assert all(row["lifecycle_ok"] and row["packed_ok"] for row in ran), rows
    keys = (built[0] / built[1] / "state_dict_adapter.py").read_text()
    assert '"model.layers.{}.mlp_input.query": "layers.{}.ffn_input.query"' in keys


@pytest.mark.parametrize(
    ("old", "new", "where"),
    [
        # blocks never restarted after the first layer
        (
            "self.starts_block = layer_id % args.attn_res_block == 0",
            "self.starts_block = layer_id == 0",
            "layers.3.ffn_input",
        ),
        # the stacked states scored unnormalised
        (
            "states = states * torch.rsqrt(states.square().mean(-1, keepdim=True) + self.eps)",
            "states = states",
            "layers.0.ffn_input",
        ),
        # inside a block, the attention's output not added to the layer's input
        ("            h = x.float() + h\n", "            h = h.float()\n", "layers.1"),
        # a block's first input not kept among the block states
        (
            "blocks = torch.cat([blocks, x.unsqueeze(-2)], dim=-2)",
            "blocks = blocks",
            "layers.0.ffn_input",
        ),
        # the FFN reading the stream, not its depth attention (contiguous: the output
        # convolution's sum keeps HF's channels-first layout, which a `.view` refuses)
        ("self.ffn_input(blocks, h)", "h.contiguous()", "layers.0.ffn_input"),
        # the final norm reading the last layer's output, not the block states (the stage
        # after the last layer is the head's: the locator names it)
        ("h = self.final_input(blocks, h)", "h = h", "output head"),
    ],
)
def test_seeded_defects_fail_and_name_the_module(tmp_path, folder, built, capsys, old, new, where):
    models = seeded_copy(built[0], tmp_path / "models", built[1], old, new)
    rows = _verify(folder, models, capsys, "--dtype", "fp32")
    (row,) = [row for row in rows if "+" not in row["case"]]
    assert row["status"] == "fail", row
    assert (row.get("first_divergence") or "").startswith(where), row


def test_tensor_parallel_matches_one_device(folder, built, capsys):
    """tp=2: the depth attentions' queries are whole on every rank (each reads the full
    hidden vector)."""
    rows = _verify(folder, built[0], capsys, "--parallel", "tp=2")
    (row,) = [row for row in rows if "+" not in row["case"]]
    assert row["status"] == "pass", row
