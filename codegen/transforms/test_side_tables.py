"""SideTables: an embeddings module's side tables (RoCBert's shape and pronunciation) read
into the house model: built under HF's names, their rows concatenated to the token rows in
HF's order and mapped back to dim before the token-type and position rows, their ids
optional forward inputs, their keys mapped; without the projection's switch, averaged with
the normed sum."""

import pytest
import torch
from torch import nn

from codegen.models import references_dir
from codegen.scaffold.source import SourcePackage
from codegen.transforms.edits import EditError
from codegen.transforms.embedding_module import EmbeddingModule
from codegen.transforms.learned_positions import LearnedPositions
from codegen.transforms.side_tables import SIDE_ROWS, SideTables

ROC = "roc_bert.embeddings"
TABLES = (
    (
        f"{ROC}.shape_embed",
        "shape_vocab_size",
        "shape_embed_dim",
        "enable_shape",
        "input_shape_ids",
    ),
    (
        f"{ROC}.pronunciation_embed",
        "pronunciation_vocab_size",
        "pronunciation_embed_dim",
        "enable_pronunciation",
        "input_pronunciation_ids",
    ),
)


def _embeddings_module() -> SourcePackage:
    package = SourcePackage.from_directory(references_dir() / "llama")
    LearnedPositions().apply(package, table=f"{ROC}.position_embeddings", offset=0)
    EmbeddingModule().apply(
        package,
        word_table=f"{ROC}.word_embeddings",
        token_type_table=f"{ROC}.token_type_embeddings",
        norm=f"{ROC}.LayerNorm",
    )
    return package


def _side(tables=TABLES, switch="concat_input") -> dict[str, str]:
    package = _embeddings_module()
    SideTables().apply(package, tables=tables, projection=f"{ROC}.map_inputs_layer", switch=switch)
    return package.render()


def _flat(text: str) -> str:
    return " ".join(text.split())


def test_side_rows_are_concatenated_in_hf_order_then_mapped_before_the_other_tables():
    before = _embeddings_module().render()["model.py"]
    assert "concat_proj" not in before and "side_rows" not in before
    model = _side()["model.py"]
    order = [
        "h = self.tok_embeddings(tokens)",
        "parts = [h]",
        "parts.append(side_rows(self.shape_embed, input_shape_ids, tokens))",
        "parts.append(side_rows(self.pronunciation_embed, input_pronunciation_ids, tokens))",
        "h = self.concat_proj(torch.cat(parts, dim=-1))",
        "h = h + self.token_type_embeddings.weight[0]",
        "h = h + self.pos_embeddings(positions)",
        "h = self.embedding_norm(h)",
        "if self.concat_proj is None:",
        "h = h + self.shape_embed(input_shape_ids)",
        "h = h / count",
        "for layer in self.layers:",
    ]
    at = [model.index(line) for line in order]
    assert at == sorted(at), order
    flat = _flat(model)
    assert (
        "self.concat_proj = nn.Linear(args.dim + args.shape_embed_dim * args.enable_shape"
        " + args.pronunciation_embed_dim * args.enable_pronunciation, args.dim)"
        " if args.concat_input else None"
    ) in flat
    assert (
        "self.shape_embed = nn.Embedding(args.shape_vocab_size, args.shape_embed_dim,"
        " padding_idx=args.pad_token_id)"
    ) in flat


def test_keys_fields_and_inputs_are_mapped_and_documented():
    files = _side()
    adapter = files["state_dict_adapter.py"]
    for hf, house in (
        ("shape_embed.weight", "shape_embed.weight"),
        ("pronunciation_embed.weight", "pronunciation_embed.weight"),
        ("map_inputs_layer.weight", "concat_proj.weight"),
        ("map_inputs_layer.bias", "concat_proj.bias"),
    ):
        assert f'"{ROC}.{hf}": "{house}"' in adapter
    for field in (
        "shape_vocab_size",
        "shape_embed_dim",
        "enable_shape",
        "pronunciation_vocab_size",
        "pronunciation_embed_dim",
        "enable_pronunciation",
        "concat_input",
    ):
        assert f"{field}=hf_config.{field}," in files["args.py"]
    flat = _flat(files["model.py"])
    assert "input_shape_ids: torch.Tensor | None = None" in flat
    assert "input_pronunciation_ids: torch.Tensor | None = None" in flat
    assert "`input_shape_ids`, `input_pronunciation_ids`: ids of the side tables" in flat
    assert 'raise NotImplementedError("side-table ids with packed documents' in flat


def test_tables_without_switches_always_join_and_nothing_is_averaged():
    tables = tuple((path, rows, width, "", ids) for path, rows, width, _, ids in TABLES)
    files = _side(tables, switch="")
    flat = _flat(files["model.py"])
    assert (
        "parts = [h, side_rows(self.shape_embed, input_shape_ids, tokens),"
        " side_rows(self.pronunciation_embed, input_pronunciation_ids, tokens)]"
    ) in flat
    assert "is None:" not in flat.split("h = self.tok_embeddings(tokens)")[1].split("for layer")[0]
    assert "self.concat_proj = nn.Linear(args.dim + args.shape_embed_dim + args." in flat
    assert "enable_shape" not in files["args.py"] and "concat_input" not in files["args.py"]


def test_side_rows_without_ids_look_up_row_zero():
    """HF's ids of zeros: row 0 for every token, a padding row without gradient."""
    scope: dict = {"torch": torch, "nn": nn}
    exec(SIDE_ROWS, scope)
    table = nn.Embedding(5, 3, padding_idx=0)
    tokens = torch.tensor([[4, 2, 1]])
    rows = scope["side_rows"](table, None, tokens)
    assert torch.equal(rows, table(torch.zeros_like(tokens)))
    rows.sum().backward()
    assert not table.weight.grad[0].any()
    ids = torch.tensor([[1, 2, 3]])
    assert torch.equal(scope["side_rows"](table, ids, tokens), table(ids))


def test_no_tables_or_no_projection_is_refused():
    with pytest.raises(EditError):
        SideTables().apply(_embeddings_module(), tables=(), projection=f"{ROC}.map_inputs_layer")
    with pytest.raises(EditError):
        SideTables().apply(_embeddings_module(), tables=TABLES, projection="")
