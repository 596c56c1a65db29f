"""ExtraWordRows: before/after on the llama reference."""

import pytest

from codegen.models import references_dir
from codegen.scaffold.source import SourcePackage
from codegen.transforms.edits import EditError
from codegen.transforms.extra_word_rows import ExtraWordRows

BEFORE = (
    "self.tok_embeddings = nn.Embedding(args.vocab_size, args.dim, padding_idx=args.pad_token_id)"
)
AFTER = "nn.Embedding(args.vocab_size + 1, args.dim, padding_idx=args.pad_token_id)"


def _package():
    return SourcePackage.from_directory(references_dir() / "llama")


def test_the_word_table_gets_its_extra_rows_and_the_head_keeps_the_vocabulary():
    package = _package()
    assert BEFORE in package.render()["model.py"]
    ExtraWordRows().apply(package, rows=1)
    files = package.render()
    assert AFTER in files["model.py"]
    assert "nn.Linear(args.dim, args.vocab_size, bias=False)" in files["model.py"]
    # a pad id may be one of the extra rows
    assert "hf_config.vocab_size + 1" in files["args.py"]


def test_a_tied_head_is_refused():
    with pytest.raises(EditError):
        ExtraWordRows().apply(_package(), {"embedding.tied": True}, rows=1)


def test_a_table_built_otherwise_is_an_error():
    package = _package()
    ExtraWordRows().apply(package, rows=1)
    with pytest.raises(EditError):
        ExtraWordRows().apply(package, rows=1)
