"""Before/after cases for `dict_entry`: every dict spelling a registry uses."""

import pytest

from codegen.codemods.add import add_entry
from codegen.codemods.testing import assert_adds, assert_refuses, code
from codegen.errors import CodegenError


def test_sorted_insert_in_the_middle():
    assert_adds(
        """
        MODEL_SPECS = {
            "deepseek_v3": "deepseek_v3.spec:SPEC",
            "llama": "llama.spec:SPEC",
            "qwen3": "qwen3.spec:SPEC",
        }
        """,
        "MODEL_SPECS",
        "qwen2",
        ["qwen2.spec:SPEC"],
        after="""
        MODEL_SPECS = {
            "deepseek_v3": "deepseek_v3.spec:SPEC",
            "llama": "llama.spec:SPEC",
            "qwen2": "qwen2.spec:SPEC",
            "qwen3": "qwen3.spec:SPEC",
        }
        """,
    )


def test_unsorted_goes_after_its_family_and_keeps_comments():
    assert_adds(
        """
        ARCHS = {
            "Qwen3ForCausalLM": "atom.models.qwen3.Qwen3ForCausalLM",  # dense
            # llama family
            "LlamaForCausalLM": "atom.models.llama.LlamaForCausalLM",
        }
        """,
        "ARCHS",
        "Qwen3MoeForCausalLM",
        ["atom.models.qwen3_moe.Qwen3MoeForCausalLM"],
        after="""
        ARCHS = {
            "Qwen3ForCausalLM": "atom.models.qwen3.Qwen3ForCausalLM",  # dense
            "Qwen3MoeForCausalLM": "atom.models.qwen3_moe.Qwen3MoeForCausalLM",
            # llama family
            "LlamaForCausalLM": "atom.models.llama.LlamaForCausalLM",
        }
        """,
    )


def test_unsorted_without_family_goes_last_before_trailing_comments():
    assert_adds(
        """
        ARCHS = {
            "Qwen3ForCausalLM": "a.qwen3.Qwen3ForCausalLM",
            "LlamaForCausalLM": "a.llama.LlamaForCausalLM",  # the baseline
            # "GoneForCausalLM": "a.gone.GoneForCausalLM",
        }
        """,
        "ARCHS",
        "MixtralForCausalLM",
        ["a.mixtral.MixtralForCausalLM"],
        after="""
        ARCHS = {
            "Qwen3ForCausalLM": "a.qwen3.Qwen3ForCausalLM",
            "LlamaForCausalLM": "a.llama.LlamaForCausalLM",  # the baseline
            "MixtralForCausalLM": "a.mixtral.MixtralForCausalLM",
            # "GoneForCausalLM": "a.gone.GoneForCausalLM",
        }
        """,
    )


def test_header_comment_stays_on_top_for_a_first_position_insert():
    assert_adds(
        """
        SPECS = {  # keep sorted
            # dense models
            "llama": "llama.spec:SPEC",
            "qwen2": "qwen2.spec:SPEC",
        }
        """,
        "SPECS",
        "deepseek_v3",
        ["deepseek_v3.spec:SPEC"],
        after="""
        SPECS = {  # keep sorted
            # dense models
            "deepseek_v3": "deepseek_v3.spec:SPEC",
            "llama": "llama.spec:SPEC",
            "qwen2": "qwen2.spec:SPEC",
        }
        """,
    )


def test_last_entry_without_trailing_comma_gains_one_and_new_entry_has_none():
    assert_adds(
        """
        SPECS = {
            "llama": "llama.spec:SPEC",
            "qwen2": "qwen2.spec:SPEC"  # no trailing comma
        }
        """,
        "SPECS",
        "qwen3",
        ["qwen3.spec:SPEC"],
        after="""
        SPECS = {
            "llama": "llama.spec:SPEC",
            "qwen2": "qwen2.spec:SPEC",  # no trailing comma
            "qwen3": "qwen3.spec:SPEC"
        }
        """,
    )


