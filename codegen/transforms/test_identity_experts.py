"""IdentityExperts: before/after on the deepseek_v3 reference (softmax router with correction
bias, no shared expert, as LongCat-Flash's), and what a built MoE computes."""

from __future__ import annotations

import importlib
import sys

import pytest
import torch

from codegen.models import references_dir
from codegen.scaffold.source import SourcePackage
from codegen.transforms.drop_shared_experts import DropSharedExperts
from codegen.transforms.edits import EditError
from codegen.transforms.identity_experts import IdentityExperts
from codegen.transforms.softmax_gate import SetSoftmaxGate

ZERO = {"count": "config.zero_expert_num or 0", "rows": ("gate_up_proj",)}


def _package() -> SourcePackage:
    package = SourcePackage.from_directory(references_dir() / "deepseek_v3")
    DropSharedExperts().apply(package)
    SetSoftmaxGate().apply(package, grouped=False, renormalize=False, correction_bias=True)
    return package


def test_the_router_scores_the_identity_experts_and_the_moe_passes_their_tokens():
    before = _package().render()["model.py"]
    assert "n_zero_experts" not in before
    package = _package()
    IdentityExperts().apply(package, zero_experts=ZERO)
    files = package.render()
    model, args = files["model.py"], files["args.py"]
    gate = model.split("class Gate(", 1)[1].split("\nclass ", 1)[0]
    assert "n_experts = args.n_routed_experts + args.n_zero_experts" in gate
    assert "self.weight = nn.Parameter(torch.empty(n_experts, args.dim))" in gate
    assert 'self.register_buffer("e_score_correction_bias", torch.zeros(n_experts))' in gate
    # the experts pass the identity slots on (as HF's experts module), and hold HF's unread
    # gate/up rows for the identity experts, read only up to the routed ones
    experts = model.split("class Experts(", 1)[1].split("\nclass ", 1)[0]
    assert "identity = indices >= self.num_experts" in experts
    # identity slots sort last, past the offsets (the routed experts' counts only), go into
    # the products zeroed and come out as the token itself
    assert "minlength=self.num_experts)[:self.num_experts]" in experts.replace(" ", "")
    assert "skipped = identity.flatten()[order, None]" in experts
    assert "passed, rows = rows, rows.masked_fill(skipped, 0)" in experts
    assert "torch.where(skipped, passed, grouped_mm(hidden, self.w2.mT" in experts
    assert "masked_fill(identity, 0)" not in experts  # not given to expert 0 at weight 0
    assert "the `n_zero_experts` identity experts" in experts
    moe = model.split("class MoE(", 1)[1].split("\nclass ", 1)[0]
    assert "args.n_routed_experts, args.dim, args.moe_hidden_dim, args.n_zero_experts" in moe
    assert "torch.empty(num_experts + n_zero_experts, hidden_dim, dim)" in experts
    assert "self.w2 = nn.Parameter(torch.empty(num_experts, dim, hidden_dim))" in experts
    assert "self.w1[:self.num_experts].mT" in experts.replace(" ", "")
    assert "self.w3[:self.num_experts].mT" in experts.replace(" ", "")
    assert "self.w2.mT" in experts
    assert "n_zero_experts=hf_config.zero_expert_num or 0," in args
    assert "if hf_config.n_routed_experts <= 0:" in args
    with pytest.raises(EditError, match="not a config expression"):
        IdentityExperts().apply(_package(), zero_experts={"count": "unknown", "rows": ()})


@pytest.mark.parametrize(
    ("count", "read"),
    [
        ("config.zero_expert_num or 0", "hf_config.zero_expert_num or 0"),
        ("config.n_identity*2", "hf_config.n_identity*2"),  # no spaces around the field
        ("(config.a) + config.b", "(hf_config.a) + hf_config.b"),
    ],
)
def test_the_count_is_read_from_hf_config_field_by_field(count, read):
    package = _package()
    IdentityExperts().apply(package, zero_experts={"count": count, "rows": ("gate_up_proj",)})
    assert f"n_zero_experts={read}," in package.render()["args.py"]


@pytest.mark.parametrize("count", ["config.a + other.b", "len(config.a)", "config.a.b"])
def test_a_count_reading_more_than_config_fields_is_refused(count):
    with pytest.raises(EditError, match="reads more than the config"):
        IdentityExperts().apply(_package(), zero_experts={"count": count, "rows": ()})


