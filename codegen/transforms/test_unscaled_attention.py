"""UnscaledAttention: SDPA gets scale=1.0; written-out attention loses its default factor."""

import pytest
import torch

from codegen.models import references_dir
from codegen.scaffold.source import SourcePackage
from codegen.transforms.edits import EditError
from codegen.transforms.testing import package_of
from codegen.transforms.unscaled_attention import UnscaledAttention


def test_sdpa_is_called_with_scale_one():
    package = SourcePackage.from_directory(references_dir() / "llama")
    before = package.render()["model.py"]
    assert "scale=" not in before
    UnscaledAttention().apply(package)
    after = package.render()["model.py"]
    assert "scale=1.0" in after
    assert after.count("scale=") == 1


_WRITTEN_OUT = """
class Attention(nn.Module):
    def __init__(self, head_dim):
        super().__init__()
        self.head_dim = head_dim

    def forward(self, q, k):
        scores = (q @ k.transpose(2, 3) * self.head_dim**-0.5).float()
        return scores
"""


def test_written_out_scores_drop_the_default_factor():
    package = package_of({"model.py": _WRITTEN_OUT})
    UnscaledAttention().apply(package)
    code = package.render()["model.py"]
    assert "scores = (q @ k.transpose(2, 3)).float()" in code
    namespace = {"nn": torch.nn}
    exec(code, namespace)  # noqa: S102 - the rendered snippet, to run it
    q, k = torch.randn(1, 2, 3, 8), torch.randn(1, 2, 3, 8)
    scores = namespace["Attention"](8).forward(q, k)
    torch.testing.assert_close(scores, q @ k.transpose(2, 3))


def test_an_attention_without_a_scale_site_is_an_error():
    package = package_of(
        {"model.py": "class Attention:\n    def forward(self, x):\n        return x\n"}
    )
    with pytest.raises(EditError):
        UnscaledAttention().apply(package)