def test_one_line_dict_stays_on_one_line_with_its_quote_style():
    assert_adds(
        "SPECS = {'llama': 'llama.spec:SPEC', 'qwen2': 'qwen2.spec:SPEC'}\n",
        "SPECS",
        "qwen3",
        ["qwen3.spec:SPEC"],
        after=(
            "SPECS = {'llama': 'llama.spec:SPEC', 'qwen2': 'qwen2.spec:SPEC',"
            " 'qwen3': 'qwen3.spec:SPEC'}\n"
        ),
    )


def test_a_short_entry_next_to_wrapped_neighbours_stays_on_one_line():
    assert_adds(
        """
        support_model_arch_dict = {
            "Qwen3ForCausalLM": (
                "atom.models.qwen3.Qwen3ForCausalLM"
            ),
            "LlamaForCausalLM": (
                "atom.models.llama.LlamaForCausalLM"
            ),
        }
        """,
        "support_model_arch_dict",
        "Qwen3MoeForCausalLM",
        ["atom.models.qwen3_moe.Qwen3MoeForCausalLM"],
        after="""
        support_model_arch_dict = {
            "Qwen3ForCausalLM": (
                "atom.models.qwen3.Qwen3ForCausalLM"
            ),
            "Qwen3MoeForCausalLM": "atom.models.qwen3_moe.Qwen3MoeForCausalLM",
            "LlamaForCausalLM": (
                "atom.models.llama.LlamaForCausalLM"
            ),
        }
        """,
    )


VLLM_LIKE = """
    _TEXT_GENERATION_MODELS = {
        # [Decoder-only]
        "LlamaForCausalLM": ("llama", "LlamaForCausalLM"),
        "Qwen2ForCausalLM": ("qwen2", "Qwen2ForCausalLM"),
        # [Encoder-decoder]
        "BartModel": ("bart", "BartForConditionalGeneration"),
    }
    """


def test_tuple_values_into_a_named_section():
    assert_adds(
        VLLM_LIKE,
        "_TEXT_GENERATION_MODELS",
        "Qwen3ForCausalLM",
        ["qwen3", "Qwen3ForCausalLM"],
        section="Decoder-only",
        after="""
        _TEXT_GENERATION_MODELS = {
            # [Decoder-only]
            "LlamaForCausalLM": ("llama", "LlamaForCausalLM"),
            "Qwen2ForCausalLM": ("qwen2", "Qwen2ForCausalLM"),
            "Qwen3ForCausalLM": ("qwen3", "Qwen3ForCausalLM"),
            # [Encoder-decoder]
            "BartModel": ("bart", "BartForConditionalGeneration"),
        }
        """,
    )


def test_first_in_section_goes_under_the_section_comment():
    assert_adds(
        VLLM_LIKE,
        "_TEXT_GENERATION_MODELS",
        "AquilaForCausalLM",
        ["llama:LlamaForCausalLM"],  # one `module:Class` value split into the pair
        section="decoder-only",
        after="""
        _TEXT_GENERATION_MODELS = {
            # [Decoder-only]
            "AquilaForCausalLM": ("llama", "LlamaForCausalLM"),
            "LlamaForCausalLM": ("llama", "LlamaForCausalLM"),
            "Qwen2ForCausalLM": ("qwen2", "Qwen2ForCausalLM"),
            # [Encoder-decoder]
            "BartModel": ("bart", "BartForConditionalGeneration"),
        }
        """,
    )


def test_unknown_section_is_refused():
    assert_refuses(
        VLLM_LIKE, "_TEXT_GENERATION_MODELS", "X", ["x", "X"], section="MoE", match="no section"
    )


def test_annotated_dict_and_dotted_to_colon_conversion():
    assert_adds(
        """
        _CUSTOM: Dict[str, str] = {
            "llama": "pkg.llama.configuration:LlamaConfig",
        }
        """,
        "_CUSTOM",
        "qwen3",
        ["pkg.qwen3.configuration.Qwen3Config"],
        after="""
        _CUSTOM: Dict[str, str] = {
            "llama": "pkg.llama.configuration:LlamaConfig",
            "qwen3": "pkg.qwen3.configuration:Qwen3Config",
        }
        """,
    )


