"""Registries shaped like real framework releases (issue 13): vLLM 0.33.0 with its package
layout, ATOM's plugin tables, PithTrain's `module_config.model_type` dispatch, transformers'
class-name convention, the repository's line length, one missing-module rule for every
target, and `--check` on missing and differing entries.

The fixtures under `fixtures/` are written for these tests to reproduce each registry's
shape (no framework code is copied); the module trees they name are built at test time.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

FIXTURES = Path(__file__).parent / "fixtures"

# vLLM 0.33.0: flat modules under model_executor/models, and (since 0.27) packages under
# vllm/models/ whose __init__ picks the platform's implementation
FLAT = {
    "apertus": ["ApertusForCausalLM"],
    "llama": ["LlamaForCausalLM"],
    "baichuan": ["BaiChuanForCausalLM"],
    "deepseek_v2": ["DeepseekV2ForCausalLM", "DeepseekV3ForCausalLM"],
    "exaone4": ["Exaone4ForCausalLM"],
    "falcon": ["FalconForCausalLM"],
    "mamba": ["MambaForCausalLM"],
    "gpt_oss": ["GptOssForCausalLM"],
    "gpt2": ["GPT2LMHeadModel"],
    "step3_text": ["Step3TextForCausalLM"],
    "stablelm": ["StablelmForCausalLM"],
    "gemma": ["GemmaForCausalLM"],
    "qwen3_next": ["Qwen3NextForCausalLM"],
    "granitemoehybrid": ["GraniteMoeHybridForCausalLM"],
    "mistral_large_3": ["MistralLarge3ForCausalLM"],
    "mixtral": ["MixtralForCausalLM"],
    "qwen2": ["Qwen2ForCausalLM"],
    "qwen3": ["Qwen3ForCausalLM"],
    "qwen3_moe": ["Qwen3MoeForCausalLM"],
    "zamba2": ["Zamba2ForCausalLM"],
    "whisper": ["WhisperForConditionalGeneration"],
}
PACKAGES = {
    "deepseek_v4": ["DeepseekV4ForCausalLM", "DeepSeekV4MTP"],
    "dots3_note": ["Dots3NoteForCausalLM", "Dots3NoteMTP"],
    "deepseek_v32": ["GlmMoeDsaForCausalLM"],
    "qwen4_exp": ["Qwen4ExpForConditionalGeneration"],
}


def classes(names: list[str]) -> str:
    return "".join(f"class {name}:\n    pass\n\n\n" for name in names)


def platform_package(root: Path, names: list[str]) -> None:
    root.mkdir(parents=True)
    for platform in ("nvidia", "amd"):
        (root / platform).mkdir()
        (root / platform / "__init__.py").write_text("")
        (root / platform / "model.py").write_text(classes(names))
    imports = ", ".join(names)
    (root / "__init__.py").write_text(
        "from vllm.platforms import current_platform\n\n"
        "if current_platform.is_rocm():\n"
        f"    from .amd.model import {imports}\n"
        "else:\n"
        f"    from .nvidia.model import {imports}\n"
    )


@pytest.fixture
def vllm_033(tmp_path):
    """A vLLM 0.33.0-shaped checkout: the registry, its test examples, every module it names."""
    repo = tmp_path / "vllm-0.33.0"
    flat = repo / "vllm/model_executor/models"
    flat.mkdir(parents=True)
    shutil.copy(FIXTURES / "vllm_0_33_registry.py.txt", flat / "registry.py")
    (repo / "tests/models").mkdir(parents=True)
    shutil.copy(FIXTURES / "vllm_0_33_examples.py.txt", repo / "tests/models/registry.py")
    for module, names in FLAT.items():
        (flat / f"{module}.py").write_text(classes(names))
    for package, names in PACKAGES.items():
        platform_package(repo / "vllm/models" / package, names)
    return repo


def test_lint_resolves_modules_the_way_vllm_does(vllm_033, cli):
    """`("vllm.models.deepseek_v4", ...)` is absolute; `("llama", ...)` is relative to
    vllm.model_executor.models. A clean 0.33.0 tree has no finding."""
    assert cli("lint", "--target", "vllm", "--repo", vllm_033) == (0, "", "")


def test_lint_still_reports_a_dangling_absolute_module(vllm_033, cli):
    registry = vllm_033 / "vllm/model_executor/models/registry.py"
    registry.write_text(registry.read_text().replace("vllm.models.qwen4_exp", "vllm.models.gone"))
    shutil.rmtree(vllm_033 / "vllm/models/deepseek_v32")
    code, out, _ = cli("lint", "--target", "vllm", "--repo", vllm_033)
    assert code == 1
    lines = [line.split(": ", 1)[1] for line in out.splitlines()]
    assert lines == [
        "CG002 'GlmMoeDsaForCausalLM': module 'vllm.models.deepseek_v32' not found",
        "CG002 'Qwen4ExpForConditionalGeneration': module 'vllm.models.gone' not found",
    ]


def test_mistral4_goes_after_the_mistral_entries_and_gets_its_example(vllm_033, cli):
    (vllm_033 / "vllm/model_executor/models/mistral4.py").write_text(
        classes(["Mistral4ForCausalLM"])
    )
    code, out, err = cli(
        "register",
        "mistral4",
        "--target",
        "vllm",
        "--repo",
        vllm_033,
        "--set",
        "example=mistralai/Mistral-Small-4-119B-2603",
    )
    assert (code, err) == (0, ""), err
    assert out.count("registered 'Mistral4ForCausalLM'") == 2
    registry = (vllm_033 / "vllm/model_executor/models/registry.py").read_text().splitlines()
    at = registry.index('    "Mistral4ForCausalLM": ("mistral4", "Mistral4ForCausalLM"),')
    assert registry[at - 1].startswith('    "MistralLarge3ForCausalLM"')
    assert registry[at + 1].startswith('    "MixtralForCausalLM"')
    examples = (vllm_033 / "tests/models/registry.py").read_text().splitlines()
    at = examples.index(
        '    "Mistral4ForCausalLM": _HfExamplesInfo("mistralai/Mistral-Small-4-119B-2603"),'
    )
    # that dict is sorted here: sorted position, '4' before 'F'; a one-line entry although
    # its neighbour above is wrapped
    assert examples[at - 1] == "    ),"
    assert examples[at + 1].startswith('    "MistralForCausalLM"')
    assert cli("lint", "--target", "vllm", "--repo", vllm_033) == (0, "", "")


def test_without_an_example_the_test_registry_is_skipped_and_said_so(vllm_033, cli):
    platform_package(vllm_033 / "vllm/models/kimi_k3", ["KimiK3ForCausalLM"])
    code, out, _ = cli("register", "kimi_k3", "--target", "vllm", "--repo", vllm_033)
    assert code == 0
    assert "_TEXT_GENERATION_EXAMPLE_MODELS skipped: needs --set example=VALUE" in out
    registry = (vllm_033 / "vllm/model_executor/models/registry.py").read_text()
    # only the package layout exists for this model: the entry names it absolutely
    assert '    "KimiK3ForCausalLM": ("vllm.models.kimi_k3", "KimiK3ForCausalLM"),\n' in registry


def test_a_missing_module_is_refused_for_every_target_unless_allowed(vllm_033, cli, tmp_path):
    registry = vllm_033 / "vllm/model_executor/models/registry.py"
    old = registry.read_bytes()
    code, out, err = cli("register", "nothere", "--target", "vllm", "--repo", vllm_033)
    expected = vllm_033 / "vllm/model_executor/models/nothere.py"
    assert code == 2 and out == "" and registry.read_bytes() == old
    assert err.startswith(f"codegen: error: {expected}: no such module file")
    assert "'NothereForCausalLM'" in err and "--allow-missing" in err
    code, out, _ = cli(
        "register", "nothere", "--target", "vllm", "--repo", vllm_033, "--allow-missing"
    )
    assert code == 0 and "registered 'NothereForCausalLM'" in out


@pytest.mark.parametrize(
    ("target", "fixture", "missing"),
    [
        ("nemo", "nemo_registry.py.txt", "nemo_automodel/components/models/nothere/model.py"),
        ("atom", "atom_model_runner.py.txt", "atom/models/nothere.py"),
        ("vllm", "vllm_registry.py.txt", "vllm/model_executor/models/nothere.py"),
        ("archon", "archon_init.py.txt", "areal/experimental/models/archon/nothere"),
    ],
)
def test_one_missing_module_rule_for_all_targets(framework, cli, target, fixture, missing):
    repo, registry = framework(target, fixture)
    old = registry.read_bytes()
    code, _, err = cli("register", "nothere", "--target", target, "--repo", repo)
    assert code == 2 and registry.read_bytes() == old
    assert f"{repo / missing}" in err and "--allow-missing" in err, err
    code, out, err = cli(
        "register", "nothere", "--target", target, "--repo", repo, "--allow-missing"
    )
    assert (code, err) == (0, "") and registry.read_bytes() != old


def test_check_exits_1_when_missing_or_different_and_0_when_present(vllm_033, cli):
    args = ("register", "qwen3", "--target", "vllm", "--repo", vllm_033, "--check")
    assert cli(*args)[0] == 0  # Qwen3ForCausalLM is registered as ("qwen3", ...)
    registry = vllm_033 / "vllm/model_executor/models/registry.py"
    registry.write_text(registry.read_text().replace('("qwen3", "Qwen3', '("qwen2", "Qwen3'))
    old = registry.read_bytes()
    code, out, err = cli(*args)
    assert (code, err) == (1, "")
    assert (
        "'Qwen3ForCausalLM' differs in _TEXT_GENERATION_MODELS: maps it to 'qwen2', "
        "'Qwen3ForCausalLM', not 'qwen3', 'Qwen3ForCausalLM'" in out
    )
    (vllm_033 / "vllm/model_executor/models/gemma2.py").write_text(classes(["Gemma2ForCausalLM"]))
    code, out, _ = cli("register", "gemma2", "--target", "vllm", "--repo", vllm_033, "--check")
    assert code == 1 and "'Gemma2ForCausalLM' missing from _TEXT_GENERATION_MODELS" in out
    assert registry.read_bytes() == old


@pytest.mark.parametrize(
    ("name", "extra", "arch"),
    [
        ("qwen3_5", [], "Qwen3_5ForCausalLM"),
        ("ernie4_5", [], "Ernie4_5ForCausalLM"),
        ("qwen3_5_moe", [], "Qwen3_5MoeForCausalLM"),
        ("ernie4_5_moe", ["--class-prefix", "Ernie4_5_Moe"], "Ernie4_5_MoeForCausalLM"),
        (
            "qwen3_5",
            ["--arch", "Qwen3_5ForConditionalGeneration"],
            "Qwen3_5ForConditionalGeneration",
        ),
    ],
)
def test_class_names_follow_transformers(vllm_033, cli, name, extra, arch):
    (vllm_033 / f"vllm/model_executor/models/{name}.py").write_text(classes([arch]))
    code, out, err = cli("register", name, "--target", "vllm", "--repo", vllm_033, *extra)
    assert (code, err) == (0, ""), err
    assert f"registered {arch!r}" in out
    text = (vllm_033 / "vllm/model_executor/models/registry.py").read_text()
    assert f'    "{arch}": ("{name}", "{arch}"),\n' in text


def test_entries_wrap_at_the_repository_line_length(vllm_033, cli):
    arch = "Qwen3_5MoeForConditionalGeneration"
    (vllm_033 / "vllm/model_executor/models/qwen3_5_moe_multimodal.py").write_text(classes([arch]))
    args = ("register", "qwen3_5_moe_multimodal", "--target", "vllm", "--repo", vllm_033)
    code, out, _ = cli(*args, "--arch", arch, "--diff")
    assert code == 0
    wrapped = [line[1:] for line in out.splitlines() if line.startswith("+ ")]
    assert wrapped == [  # 107 columns on one line: wrapped at the default 88
        f'    "{arch}": (',
        '        "qwen3_5_moe_multimodal",',
        f'        "{arch}",',
        "    ),",
    ]
    (vllm_033 / "pyproject.toml").write_text("[tool.ruff]\nline-length = 120\n")
    code, out, _ = cli(*args, "--arch", arch, "--diff")
    one = [line[1:] for line in out.splitlines() if line.startswith("+ ")]
    assert one == [f'    "{arch}": ("qwen3_5_moe_multimodal", "{arch}"),']


@pytest.mark.parametrize(
    ("config", "name", "text"),
    [
        ("pyproject.toml", 120, "[tool.black]\nline-length = 120\n"),
        ("ruff.toml", 99, "line-length = 99\n"),
        (".flake8", 79, "[flake8]\nmax-line-length = 79\n"),
        ("setup.cfg", 110, "[metadata]\nname = x\n[flake8]\nmax-line-length = 110\n"),
    ],
)
def test_line_length_is_read_from_the_formatter_config(tmp_path, config, name, text):
    from codegen.codemods.style import line_length

    (tmp_path / "pkg").mkdir()
    (tmp_path / ".git").mkdir()
    (tmp_path / config).write_text(text)
    assert line_length(tmp_path / "pkg" / "registry.py") == name
    (tmp_path / config).unlink()
    assert line_length(tmp_path / "pkg" / "registry.py") == 88


@pytest.fixture
def atom_repo(tmp_path):
    repo = tmp_path / "ATOM"
    for fixture, relative in [
        ("atom_model_runner.py.txt", "atom/model_engine/model_runner.py"),
        ("atom_plugin_register.py.txt", "atom/plugin/register.py"),
        ("atom_plugin_vllm_register.py.txt", "atom/plugin/vllm/register.py"),
        ("atom_plugin_model_wrapper.py.txt", "atom/plugin/vllm/model_wrapper.py"),
    ]:
        (repo / relative).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(FIXTURES / fixture, repo / relative)
    (repo / "atom/models").mkdir()
    for module, names in {
        "qwen3": ["Qwen3ForCausalLM"],
        "qwen3_moe": ["Qwen3MoeForCausalLM"],
        "llama": ["LlamaForCausalLM"],
        "deepseek_v2": ["DeepseekV2ForCausalLM", "DeepseekV3ForCausalLM"],
        "mistral4": ["Mistral4ForCausalLM"],
    }.items():
        (repo / "atom/models" / f"{module}.py").write_text(classes(names))
    return repo


def ruff_clean(path: Path, *extra: str) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "ruff", "check", "--isolated", "--select", "E,F,I", *extra, path],
        capture_output=True,
        text=True,
    )
    return result.stdout if result.returncode else ""


def test_atom_plugin_tables_are_registered_with_the_class_imported(atom_repo, cli):
    register_py = atom_repo / "atom/plugin/register.py"
    first_party = ("--config", "lint.isort.known-first-party=['atom']")
    assert ruff_clean(register_py, *first_party) == ""
    code, out, err = cli(
        "register",
        "mistral4",
        "--target",
        "atom",
        "--repo",
        atom_repo,
        "--set",
        "atom_wrapper=ATOM_MOE_CAUSAL_LM_MODEL_WRAPPER",
    )
    assert (code, err) == (0, ""), err
    assert out.count("registered 'Mistral4ForCausalLM'") == 4
    assert "imported Mistral4ForCausalLM (from atom.models.mistral4" in out
    text = register_py.read_text()
    assert "from atom.models.mistral4 import Mistral4ForCausalLM\n" in text
    assert text.index("atom.models.glm4_moe") < text.index("atom.models.mistral4")
    assert text.index("atom.models.mistral4") < text.index("atom.models.qwen3 ")
    main, update = text.index("_ATOM_SUPPORTED_MODELS = {"), text.index(".update(")
    assert main < text.index('"Mistral4ForCausalLM": Mistral4ForCausalLM') < update
    assert ruff_clean(register_py, *first_party) == ""
    assert (
        '    "Mistral4ForCausalLM": ATOM_MOE_CAUSAL_LM_MODEL_WRAPPER,\n'
        in (atom_repo / "atom/plugin/vllm/register.py").read_text()
    )
    assert (
        '    "Mistral4ForCausalLM": "atom.models.mistral4:Mistral4ForCausalLM",\n'
        in (atom_repo / "atom/plugin/vllm/model_wrapper.py").read_text()
    )
    assert cli("lint", "--target", "atom", "--repo", atom_repo) == (0, "", "")


def test_an_atom_checkout_without_the_plugin_skips_its_tables(framework, cli):
    repo, registry = framework("atom", "atom_model_runner.py.txt")
    (repo / "atom/models").mkdir(parents=True)
    (repo / "atom/models/mistral4.py").write_text(classes(["Mistral4ForCausalLM"]))
    code, out, _ = cli("register", "mistral4", "--target", "atom", "--repo", repo)
    assert code == 0 and out.count("skipped: this release has no atom/plugin/") == 3
    assert "Mistral4ForCausalLM" in registry.read_text()


def test_pithtrain_dispatch_on_a_dotted_subject_gets_a_complete_branch(tmp_path, cli):
    path = tmp_path / "training.py"
    shutil.copy(FIXTURES / "pithtrain_training.py.txt", path)
    first_party = ("--config", "lint.isort.known-first-party=['pithtrain']", "--line-length", "100")
    assert ruff_clean(path, *first_party) == ""
    code, out, err = cli(
        "registry", "add", path.name, "if module_config.model_type", "qwen3", cwd=tmp_path
    )
    assert (code, err) == (0, ""), err
    assert "added 'qwen3' to if module_config.model_type (after 'qwen3_moe', same family)" in out
    assert "imported Qwen3Model (from pithtrain.models.qwen3 import Qwen3Model)" in out
    text = path.read_text()
    assert (
        '    elif module_config.model_type == "qwen3":\n'
        "        ModelClass = Qwen3Model\n"
        '        model_kwargs = {"cp_group": cp_group}\n'
        '    elif module_config.model_type == "gpt_oss":\n'
    ) in text
    assert "from pithtrain.models.qwen3 import Qwen3Model\n" in text
    assert ruff_clean(path, *first_party) == ""
    code, out, _ = cli(
        "registry", "add", path.name, "if module_config.model_type", "qwen3", cwd=tmp_path
    )
    assert code == 0 and "already in" in out and path.read_text() == text


def test_explicit_branch_statements_name_the_import_still_missing(tmp_path, cli):
    path = tmp_path / "training.py"
    shutil.copy(FIXTURES / "pithtrain_training.py.txt", path)
    code, out, _ = cli(
        "registry",
        "add",
        path.name,
        "if module_config.model_type",
        "llama",
        "ModelClass = LlamaModel",
        'model_kwargs = {"cp_group": cp_group}',
        cwd=tmp_path,
    )
    assert code == 0
    assert "LlamaModel is used by the new branch but not imported in training.py" in out


def test_transformers_target_needs_the_model_files(tmp_path, cli):
    import importlib.util

    auto_src = Path(importlib.util.find_spec("transformers").submodule_search_locations[0])
    auto = tmp_path / "transformers/src/transformers/models/auto"
    auto.mkdir(parents=True)
    for name in ("auto_mappings.py", "configuration_auto.py", "modeling_auto.py"):
        shutil.copy(auto_src / "models/auto" / name, auto / name)
    code, _, err = cli(
        "register", "qwen3_tiny", "--target", "transformers", "--repo", tmp_path / "transformers"
    )
    expected = auto.parent / "qwen3_tiny" / "configuration_qwen3_tiny.py"
    assert code == 2 and err.startswith(f"codegen: error: {expected}: no such file")


def test_check_reads_the_registries_only(vllm_033, cli):
    """--check of a model whose code is gone: the registry answer (1: missing), not an error."""
    code, out, err = cli("register", "gone", "--target", "vllm", "--repo", vllm_033, "--check")
    assert (code, err) == (1, "")
    assert "'GoneForCausalLM' missing from _TEXT_GENERATION_MODELS" in out
