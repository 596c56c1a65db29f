"""DropFinalNorm: before/after on the llama reference."""

import pytest

from codegen.models import references_dir
from codegen.scaffold.source import SourcePackage
from codegen.transforms.drop_final_norm import DropFinalNorm
from codegen.transforms.edits import EditError
from codegen.transforms.testing import package_of


def _llama():
    return SourcePackage.from_directory(references_dir() / "llama")


def test_the_head_reads_the_last_layer_output():
    package = _llama()
    before = package.render()
    assert "h = self.norm(h)" in before["model.py"]
    assert '"model.norm.weight": "norm.weight"' in before["state_dict_adapter.py"]
    DropFinalNorm().apply(package)
    after = package.render()
    assert "return self.output(h)" in after["model.py"]
    assert "self.norm" not in after["model.py"]
    assert '"norm.weight"' not in after["state_dict_adapter.py"]
    assert '"tok_embeddings.weight"' in after["state_dict_adapter.py"]


def test_a_model_without_a_final_norm_row_is_an_error():
    package = _llama()
    package = package_of(
        {
            "model.py": package.render()["model.py"],
            "state_dict_adapter.py": "class StateDictAdapter:\n    from_hf_map = {}\n",
        }
    )
    with pytest.raises(EditError, match="norm.weight"):
        DropFinalNorm().apply(package)
