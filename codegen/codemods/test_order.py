"""Tests for `order`: sortedness, families, positions, strays and sections."""

import pytest

from codegen.codemods.order import choose_position, family, misplaced, section_range, sort_order


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        ("qwen3_moe", "qwen3"),
        ("qwen3", "qwen3"),
        ("Qwen3MoeForCausalLM", "qwen3"),
        ("DeepseekV3ForCausalLM", "deepseek"),
        ("GPT2LMHeadModel", "gpt2"),
        ("bert-generation", "bert"),
        ("llama", "llama"),
    ],
)
def test_family_is_the_first_word(key, expected):
    assert family(key) == expected


def test_sort_order_plain_casefold_and_none():
    assert sort_order(["a", "b", "b", "c"]) is not None
    assert sort_order(["Alpha", "beta", "Gamma"]) is str.casefold
    assert sort_order(["b", "a"]) is None
    assert sort_order(["only"]) is not None  # one entry is sorted: insert sorted after it
    assert sort_order([]) is None
    assert choose_position(["qwen3"], "llama") == (0, "sorted position")


def test_choose_position_sorted_family_and_end():
    assert choose_position(["a", "c", "e"], "d") == (2, "sorted position")
    keys = ["qwen3", "llama", "qwen2"]
    assert choose_position(keys, "qwen3_moe") == (1, "after 'qwen3', same family")
    assert choose_position(keys, "mistral") == (3, "at the end")


def test_a_new_version_goes_after_its_family_without_the_digits():
    keys = ["Zeta2ForCausalLM", "MistralForCausalLM", "MistralLarge3ForCausalLM", "MixtralX"]
    assert choose_position(keys, "Mistral4ForCausalLM") == (
        3,
        "after 'MistralLarge3ForCausalLM', same family",
    )
    assert choose_position(["qwen2", "llama", "qwen3", "gemma"], "qwen3_moe")[0] == 3


def test_choose_position_ignores_a_stray_in_a_sorted_container():
    keys = ["a", "b", "c", "zz", "d", "e", "f", "g", "h", "i", "j"]
    index, reason = choose_position(keys, "cc")
    assert index == 3 and "ignoring" in reason


def test_misplaced_reports_strays_only_for_nearly_sorted_containers():
    assert misplaced(["a", "b", "c", "z", "d", "e", "f"]) == [3]
    assert misplaced(["a", "b", "c"]) == []
    assert misplaced(["b", "a", "c", "d", "e", "g", "f"]) == []  # two strays in seven: by hand
    assert misplaced(["qwen3", "llama", "qwen2"]) == []  # too short to guess intent
    assert misplaced(["qwen3", "llama", "qwen2"], always_sorted=True) == [0]


def test_section_range_runs_to_the_next_header_of_the_same_kind():
    comments = [["# [Decoder-only]"], [], ["# note about c"], ["# [Encoder-decoder]"], []]
    assert section_range(comments, "decoder-only") == (0, 3)
    assert section_range(comments, "Encoder") == (3, 5)
    assert section_range(comments, "missing") is None
