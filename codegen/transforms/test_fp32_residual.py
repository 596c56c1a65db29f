import pytest

from codegen.models import references_dir
from codegen.scaffold.source import SourcePackage
from codegen.transforms.edits import EditError
from codegen.transforms.fp32_residual import Fp32Residual
from codegen.transforms.residual_affine import ResidualAffine
from codegen.transforms.testing import package_of


def _package(reference: str = "llama") -> SourcePackage:
    return SourcePackage.from_directory(references_dir() / reference)


@pytest.mark.parametrize("reference", ["llama", "qwen3_moe", "deepseek_v3"])
def test_the_stream_is_fp32_between_the_embeddings_and_the_final_norm(reference):
    package = _package(reference)
    Fp32Residual().apply(package)
    model = package.render()["model.py"]
    loop = "        for layer in self.layers:\n            h = layer(h, rope"
    assert f"        h = h.float()  # the residual stream is kept in fp32\n{loop}" in model
    assert (
        "        h = h.to(self.norm.weight.dtype)  # the final norm's dtype\n"
        "        h = self.norm(h)"
    ) in model
    assert "self.attention_norm(x.to(self.attention_norm.weight.dtype))" in model
    assert "self.ffn_norm(h.to(self.ffn_norm.weight.dtype))" in model


def test_with_affine_residual_adds_the_norms_still_read_the_cast_stream():
    package = _package()
    modules = {
        label: {
            "module": label,
            "out_bias": "a",
            "out_scale": "b",
            "stream_bias": "c",
            "stream_scale": "d",
        }
        for label in ("attention", "mlp")
    }
    ResidualAffine().apply(package, modules=modules)
    Fp32Residual().apply(package)
    model = package.render()["model.py"]
    assert "self.attention_residual(\n" in model or "self.attention_residual(self." in model
    assert "self.ffn_norm(h.to(self.ffn_norm.weight.dtype))" in model


def test_without_a_layer_loop_it_refuses():
    package = package_of(
        {
            "model.py": "class Model:\n"
            "    def forward(self, tokens):\n"
            "        return self.output(self.norm(self.tok_embeddings(tokens)))\n"
        }
    )
    with pytest.raises(EditError, match="loop over self.layers"):
        Fp32Residual().apply(package)
