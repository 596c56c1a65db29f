"""Formatting is not optional: scaffold with no ruff on PATH still writes a package that
`ruff format --check` (and ruff check, and the dead-code check) accepts."""

import os
import shutil
import subprocess
import sys

from codegen.quality.style import package_checks, path_without_ruff


def test_scaffold_without_ruff_on_path_writes_formatted_dead_code_free_code(tmp_path):
    env = dict(os.environ, PATH=path_without_ruff(os.environ.get("PATH", "")))
    assert shutil.which("ruff", path=env["PATH"]) is None
    models = tmp_path / "models"
    done = subprocess.run(
        [sys.executable, "-m", "codegen.cli", "scaffold", "mixtral", "--out", str(models)],
        env=env,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    # mixtral from qwen3_moe: the folded MoE-layer rule (`return (\n  self.num_experts > 0\n)`
    # before formatting) and the transforms' edits are unformatted until ruff runs
    assert package_checks(models / "mixtral") == {
        "ruff_check": [],
        "ruff_format": [],
        "dead_code": [],
        "unused_arguments": [],  # the block's layer_id goes with the dense branch
    }
    args = (models / "mixtral" / "args.py").read_text()
    assert "mlp_only_layers" not in args and "decoder_sparse_step" not in args