def _built_moe(tmp_path):
    package = _package()
    IdentityExperts().apply(package, zero_experts=ZERO)
    folder = tmp_path / "gen_identity_experts"
    folder.mkdir()
    for name, text in package.render().items():
        (folder / name).write_text(text)
    sys.path.insert(0, str(tmp_path))
    try:
        args_module = importlib.import_module("gen_identity_experts.args")
        model_module = importlib.import_module("gen_identity_experts.model")
    finally:
        sys.path.remove(str(tmp_path))
        for name in [name for name in sys.modules if name.startswith("gen_identity_experts")]:
            del sys.modules[name]
    args = args_module.ModelArgs(
        dim=16, n_layers=1, n_heads=2, vocab_size=32, hidden_dim=12, n_dense_layers=0,
        n_routed_experts=4, n_zero_experts=3, n_activated_experts=3, moe_hidden_dim=8,
    )  # fmt: skip
    torch.manual_seed(0)
    moe = model_module.MoE(args)
    for tensor in (moe.gate.weight, moe.experts.w1, moe.experts.w2, moe.experts.w3):
        torch.nn.init.normal_(tensor, std=0.3)
    return model_module, moe


def _by_loop(moe, x, weights, indices):
    """What HF's experts module computes: a loop over the slots, identity picks passed on."""
    tokens = x.view(-1, x.shape[-1])
    rows = []
    for t in range(tokens.shape[0]):
        row = torch.zeros_like(tokens[t])
        for slot in range(indices.shape[1]):
            e, w = int(indices[t, slot]), weights[t, slot]
            if e >= moe.experts.num_experts:  # an identity expert: the token itself
                row = row + w * tokens[t]
            else:
                hidden = torch.nn.functional.silu(moe.experts.w1[e] @ tokens[t])
                row = row + w * (moe.experts.w2[e] @ (hidden * (moe.experts.w3[e] @ tokens[t])))
        rows.append(row)
    return torch.stack(rows)


def test_a_built_moe_passes_identity_picks_on_weighted(tmp_path):
    _, moe = _built_moe(tmp_path)
    assert moe.gate.weight.shape[0] == 7 and moe.experts.w1.shape[0] == 7
    assert moe.experts.w2.shape[0] == 4
    x = torch.randn(1, 6, 16)
    with torch.no_grad():
        _, weights, indices = moe.gate(x)
        assert (indices >= 4).any() and (indices < 4).any()
        expected = _by_loop(moe, x, weights, indices)
        torch.testing.assert_close(moe(x).view(-1, 16), expected, rtol=1e-5, atol=1e-5)


def test_identity_slots_run_no_weights_and_their_gradients_are_the_tokens(tmp_path):
    """The grouped products stop at the routed slots (HF's loop runs no weights for an
    identity pick either), and the rows they leave unset reach neither the output nor the
    gradients: the input's and the experts' gradients are the loop's."""
    model_module, moe = _built_moe(tmp_path)
    x = torch.randn(1, 6, 16, requires_grad=True)
    _, weights, indices = moe.gate(x)
    routed = int((indices < moe.experts.num_experts).sum())
    assert 0 < routed < indices.numel()
    multiplied = []
    grouped_mm = model_module.F.grouped_mm

    def recording(a, b, *, offs):
        multiplied.append(int(offs[-1]))
        return grouped_mm(a, b, offs=offs)

    model_module.F.grouped_mm = recording
    try:
        out = moe.experts(x.view(-1, 16), indices, weights)
    finally:
        model_module.F.grouped_mm = grouped_mm
    assert multiplied == [routed] * 3  # gate, up, down: the routed slots' rows only
    expected = _by_loop(moe, x, weights, indices)
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)
    probe = torch.randn_like(out)
    params = (x, moe.experts.w1, moe.experts.w2, moe.experts.w3)
    got = torch.autograd.grad((out * probe).sum(), params, retain_graph=True)
    want = torch.autograd.grad((expected * probe).sum(), params)
    for ours, theirs in zip(got, want, strict=True):
        assert torch.isfinite(ours).all()
        torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-5)
