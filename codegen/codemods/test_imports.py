"""Before/after cases for `imports`: the import a new entry needs, where isort puts it."""

import pytest

from codegen.codemods.imports import ensure_imports
from codegen.codemods.testing import code
from codegen.errors import CodegenError

HEAD = """
    import logging

    from atom.config import Config
    from atom.models.glm4_moe import Glm4MoeForCausalLM
    from atom.models.qwen3 import Qwen3ForCausalLM
    """


def test_a_new_line_goes_among_its_package_in_module_order():
    source, reports = ensure_imports(
        code(HEAD), ["from atom.models.llama import LlamaForCausalLM"], "f.py"
    )
    assert source.splitlines()[3:6] == [
        "from atom.models.glm4_moe import Glm4MoeForCausalLM",
        "from atom.models.llama import LlamaForCausalLM",
        "from atom.models.qwen3 import Qwen3ForCausalLM",
    ]
    assert reports == ["imported LlamaForCausalLM (from atom.models.llama import LlamaForCausalLM)"]


def test_a_bound_name_is_left_alone_and_a_module_already_imported_gains_the_name():
    source, reports = ensure_imports(
        code(HEAD), ["from atom.models.qwen3 import Qwen3ForCausalLM"], "f.py"
    )
    assert (source, reports) == (code(HEAD), [])
    source, _ = ensure_imports(code(HEAD), ["from atom.models.qwen3 import Qwen3Model"], "f.py")
    assert "from atom.models.qwen3 import Qwen3ForCausalLM, Qwen3Model\n" in source
    source, _ = ensure_imports(code(HEAD), ["from atom.models.qwen3 import QWEN3_TYPES"], "f.py")
    assert "from atom.models.qwen3 import QWEN3_TYPES, Qwen3ForCausalLM\n" in source  # isort order


def test_the_first_of_a_package_keeps_the_comments_above_the_block():
    source, _ = ensure_imports("# models\nfrom pkg.b import B\n", ["from pkg.a import A"], "f.py")
    assert source == "# models\nfrom pkg.a import A\nfrom pkg.b import B\n"


def test_a_line_too_long_is_wrapped_as_ruff_formats_it():
    statement = (
        "from atom.plugin.vllm.models.qwen3_5_moe_multimodal_text "
        "import Qwen3_5ForConditionalGeneration"
    )
    source, _ = ensure_imports(code(HEAD), [statement], "f.py")
    assert (
        "from atom.plugin.vllm.models.qwen3_5_moe_multimodal_text import (\n"
        "    Qwen3_5ForConditionalGeneration,\n"
        ")\n"
    ) in source
    source, _ = ensure_imports(code(HEAD), [statement], "f.py", line_length=100)
    assert statement + "\n" in source


def test_only_from_imports_are_understood():
    with pytest.raises(CodegenError, match="not of the form"):
        ensure_imports(code(HEAD), ["import atom.models.llama"], "f.py")
