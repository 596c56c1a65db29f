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
    # other score functions (scoring_func 'sqrtsoftplus', 'relu2'), in both dtypes
    assert len(ran) == 8 and all(row["status"] == "pass" for row in ran), rows
    # relu2 in bf16: the package's fused attention swaps one token's near-tied experts HF's
    # eager kernel keeps (0.128 of max|logit|); judged with HF's formula, printed apart
    (relu2,) = [r for r in ran if "relu2" in r["case"] and r["dtype"] == "bf16"]
    assert relu2["fused_kernel_diff"] > relu2["bound"] >= relu2["relative_diff"], relu2
    assert not [row["case"] for row in rows if row["status"] == "refused"], rows
    assert any("n_layers_per_attn_res_block=1" in row["case"] for row in ran), rows
    # built on meta and initialised as HF does (the queries at zero); packed documents alone
    assert all(row["lifecycle_ok"] and row["packed_ok"] for row in ran), rows
    keys = (built[0] / built[1] / "state_dict_adapter.py").read_text()
    assert '"model.layers.{}.mlp_input.query": "layers.{}.ffn_input.query"' in keys


# the router projecting in the model's dtype where HF projects its fp32 gate weight in fp32: a
# bf16-only defect (in fp32 the two are one computation)
HALF_ROUTER = (
    "self.route(F.linear(x.float(), self.gate.weight.float()))",
    "self.route(F.linear(x, self.gate.weight.to(x.dtype)))",
)


def _bf16_logits_apart(folder: Path, models: Path, name: str, tmp_path: Path) -> float:
    """Largest |package - HF| over both verify inputs, both models in bf16 with relu2 router
    scores (seed 0's random weights) and every attention call computed by HF's eager formula
    (`explicit_attention_kernel`); 0.0: bit for bit."""
    import torch
    from transformers import AutoModelForCausalLM

    from codegen.models import load_spec
    from codegen.verify.hf_checkpoint import load_checkpoint, random_hf_model, save_checkpoint
    from codegen.verify.kernels import explicit_attention_kernel
    from codegen.verify.remote import load_remote, remote_toy_config
    from codegen.verify.run import make_inputs, pad_token

    config = remote_toy_config(load_remote(folder, True), scoring_func="relu2")
    save_checkpoint(random_hf_model(config, 0), tmp_path / "hf")
    hf = AutoModelForCausalLM.from_pretrained(tmp_path / "hf", dtype=torch.bfloat16).eval()
    _, house, adapter = load_spec(name, models).build(config)
    house.load_state_dict(adapter.from_hf(load_checkpoint(tmp_path / "hf")), strict=False)
    house.eval().to(torch.bfloat16)
    apart = 0.0
    with torch.no_grad(), explicit_attention_kernel():
        for item in make_inputs(config.vocab_size, 0, pad_token(config)):
            want = hf(input_ids=item.tokens, position_ids=item.positions).logits
            kwargs = {} if item.positions is None else {"positions": item.positions}
            got = house(item.tokens, **kwargs)
            apart = max(apart, float((got.float() - want.float()).abs().max()))
    return apart


def test_relu2_scores_are_hf_bit_for_bit_in_bf16(tmp_path, folder, built):
    """Why verify judges this fixture's bf16 run with HF's attention formula: on seed 0's
    short input the package's fused attention rounds layer 0's MoE input a bf16 step away
    from HF's eager attention (HF's only kernel here), and one token's second and third
    expert (biased scores 0.461 and 0.459, a gap below bf16's step) swap, 0.128 of max|logit|
    where HF's own bf16 moved 0.0075 on that input (such swaps came on seeds 3 and 5 too, the
    sigmoid default on seed 2, sqrtsoftplus on 3). With the attention computed by HF's
    formula the package in bf16 is HF in bf16 bit for bit."""
    assert _bf16_logits_apart(folder, *built, tmp_path) == 0.0


def test_router_projected_in_bf16_is_not_hf_in_bf16(tmp_path, folder, built, capsys):
    """The seeded defect moves the run with HF's attention formula too, so verify's relu2
    bf16 row fails and names the router's MoE block: judging the fused kernel's choice with
    HF's formula excuses no rounding of the package's own."""
    models = seeded_copy(built[0], tmp_path / "models", built[1], *HALF_ROUTER)
    assert _bf16_logits_apart(folder, models, built[1], tmp_path) > 0.0
    rows = _verify(folder, models, capsys, "--dtype", "bf16")
    (relu2,) = [row for row in rows if "relu2" in row["case"]]
    assert relu2["status"] == "fail", relu2
    assert (relu2.get("first_divergence") or "").startswith("layers.0.moe"), relu2


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
