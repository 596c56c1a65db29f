"""A generated package runs where codegen is not installed: torch and the standard library
(and transformers, for the config object) only."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest

from codegen.cli import main
from codegen.scaffold.standalone import VENDORED, vendor
from codegen.verify.tiny_config import tiny_config

PROBE = """
import json, sys
sys.modules["codegen"] = None  # `import codegen` raises ImportError from here on
sys.path.insert(0, sys.argv[1])
import torch
from transformers import AutoConfig
from {name}.args import ModelArgs
from {name}.model import Model
from {name}.state_dict_adapter import StateDictAdapter
from {name}.parallelize import PLAN, parallelize  # the shard plan and its applier

config = AutoConfig.for_model(**json.loads(sys.argv[2]))
args = ModelArgs.from_hf_config(config)
model = Model(args)
adapter = StateDictAdapter(args)
assert adapter.to_hf(model.state_dict())
assert callable(parallelize) and PLAN
print(tuple(model(torch.zeros(1, 5, dtype=torch.long)).shape))
"""


@pytest.mark.parametrize("model_type", ["gemma2", "qwen3_moe"])
def test_a_generated_package_imports_without_codegen(model_type, tmp_path):
    models = tmp_path / "models"
    assert main(["scaffold", model_type, "--out", str(models)]) == 0
    copied = tmp_path / "engine"
    shutil.copytree(models / model_type, copied / model_type)  # what a user copies
    config = tiny_config(model_type).to_dict()
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            PROBE.format(name=model_type),
            str(copied),
            json.dumps(config),
        ],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == f"(1, 5, {config['vocab_size']})"
    for path in (copied / model_type).glob("*.py"):
        if path.name not in ("spec.py", f"test_{model_type}.py"):
            assert not _codegen_imports(path.read_text()), path.name


def _codegen_imports(source: str) -> list[str]:
    import ast

    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("codegen"):
            found.append(node.module)
        elif isinstance(node, ast.Import):
            found += [a.name for a in node.names if a.name.startswith("codegen")]
    return found


def test_vendor_rewrites_imports_and_copies_only_what_is_used():
    files = {
        "model.py": "from codegen.layers.norm import RMSNorm\n\nx = RMSNorm\n",
        "spec.py": "from codegen.spec import ModelSpec\n",
    }
    out = vendor(files)
    assert out["model.py"].startswith("from .norm import RMSNorm\n")
    assert out["spec.py"] == files["spec.py"]
    assert set(out) == {"model.py", "spec.py", VENDORED["codegen.layers.norm"]}
    assert "class RMSNorm" in out["norm.py"]
