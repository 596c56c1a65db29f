"""`codegen register NAME --target T`: every registry edit a framework needs, from target data."""

from __future__ import annotations

import importlib.util
import os
import shutil
from pathlib import Path

import pytest

from codegen.targets import TARGETS

AUTO = Path(importlib.util.find_spec("transformers").submodule_search_locations[0]) / "models/auto"


def new_lines(old: str, new: str) -> list[str]:
    return [line for line in new.splitlines() if line not in old.splitlines()]


MODULES = {  # where each target's model code lives, relative to the repo ({n}: the name)
    "nemo": "nemo_automodel/components/models/{n}/model.py",
    "atom": "atom/models/{n}.py",
    "vllm": "vllm/model_executor/models/{n}.py",
}


def write_module(repo: Path, target: str, name: str, cls: str) -> Path:
    path = repo / MODULES[target].format(n=name)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"class {cls}:\n    pass\n")
    return path


def test_every_target_is_described_as_data():
    assert set(TARGETS) == {"house", "archon", "nemo", "atom", "vllm", "transformers"}
    for target in TARGETS.values():
        assert target.registries and target.description
        for registry in target.registries:
            assert registry.files and registry.container and registry.key


def test_house_register_detects_the_spec_attribute_and_sorts(house, model_package, cli):
    models = house(registered=("llama", "qwen3"))
    model_package(models, "qwen2", attr="QWEN2_SPEC")
    registry = models / "__init__.py"
    old = registry.read_text()
    code, out, err = cli("register", "qwen2", "--models", models)
    assert (code, err) == (0, "")
    assert "registered 'qwen2' in MODEL_SPECS (sorted position)" in out
    assert new_lines(old, registry.read_text()) == ['    "qwen2": "qwen2.spec:QWEN2_SPEC",']
    assert registry.read_text().index('"llama"') < registry.read_text().index('"qwen2"')
    assert registry.read_text().index('"qwen2"') < registry.read_text().index('"qwen3"')
    code, out, _ = cli("register", "qwen2", "--models", models)
    assert code == 0 and "already in MODEL_SPECS" in out


def test_house_register_refuses_a_model_that_is_not_on_disk(house, cli):
    models = house()
    code, _, err = cli("register", "mistral", "--models", models)
    assert code == 2
    assert err == (
        f"codegen: error: {models / 'mistral'}: no model package here (expected spec.py); "
        "scaffold it first, or pass --allow-missing\n"
    )


@pytest.mark.parametrize(
    ("target", "fixture", "extra", "expected"),
    [
        ("archon", "archon_init.py.txt", [], ["    qwen3_moe,  # noqa: F401"]),
        (
            "archon",
            "archon_lines_init.py.txt",
            [],
            [
                "from areal.experimental.models.archon.qwen3_moe import spec as qwen3_moe_spec"
                "  # noqa: F401"
            ],
        ),
        (
            "nemo",
            "nemo_registry.py.txt",
            [],
            [
                '            ("nemo_automodel.components.models.qwen3_moe_tiny.model", '
                '"Qwen3MoeTinyForCausalLM"),',
                '            "Qwen3MoeTinyForCausalLM",',
            ],
        ),
        (
            "atom",
            "atom_model_runner.py.txt",
            [],
            [
                '    "Qwen3MoeTinyForCausalLM": '
                '"atom.models.qwen3_moe_tiny.Qwen3MoeTinyForCausalLM",'
            ],
        ),
        (
            "vllm",
            "vllm_registry.py.txt",
            ["--arch", "Qwen3MoeTinyForCausalLM"],
            ['    "Qwen3MoeTinyForCausalLM": ("qwen3_moe_tiny", "Qwen3MoeTinyForCausalLM"),'],
        ),
    ],
)
def test_framework_targets(framework, cli, target, fixture, extra, expected):
    repo, registry = framework(target, fixture)
    name = "qwen3_moe" if target == "archon" else "qwen3_moe_tiny"
    if TARGETS[target].models_dir:
        (repo / TARGETS[target].models_dir / name).mkdir(parents=True)
        (repo / TARGETS[target].models_dir / name / "spec.py").write_text("SPEC = object()\n")
    else:
        write_module(repo, target, name, "Qwen3MoeTinyForCausalLM")
    if target == "nemo":  # NeMo AutoModel formats at 120 columns
        (repo / "pyproject.toml").write_text("[tool.ruff]\nline-length = 120\n")
    old = registry.read_text()
    code, out, err = cli("register", name, "--target", target, "--repo", repo, *extra)
    assert (code, err) == (0, ""), err
    new = registry.read_text()
    assert sorted(new_lines(old, new)) == sorted(expected)
    compile(new, fixture, "exec")
    code, out, _ = cli("register", name, "--target", target, "--repo", repo, *extra)
    assert code == 0 and "already in" in out and registry.read_text() == new


