"""NoPaddingRow: before/after on the llama reference."""

import pytest

from codegen.models import references_dir
from codegen.scaffold.source import SourcePackage
from codegen.transforms.edits import EditError
from codegen.transforms.no_padding_row import NoPaddingRow

WITH = (
    "self.tok_embeddings = nn.Embedding(args.vocab_size, args.dim, padding_idx=args.pad_token_id)"
)
WITHOUT = "self.tok_embeddings = nn.Embedding(args.vocab_size, args.dim)"


def _package():
    return SourcePackage.from_directory(references_dir() / "llama")


def test_the_word_table_loses_its_padding_row():
    package = _package()
    assert WITH in package.render()["model.py"]
    NoPaddingRow().apply(package)
    model = package.render()["model.py"]
    assert WITHOUT in model
    assert "padding_idx" not in model


def test_a_table_without_padding_row_is_an_error():
    package = _package()
    NoPaddingRow().apply(package)
    with pytest.raises(EditError):
        NoPaddingRow().apply(package)
