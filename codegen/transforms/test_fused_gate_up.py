"""FuseGateUp: before/after on a FeedForward snippet, for both layouts."""

import pytest

from codegen.models import references_dir
from codegen.scaffold.source import SourcePackage
from codegen.transforms.edits import EditError
from codegen.transforms.ffn_bias import SetFeedForwardBias
from codegen.transforms.fused_gate_up import FuseGateUp
from codegen.transforms.test_ffn_kind import ADAPTER, MODEL
from codegen.transforms.testing import package_of

CONCAT = '''
class FeedForward(nn.Module):
    """SwiGLU: w2(silu(gate) * up); gate (first half) and up from one projection w13(x)."""

    def __init__(self, dim: int, hidden_dim: int):
        super().__init__()
        self.w13 = nn.Linear(dim, 2 * hidden_dim, bias=False)
        self.w2 = nn.Linear(hidden_dim, dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate, up = self.w13(x).chunk(2, dim=-1)
        return self.w2(F.silu(gate) * up)
'''

FUSED_ADAPTER = """
class StateDictAdapter:
    from_hf_map = {
        "model.layers.{}.mlp.gate_up_proj.weight": "layers.{}.feed_forward.w13.weight",
        "model.layers.{}.mlp.down_proj.weight": "layers.{}.feed_forward.w2.weight",
        "model.norm.weight": "norm.weight",
    }
"""


def _package():
    return package_of({"model.py": MODEL, "state_dict_adapter.py": ADAPTER})


def test_concat_splits_halves_gate_first():
    package = _package()
    FuseGateUp().apply(package, layout="concat")
    assert package.render() == {"model.py": CONCAT, "state_dict_adapter.py": FUSED_ADAPTER}


def test_interleaved_takes_even_features_as_gate():
    package = _package()
    FuseGateUp().apply(package, layout="interleaved")
    model = package.render()["model.py"]
    assert "        gate_up = self.w13(x)\n" in model
    assert "        gate, up = gate_up[..., ::2], gate_up[..., 1::2]\n" in model
    assert "gate (even features)" in model


def test_bias_moves_to_the_fused_projection():
    package = _package()
    SetFeedForwardBias().apply(package, enabled=True)
    FuseGateUp().apply(package, layout="concat", hf_name="fc1_gate_up")
    files = package.render()
    assert "self.w13 = nn.Linear(dim, 2 * hidden_dim, bias=True)" in files["model.py"]
    adapter = files["state_dict_adapter.py"]
    assert '"model.layers.{}.mlp.fc1_gate_up.bias": "layers.{}.feed_forward.w13.bias"' in adapter
    assert "up_proj" not in adapter and "w3" not in adapter


def test_unknown_layout_and_missing_projections_are_refused():
    with pytest.raises(ValueError):
        FuseGateUp().apply(_package(), layout="stacked")
    package = _package()
    FuseGateUp().apply(package, layout="concat")
    with pytest.raises(EditError):
        FuseGateUp().apply(package, layout="concat")


def test_on_the_llama_reference():
    package = SourcePackage.from_directory(references_dir() / "llama")
    FuseGateUp().apply(package, layout="concat")
    files = package.render()
    assert "self.w13 = nn.Linear(dim, 2 * hidden_dim, bias=bias)" in files["model.py"]
    assert "self.w1 " not in files["model.py"] and "self.w3" not in files["model.py"]
    assert "mlp.gate_up_proj.weight" in files["state_dict_adapter.py"]
