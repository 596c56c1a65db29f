"""`codegen registry add` on files shaped like other frameworks' registries."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

FIXTURES = Path(__file__).parent / "fixtures"


def fixture(tmp_path: Path, name: str) -> Path:
    path = tmp_path / name.removesuffix(".txt")
    shutil.copy(FIXTURES / name, path)
    return path


def added_lines(old: str, new: str) -> list[str]:
    """Lines of `new` not in `old` (the registry files have no duplicate lines)."""
    return [line for line in new.splitlines() if line not in old.splitlines()]


def test_add_writes_reports_and_is_idempotent(tmp_path, cli):
    path = fixture(tmp_path, "atom_model_runner.py.txt")
    old = path.read_text()
    code, out, err = cli(
        "registry",
        "add",
        path.name,
        "support_model_arch_dict",
        "Qwen3NextForCausalLM",
        "atom.models.qwen3_next:Qwen3NextForCausalLM",  # colon given, file uses dots
        cwd=tmp_path,
    )
    assert (code, err) == (0, "")
    assert out == (
        "atom_model_runner.py:10: added 'Qwen3NextForCausalLM' to support_model_arch_dict "
        "(after 'Qwen3MoeForCausalLM', same family)\n"
    )
    new = path.read_text()
    # it fits in 88 columns: one line, as the formatter leaves it, although its neighbour
    # is wrapped (a wrapped neighbour keeps its magic parentheses; a new entry has none)
    assert added_lines(old, new) == [
        '    "Qwen3NextForCausalLM": "atom.models.qwen3_next.Qwen3NextForCausalLM",'
    ]
    assert new.splitlines()[9] == added_lines(old, new)[0]
    code, out, _ = cli(
        "registry",
        "add",
        path.name,
        "support_model_arch_dict",
        "Qwen3NextForCausalLM",
        "atom.models.qwen3_next.Qwen3NextForCausalLM",
        cwd=tmp_path,
    )
    assert code == 0 and "already in" in out and path.read_text() == new


def test_check_exits_1_when_missing_or_different_and_0_when_present(tmp_path, cli):
    path = fixture(tmp_path, "vllm_registry.py.txt")
    old = path.read_bytes()
    args = ["registry", "add", path.name, "_TEXT_GENERATION_MODELS", "--section", "Decoder-only"]
    code, out, _ = cli(
        *args, "MistralForCausalLM", "llama", "LlamaForCausalLM", "--check", cwd=tmp_path
    )
    assert code == 1 and "missing from _TEXT_GENERATION_MODELS" in out
    code, out, _ = cli(
        *args, "Qwen2ForCausalLM", "qwen2", "Qwen2ForCausalLM", "--check", cwd=tmp_path
    )
    assert code == 0 and "already in" in out
    code, out, err = cli(
        *args, "Qwen2ForCausalLM", "qwen2_old", "Qwen2ForCausalLM", "--check", cwd=tmp_path
    )
    assert (code, err) == (1, "")
    assert out == (
        "vllm_registry.py:7: 'Qwen2ForCausalLM' differs: maps it to 'qwen2', 'Qwen2ForCausalLM'\n"
    )
    assert path.read_bytes() == old


def test_diff_prints_a_unified_diff_into_the_right_section(tmp_path, cli):
    path = fixture(tmp_path, "vllm_registry.py.txt")
    old = path.read_bytes()
    code, out, _ = cli(
        "registry",
        "add",
        path.name,
        "_TEXT_GENERATION_MODELS",
        "Qwen3MoeForCausalLM",
        "qwen3_moe",
        "Qwen3MoeForCausalLM",
        "--section",
        "Decoder-only",
        "--diff",
        cwd=tmp_path,
    )
    assert code == 0 and path.read_bytes() == old
    assert out.splitlines()[:2] == ["--- a/vllm_registry.py", "+++ b/vllm_registry.py"]
    body = out.splitlines()[3:]
    plus = body.index('+    "Qwen3MoeForCausalLM": ("qwen3_moe", "Qwen3MoeForCausalLM"),')
    assert body[plus - 1] == '     "Qwen3ForCausalLM": ("qwen3", "Qwen3ForCausalLM"),'
    assert body[plus + 1] == "     # [Encoder-decoder]"


@pytest.mark.parametrize(
    ("name", "container", "args", "expected"),
    [
        (
            "archon_init.py.txt",
            "from areal.experimental.models.archon",
            ["qwen3_moe"],
            ["    qwen3_moe,  # noqa: F401"],
        ),
        (
            "archon_lines_init.py.txt",
            "from areal.experimental.models.archon",
            ["llama"],
            ["from areal.experimental.models.archon.llama import spec as llama_spec  # noqa: F401"],
        ),
        (
            "nemo_registry.py.txt",
            "MODEL_ARCH_MAPPING",
            [
                "Qwen3ForCausalLM",
                "nemo_automodel.components.models.qwen3.model",
                "Qwen3ForCausalLM",
            ],
            [
                '            "Qwen3ForCausalLM",',
                '            ("nemo_automodel.components.models.qwen3.model", "Qwen3ForCausalLM"),',
            ],
        ),
        (
            "nemo_registry.py.txt",
            "_CUSTOM_CONFIG_REGISTRATIONS",
            ["llama", "nemo_automodel.components.models.llama.configuration:LlamaConfig"],
            [
                '    "llama": ("nemo_automodel.components.models.llama.configuration",'
                ' "LlamaConfig"),'
            ],
        ),
        (
            "typed_config.py.txt",
            "ModelType",
            ["qwen2"],
            ['ModelType = Literal["deepseek_v3", "llama", "qwen2", "qwen3"]'],
        ),
        (
            "typed_config.py.txt",
            "SUPPORTED_MODEL_TYPES",
            ["mistral"],
            ['SUPPORTED_MODEL_TYPES = frozenset({"deepseek_v3", "llama", "mistral", "qwen3"})'],
        ),
        (
            "typed_config.py.txt",
            "Registry.CONFIGS",
            ["qwen2", "pkg.qwen2.config.Config"],
            ['        "qwen2": "pkg.qwen2.config:Config",'],
        ),
        (
            "dispatch_chain.py.txt",
            "if model_type",
            ["llama", "from trainer.models.llama import LlamaModel", "return LlamaModel"],
            [
                '    elif model_type == "llama":',
                "        from trainer.models.llama import LlamaModel",
                "        return LlamaModel",
            ],
        ),
    ],
)
def test_each_framework_shape(tmp_path, cli, name, container, args, expected):
    path = fixture(tmp_path, name)
    old = path.read_text()
    code, out, err = cli("registry", "add", path.name, container, *args, cwd=tmp_path)
    assert (code, err) == (0, ""), err
    new = path.read_text()
    assert added_lines(old, new) == expected
    compile(new, name, "exec")
    code, out, _ = cli("registry", "add", path.name, container, *args, cwd=tmp_path)
    assert code == 0 and "already in" in out and path.read_text() == new


def test_an_expression_value_for_vllms_example_registry(tmp_path, cli):
    path = fixture(tmp_path, "vllm_0_33_examples.py.txt")
    args = ["registry", "add", path.name, "_TEXT_GENERATION_EXAMPLE_MODELS", "--expr"]
    value = '_HfExamplesInfo("Qwen/Qwen3-30B-A3B", trust_remote_code=True)'
    code, out, err = cli(*args, "Qwen3MoeForCausalLM", value, cwd=tmp_path)
    assert (code, err) == (0, ""), err
    assert (  # 91 columns on one line: wrapped as ruff wraps a call
        '    "Qwen3MoeForCausalLM": _HfExamplesInfo(\n'
        '        "Qwen/Qwen3-30B-A3B", trust_remote_code=True\n'
        "    ),\n"
    ) in path.read_text()
    code, out, _ = cli(*args, "Qwen3MoeForCausalLM", value, cwd=tmp_path)
    assert code == 0 and "already in" in out
    code, out, _ = cli(
        *args, "Qwen3MoeForCausalLM", '_HfExamplesInfo("x/y")', "--check", cwd=tmp_path
    )
    assert code == 1 and "differs" in out
