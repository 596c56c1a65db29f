"""`codegen lint --dead-code`: findings, exit codes, and no torch on the way."""

import subprocess
import sys

from codegen.cli import main

ARGS = """from dataclasses import dataclass


@dataclass
class ModelArgs:
    dim: int = 8
    sliding_window: int | None = None

    @classmethod
    def from_hf_config(cls, hf_config):
        return cls(dim=hf_config.hidden_size)
"""
MODEL = """class Model:
    def __init__(self, args: ModelArgs):
        self.args = args

    def forward(self, x):
        if self.args.sliding_window is not None:
            x = x[-self.args.sliding_window :]
        return x * self.args.dim
"""


def _package(root, model=MODEL):
    package = root / "toy"
    package.mkdir()
    (package / "args.py").write_text(ARGS)
    (package / "model.py").write_text(model)
    return package


def test_a_dead_branch_is_one_line_and_exit_1(tmp_path, capsys):
    package = _package(tmp_path)
    assert main(["lint", "--dead-code", str(package)]) == 1
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("toy/model.py:6: DC2 `self.args.sliding_window is not None`")
    assert "never sets it (default None)" in lines[0]


def test_a_models_folder_is_checked_package_by_package(tmp_path, capsys):
    _package(tmp_path, MODEL.replace("if self.args.sliding_window is not None", "if x.any()"))
    assert main(["lint", "--dead-code", str(tmp_path)]) == 0
    assert capsys.readouterr().out == ""


def test_not_a_package_is_one_line_exit_2(tmp_path, capsys):
    assert main(["lint", "--dead-code", str(tmp_path)]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1


def test_dead_code_check_imports_neither_torch_nor_transformers(tmp_path):
    package = _package(tmp_path)
    code = (
        "import sys\nfrom codegen.cli import main\n"
        f"main(['lint', '--dead-code', {str(package)!r}])\n"
        "print(sorted(m for m in ('torch', 'transformers') if m in sys.modules))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.stdout.strip().splitlines()[-1] == "[]", done.stderr[-2000:]
