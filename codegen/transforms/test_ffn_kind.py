"""SetFfnKind: before/after on a FeedForward snippet, and on the llama reference."""

import pytest

from codegen.models import references_dir
from codegen.scaffold.source import SourcePackage
from codegen.transforms.edits import EditError
from codegen.transforms.ffn_bias import SetFeedForwardBias
from codegen.transforms.ffn_kind import SetFfnKind
from codegen.transforms.fused_gate_up import FuseGateUp
from codegen.transforms.testing import package_of

MODEL = '''
class FeedForward(nn.Module):
    """SwiGLU: w2(silu(w1(x)) * w3(x))."""

    def __init__(self, dim: int, hidden_dim: int):
        super().__init__()
        self.w1 = nn.Linear(dim, hidden_dim, bias=False)
        self.w2 = nn.Linear(hidden_dim, dim, bias=False)
        self.w3 = nn.Linear(dim, hidden_dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.w2(F.silu(self.w1(x)) * self.w3(x))
'''

ADAPTER = """
class StateDictAdapter:
    from_hf_map = {
        "model.layers.{}.mlp.gate_proj.weight": "layers.{}.feed_forward.w1.weight",
        "model.layers.{}.mlp.up_proj.weight": "layers.{}.feed_forward.w3.weight",
        "model.layers.{}.mlp.down_proj.weight": "layers.{}.feed_forward.w2.weight",
        "model.norm.weight": "norm.weight",
    }
"""

ARGS = """
FIXED_SETTINGS = {"mlp_bias": False, "hidden_act": "silu"}


class ModelArgs:
    hidden_dim: int = 14336  # SwiGLU inner size
"""

GEGLU = '''
class FeedForward(nn.Module):
    """GeGLU: w2(gelu_pytorch_tanh(w1(x)) * w3(x))."""

    def __init__(self, dim: int, hidden_dim: int):
        super().__init__()
        self.w1 = nn.Linear(dim, hidden_dim, bias=False)
        self.w2 = nn.Linear(hidden_dim, dim, bias=False)
        self.w3 = nn.Linear(dim, hidden_dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.w2(F.gelu(self.w1(x), approximate="tanh") * self.w3(x))
'''

GELU_MLP = '''
class FeedForward(nn.Module):
    """GELU MLP: w2(gelu(w1(x)))."""

    def __init__(self, dim: int, hidden_dim: int):
        super().__init__()
        self.w1 = nn.Linear(dim, hidden_dim, bias=True)
        self.w2 = nn.Linear(hidden_dim, dim, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.w2(F.gelu(self.w1(x)))
'''

GELU_MLP_ADAPTER = """
class StateDictAdapter:
    from_hf_map = {
        "model.layers.{}.mlp.up_proj.weight": "layers.{}.feed_forward.w1.weight",
        "model.layers.{}.mlp.up_proj.bias": "layers.{}.feed_forward.w1.bias",
        "model.layers.{}.mlp.down_proj.weight": "layers.{}.feed_forward.w2.weight",
        "model.layers.{}.mlp.down_proj.bias": "layers.{}.feed_forward.w2.bias",
        "model.norm.weight": "norm.weight",
    }
"""

GELU_MLP_ARGS = """
FIXED_SETTINGS = {"mlp_bias": True, "hidden_act": "gelu"}


class ModelArgs:
    hidden_dim: int = 14336  # GELU MLP inner size
"""


def _package():
    return package_of({"model.py": MODEL, "state_dict_adapter.py": ADAPTER, "args.py": ARGS})


def test_geglu_swaps_the_gate_activation_only():
    package = _package()
    SetFfnKind().apply(package, kind="geglu", activation="gelu_pytorch_tanh")
    files = package.render()
    assert files["model.py"] == GEGLU
    assert files["state_dict_adapter.py"] == ADAPTER
    assert '"hidden_act": "gelu_pytorch_tanh"' in files["args.py"]
    assert "# GeGLU inner size" in files["args.py"]


def test_gelu_mlp_drops_the_up_projection_and_maps_biases():
    package = _package()
    SetFfnKind().apply(package, kind="gelu_mlp", activation="gelu", bias=True)
    files = package.render()
    assert files["model.py"] == GELU_MLP
    assert files["state_dict_adapter.py"] == GELU_MLP_ADAPTER
    assert files["args.py"] == GELU_MLP_ARGS


def test_biases_set_before_an_ungated_kind_follow_it():
    """The rule order: set_ffn_bias (gate/up/down rows), then the kind drops w3's rows."""
    package = _package()
    SetFeedForwardBias().apply(package, enabled=True)
    SetFfnKind().apply(package, kind="gelu_mlp", activation="gelu")
    files = package.render()
    assert files["model.py"] == GELU_MLP
    assert files["state_dict_adapter.py"] == GELU_MLP_ADAPTER


