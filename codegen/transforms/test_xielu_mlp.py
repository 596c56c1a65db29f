"""SetXieluMlp: before/after on the llama reference, and the XIELU module against HF's."""

import pytest
import torch

from codegen.models import references_dir
from codegen.scaffold.source import SourcePackage
from codegen.transforms.xielu_mlp import XIELU, SetXieluMlp


def test_the_feed_forward_becomes_an_ungated_xielu_mlp():
    package = SourcePackage.from_directory(references_dir() / "llama")
    before = package.render()
    assert "return self.w2(F.silu(self.w1(x)) * self.w3(x))" in before["model.py"]
    SetXieluMlp().apply(package)
    files = package.render()
    model = files["model.py"]
    assert "return self.w2(self.act(self.w1(x)))" in model
    assert "self.w3" not in model
    assert "self.act = XIELU()" in model
    assert model.index("class XIELU") < model.index("class Attention")
    adapter = files["state_dict_adapter.py"]
    assert '"model.layers.{}.mlp.up_proj.weight": "layers.{}.feed_forward.w1.weight"' in adapter
    assert "gate_proj" not in adapter
    for tensor in ("alpha_p", "alpha_n", "beta", "eps"):
        row = f'"model.layers.{{}}.mlp.act_fn.{tensor}": "layers.{{}}.feed_forward.act.{tensor}"'
        assert row in adapter
    assert 'FIXED_SETTINGS = {"hidden_act": "xielu"}' in files["args.py"]


def _ours():
    namespace = {"torch": torch, "nn": torch.nn, "F": torch.nn.functional}
    exec(XIELU, namespace)
    return namespace["XIELU"]()


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_xielu_matches_hf_bit_for_bit(dtype):
    from transformers.activations import XIELUActivation

    theirs = XIELUActivation(dtype=torch.float32)
    ours = _ours()
    assert ours.load_state_dict(theirs.state_dict(), strict=True)
    torch.manual_seed(0)
    with torch.no_grad():
        for name in ("alpha_p", "alpha_n"):
            value = torch.randn(1)
            getattr(ours, name).copy_(value)
            getattr(theirs, name).copy_(value)
    ours, theirs = ours.to(dtype), theirs.to(dtype)
    x = torch.randn(4, 64).to(dtype) * 3
    assert torch.equal(ours(x), theirs(x))


def test_init_parameters_restores_hf_built_values():
    from transformers.activations import XIELUActivation

    theirs = XIELUActivation(dtype=torch.float32)
    ours = _ours()
    with torch.no_grad():
        for tensor in (*ours.parameters(), *ours.buffers()):
            tensor.zero_()  # as the lifecycle table leaves a buffer, or a draw would
        ours.init_parameters(0.02)
    for name, value in theirs.state_dict().items():
        assert torch.equal(ours.state_dict()[name], value), name
