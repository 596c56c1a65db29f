"""Before/after cases for `literal_member`: `Literal[...]` model-type lists."""

from codegen.codemods.testing import assert_adds


def test_literal_alias_sorted():
    assert_adds(
        """
        from typing import Literal

        ModelType = Literal["deepseek_v3", "llama", "qwen3"]
        """,
        "ModelType",
        "qwen2",
        after="""
        from typing import Literal

        ModelType = Literal["deepseek_v3", "llama", "qwen2", "qwen3"]
        """,
    )


def test_single_member_and_multi_line_literal():
    assert_adds(
        "Kind = typing.Literal['llama']\n",
        "Kind",
        "qwen2",
        after="Kind = typing.Literal['llama', 'qwen2']\n",
    )
    assert_adds(
        """
        Kind = Literal[
            "llama",
            "qwen2",
        ]
        """,
        "Kind",
        "qwen3",
        after="""
        Kind = Literal[
            "llama",
            "qwen2",
            "qwen3",
        ]
        """,
    )
