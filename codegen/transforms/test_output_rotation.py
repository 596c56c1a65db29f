"""OutputRotation: the attention output's heads turned back before `wo`."""

import pytest

from codegen.transforms.edits import EditError
from codegen.transforms.output_rotation import OutputRotation
from codegen.transforms.testing import package_of

BEFORE = """
class Attention(nn.Module):
    def forward(self, x, rope):
        batch, seq, _ = x.shape
        q = self.wq(x).view(batch, seq, -1, self.head_dim).transpose(1, 2)
        k = self.wk(x).view(batch, seq, -1, self.head_dim).transpose(1, 2)
        v = self.wv(x).view(batch, seq, -1, self.head_dim).transpose(1, 2)
        cos, sin = rope
        q, k = apply_interleaved_rotary(q, cos, sin), apply_interleaved_rotary(k, cos, sin)
        out = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.wo(out.transpose(1, 2).reshape(batch, seq, -1))
"""

AFTER = """
class Attention(nn.Module):
    def forward(self, x, rope):
        batch, seq, _ = x.shape
        q = self.wq(x).view(batch, seq, -1, self.head_dim).transpose(1, 2)
        k = self.wk(x).view(batch, seq, -1, self.head_dim).transpose(1, 2)
        v = self.wv(x).view(batch, seq, -1, self.head_dim).transpose(1, 2)
        cos, sin = rope
        q, k = apply_interleaved_rotary(q, cos, sin), apply_interleaved_rotary(k, cos, sin)
        out = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        out = apply_interleaved_rotary(out, cos, -sin)  # undo the rotation the values carry
        return self.wo(out.transpose(1, 2).reshape(batch, seq, -1))
"""


def test_before_and_after():
    package = package_of({"model.py": BEFORE})
    OutputRotation().apply(package)
    assert package.render()["model.py"] == AFTER


def test_reference_llama_takes_it():
    from codegen.models import references_dir
    from codegen.scaffold.source import SourcePackage

    package = SourcePackage.from_directory(references_dir() / "llama")
    OutputRotation().apply(package)
    assert "out = apply_rotary(out, cos, -sin)" in package.render()["model.py"]


def test_no_query_rotation_is_an_error():
    unrotated = BEFORE.replace(
        "q, k = apply_interleaved_rotary(q, cos, sin), apply_interleaved_rotary(k, cos, sin)",
        "k = apply_interleaved_rotary(k, cos, sin)",
    )
    package = package_of({"model.py": unrotated})
    with pytest.raises(EditError, match="rotates no `q`"):
        OutputRotation().apply(package)
