"""PaddedPositions: before/after on the llama reference with a learned table; the rendered
count gives HF RoBERTa's position ids, padding tokens included."""

import ast
import re

import pytest
import torch

from codegen.models import references_dir
from codegen.scaffold.source import SourcePackage, parse_source
from codegen.transforms.edits import EditError
from codegen.transforms.learned_positions import LearnedPositions
from codegen.transforms.padded_positions import PaddedPositions

ARANGE = "positions = torch.arange(tokens.shape[1], device=tokens.device).unsqueeze(0)"


def _with_table(padding_row: bool = False) -> SourcePackage:
    """llama with a learned position table; without `padding_row`, its args lose the word
    table's `pad_token_id` field (as in a package whose word table has no padding row)."""
    package = SourcePackage.from_directory(references_dir() / "llama")
    if not padding_row:
        args = package.render()["args.py"]
        args = re.sub(r"\n *pad_token_id: .*", "", args)
        args = re.sub(r"\n *pad_token_id=padding_row\((?:[^()]|\([^()]*\))*\),", "", args)
        assert "pad_token_id" not in args
        package.files["args.py"] = parse_source(args)
    LearnedPositions().apply(package, table="roberta.embeddings.position_embeddings")
    return package


def test_default_positions_count_the_tokens_that_are_not_padding():
    before = _with_table().render()
    assert ARANGE in before["model.py"]
    assert "pad_token_id" not in before["args.py"]
    package = _with_table()
    PaddedPositions().apply(package, field="pad_token_id")
    after = package.render()
    model = after["model.py"]
    assert ARANGE not in model
    assert (
        "if positions is None:\n"
        "            positions = padded_positions(tokens, self.args.pad_token_id)\n"
    ) in model
    assert model.index("def padded_positions(") < model.index("class Model(")
    flat = "".join(model.split())
    assert (
        "self.pos_embeddings=nn.Embedding(args.max_position_embeddings,args.dim,"
        "padding_idx=args.pad_token_id)" in flat
    )
    assert "pad_token_id: int = 1" in after["args.py"]
    assert "pad_token_id=hf_config.pad_token_id," in after["args.py"]
    # given positions still index the table as they are
    assert "h = h + self.pos_embeddings(positions)" in model


def test_the_padding_row_field_of_the_word_table_is_the_one_field():
    """A word table built with padding_idx=args.pad_token_id (llama's) already maps the
    padding id: the positions count around that field, which is not added twice."""
    package = _with_table(padding_row=True)
    PaddedPositions().apply(package, field="pad_token_id")
    args = package.render()["args.py"]
    assert args.count("pad_token_id:") == 1
    flat = "".join(args.split())
    assert 'padding_row(getattr(hf_config,"pad_token_id",None),hf_config.vocab_size)' in flat
    assert "padded_positions(tokens, self.args.pad_token_id)" in package.render()["model.py"]
    with pytest.raises(EditError, match="another field"):
        PaddedPositions().apply(_with_table(padding_row=True), field="padding_id")


def _rendered_count():
    package = _with_table()
    PaddedPositions().apply(package, field="pad_token_id")
    tree = ast.parse(package.render()["model.py"])
    found = [n for n in tree.body if isinstance(n, ast.FunctionDef)]
    assert [n.name for n in found] == ["padded_positions"]
    scope = {"torch": torch}
    exec(compile(ast.Module(body=found, type_ignores=[]), "model.py", "exec"), scope)
    return scope["padded_positions"]


def test_rendered_count_equals_hf_roberta_position_ids():
    from transformers.models.roberta.modeling_roberta import RobertaEmbeddings

    count = _rendered_count()
    tokens = torch.tensor([[5, 1, 7, 9, 1, 1], [1, 4, 4, 4, 4, 8]])
    want = RobertaEmbeddings.create_position_ids_from_input_ids(tokens, 1)
    assert torch.equal(count(tokens, 1), want)
    assert count(tokens, 1).tolist()[0] == [2, 1, 3, 4, 1, 1]
    want = RobertaEmbeddings.create_position_ids_from_input_ids(tokens, 0)
    assert torch.equal(count(tokens, 0), want)


def test_without_a_field_or_a_table_it_is_an_error():
    with pytest.raises(EditError):
        PaddedPositions().apply(_with_table(), field="")
    bare = SourcePackage.from_directory(references_dir() / "llama")
    with pytest.raises(EditError, match="_PaddedTable"):
        PaddedPositions().apply(bare, field="pad_token_id")
