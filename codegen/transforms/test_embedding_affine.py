import libcst.matchers as m
import pytest

from codegen.models import references_dir
from codegen.scaffold.source import SourcePackage
from codegen.transforms.edits import EditError, findall
from codegen.transforms.embedding_affine import EmbeddingAffine

ZAYA = {"scale": "model.input_hidden_states_scale", "bias": "model.input_hidden_states_bias"}


def _package(reference: str = "llama") -> SourcePackage:
    return SourcePackage.from_directory(references_dir() / reference)


@pytest.mark.parametrize("reference", ["llama", "qwen3_moe"])
def test_the_embeddings_pass_through_the_shift_and_scale(reference):
    package = _package(reference)
    EmbeddingAffine().apply(package, affine=ZAYA)
    model = package.module("model.py")
    (affine,) = findall(model, m.ClassDef(name=m.Name("EmbeddingAffine")))
    assert findall(affine, m.FunctionDef(name=m.Name("init_parameters")))
    files = package.render()
    assert "h = self.embedding_affine(self.tok_embeddings(tokens))\n" in files["model.py"]
    assert "return (x + self.bias) * self.scale\n" in files["model.py"]
    assert (
        '"model.input_hidden_states_scale": "embedding_affine.scale",'
        in (files["state_dict_adapter.py"])
    )
    assert (
        '"model.input_hidden_states_bias": "embedding_affine.bias",'
        in (files["state_dict_adapter.py"])
    )


def test_a_scale_alone_holds_no_shift():
    package = _package()
    EmbeddingAffine().apply(package, affine={"scale": ZAYA["scale"], "bias": ""})
    files = package.render()
    assert "return x * self.scale\n" in files["model.py"]
    assert "self.bias" not in files["model.py"]
    assert "embedding_affine.bias" not in files["state_dict_adapter.py"]


def test_without_the_scale_it_refuses():
    with pytest.raises(EditError, match="learned scale"):
        EmbeddingAffine().apply(_package(), affine={"scale": "", "bias": ZAYA["bias"]})