def test_relu2_squares_the_relu():
    package = _package()
    SetFfnKind().apply(package, kind="relu2", activation="relu2", bias=False)
    model = package.render()["model.py"]
    assert "return self.w2(F.relu(self.w1(x)).square())" in model
    assert "self.w3" not in model
    assert '"""ReLU-squared MLP: w2(relu2(w1(x)))."""' in model


def test_gated_relu2_keeps_the_up_projection():
    package = _package()
    SetFfnKind().apply(package, kind="glu", activation="relu2")
    files = package.render()
    assert "return self.w2(F.relu(self.w1(x)).square() * self.w3(x))" in files["model.py"]
    assert '"""GLU: w2(relu2(w1(x)) * w3(x))."""' in files["model.py"]
    assert files["state_dict_adapter.py"] == ADAPTER  # gate, up and down rows all stay
    assert '"hidden_act": "relu2"' in files["args.py"]


def test_plain_mlp_takes_its_activation():
    package = _package()
    SetFfnKind().apply(package, kind="mlp", activation="relu", bias=True)
    model = package.render()["model.py"]
    assert "return self.w2(F.relu(self.w1(x)))" in model
    assert "self.w3" not in model
    assert '"""MLP: w2(relu(w1(x)))."""' in model


def test_activation_follows_a_fused_gate():
    package = _package()
    FuseGateUp().apply(package, layout="concat")
    SetFfnKind().apply(package, kind="geglu", activation="gelu")
    model = package.render()["model.py"]
    assert "return self.w2(F.gelu(gate) * up)" in model
    assert '"""GeGLU: w2(gelu(gate) * up); gate (first half)' in model


def test_ungated_on_a_fused_gate_is_refused():
    package = _package()
    FuseGateUp().apply(package, layout="concat")
    with pytest.raises(EditError):
        SetFfnKind().apply(package, kind="gelu_mlp", activation="gelu")


def test_unknown_kind_or_activation_is_refused():
    with pytest.raises(ValueError):
        SetFfnKind().apply(_package(), kind="moe", activation="silu")
    with pytest.raises(ValueError, match="xielu"):
        SetFfnKind().apply(_package(), kind="geglu", activation="xielu")


def test_on_the_llama_reference():
    package = SourcePackage.from_directory(references_dir() / "llama")
    SetFfnKind().apply(package, kind="gelu_mlp", activation="gelu_pytorch_tanh", bias=False)
    files = package.render()
    assert 'return self.w2(F.gelu(self.w1(x), approximate="tanh"))' in files["model.py"]
    assert "mlp.gate_proj" not in files["state_dict_adapter.py"]
    assert "feed_forward.w3" not in files["state_dict_adapter.py"]
    assert (
        '"model.layers.{}.mlp.up_proj.weight": "layers.{}.feed_forward.w1.weight"'
        in files["state_dict_adapter.py"]
    )


def test_on_the_qwen2_reference_its_activation_guard_follows():
    package = SourcePackage.from_directory(references_dir() / "qwen2")
    SetFfnKind().apply(package, kind="geglu", activation="gelu_pytorch_tanh")
    args = package.render()["args.py"]
    assert 'if hf_config.hidden_act != "gelu_pytorch_tanh":' in args
    assert 'f"hidden_act {hf_config.hidden_act!r}: only gelu_pytorch_tanh")' in args
    assert "silu" not in args


def test_quick_gelu_computes_x_times_sigmoid_of_1_702_x():
    """quick_gelu (x * sigmoid(1.702 x)) has an expression reading its argument once."""
    import torch
    import torch.nn.functional as F

    package = _package()
    SetFfnKind().apply(package, kind="gelu_mlp", activation="quick_gelu")
    model = package.render()["model.py"]
    assert "return self.w2(F.silu(1.702 * self.w1(x)) / 1.702)" in model
    x = torch.linspace(-6.0, 6.0, 101)
    ours = eval("F.silu(1.702 * x) / 1.702", {"F": F, "x": x})
    torch.testing.assert_close(ours, x * torch.sigmoid(1.702 * x))


class _NoActivationField:
    """Features of a target applying its activation without a config field (`own_act(x)`)."""

    def get(self, path: str):
        return None if path == "ffn.activation_field" else pytest.fail(path)


@pytest.mark.parametrize("reference", ["llama", "qwen2"])
def test_an_activation_read_from_no_field_drops_the_hidden_act_pins(reference):
    """The target's code reads no config field for its activation: the reference's pin of
    hidden_act (llama's FIXED_SETTINGS entry, qwen2's guard) goes instead of pinning the
    new activation, which would refuse the target's own config (hidden_act="silu")."""
    package = SourcePackage.from_directory(references_dir() / reference)
    SetFfnKind().apply(package, _NoActivationField(), kind="geglu", activation="quick_gelu")
    args = package.render()["args.py"]
    assert "hidden_act" not in args
    assert "quick_gelu" not in args
