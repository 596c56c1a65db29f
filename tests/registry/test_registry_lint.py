"""`codegen lint`: `file:line: CODE message`, exit 1 on findings, `--fix`, scope, cheap imports."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_clean_tree_exits_0_silently(house, cli, tmp_path):
    house()
    assert cli("lint", "--models", "models", cwd=tmp_path) == (0, "", "")


def test_each_finding_is_one_line_with_its_code(house, model_package, cli, tmp_path):
    models = house(registered=("deepseek_v3", "llama", "qwen2", "qwen3"), extra=("mistral",))
    registry = models / "__init__.py"
    registry.write_text(
        registry.read_text()
        .replace('"qwen2": "qwen2.spec:SPEC"', '"qwen2": "qwen2.specs:SPEC"')
        .replace(
            '"qwen3": "qwen3.spec:SPEC",',
            '"qwen3": "qwen3.spec:SPEC",\n    "aaa": "qwen3.spec:QWEN",',
        )
    )
    (models / "llama" / "spec.py").write_text(
        (models / "llama" / "spec.py").read_text().replace('name="llama"', 'name="llama3"')
    )
    spec = models / "deepseek_v3" / "spec.py"
    spec.write_text(spec.read_text().replace('{"deepseek_v3"}', '{"deepseek_v3", "qwen3"}'))
    code, out, err = cli("lint", "--models", "models", cwd=tmp_path)
    assert code == 1 and err == ""
    assert out.splitlines() == [
        "models/__init__.py:3: CG001 model package 'mistral' is not registered in MODEL_SPECS",
        "models/__init__.py:6: CG002 'qwen2': module 'qwen2.specs' not found "
        "(no models/qwen2/specs.py)",
        "models/__init__.py:8: CG002 'aaa': qwen3.spec does not define QWEN",
        "models/__init__.py:8: CG005 'aaa' is out of order in MODEL_SPECS, which is kept sorted",
        "models/llama/spec.py:10: CG006 spec name 'llama3' differs from its registry key 'llama'",
        "models/qwen3/spec.py:14: CG004 model_type 'qwen3' is claimed by both 'deepseek_v3' "
        "and 'qwen3'",
    ]


def test_duplicate_keys_and_unparsable_spec(house, cli, tmp_path):
    models = house(registered=("llama", "qwen2"))
    registry = models / "__init__.py"
    registry.write_text(registry.read_text().replace("}", '    "llama": "llama.spec:SPEC",\n}'))
    (models / "qwen2" / "spec.py").write_text("SPEC = ModelSpec(\n")
    code, out, _ = cli("lint", "--models", "models", cwd=tmp_path)
    assert code == 1
    assert out.splitlines() == [
        "models/__init__.py:6: CG003 duplicate key 'llama' in MODEL_SPECS (first at line 4)",
        "models/qwen2/spec.py:1: CG007 syntax error: '(' was never closed",
    ]


def test_fix_registers_unregistered_packages_then_passes(house, cli, tmp_path):
    models = house(registered=("llama", "qwen3"), extra=("qwen2", "deepseek_v3"))
    code, out, _ = cli("lint", "--models", "models", cwd=tmp_path)
    assert code == 1 and out.count("CG001") == 2
    code, out, err = cli("lint", "--models", "models", "--fix", cwd=tmp_path)
    assert (code, out) == (0, "")
    assert "fixed: registered 'deepseek_v3' in MODEL_SPECS (sorted position)" in err
    assert list(eval_registry(models)) == ["deepseek_v3", "llama", "qwen2", "qwen3"]
    assert cli("lint", "--models", "models", cwd=tmp_path) == (0, "", "")


def test_fix_leaves_findings_it_cannot_fix(house, cli, tmp_path):
    models = house(registered=("llama",), extra=("qwen2",))
    (models / "llama" / "spec.py").write_text("SPEC = None\n")
    spec = models / "qwen2" / "spec.py"
    spec.write_text(spec.read_text().replace('name="qwen2"', 'name="other"'))
    code, out, _ = cli("lint", "--models", "models", "--fix", cwd=tmp_path)
    assert code == 1
    assert out.splitlines() == [
        "models/qwen2/spec.py:10: CG006 spec name 'other' differs from its registry key 'qwen2'"
    ]


def eval_registry(models: Path) -> dict:
    namespace: dict = {}
    exec((models / "__init__.py").read_text(), namespace)
    return namespace["MODEL_SPECS"]


def test_paths_narrow_the_check_to_their_registries(house, cli, tmp_path):
    house(registered=("llama",), extra=("qwen2",))
    (tmp_path / "README.md").write_text("docs\n")
    assert cli("lint", "README.md", cwd=tmp_path) == (0, "", "")  # not in any models package
    code, out, _ = cli("lint", "models/qwen2/spec.py", "README.md", cwd=tmp_path)
    assert code == 1 and out.startswith("models/__init__.py:3: CG001 model package 'qwen2'")


def test_pyproject_config_names_models_and_targets(house, framework, cli, tmp_path):
    house(registered=("llama",), extra=("qwen2",))
    repo, registry = framework("vllm", "vllm_registry.py.txt")
    models_dir = repo / "vllm/model_executor/models"
    for module, cls in [("llama", "LlamaForCausalLM"), ("qwen2", "Qwen2ForCausalLM")]:
        (models_dir / f"{module}.py").write_text(f"class {cls}:\n    pass\n")
    (models_dir / "deepseek_v2.py").write_text("class DeepseekV2ForCausalLM:\n    pass\n")
    (tmp_path / "pyproject.toml").write_text(
        '[tool.codegen]\nmodels = ["models"]\n\n'
        f'[[tool.codegen.targets]]\ntarget = "vllm"\nrepo = "{repo.name}"\n'
    )
    code, out, _ = cli("lint", cwd=tmp_path)
    assert code == 1
    vllm = "vllm-repo/vllm/model_executor/models/registry.py"
    assert out.splitlines() == [
        "models/__init__.py:3: CG001 model package 'qwen2' is not registered in MODEL_SPECS",
        f"{vllm}:5: CG002 'DeepseekV3ForCausalLM': vllm.model_executor.models.deepseek_v2 "
        "does not define DeepseekV3ForCausalLM",
        f"{vllm}:10: CG002 'Qwen3ForCausalLM': module 'vllm.model_executor.models.qwen3' not found",
        f"{vllm}:12: CG002 'BartModel': module 'vllm.model_executor.models.bart' not found",
        f"{vllm}:13: CG002 'BartForConditionalGeneration': module "
        "'vllm.model_executor.models.bart' not found",
    ]


def test_import_registry_target_reports_and_fixes_unimported_packages(framework, cli):
    repo, registry = framework("archon", "archon_lines_init.py.txt")
    models = repo / "areal/experimental/models/archon"
    for name in ("qwen2", "qwen3", "llama"):
        (models / name).mkdir()
        (models / name / "spec.py").write_text("spec = None\n")
    args = ("lint", "--target", "archon", "--repo", repo)
    code, out, _ = cli(*args)
    assert code == 1
    assert (
        out == f"{registry}:1: CG001 model package 'llama' is not registered in "
        "from areal.experimental.models.archon\n"
    )
    code, out, err = cli(*args, "--fix")
    assert (code, out) == (0, "") and "registered 'llama'" in err
    assert (
        "from areal.experimental.models.archon.llama import spec as llama_spec  # noqa: F401"
        in (registry.read_text())
    )


def test_lint_of_this_repository_is_clean():
    result = subprocess.run(
        [sys.executable, "-m", "codegen.cli", "lint"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
    )
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")


PROBE = """
import json, sys
from codegen.cli import main
try:
    code = main(sys.argv[1:])
