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
    redraw = init.index("init_embedding(self.tok_embeddings, self.args.embedding_init_std)")
    assert table < redraw  # after the table's init, which would overwrite it
    assert "import init_embedding" in model or "init_embedding," in model
    assert f"embedding_init_std={STD}," in " ".join(files["args.py"].split()).replace("( ", "(")


def test_without_the_std_it_is_an_error():
    with pytest.raises(EditError):
        EmbeddingInitStd().apply(_package(), std=None)


def test_the_redrawn_table_keeps_its_padding_row_at_zero():
    """HF's `_init_weights` zeroes the padding row after drawing the table at its own std;
    the helper the generated init calls does the same, with or without a padding row."""
    import torch
    from torch import nn

    from codegen.layers.lifecycle import init_embedding

    table = nn.Embedding(50, 16, padding_idx=3)
    init_embedding(table, 0.5)
    assert torch.equal(table.weight[3], torch.zeros(16))
    assert 0.4 < table.weight[4:].std().item() < 0.6
    unpadded = nn.Embedding(50, 16)
    init_embedding(unpadded, 0.5)
    assert bool((unpadded.weight != 0).all())
