"""Before/after cases for `elif_branch`: `if model_type == ...` dispatch chains."""

from codegen.codemods.add import add_entry
from codegen.codemods.testing import assert_adds, assert_refuses, code

CHAIN = """
    def build(model_type, config):
        if model_type == "llama":
            return build_llama(config)
        # Qwen family
        elif model_type == "qwen3":
            return build_qwen3(config)
        else:
            raise ValueError(f"unsupported model_type {model_type}")
    """


def test_new_branch_before_final_else_with_given_body():
    assert_adds(
        CHAIN,
        "if model_type",
        "qwen3_moe",
        ["from pkg.qwen3_moe import build_qwen3_moe", "return build_qwen3_moe(config)"],
        after="""
        def build(model_type, config):
            if model_type == "llama":
                return build_llama(config)
            # Qwen family
            elif model_type == "qwen3":
                return build_qwen3(config)
            elif model_type == "qwen3_moe":
                from pkg.qwen3_moe import build_qwen3_moe
                return build_qwen3_moe(config)
            else:
                raise ValueError(f"unsupported model_type {model_type}")
        """,
    )


def test_sorted_branch_copies_neighbour_body_with_the_name_swapped():
    assert_adds(
        CHAIN,
        "model_type",  # a bare name falls back to the chain when nothing is bound to it
        "mistral",
        after="""
        def build(model_type, config):
            if model_type == "llama":
                return build_llama(config)
            elif model_type == "mistral":
                return build_mistral(config)
            # Qwen family
            elif model_type == "qwen3":
                return build_qwen3(config)
            else:
                raise ValueError(f"unsupported model_type {model_type}")
        """,
    )


def test_the_if_line_is_never_rewritten():
    assert_adds(
        """
        if kind == "llama":
            cls = LlamaModel
        elif kind == "qwen2":
            cls = Qwen2Model
        else:
            raise KeyError(kind)
        """,
        "if kind",
        "deepseek_v3",
        after="""
        if kind == "llama":
            cls = LlamaModel
        elif kind == "deepseek_v3":
            cls = DeepseekV3Model
        elif kind == "qwen2":
            cls = Qwen2Model
        else:
            raise KeyError(kind)
        """,
    )


def test_same_key_with_a_different_body_is_refused():
    assert_refuses(CHAIN, "if model_type", "llama", ["return other(config)"], match="duplicate key")


def test_other_elif_tests_are_kept_and_skipped():
    assert_adds(
        """
        if model_type == "llama":
            cls = LlamaModel
        elif legacy:
            cls = LegacyModel
        else:
            raise KeyError(model_type)
        """,
        "if model_type",
        "qwen2",
        ["cls = Qwen2Model"],
        after="""
        if model_type == "llama":
            cls = LlamaModel
        elif model_type == "qwen2":
            cls = Qwen2Model
        elif legacy:
            cls = LegacyModel
        else:
            raise KeyError(model_type)
        """,
    )


def test_an_import_inside_the_given_statements_binds_the_class():
    source = code(
        """
        def build(config):
            if config.model_type == "llama":
                return LlamaModel(config)
            else:
                raise ValueError(config.model_type)
        """
    )
    outcome = add_entry(
        source,
        "if config.model_type",
        "qwen3",
        ["from pkg.models.qwen3 import Qwen3Model", "return Qwen3Model(config)"],
    )
    assert outcome.notes == []
    outcome = add_entry(source, "if config.model_type", "qwen3", ["return Qwen3Model(config)"])
    assert outcome.notes == [
        "Qwen3Model is used by the new branch but not imported in <string>: add its import"
    ]
