"""Before/after cases for `import_line`: one side-effect import line per model."""

from codegen.codemods.testing import assert_adds, assert_refuses


def test_sorted_lines_keep_the_comment_above_the_next_line():
    assert_adds(
        """
        from pkg.models.base import ModelSpec
        from pkg.models.llama import spec as llama_spec  # noqa: F401
        # qwen3 ships dense and MoE
        from pkg.models.qwen3 import spec as qwen3_spec  # noqa: F401

        __all__ = ["ModelSpec"]
        """,
        "from pkg.models",
        "qwen2",
        after="""
        from pkg.models.base import ModelSpec
        from pkg.models.llama import spec as llama_spec  # noqa: F401
        from pkg.models.qwen2 import spec as qwen2_spec  # noqa: F401
        # qwen3 ships dense and MoE
        from pkg.models.qwen3 import spec as qwen3_spec  # noqa: F401

        __all__ = ["ModelSpec"]
        """,
    )


def test_unsorted_goes_after_family_and_header_stays_on_top():
    assert_adds(
        """
        # register models
        from pkg.models.qwen3 import spec as qwen3_spec  # noqa: F401
        from pkg.models.llama import spec as llama_spec  # noqa: F401
        """,
        "from pkg.models",
        "qwen3_moe",
        after="""
        # register models
        from pkg.models.qwen3 import spec as qwen3_spec  # noqa: F401
        from pkg.models.qwen3_moe import spec as qwen3_moe_spec  # noqa: F401
        from pkg.models.llama import spec as llama_spec  # noqa: F401
        """,
    )
    assert_adds(
        """
        # register models
        from pkg.models.llama import spec as llama_spec  # noqa: F401
        from pkg.models.qwen3 import spec as qwen3_spec  # noqa: F401
        """,
        "from pkg.models",
        "deepseek_v3",
        after="""
        # register models
        from pkg.models.deepseek_v3 import spec as deepseek_v3_spec  # noqa: F401
        from pkg.models.llama import spec as llama_spec  # noqa: F401
        from pkg.models.qwen3 import spec as qwen3_spec  # noqa: F401
        """,
    )


def test_relative_lines_inside_a_try_block():
    assert_adds(
        """
        try:
            from .llama import model  # noqa: F401
            from .qwen2 import model  # noqa: F401
        except ImportError:
            pass
        """,
        "from .",
        "qwen3",
        after="""
        try:
            from .llama import model  # noqa: F401
            from .qwen2 import model  # noqa: F401
            from .qwen3 import model  # noqa: F401
        except ImportError:
            pass
        """,
    )


def test_two_import_registries_of_one_package_are_ambiguous():
    assert_refuses(
        """
        from pkg.models import (
            llama,  # noqa: F401
        )
        from pkg.models.qwen2 import spec  # noqa: F401
        """,
        "from pkg.models",
        "qwen3",
        match="ambiguous container",
    )
