"""Before/after cases for `import_name`: a side-effect `from PKG import (...)` list."""

from codegen.codemods.testing import assert_adds, assert_refuses


def test_parenthesised_list_copies_the_noqa_pragma():
    assert_adds(
        """
        # Import model modules to trigger registration
        from pkg.models import (
            qwen2,  # noqa: F401
            qwen3,  # noqa: F401
        )
        from pkg.models.base import Base
        """,
        "from pkg.models",
        "qwen3_moe",
        after="""
        # Import model modules to trigger registration
        from pkg.models import (
            qwen2,  # noqa: F401
            qwen3,  # noqa: F401
            qwen3_moe,  # noqa: F401
        )
        from pkg.models.base import Base
        """,
    )


def test_first_position_and_one_line_form():
    assert_adds(
        """
        from pkg.models import (
            qwen2,  # noqa: F401
            qwen3,  # noqa: F401
        )
        """,
        "from pkg.models",
        "llama",
        after="""
        from pkg.models import (
            llama,  # noqa: F401
            qwen2,  # noqa: F401
            qwen3,  # noqa: F401
        )
        """,
    )
    assert_adds(
        "from . import llama, qwen2  # noqa: F401\n",
        "from .",
        "qwen3",
        after="from . import llama, qwen2, qwen3  # noqa: F401\n",
    )


def test_imports_without_pragma_are_not_a_registry():
    assert_refuses("from pkg.models import a, b\n", "from pkg.models", "c", match="not found")
