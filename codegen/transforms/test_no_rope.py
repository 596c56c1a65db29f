"""NoRope: the llama reference without its rotation, and nothing of RoPE left behind."""

from codegen.models import references_dir
from codegen.scaffold.source import SourcePackage
from codegen.transforms.no_rope import NoRope


def _llama() -> SourcePackage:
    return SourcePackage.from_directory(references_dir() / "llama")


def test_the_rotation_and_its_plumbing_are_removed():
    before = _llama().render()
    assert "apply_rotary(q, cos, sin)" in before["model.py"]
    package = _llama()
    NoRope().apply(package)
    files = package.render()
    model = files["model.py"]
    code = model.split("from .args import ModelArgs", 1)[1]  # imports go in tidy
    assert "rope" not in code and "rotary" not in code
    assert "def forward(self, x: torch.Tensor) -> torch.Tensor:\n        batch, seq, _" in model
    assert "h = x + self.attention(self.attention_norm(x))\n" in model
    assert "            h = layer(h)\n" in model
    assert "self.rotary" not in model
    assert "positions: torch.Tensor | None = None" in model  # still the model's input


def test_the_rope_field_and_its_checks_leave_model_args():
    package = _llama()
    NoRope().apply(package)
    args = package.render()["args.py"]
    assert "rope: RopeScaling" not in args
    assert "rope=RopeScaling.from_hf" not in args
    assert "__post_init__" not in args
    assert "norm_eps=hf_config.rms_norm_eps,\n            attention_bias=" in args
