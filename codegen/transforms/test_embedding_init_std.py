"""EmbeddingInitStd: before/after on the deepseek_v3 reference."""

import pytest

from codegen.models import references_dir
from codegen.scaffold.source import SourcePackage
from codegen.transforms.edits import EditError
from codegen.transforms.embedding_init_std import EmbeddingInitStd

STD = 'getattr(hf_config, "embedding_initializer_range", 2 * hf_config.initializer_range)'


def _package():
    return SourcePackage.from_directory(references_dir() / "deepseek_v3")


def test_init_weights_redraws_the_embeddings_at_their_std():
    assert "embedding_init_std" not in _package().render()["model.py"]
    package = _package()
    EmbeddingInitStd().apply(package, std=STD)
    files = package.render()
    model = files["model.py"]
    init = model.split("def init_weights", 1)[1].split("def forward", 1)[0]
    table = init.index("init_module_weights(self, self.args.initializer_range, buffer_device)")
    redraw = init.index(
        "nn.init.normal_(self.tok_embeddings.weight, mean=0.0, std=self.args.embedding_init_std)"
    )
    assert table < redraw  # after the table's init, which would overwrite it
    assert f"embedding_init_std={STD}," in " ".join(files["args.py"].split()).replace("( ", "(")


def test_without_the_std_it_is_an_error():
    with pytest.raises(EditError):
        EmbeddingInitStd().apply(_package(), std=None)