except SystemExit as stop:
    code = stop.code
heavy = sorted({m.split(".")[0] for m in sys.modules} & {"torch", "transformers", "libcst",
                                                          "models", "references"})
print(json.dumps({"code": code, "heavy": heavy}))
"""


def test_lint_imports_neither_torch_nor_transformers_nor_the_models(house, tmp_path):
    house(registered=("llama",), extra=("qwen2",))  # one finding: exit 1 path is exercised
    result = subprocess.run(
        [sys.executable, "-c", PROBE, "lint", "--models", "models"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
    )
    report = json.loads(result.stdout.splitlines()[-1])
    assert report == {"code": 1, "heavy": []}, result.stderr


def test_fix_moves_out_of_order_entries_back_into_sorted_order(house, cli, tmp_path):
    models = house(registered=("deepseek_v3", "llama", "qwen2", "qwen3"))
    registry = models / "__init__.py"
    text = registry.read_text()
    # hand-appended at the end, with a comment line above the next entry kept in place
    text = text.replace('    "deepseek_v3": "deepseek_v3.spec:SPEC",\n', "")
    text = text.replace("}", '    "deepseek_v3": "deepseek_v3.spec:SPEC",  # note\n}')
    registry.write_text(text)
    code, out, _ = cli("lint", "--models", "models", cwd=tmp_path)
    assert code == 1 and out.count("CG005") == 1 and "(fixable" not in out
    code, out, err = cli("lint", "--models", "models", "--fix", cwd=tmp_path)
    assert (code, out) == (0, ""), out
    assert "fixed: moved 'deepseek_v3' to sorted order in MODEL_SPECS" in err
    assert list(eval_registry(models)) == ["deepseek_v3", "llama", "qwen2", "qwen3"]
    assert '    "deepseek_v3": "deepseek_v3.spec:SPEC",\n' in registry.read_text()


def test_two_scaffolded_models_then_lint_is_clean(tmp_path, cli, model_package):
    """The scaffold path: a new registry holds one entry; the second insert is sorted."""
    models = tmp_path / "models"
    models.mkdir()
    for name in ("qwen3", "llama"):
        model_package(models, name)
    (models / "__init__.py").write_text('MODEL_SPECS = {\n    "qwen3": "qwen3.spec:SPEC",\n}\n')
    code, out, err = cli("register", "llama", "--models", models)
    assert code == 0 and "(sorted position)" in out
    assert cli("lint", "--models", "models", cwd=tmp_path) == (0, "", "")


def test_a_model_folder_without_spec_and_unparsable_package_files_are_reported(
    house, cli, tmp_path
):
    models = house(registered=("llama", "qwen2"))
    orphan = models / "mistral"
    orphan.mkdir()
    (orphan / "model.py").write_text("class Model:\n    pass\n")
    (models / "qwen2" / "model.py").write_text("class Model:\n    def forward(self\n")
    (models / "qwen2" / "test_qwen2.py").write_text("this is not parsed (tests are not loaded")
    (models / "notes").mkdir()  # a folder without a model is not a package
    code, out, _ = cli("lint", "--models", "models", cwd=tmp_path)
    assert code == 1
    assert out.splitlines() == [
        "models/mistral/model.py:1: CG008 model package 'mistral' has model.py but no spec.py: "
        "nothing registers it",
        "models/qwen2/model.py:2: CG007 syntax error: '(' was never closed",
    ]


def test_a_framework_models_dir_gets_the_package_checks_too(framework, cli):
    repo, registry = framework("archon", "archon_lines_init.py.txt")
    models = repo / "areal/experimental/models/archon"
    for name in ("qwen2", "qwen3"):
        (models / name).mkdir()
        (models / name / "spec.py").write_text("spec = None\n")
    (models / "llama").mkdir()
    (models / "llama" / "model.py").write_text("class Llama:\n    pass\n")
    (models / "qwen3" / "args.py").write_text("x = (\n")
    code, out, _ = cli("lint", "--target", "archon", "--repo", repo)
    assert code == 1
    assert [line.split(f"{repo}/", 1)[-1] for line in out.splitlines()] == [
        "areal/experimental/models/archon/llama/model.py:1: CG008 model package 'llama' has "
        "model.py but no spec.py: nothing registers it",
        "areal/experimental/models/archon/qwen3/args.py:1: CG007 syntax error: "
        "'(' was never closed",
    ]
