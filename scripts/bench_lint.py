"""How fast is `codegen lint` on a big models tree, relative to `python -c "import libcst"`?

Builds a temporary house-layout models package with N model packages (default 200) and a
sorted `MODEL_SPECS` registry, then times, in the same run and interleaved:

    python -m codegen.cli lint --models <tree>      (a fresh subprocess, as pre-commit runs it)
    python -c "import libcst"                       (the baseline)

and prints the median of each and their ratio (the target is <= 2x). Timings are printed,
never asserted.

    python scripts/bench_lint.py [--packages 200] [--repeat 7]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]

SPEC = '''"""The {name} ModelSpec."""

from codegen.spec import ModelSpec

from .args import ModelArgs
from .model import Model
from .state_dict_adapter import StateDictAdapter

SPEC = ModelSpec(
    name="{name}",
    model=Model,
    args=ModelArgs,
    adapter=StateDictAdapter,
    supported_model_types=frozenset({{"{name}", "{name}_text"}}),
)
'''
MODEL = '''"""Model {name}."""

import torch
from torch import nn


class Model(nn.Module):
    def forward(self, tokens, positions=None):
        return tokens
'''


def build_tree(root: Path, count: int) -> Path:
    models = root / "models"
    models.mkdir()
    names = [f"model_{i:03d}" for i in range(count)]
    for name in names:
        package = models / name
        package.mkdir()
        (package / "__init__.py").write_text("from .spec import SPEC\n")
        (package / "spec.py").write_text(SPEC.format(name=name))
        (package / "model.py").write_text(MODEL.format(name=name))
        (package / "args.py").write_text("from dataclasses import dataclass\n")
        (package / "state_dict_adapter.py").write_text("FROM_HF = {}\n")
    entries = "".join(f'    "{n}": "{n}.spec:SPEC",\n' for n in names)
    (models / "__init__.py").write_text(f'"""Models."""\n\nMODEL_SPECS = {{\n{entries}}}\n')
    return models


def timed(command: list[str], cwd: Path, env: dict) -> float:
    start = time.perf_counter()
    result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if result.returncode != 0:
        sys.exit(
            f"{' '.join(command)} failed ({result.returncode}):\n{result.stdout}{result.stderr}"
        )
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--packages", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        models = build_tree(root, args.packages)
        lint = [sys.executable, "-m", "codegen.cli", "lint", "--models", str(models)]
        baseline = [sys.executable, "-c", "import libcst"]
        timed(lint, root, env)  # warm the filesystem and bytecode caches for both
        timed(baseline, root, env)
        lint_times, base_times = [], []
        for _ in range(args.repeat):
            lint_times.append(timed(lint, root, env))
            base_times.append(timed(baseline, root, env))
    lint_s, base_s = statistics.median(lint_times), statistics.median(base_times)
    print(f"tree: {args.packages} model packages, {args.repeat} runs each, medians, subprocess")
    print(f"codegen lint:          {lint_s * 1000:7.1f} ms")
    print(f'python -c "import libcst": {base_s * 1000:7.1f} ms')
    print(f"ratio lint / import libcst: {lint_s / base_s:.2f}x (target <= 2x)")


if __name__ == "__main__":
    main()