def test_vllm_entry_lands_in_the_decoder_section_after_its_family(framework, cli):
    repo, registry = framework("vllm", "vllm_registry.py.txt")
    write_module(repo, "vllm", "qwen3_moe", "Qwen3MoeForCausalLM")
    assert cli("register", "qwen3_moe", "--target", "vllm", "--repo", repo)[0] == 0
    lines = registry.read_text().splitlines()
    at = lines.index('    "Qwen3MoeForCausalLM": ("qwen3_moe", "Qwen3MoeForCausalLM"),')
    assert lines[at - 1].startswith('    "Qwen3ForCausalLM"')
    assert lines[at + 1] == "    # [Encoder-decoder]"


@pytest.fixture
def transformers_repo(tmp_path):
    auto = tmp_path / "transformers" / "src/transformers/models/auto"
    auto.mkdir(parents=True)
    for name in ("auto_mappings.py", "configuration_auto.py", "modeling_auto.py"):
        shutil.copy(AUTO / name, auto / name)
    model = auto.parent / "qwen3_tiny"
    model.mkdir()
    for name in ("configuration_qwen3_tiny.py", "modeling_qwen3_tiny.py"):
        (model / name).write_text("")
    return tmp_path / "transformers", auto


def test_transformers_target_edits_two_real_files(transformers_repo, cli):
    repo, auto = transformers_repo
    before = {p.name: p.read_text() for p in auto.iterdir()}
    code, out, err = cli("register", "qwen3_tiny", "--target", "transformers", "--repo", repo)
    assert (code, err) == (0, ""), err
    after = {p.name: p.read_text() for p in auto.iterdir()}
    assert after["configuration_auto.py"] == before["configuration_auto.py"]  # 5.x: auto_mappings
    assert new_lines(before["auto_mappings.py"], after["auto_mappings.py"]) == [
        '        ("qwen3_tiny", "Qwen3TinyConfig"),'
    ]
    assert new_lines(before["modeling_auto.py"], after["modeling_auto.py"]) == [
        '        ("qwen3_tiny", "Qwen3TinyModel"),',
        '        ("qwen3_tiny", "Qwen3TinyForCausalLM"),',
    ]
    assert out.count("registered 'qwen3_tiny'") == 3


def test_check_and_diff_write_nothing(framework, cli):
    repo, registry = framework("vllm", "vllm_registry.py.txt")
    write_module(repo, "vllm", "mistral", "MistralForCausalLM")
    write_module(repo, "vllm", "qwen2", "Qwen2ForCausalLM")
    old = registry.read_bytes()
    args = ("register", "mistral", "--target", "vllm", "--repo", repo)
    code, out, _ = cli(*args, "--check")
    assert code == 1 and "'MistralForCausalLM' missing from _TEXT_GENERATION_MODELS" in out
    code, out, _ = cli(*args, "--diff")
    assert code == 0
    assert [line for line in out.splitlines() if line.startswith(("+", "-"))] == [
        f"--- {registry}",
        f"+++ {registry}",
        '+    "MistralForCausalLM": ("mistral", "MistralForCausalLM"),',
    ]
    assert registry.read_bytes() == old
    assert (
        cli(
            "register",
            "qwen2",
            "--target",
            "vllm",
            "--repo",
            repo,
            "--arch",
            "Qwen2ForCausalLM",
            "--check",
        )[0]
        == 0
    )


def test_all_or_nothing_across_files(transformers_repo, cli):
    repo, auto = transformers_repo
    mappings, modeling = auto / "auto_mappings.py", auto / "modeling_auto.py"
    snapshot = {p: p.read_bytes() for p in (mappings, modeling)}
    modeling.chmod(0o444)  # the second file cannot be written: the first must stay untouched
    code, _, err = cli("register", "qwen3_tiny", "--target", "transformers", "--repo", repo)
    os.chmod(modeling, 0o644)
    assert code == 2 and "modeling_auto.py: file is not writable" in err
    assert {p: p.read_bytes() for p in snapshot} == snapshot


def test_unknown_target_and_bad_name(cli, tmp_path):
    code, _, err = cli("register", "x", "--target", "nope", "--repo", tmp_path)
    assert code == 2 and "nope" in err
    code, _, err = cli("register", "Bad-Name", "--target", "atom", "--repo", tmp_path)
    assert code == 2 and err.startswith("codegen: error: bad model name 'Bad-Name'")
