"""The table-driven StateDictAdapter: placeholders, drops, expert stacking, tying."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch

from codegen.adapter import StateDictAdapter, UnmappedKeysError


@dataclass
class Args:
    tie_word_embeddings: bool = False


class MoEAdapter(StateDictAdapter):
    from_hf_map = {
        "model.embed_tokens.weight": "tok_embeddings.weight",
        "model.layers.{}.mlp.experts.{}.gate_proj.weight": "layers.{}.moe.experts.w1",
        "model.layers.{}.self_attn.rotary_emb.inv_freq": None,
        "lm_head.weight": "output.weight",
    }


def checkpoint(experts=3, layers=2):
    sd = {"model.embed_tokens.weight": torch.randn(5, 4), "lm_head.weight": torch.randn(5, 4)}
    for layer in range(layers):
        sd[f"model.layers.{layer}.self_attn.rotary_emb.inv_freq"] = torch.randn(2)
        for expert in range(experts):
            sd[f"model.layers.{layer}.mlp.experts.{expert}.gate_proj.weight"] = torch.randn(6, 4)
    return sd


def test_experts_stack_in_index_order_and_drops_vanish():
    sd = checkpoint()
    house = MoEAdapter(Args()).from_hf(sd)
    assert set(house) == {
        "tok_embeddings.weight",
        "output.weight",
        "layers.0.moe.experts.w1",
        "layers.1.moe.experts.w1",
    }
    stacked = house["layers.1.moe.experts.w1"]
    assert stacked.shape == (3, 6, 4)
    assert torch.equal(stacked[2], sd["model.layers.1.mlp.experts.2.gate_proj.weight"])


def test_experts_stack_numerically_not_lexically():
    sd = checkpoint(experts=12, layers=1)
    stacked = MoEAdapter(Args()).from_hf(sd)["layers.0.moe.experts.w1"]
    assert torch.equal(stacked[10], sd["model.layers.0.mlp.experts.10.gate_proj.weight"])


def test_round_trip_is_exact_except_dropped_keys():
    sd = checkpoint()
    adapter = MoEAdapter(Args())
    back = adapter.to_hf(adapter.from_hf(sd))
    kept = {k: v for k, v in sd.items() if "inv_freq" not in k}
    assert set(back) == set(kept)
    assert all(torch.equal(back[k], kept[k]) for k in kept)


def test_unmapped_keys_are_an_error_not_a_silent_drop():
    sd = checkpoint()
    sd["model.layers.0.mlp.router.bias"] = torch.zeros(3)
    adapter = MoEAdapter(Args())
    assert adapter.unmapped_keys(sd) == ["model.layers.0.mlp.router.bias"]
    with pytest.raises(UnmappedKeysError, match="router.bias"):
        adapter.from_hf(sd)


def test_missing_expert_is_an_error():
    sd = checkpoint()
    del sd["model.layers.0.mlp.experts.1.gate_proj.weight"]
    with pytest.raises(KeyError, match="expert indices"):
        MoEAdapter(Args()).from_hf(sd)


def test_tied_head_is_filled_from_the_embedding_and_omitted_on_the_way_back():
    sd = checkpoint()
    del sd["lm_head.weight"]
    adapter = MoEAdapter(Args(tie_word_embeddings=True))
    house = adapter.from_hf(sd)
    assert house["output.weight"] is house["tok_embeddings.weight"]
    assert "lm_head.weight" not in adapter.to_hf(house)


def test_single_tensor_conversion_unbinds_experts():
    adapter = MoEAdapter(Args())
    pairs = adapter.convert_single_to_hf("layers.4.moe.experts.w1", torch.randn(2, 6, 4))
    assert [key for key, _ in pairs] == [
        "model.layers.4.mlp.experts.0.gate_proj.weight",
        "model.layers.4.mlp.experts.1.gate_proj.weight",
    ]
    with pytest.raises(KeyError, match="no HF mapping"):
        adapter.convert_single_to_hf("layers.0.unknown.weight", torch.randn(1))


def test_row_blocks_regroup_fused_qkv_rows_on_load_and_back_on_save():
    """A checkpoint's fused q/k/v rows in 4 blocks of q | v | k load as [q | k | v] (each
    part's blocks in order) and save back to the checkpoint's layout bit for bit."""
    import torch

    from codegen.adapter import StateDictAdapter

    class Blocked(StateDictAdapter):
        from_hf_map = {"h.{}.qkv.weight": "layers.{}.wqkv.weight"}
        row_blocks = {"layers.{}.wqkv.weight": (4, "qvk")}

    width = 2  # rows per part per block
    rows = [
        ["qkv".index(part), block, row]
        for block in range(4)
        for part in "qvk"
        for row in range(width)
    ]
    stored = torch.tensor(rows, dtype=torch.float32)
    adapter = Blocked(args=None)
    house = adapter.from_hf({"h.0.qkv.weight": stored})["layers.0.wqkv.weight"]
    expected = [[p, b, r] for p in range(3) for b in range(4) for r in range(width)]
    assert house.tolist() == expected
    assert torch.equal(adapter.to_hf({"layers.0.wqkv.weight": house})["h.0.qkv.weight"], stored)


class KeyedAdapter(StateDictAdapter):
    from_hf_map = {
        "encoder.layer.{}.output.adapter_modules.{*}.dense1.weight": (
            "layers.{}.adapters.{*}.w1.weight"
        ),
    }


def test_module_dict_keys_are_carried_over_both_ways():
    """`{*}` stands for a ModuleDict key (X-MOD's language codes): each key keeps its tensor
    on load and on save, beside the layer index; a dotted key is no match."""
    sd = {
        f"encoder.layer.{layer}.output.adapter_modules.{lang}.dense1.weight": torch.randn(3, 2)
        for layer in range(2)
        for lang in ("en_XX", "de_DE")
    }
    adapter = KeyedAdapter(Args())
    house = adapter.from_hf(sd)
    assert torch.equal(
        house["layers.1.adapters.de_DE.w1.weight"],
        sd["encoder.layer.1.output.adapter_modules.de_DE.dense1.weight"],
    )
    assert adapter.to_hf(house).keys() == sd.keys()
    assert adapter.unmapped_keys(["encoder.layer.0.output.adapter_modules.a.b.dense1.weight"])


class ChunkedAdapter(StateDictAdapter):
    from_hf_map = {
        "model.stack.layers.{}.self_attn.gate_proj.weight": "layers.{}.attention.wg.weight",
        "model.stack.layers.{}.self_attn.q_proj.weight": "layers.{}.attention.wq.weight",
        "model.stack.layers.{}.mlp.down_proj.weight": "layers.{}.feed_forward.w2.weight",
    }
    chunked = {
        "attn.gq_proj.weight": ("self_attn.gate_proj.weight", "self_attn.q_proj.weight"),
    }


def test_chunked_tensors_split_into_their_rows_and_join_back():
    fused = torch.randn(8, 4)
    sd = {
        "model.stack.layers.0.attn.gq_proj.weight": fused,
        "model.stack.layers.0.mlp.down_proj.weight": torch.randn(4, 3),
    }
    adapter = ChunkedAdapter(Args())
    assert adapter.unmapped_keys(sd) == []
    house = adapter.from_hf(sd)
    assert torch.equal(house["layers.0.attention.wg.weight"], fused[:4])
    assert torch.equal(house["layers.0.attention.wq.weight"], fused[4:])
    back = adapter.to_hf(house)
    assert set(back) == set(sd)
    assert all(torch.equal(back[key], sd[key]) for key in sd)


def test_a_chunked_tensor_whose_parts_no_row_maps_is_unmapped():
    sd = {"model.other.attn.gq_proj.weight": torch.randn(8, 4)}
    assert ChunkedAdapter(Args()).unmapped_keys(sd) == [
        "model.other.self_attn.gate_proj.weight",
        "model.other.self_attn.q_proj.weight",
    ]


def test_unmapped_keys_are_one_unquoted_line():
    from codegen.adapter import UnmappedKeysError

    assert str(UnmappedKeysError(["a.weight"])) == "1 checkpoint keys have no mapping: a.weight"


@dataclass
class LayeredArgs:
    n_layers: int = 3
    tie_word_embeddings: bool = False


class ShiftedAdapter(StateDictAdapter):
    """Per-layer tensors the checkpoint keeps in lists of their own, outside the layers: one
    for every layer, one from the second layer on (Inkling-2's block residual queries)."""

    from_hf_map = {
        "model.llm.attn_res.attn_queries.{-1}": "layers.{}.attention_input.query",
        "model.llm.attn_res.mlp_queries.{}": "layers.{}.ffn_input.query",
    }


def test_a_shifted_layer_index_is_read_and_written_back_shifted():
    """`{-1}`: stored entry i is layer i + 1's tensor, on load and on save; an entry past the
    layers is no layer's (not skipped as a multi-token-prediction layer either)."""
    sd = {f"model.llm.attn_res.attn_queries.{i}": torch.randn(4) for i in range(2)}
    sd |= {f"model.llm.attn_res.mlp_queries.{i}": torch.randn(4) for i in range(3)}
    adapter = ShiftedAdapter(LayeredArgs())
    house = adapter.from_hf(sd)
    assert sorted(k for k in house if "attention_input" in k) == [
        "layers.1.attention_input.query",
        "layers.2.attention_input.query",
    ]
    assert torch.equal(
        house["layers.1.attention_input.query"], sd["model.llm.attn_res.attn_queries.0"]
    )
    assert torch.equal(house["layers.0.ffn_input.query"], sd["model.llm.attn_res.mlp_queries.0"])
    back = adapter.to_hf(house)
    assert back.keys() == sd.keys() and all(torch.equal(back[k], sd[k]) for k in sd)
    assert adapter.convert_single_to_hf(
        "layers.2.attention_input.query", sd["model.llm.attn_res.attn_queries.1"]
    )[0][0] == ("model.llm.attn_res.attn_queries.1")
    with pytest.raises(ValueError, match="only the first"):
        type("Bad", (StateDictAdapter,), {"from_hf_map": {"a.{}.b.{-1}": "layers.{}.x"}})(Args())
