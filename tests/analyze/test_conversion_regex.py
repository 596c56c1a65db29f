"""Regex renamings of transformers' conversion mapping reversed (module key -> on-disk key),
as transformers reverses them to save: one capture group, escaped dots, `^`, lookarounds
dropped; a layer index of the key template (`{}`) counts as the group's digits."""

from __future__ import annotations

import pytest

from codegen.analyze.conversion import _reversed_regex


@pytest.mark.parametrize(
    ("source", "target", "key", "on_disk"),
    [
        (
            r"\.attn\.(q_l2_clip|k_l2_clip|rel_l2_clip)\.",
            r".self_attn.\1.",
            "model.layers.{}.self_attn.q_l2_clip.scale",
            "model.layers.{}.attn.q_l2_clip.scale",
        ),
        (
            r"attn_res\.mlp_queries\.(\d+)",
            r"layers.\1.mlp_input.query",
            "model.layers.{}.mlp_input.query",
            "model.attn_res.mlp_queries.{}",
        ),
        (
            r"(convolution|sconv)\.weight(?!_)",
            r"\1.conv1d.weight",
            "model.layers.{}.self_attn.k_sconv.conv1d.weight",
            "model.layers.{}.self_attn.k_sconv.weight",
        ),
        (
            r"(q|k|v)_input_norm",
            r"\1_input_layernorm",
            "model.layers.{}.q_input_layernorm.weight",
            "model.layers.{}.q_input_norm.weight",
        ),
        # a key the target does not name stays
        (
            r"(q|k|v)_input_norm",
            r"\1_input_layernorm",
            "model.layers.{}.input_layernorm.weight",
            "model.layers.{}.input_layernorm.weight",
        ),
    ],
)
def test_a_capture_group_renaming_is_undone(source, target, key, on_disk):
    assert _reversed_regex(source, target)(key) == on_disk


@pytest.mark.parametrize("source", [r"[qk]_norm", r"(a|b)\.(c|d)", r"x+\.y"])
def test_other_constructs_are_not_guessed(source):
    assert _reversed_regex(source, r"\1.z") is None


def test_an_index_offset_renaming_is_undone_with_the_index_shifted():
    """`Inkling2IndexOffsetWeightRename(attn_res.attn_queries.(\\d+) -> layers.\\1
    .attention_input.query, offset=1)`: stored entry i is layer i + 1's. A key template's
    layer index becomes the adapter table's shifted `{-1}`; a concrete one is shifted back."""
    from codegen.analyze.conversion import to_checkpoint
    from codegen.analyze.evaluate import CallRec

    rename = CallRec(
        "transformers.core_model_loading.Inkling2IndexOffsetWeightRename",
        (),
        {
            "source_patterns": r"attn_res\.attn_queries\.(\d+)",
            "target_patterns": r"layers.\1.attention_input.query",
            "offset": 1,
        },
    )
    keys = ["model.layers.{}.attention_input.query", "model.layers.3.attention_input.query"]
    found, notes = to_checkpoint(keys, [rename])
    assert found == ["model.attn_res.attn_queries.{-1}", "model.attn_res.attn_queries.2"]
    assert not notes


def _converter(*operations):
    from codegen.analyze.evaluate import CallRec

    return CallRec(
        "WeightConverter",
        (),
        {
            "source_patterns": r"mlp\.experts\.w13_weight",
            "target_patterns": "mlp.experts.gate_up_proj",
            "operations": list(operations),
        },
    )


KEYS = ["model.layers.{}.mlp.experts.gate_up_proj", "model.layers.{}.mlp.experts.down_proj"]


def test_a_lone_interleave_is_a_fact_the_adapter_realises():
    """transformers' `Interleave(dim=1)` de-interleaves a stored fused gate/up tensor's rows
    on load: read as (on-disk tail, dim) for the keys it reaches, and not named unreversed
    (the adapter's `interleaved` table regroups the rows)."""
    from codegen.analyze.conversion import interleaves, to_checkpoint, unreversed
    from codegen.analyze.evaluate import CallRec

    interleave = _converter(CallRec("Interleave", (), {"dim": 1}))
    rename = CallRec("WeightRenaming", (r"mlp\.experts\.w2_weight", "mlp.experts.down_proj"), {})
    assert interleaves(KEYS, [interleave, rename]) == (("mlp.experts.w13_weight", 1),)
    assert interleaves(KEYS[1:], [interleave, rename]) == ()  # no fused tensor: no concern
    assert unreversed(KEYS, [interleave, rename]) == []
    assert to_checkpoint(KEYS[:1], [interleave, rename])[0] == [
        "model.layers.{}.mlp.experts.w13_weight"
    ]
    positional = _converter(CallRec("Interleave", (2,), {}))
    assert interleaves(KEYS, [positional]) == (("mlp.experts.w13_weight", 2),)


@pytest.mark.parametrize(
    "operations",
    [
        [("PermuteForRope", (), {})],
        [("Interleave", (), {"dim": 1, "inverse": True})],  # another reordering
        [("Interleave", (), {"dim": 1}), ("Concatenate", (), {"dim": 1})],
    ],
)
def test_a_converter_that_reorders_contents_otherwise_is_named_where_it_reaches_a_key(operations):
    """Any other reordering (`PermuteForRope`, an interleave among other operations) the
    adapter maps names for only: the converter is named for the keys it reaches."""
    from codegen.analyze.conversion import interleaves, unreversed
    from codegen.analyze.evaluate import CallRec

    converter = _converter(*(CallRec(*op) for op in operations))
    name = operations[0][0]
    assert interleaves(KEYS, [converter]) == ()
    assert unreversed(KEYS, [converter]) == [
        r"WeightConverter ('mlp\\.experts\\.w13_weight' -> 'mlp.experts.gate_up_proj':"
        f" {name}, contents reordered)"
    ]
    # a package without the fused tensor is not concerned
    assert unreversed(KEYS[1:], [converter]) == []


@pytest.mark.parametrize(
    ("key", "on_disk_key"),
    [
        # `^embed\.weight` -> `embed_tokens.weight`: anchored, the prefixed key stays (as
        # transformers saves it); before, the rename was undone inside the key
        ("model.embed_tokens.weight", "model.embed_tokens.weight"),
        ("model.hc_head.hc_fn", "model.hc_head.hc_fn"),
        ("lm_head.weight", "head.weight"),  # `^head\.weight`: a top-level key starts with it
        ("model.layers.{}.self_attn.q_a_proj.weight", "model.layers.{}.attn.wq_a.weight"),
    ],
)
def test_anchored_literal_renames_match_at_the_start_of_the_key(key, on_disk_key):
    pytest.importorskip("transformers.models.deepseek_v4")
    from codegen.analyze.conversion import conversions_for, on_disk

    assert on_disk(conversions_for(["deepseek_v4"])[1], key) == on_disk_key
