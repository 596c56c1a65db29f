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


def test_an_attention_without_separate_projections_is_an_error():
    package = package_of(
        {
            "model.py": (
                "class Attention:\n"
                "    def __init__(self, args):\n"
                "        super().__init__()\n"
                "    def forward(self, x):\n"
                "        q, k, v = self.wqkv(x).chunk(3, dim=-1)\n"
            ),
            "args.py": "",
        }
    )
    with pytest.raises(EditError):
        ClipQkv().apply(package)
