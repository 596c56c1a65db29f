"""verify's random checkpoint fills index tables (`codegen/verify/index_tables.py`): a
persistent integer buffer of one value, looked up with the token ids, whose looked-up values
index another tensor, gets distinct random indices per row within the smallest size they
index; any other integer buffer keeps its value. Told by data flow, never by a name: the toy
modules below name their tables nothing HF does."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from codegen.verify import hf_checkpoint
from codegen.verify.index_tables import fill_index_tables

VOCAB, WIDTH, EXPERTS, PICKS = 40, 8, 6, 3


class Routed(nn.Module):
    """A token -> experts table (zeros, as HF initialises one), read by a gather over the
    experts' scores and a one-hot with a skip class (EXPERTS + 1); beside it a constant
    integer buffer read at a fixed row, and a table looked up by ids whose values are only
    summed, not read as indices."""

    def __init__(self):
        super().__init__()
        self.words = nn.Embedding(VOCAB, WIDTH)
        self.score = nn.Parameter(torch.randn(EXPERTS, WIDTH))
        self.register_buffer("lookup", torch.zeros(VOCAB, PICKS, dtype=torch.long))
        self.register_buffer("fixed", torch.zeros(4, dtype=torch.long))
        self.register_buffer("counted", torch.zeros(VOCAB, dtype=torch.long))
        self.register_buffer("scratch", torch.zeros(VOCAB, 2, dtype=torch.long), persistent=False)

    def get_input_embeddings(self):
        return self.words

    def forward(self, input_ids):
        hidden = self.words(input_ids).reshape(-1, WIDTH)
        scores = F.linear(hidden, self.score).softmax(-1)
        picks = self.lookup[input_ids.reshape(-1)].long()
        weights = scores.gather(1, picks)
        hit = F.one_hot(picks, num_classes=EXPERTS + 1).sum()
        extra = self.fixed[torch.zeros_like(input_ids)].sum() + self.counted[input_ids].sum()
        spare = self.scratch[input_ids.reshape(-1)]
        return weights.sum() + hit + extra + scores[:, spare[:, 0]].sum()


def test_the_table_gets_distinct_indices_within_the_experts():
    model = Routed()
    filled = fill_index_tables(model, torch.Generator().manual_seed(0))
    assert filled == {"lookup": EXPERTS}  # the gather's size, not the one-hot's 7
    rows = model.lookup.tolist()
    assert all(len(set(row)) == PICKS for row in rows)
    assert 0 <= model.lookup.min() and model.lookup.max() < EXPERTS
    assert len({tuple(row) for row in rows}) > 1  # the rows differ from token to token


def test_other_integer_buffers_keep_their_value():
    model = Routed()
    fill_index_tables(model, torch.Generator().manual_seed(0))
    assert not model.fixed.any()  # read at a fixed row, not by the token ids
    assert not model.counted.any()  # looked up by ids, its values never index anything
    assert not model.scratch.any()  # not saved in the checkpoint


def test_a_table_already_filled_is_kept():
    model = Routed()
    model.lookup.copy_(torch.arange(PICKS).expand(VOCAB, PICKS))
    assert fill_index_tables(model, torch.Generator().manual_seed(0)) == {}
    assert model.lookup[5].tolist() == list(range(PICKS))


def test_a_row_wider_than_the_range_is_kept():
    model = Routed()
    model.score = nn.Parameter(torch.randn(PICKS - 1, WIDTH))  # fewer experts than picks
    assert fill_index_tables(model, torch.Generator().manual_seed(0)) == {}
    assert not model.lookup.any()


def test_deepseek_v4_hash_tables_route_tokens_to_distinct_experts():
    pytest.importorskip("transformers.models.deepseek_v4")
    from codegen.verify.cases import base_config

    config = base_config("deepseek_v4")[0]
    model = hf_checkpoint.random_hf_model(config)
    tables = {n: b for n, b in model.named_buffers() if not b.is_floating_point()}
    hashed = [i for i, kind in enumerate(config.mlp_layer_types) if kind == "hash_moe"]
    assert len(tables) == len(hashed) > 0
    for table in tables.values():
        assert table.shape == (config.vocab_size, config.num_experts_per_tok)
        assert 0 <= table.min() and table.max() < config.num_local_experts
        assert all(len(set(row)) == len(row) for row in table.tolist())
        assert len(table.unique()) == config.num_local_experts


@pytest.mark.parametrize("model_type", ["qwen3_moe", "mixtral"])
def test_models_without_tables_are_unchanged(monkeypatch, model_type):
    from codegen.verify.cases import base_config

    config = base_config(model_type)[0]
    filled = hf_checkpoint.random_hf_model(config).state_dict()
    monkeypatch.setattr(hf_checkpoint, "fill_index_tables", lambda model, generator: {})
    plain = hf_checkpoint.random_hf_model(config).state_dict()
    assert filled.keys() == plain.keys()
    assert all(torch.equal(filled[key], plain[key]) for key in filled)


def test_a_renamed_copy_with_its_table_renamed_is_filled(tmp_path):
    """DeepSeek-V4's remote-code copy under another name, its table attribute renamed too."""
    pytest.importorskip("transformers.models.deepseek_v4")
    from codegen.verify.cases import folder_cases
    from codegen.verify.remote_fixture import remote_folder

    folder = remote_folder("deepseek_v4", tmp_path, "quillmere")
    (path,) = folder.glob("modeling_*.py")
    source = path.read_text()
    assert "tid2eid" in source
    path.write_text(source.replace("tid2eid", "wayfinder"))
    config = folder_cases(folder, trust_remote_code=True)[0].config
    model = hf_checkpoint.random_hf_model(config)
    tables = {n: b for n, b in model.named_buffers() if not b.is_floating_point()}
    assert tables and all(name.endswith(".wayfinder") for name in tables)
    for table in tables.values():
        assert table.max() < config.num_local_experts
        assert all(len(set(row)) == len(row) for row in table.tolist())
        assert len(table.unique()) > 1
