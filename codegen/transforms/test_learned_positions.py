"""LearnedPositions: a position table added before the first layer, mapped in the adapter."""

import pytest

from codegen.models import references_dir
from codegen.scaffold.source import SourcePackage
from codegen.transforms.edits import EditError
from codegen.transforms.learned_positions import LearnedPositions


def _llama() -> SourcePackage:
    return SourcePackage.from_directory(references_dir() / "llama")


def test_gpt2_style_table_without_offset():
    package = _llama()
    LearnedPositions().apply(package, table="transformer.wpe", offset=0)
    files = package.render()
    assert (
        "self.tok_embeddings = nn.Embedding(args.vocab_size, args.dim, "
        "padding_idx=args.pad_token_id)\n"
        "        self.pos_embeddings = nn.Embedding(args.max_position_embeddings, args.dim)\n"
    ) in files["model.py"]
    assert (
        "h = self.tok_embeddings(tokens)\n"
        "        rope = self.rotary(positions)\n"
        "        h = h + self.pos_embeddings(positions)\n"
        "        for layer in self.layers:\n"
    ) in files["model.py"]
    assert (
        '"model.embed_tokens.weight": "tok_embeddings.weight",\n'
        '        "transformer.wpe.weight": "pos_embeddings.weight",\n'
    ) in files["state_dict_adapter.py"]
    assert "max_position_embeddings=hf_config.max_position_embeddings," in files["args.py"]
    assert "max_position_embeddings: int = 2048" in files["args.py"]


def test_offset_table_has_more_rows_and_reads_from_the_offset():
    package = _llama()
    LearnedPositions().apply(package, table="model.decoder.embed_positions", offset=2)
    model = package.render()["model.py"]
    constant = "\nPOSITION_OFFSET = 2  # position p is row p + POSITION_OFFSET of HF's table\n"
    assert model.index("from .args import ModelArgs") < model.index(constant)
    assert model.index(constant) < model.index("class Attention")
    assert "nn.Embedding(args.max_position_embeddings + POSITION_OFFSET, args.dim)" in model
    assert "h = h + self.pos_embeddings(positions + POSITION_OFFSET)" in model


def test_bad_parameters_are_refused():
    with pytest.raises(EditError):
        LearnedPositions().apply(_llama(), table="", offset=0)
    with pytest.raises(EditError):
        LearnedPositions().apply(_llama(), table="transformer.wpe", offset=-1)
