"""EmbeddingModule: BERT's embeddings module read into the house model (token-type row 0,
the norm of the summed tables) and its checkpoint keys mapped."""

import pytest
import torch

from codegen.models import references_dir
from codegen.scaffold.source import SourcePackage
from codegen.transforms.edits import EditError
from codegen.transforms.embedding_module import EmbeddingModule
from codegen.transforms.learned_positions import LearnedPositions

BERT = "bert.embeddings"


def _llama() -> SourcePackage:
    return SourcePackage.from_directory(references_dir() / "llama")


def _bert_embeddings() -> SourcePackage:
    package = _llama()
    LearnedPositions().apply(package, table=f"{BERT}.position_embeddings", offset=0)
    EmbeddingModule().apply(
        package,
        word_table=f"{BERT}.word_embeddings",
        token_type_table=f"{BERT}.token_type_embeddings",
        norm=f"{BERT}.LayerNorm",
    )
    return package


def test_tables_are_summed_in_hf_order_then_normed():
    model = _bert_embeddings().render()["model.py"]
    tokens = model.index("h = self.tok_embeddings(tokens)\n")
    token_type = model.index("h = h + self.token_type_embeddings.weight[0]")
    positions = model.index("h = h + self.pos_embeddings(positions)")
    norm = model.index("h = self.embedding_norm(h)")
    loop = model.index("for layer in self.layers:")
    assert tokens < token_type < positions < norm < loop
    assert "self.token_type_embeddings = nn.Embedding(args.type_vocab_size, args.dim)" in model
    # built as the model's final norm (here the reference's RMSNorm)
    assert "self.embedding_norm = RMSNorm(args.dim, args.norm_eps)" in model


def test_keys_and_config_field_are_mapped():
    files = _bert_embeddings().render()
    adapter = files["state_dict_adapter.py"]
    for hf, house in (
        ("word_embeddings.weight", "tok_embeddings.weight"),
        ("token_type_embeddings.weight", "token_type_embeddings.weight"),
        ("LayerNorm.weight", "embedding_norm.weight"),
        ("LayerNorm.bias", "embedding_norm.bias"),
    ):
        assert f'"{BERT}.{hf}": "{house}"' in adapter
    assert '"model.embed_tokens.weight"' not in adapter
    assert "type_vocab_size=hf_config.type_vocab_size," in files["args.py"]


def test_row_zero_equals_the_gather_of_zero_token_types():
    """What the generated line computes is HF's lookup of token_type_ids = 0."""
    table = torch.nn.Embedding(2, 8)
    h = torch.randn(3, 5, 8)
    ids = torch.zeros(3, 5, dtype=torch.long)
    assert torch.equal(h + table.weight[0], h + table(ids))


def test_without_token_types_or_norm_only_the_word_table_moves():
    package = _llama()
    EmbeddingModule().apply(package, word_table="model.embeddings.tok_embeddings")
    files = package.render()
    assert "token_type" not in files["model.py"]
    assert "embedding_norm" not in files["model.py"]
    assert (
        '"model.embeddings.tok_embeddings.weight": "tok_embeddings.weight"'
        in files["state_dict_adapter.py"]
    )


def test_a_norm_only_module_norms_before_the_first_layer():
    package = _llama()
    EmbeddingModule().apply(
        package, word_table="model.embeddings.tok_embeddings", norm="model.embeddings.norm"
    )
    model = package.render()["model.py"]
    assert model.index("h = self.embedding_norm(h)") < model.index("for layer in self.layers:")


def test_no_word_table_is_refused():
    with pytest.raises(EditError):
        EmbeddingModule().apply(_llama(), word_table="")


def test_narrower_tables_are_projected_to_dim_after_their_norm():
    """RemBERT: tables input_embedding_size wide, normed at that width, then a linear layer
    to the hidden size before the first layer."""
    package = _llama()
    LearnedPositions().apply(package, table="rembert.embeddings.position_embeddings", offset=0)
    EmbeddingModule().apply(
        package,
        word_table="rembert.embeddings.word_embeddings",
        token_type_table="rembert.embeddings.token_type_embeddings",
        norm="rembert.embeddings.LayerNorm",
        width="input_embedding_size",
        projection="rembert.encoder.embedding_hidden_mapping_in",
    )
    files = package.render()
    model = files["model.py"]
    for table in ("type_vocab_size", "max_position_embeddings"):
        assert f"nn.Embedding(args.{table}, args.embedding_dim)" in model
    # the word table keeps the reference's padding row
    assert "nn.Embedding(args.vocab_size, args.embedding_dim, padding_idx=args.pad_token_id)" in (
        model
    )
    assert "self.embedding_norm = RMSNorm(args.embedding_dim, args.norm_eps)" in model
    assert "self.embedding_proj = nn.Linear(args.embedding_dim, args.dim)" in model
    assert model.index("h = self.embedding_norm(h)") < model.index("h = self.embedding_proj(h)")
    assert model.index("h = self.embedding_proj(h)") < model.index("for layer in self.layers:")
    assert "embedding_dim=hf_config.input_embedding_size," in files["args.py"]
    adapter = files["state_dict_adapter.py"]
    for tensor in ("weight", "bias"):
        hf = f"rembert.encoder.embedding_hidden_mapping_in.{tensor}"
        assert f'"{hf}": "embedding_proj.{tensor}"' in adapter


def test_a_width_without_its_projection_is_refused():
    with pytest.raises(EditError):
        EmbeddingModule().apply(_llama(), word_table="w", width="input_embedding_size")


def test_a_projection_hf_builds_only_for_other_widths_is_an_identity_otherwise():
    """ELECTRA: embeddings_project exists only when embedding_size != hidden_size."""
    package = _llama()
    EmbeddingModule().apply(
        package,
        word_table="electra.embeddings.word_embeddings",
        width="embedding_size",
        projection="electra.embeddings_project",
        switched=True,
    )
    flat = " ".join(package.render()["model.py"].split())
    assert (
        "self.embedding_proj = ( nn.Linear(args.embedding_dim, args.dim)"
        " if args.embedding_dim != args.dim else nn.Identity() )"
    ) in flat
    always = _llama()
    EmbeddingModule().apply(
        always,
        word_table="electra.embeddings.word_embeddings",
        width="embedding_size",
        projection="electra.embeddings_project",
    )
    assert "nn.Identity()" not in always.render()["model.py"]