def test_classvar_dict_in_a_class_body():
    assert_adds(
        """
        class Registry:
            MODELS: ClassVar[dict[str, tuple[str, str]]] = {
                "llama": ("pkg.llama", "Llama"),
            }

        MODELS = {}
        """,
        "Registry.MODELS",
        "qwen2",
        ["pkg.qwen2", "Qwen2"],
        after="""
        class Registry:
            MODELS: ClassVar[dict[str, tuple[str, str]]] = {
                "llama": ("pkg.llama", "Llama"),
                "qwen2": ("pkg.qwen2", "Qwen2"),
            }

        MODELS = {}
        """,
    )


def test_update_call_is_a_container():
    assert_adds(
        """
        NAMES = load()
        NAMES.update(
            {
                "alpha": "AlphaConfig",
                "gamma": "GammaConfig",
            }
        )
        """,
        "NAMES",
        "beta",
        ["BetaConfig"],
        after="""
        NAMES = load()
        NAMES.update(
            {
                "alpha": "AlphaConfig",
                "beta": "BetaConfig",
                "gamma": "GammaConfig",
            }
        )
        """,
    )


def test_names_as_values_and_spreads_are_kept():
    assert_adds(
        """
        MODELS = {
            **BASE,
            "llama": LlamaForCausalLM,
            "qwen2": Qwen2ForCausalLM,
        }
        """,
        "MODELS",
        "qwen3",
        ["Qwen3ForCausalLM"],
        after="""
        MODELS = {
            **BASE,
            "llama": LlamaForCausalLM,
            "qwen2": Qwen2ForCausalLM,
            "qwen3": Qwen3ForCausalLM,
        }
        """,
    )


def test_empty_dict_gets_a_plain_entry():
    assert_adds(
        "SPECS = {}\n",
        "SPECS",
        "llama",
        ["llama.spec:SPEC"],
        after='SPECS = {"llama": "llama.spec:SPEC"}\n',
    )


def test_an_empty_dict_with_its_brackets_on_two_lines_gets_an_indented_line():
    assert_adds(
        "SPECS = {\n}\n",
        "SPECS",
        "llama",
        ["llama.spec:SPEC"],
        after='SPECS = {\n    "llama": "llama.spec:SPEC",\n}\n',
    )


def test_an_empty_nested_dict_is_indented_from_its_own_line():
    assert_adds(
        """
        class Registry:
            SPECS = {
            }
        """,
        "SPECS",
        "llama",
        ["llama.spec:SPEC"],
        after="""
        class Registry:
            SPECS = {
                "llama": "llama.spec:SPEC",
            }
        """,
    )


def test_identical_entry_is_a_no_op_and_a_different_value_is_refused():
    before = code(
        """
        SPECS = {
            "llama": "llama.spec:SPEC",
        }
        """
    )
    same = add_entry(before, "SPECS", "llama", ["llama.spec:SPEC"])
    assert same.status == "present" and same.source == before
    assert_refuses(before, "SPECS", "llama", ["other.spec:SPEC"], match="duplicate key 'llama'")


def test_value_count_must_match_a_neighbour():
    assert_refuses('M = {"a": ("x", "A")}\n', "M", "b", ["x", "B", "extra"], match="got 3 value")


def test_a_name_value_must_be_a_name():
    assert_refuses('M = {"a": A}\n', "M", "b", ["not a name"], match="not a Python name")


def test_a_long_entry_next_to_one_line_neighbours_is_wrapped_as_ruff_would():
    before = """
        MODELS = {
            "LlamaForCausalLM": ("llama", "LlamaForCausalLM"),
            "Qwen2ForCausalLM": ("qwen2", "Qwen2ForCausalLM"),
        }
        """
    assert_adds(
        before,
        "MODELS",
        "Qwen2_5OmniThinkerForConditionalGeneration",
        ["qwen2_5_omni_thinker", "Qwen2_5OmniThinkerForConditionalGeneration"],
        after="""
        MODELS = {
            "LlamaForCausalLM": ("llama", "LlamaForCausalLM"),
            "Qwen2ForCausalLM": ("qwen2", "Qwen2ForCausalLM"),
            "Qwen2_5OmniThinkerForConditionalGeneration": (
                "qwen2_5_omni_thinker",
                "Qwen2_5OmniThinkerForConditionalGeneration",
            ),
        }
        """,
    )
    # the same entry fits a repository configured for 140 columns
    outcome = add_entry(
        code(before),
        "MODELS",
        "Qwen2_5OmniThinkerForConditionalGeneration",
        ["qwen2_5_omni_thinker", "Qwen2_5OmniThinkerForConditionalGeneration"],
        line_length=140,
    )
    assert (
        '    "Qwen2_5OmniThinkerForConditionalGeneration": ("qwen2_5_omni_thinker", '
        '"Qwen2_5OmniThinkerForConditionalGeneration"),\n' in outcome.source
    )


