"""ClipQkv: q/k/v clamped where the config sets clip_qkv, untouched where it is None."""

import pytest

from codegen.models import references_dir
from codegen.scaffold.source import SourcePackage
from codegen.transforms.clip_qkv import METHOD, ClipQkv
from codegen.transforms.edits import EditError
from codegen.transforms.testing import package_of


def _reference(name: str) -> SourcePackage:
    return SourcePackage.from_directory(references_dir() / name)


@pytest.mark.parametrize("reference", ["llama", "qwen3"])
def test_each_projection_is_clamped_as_a_whole(reference):
    package = _reference(reference)
    ClipQkv().apply(package)
    files = package.render()
    model = files["model.py"]
    for name in "qkv":
        line = next(line for line in model.splitlines() if line.strip().startswith(f"{name} ="))
        assert line.strip().startswith(f"{name} = self.clip(self.") and f"self.w{name}(x)" in line
    assert "        self.clip_qkv = args.clip_qkv\n" in model
    assert "if self.clip_qkv is None:" in model
    assert "clip_qkv: float | None = None" in files["args.py"]
    assert "clip_qkv=hf_config.clip_qkv," in files["args.py"]
    compile(model, "model.py", "exec")


def test_the_clamp_bites_only_when_set():
    import torch

    namespace: dict = {}
    exec("import torch\n" + METHOD, namespace)  # the generated method, on a stand-in self
    t = torch.tensor([-3.0, 0.5, 3.0])
    clipped = namespace["clip"](type("A", (), {"clip_qkv": 1.0})(), t)
    assert clipped.tolist() == [-1.0, 0.5, 1.0]
    assert namespace["clip"](type("A", (), {"clip_qkv": None})(), t) is t


def _attention(forward: str, init: str = "") -> SourcePackage:
    return package_of(
        {
            "model.py": (
                "class Attention:\n"
                "    def __init__(self, args):\n"
                "        super().__init__()\n"
                f"{init}"
                "    def forward(self, x):\n"
                f"        {forward}\n"
            ),
            "args.py": ARGS,
        }
    )


ARGS = """
from dataclasses import dataclass


@dataclass
class ModelArgs:
    dim: int = 8

    @classmethod
    def from_hf_config(cls, hf_config):
        return cls(dim=hf_config.hidden_size)
"""


def test_a_fused_projection_is_clamped_before_the_split():
    package = _attention("q, k, v = self.wqkv(x).chunk(3, dim=-1)")
    ClipQkv().apply(package)
    model = package.render()["model.py"]
    assert "q, k, v = self.clip(self.wqkv(x)).chunk(3, dim=-1)" in model
    assert "self.clip_qkv = args.clip_qkv" in model
    assert "clip_qkv=hf_config.clip_qkv" in package.render()["args.py"]


def test_an_attention_without_q_k_v_projections_is_an_error():
    with pytest.raises(EditError):
        ClipQkv().apply(_attention("q, k, v = self.proj(x).chunk(3, dim=-1)"))


def test_a_fused_projection_beside_a_qk_norm_is_an_error():
    # HF clamps after the norm there: clamping the fused output would be another model
    package = _attention(
        "q, k, v = self.wqkv(x).chunk(3, dim=-1); q = self.q_norm(q)",
        init="        self.q_norm = None\n",
    )
    with pytest.raises(EditError):
        ClipQkv().apply(package)
