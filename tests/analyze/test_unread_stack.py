"""Models whose layers the layer reader does not find keep an honest category: a causal stack
is a decoder with what it lacks named unsupported (so the coverage sweep counts it as
remaining), anything else says what it is instead of "no decoder stack found"; read from
structure, so renamed copies read the same."""

from __future__ import annotations

import pytest
from analyze_helpers import rename_model

from codegen.analyze.analysis import analyze


def _unsupported(features) -> dict[str, str]:
    return {u.feature: u.detail for u in features.unsupported}


def _decoder_gaps(features) -> dict[str, str]:
    assert features.category == "decoder"
    assert "not read as decoder layers" in features.evidence["category"]
    return _unsupported(features)


def _cpmant(features) -> None:
    gaps = _decoder_gaps(features)
    assert "log-spaced buckets" in gaps["attention.relative_buckets"]
    assert "segment_embedding" in gaps["embedding.tables"]
    assert "self_att" in gaps["block.layer_form"]


def _reformer(features) -> None:
    # the causal mask sits under `self.is_decoder`, off in the config's defaults, but the
    # causal LM class asserts `config.is_decoder`
    gaps = _decoder_gaps(features)
    assert "is_decoder" not in features.evidence["category"]
    assert "random rotations" in gaps["attention.lsh"]
    assert "custom autograd Function" in gaps["block.reversible"]
    assert "LocalSelfAttention" in gaps["attention.written_out"].replace("Zorblax", "Reformer")


def _xlm(features) -> None:
    assert features.category == "encoder"
    why = features.evidence["category"]
    assert "causal mask is built only when causal (given self.causal), off here" in why
    assert "attention lists run in parallel" in why


def _xlnet(features) -> None:
    assert features.category == "other"
    why = features.evidence["category"]
    assert "two-stream layers" in why and "output_g and output_h" in why


def _drafter(features) -> None:
    assert features.category == "other"
    assert "drafter: reads no token ids, runs on inputs_embeds" in features.evidence["category"]


CASES = {
    "cpmant": _cpmant,
    "reformer": _reformer,
    "xlm": _xlm,
    "xlnet": _xlnet,
    "gemma4_assistant": _drafter,
    "gemma4_unified_assistant": _drafter,
}


@pytest.mark.parametrize("model_type", sorted(CASES))
def test_the_category_says_what_the_model_is(model_type):
    CASES[model_type](analyze(model_type))


@pytest.mark.parametrize("model_type", ["cpmant", "reformer", "xlm", "xlnet", "gemma4_assistant"])
def test_a_renamed_copy_reads_the_same(model_type, tmp_path):
    modeling, _ = rename_model(model_type, "zorblax", str(tmp_path))
    CASES[model_type](analyze(modeling))


def test_a_moshi_like_stack_of_unread_attentions_is_a_decoder(tmp_path):
    # its projections are wrapper modules that compute more than their inner linear (moshi's
    # own only delegate, and are read: tests/analyze/test_delegating_wrappers.py): the layers
    # are not read, the stack (create_causal_mask) is still a decoder's
    modeling, _ = rename_model("moshi", "zorblax", str(tmp_path))
    with open(modeling) as handle:
        text = handle.read()
    delegation = "            return self.linear(x)\n"
    assert text.count(delegation) == 1
    with open(modeling, "w") as handle:
        handle.write(text.replace(delegation, "            return self.linear(x) * 2\n"))
    gaps = _decoder_gaps(analyze(modeling))
    assert "q_proj, k_proj, v_proj, o_proj (ZorblaxLinear) have no role" in gaps["block.layer_form"]


def test_an_unconditional_triangle_is_causal_and_a_flag_off_is_not(tmp_path):
    """The same blocks with the mask moved under a flag the config leaves off: bidirectional."""
    modeling, _ = rename_model("cpmant", "zorblax", str(tmp_path))
    with open(modeling) as handle:
        text = handle.read()
    mask = "        directional_mask_2d = torch.arange(seqlen, device=device) <= torch.arange"
    assert text.count(mask) == 1
    guarded = text.replace(
        mask,
        "        directional_mask_2d = None\n        if self.unidirectional:\n    " + mask,
    ).replace(
        "        self.prompt_length = config.prompt_length\n",
        "        self.prompt_length = config.prompt_length\n        self.unidirectional = False\n",
    )
    with open(modeling, "w") as handle:
        handle.write(guarded)
    features = analyze(modeling)
    assert features.category == "encoder"
    assert "only when self.unidirectional, off here" in features.evidence["category"]


@pytest.mark.parametrize("model_type", ["llama", "gpt2", "qwen3_moe", "falcon", "bloom"])
def test_read_decoders_keep_their_category(model_type):
    features = analyze(model_type)
    assert features.category == "decoder"
    assert features.evidence["category"].endswith("(causal attention stack)")


def test_a_decoder_of_a_seq2seq_built_from_a_copied_config_is_read():
    # `config = copy.deepcopy(config)` then edited: the copy keeps the values, the layers are
    # read and the cross-attention found, as for bart's
    features = analyze("pegasus")
    assert features.category == "other"
    assert features.evidence["category"].endswith("(cross-attention in the layer)")


def test_a_recurrent_stack_whose_classes_sit_in_the_else_of_a_missing_package_is_a_hybrid():
    # `if is_xlstm_available(): from xlstm import ... else: <own classes>`: the own classes
    # are the code that runs here; their mixer keeps its recurrence kernel in `__init__`
    features = analyze("xlstm")
    assert features.category == "hybrid"
    assert "recurrence" in features.evidence["category"]


def test_a_seq2seq_with_no_stack_read_says_encoder_decoder():
    assert "encoder-decoder: decoder_input_ids" in analyze("musicgen").evidence["category"]


def test_renamed_recurrent_and_wrapped_stacks_read_the_same(tmp_path):
    xlstm, _ = rename_model("xlstm", "zorblax", str(tmp_path / "a"))
    assert analyze(xlstm).category == "hybrid"
    moshi, _ = rename_model("moshi", "zorblax", str(tmp_path / "b"))
    features = analyze(moshi)  # its projections only delegate to a linear: read
    assert features.category == "decoder" and not features.unsupported