def test_a_long_scalar_value_is_parenthesised_on_its_own_line():
    assert_adds(
        """
        support_model_arch_dict = {
            "LlamaForCausalLM": "atom.models.llama.LlamaForCausalLM",
        }
        """,
        "support_model_arch_dict",
        "Qwen3_5MoeForConditionalGeneration",
        ["atom.models.qwen3_5_moe.Qwen3_5MoeForConditionalGeneration"],
        after="""
        support_model_arch_dict = {
            "LlamaForCausalLM": "atom.models.llama.LlamaForCausalLM",
            "Qwen3_5MoeForConditionalGeneration": (
                "atom.models.qwen3_5_moe.Qwen3_5MoeForConditionalGeneration"
            ),
        }
        """,
    )


def test_an_expression_value_copies_the_layout_rules_not_the_neighbour():
    before = """
        _EXAMPLES = {
            # [Decoder-only]
            "ArceeForCausalLM": _HfExamplesInfo("arcee-ai/AFM-4.5B-Base"),
            "BaiChuanForCausalLM": _HfExamplesInfo(
                "baichuan-inc/Baichuan-7B", trust_remote_code=True
            ),
        }
        """
    assert_adds(
        before,
        "_EXAMPLES",
        "AfmoeForCausalLM",
        ['_HfExamplesInfo("arcee-ai/Trinity-Nano-Preview")'],
        expression=True,
        after="""
        _EXAMPLES = {
            # [Decoder-only]
            "AfmoeForCausalLM": _HfExamplesInfo("arcee-ai/Trinity-Nano-Preview"),
            "ArceeForCausalLM": _HfExamplesInfo("arcee-ai/AFM-4.5B-Base"),
            "BaiChuanForCausalLM": _HfExamplesInfo(
                "baichuan-inc/Baichuan-7B", trust_remote_code=True
            ),
        }
        """,
    )
    outcome = add_entry(
        code(before),
        "_EXAMPLES",
        "BailingMoeV2ForCausalLM",
        ['_HfExamplesInfo("inclusionAI/Ling-mini-2.0", trust_remote_code=True)'],
        expression=True,
    )
    assert (
        '    "BailingMoeV2ForCausalLM": _HfExamplesInfo(\n'
        '        "inclusionAI/Ling-mini-2.0", trust_remote_code=True\n'
        "    ),\n"
    ) in outcome.source
    with pytest.raises(CodegenError, match="duplicate key 'ArceeForCausalLM'"):
        add_entry(
            code(before),
            "_EXAMPLES",
            "ArceeForCausalLM",
            ['_HfExamplesInfo("x/y")'],
            expression=True,
        )


def test_a_line_length_waiver_is_not_copied_but_other_pragmas_are():
    assert_adds(
        """
        MODELS = {
            "GraniteHybridLM": ("granitehybrid", "GraniteHybridLM"),  # noqa: E501
        }
        """,
        "MODELS",
        "Qwen3ForCausalLM",
        ["qwen3", "Qwen3ForCausalLM"],
        after="""
        MODELS = {
            "GraniteHybridLM": ("granitehybrid", "GraniteHybridLM"),  # noqa: E501
            "Qwen3ForCausalLM": ("qwen3", "Qwen3ForCausalLM"),
        }
        """,
    )
    assert_adds(
        """
        MODELS = {
            "Llama": ("llama", "Llama"),  # type: ignore[dict-item]
        }
        """,
        "MODELS",
        "Qwen3",
        ["qwen3", "Qwen3"],
        after="""
        MODELS = {
            "Llama": ("llama", "Llama"),  # type: ignore[dict-item]
            "Qwen3": ("qwen3", "Qwen3"),  # type: ignore[dict-item]
        }
        """,
    )
