"""EmbeddingNorm: the final norm module also normalises the embeddings before the layers."""

import pytest
import torch

from codegen.models import references_dir
from codegen.scaffold.source import SourcePackage
from codegen.transforms.edits import EditError
from codegen.transforms.embedding_norm import EmbeddingNorm
from codegen.transforms.testing import package_of


def _llama():
    return SourcePackage.from_directory(references_dir() / "llama")


def test_before_the_embeddings_reach_the_layers_unnormalised():
    model = _llama().render()["model.py"]
    assert "        h = self.tok_embeddings(tokens)\n" in model
    assert "self.norm(self.tok_embeddings(tokens))" not in model


def test_after_the_final_norm_module_normalises_them():
    package = _llama()
    EmbeddingNorm().apply(package)
    model = package.render()["model.py"]
    assert "        h = self.norm(self.tok_embeddings(tokens))\n" in model
    assert model.count("self.norm = ") == 1  # one module used twice, no new tensor


def test_the_first_layer_sees_unit_rms_embeddings():
    namespace: dict = {}
    package = package_of(
        {
            "model.py": (
                "class Model:\n"
                "    def forward(self, tokens):\n"
                "        h = self.tok_embeddings(tokens)\n"
                "        return h\n"
            )
        }
    )
    EmbeddingNorm().apply(package)
    exec(package.render()["model.py"], namespace)
    model = namespace["Model"]()
    model.tok_embeddings = torch.nn.Embedding(10, 8)
    model.norm = torch.nn.RMSNorm(8, eps=1e-6, elementwise_affine=False)
    h = model.forward(torch.tensor([[1, 2, 3]]))
    torch.testing.assert_close(h.pow(2).mean(-1), torch.ones(1, 3), rtol=1e-4, atol=1e-4)


def test_a_model_without_the_embedding_call_is_refused():
    package = package_of({"model.py": "class Model:\n    def forward(self):\n        pass\n"})
    with pytest.raises(EditError):
        EmbeddingNorm().apply(package)


def test_a_norm_of_their_own_is_built_like_the_final_one_and_mapped():
    """bloom: `word_embeddings_layernorm` is a module of its own, called once."""
    package = _llama()
    EmbeddingNorm().apply(package, module="transformer.word_embeddings_layernorm")
    files = package.render()
    model = files["model.py"]
    assert "        h = self.embedding_norm(self.tok_embeddings(tokens))\n" in model
    final = next(line for line in model.splitlines() if "self.norm = " in line).split("= ")[1]
    assert f"self.embedding_norm = {final}" in model
    adapter = files["state_dict_adapter.py"]
    assert '"transformer.word_embeddings_layernorm.weight": "embedding_norm.weight"' in adapter
    assert "embedding_norm.bias" not in adapter  # llama's norms have no bias
