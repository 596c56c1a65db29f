"""Writers running at once into one folder lose no registration (`xargs -P` scaffolds).

Every writer reads the registry, adds its entry and renames the new text into place. Each
child process here sleeps between that read and its write, so without the folder lock
(`codegen.codemods.lock`) the writers' windows overlap on every round and entries vanish
(a lost update, as seen when 130 packages were scaffolded two at a time); with the lock they
take turns and every name is registered.
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

import codegen

PROJECT = Path(codegen.__file__).resolve().parents[1]
PROCESSES = 3
ROUNDS = 6  # names per process
SLOW_READ = 0.02  # seconds each child waits after reading the registry

CHILD = """
import importlib, json, sys, time
from pathlib import Path

job = json.loads(sys.argv[1])
slowed = importlib.import_module(job["slow"])
read_source = slowed.read_source

def slow_read(path):
    text = read_source(path)
    time.sleep(job["delay"])  # widen the read-to-write window the lock must cover
    return text

slowed.read_source = slow_read
from codegen.cli import main
from codegen.scaffold.write import install_package

Path(job["ready"]).touch()
while not Path(job["go"]).exists():
    time.sleep(0.001)
for name in job["runs"]:
    if job["argv"] is None:
        files = {"__init__.py": "", "spec.py": "SPEC = None\\n"}
        install_package(Path(job["models"]), name, files, force=False)
    else:
        code = main([arg.replace("NAME", name) for arg in job["argv"]])
        assert code in job["codes"], (name, code)
"""

REGISTRY = 'MODEL_SPECS = {\n    "aaa": "aaa.spec:SPEC",\n}\n'


def writers(slow: str, argv: list[str] | None, models: Path, first: int = 0) -> list[dict]:
    """Jobs `first`..PROCESSES-1, each writing ROUNDS names after slowing `slow`'s reads."""
    return [
        {
            "slow": slow,
            "argv": argv,
            "models": str(models),
            "runs": [f"m{child}_{round_}" for round_ in range(ROUNDS)],
            "codes": [0],
        }
        for child in range(first, PROCESSES)
    ]


def run_at_once(tmp_path: Path, jobs: list[dict]) -> list[str]:
    """One child process per job, released together; the names the jobs register."""
    env = {**os.environ, "PYTHONPATH": str(PROJECT)}
    ready = [tmp_path / f"ready{number}" for number in range(len(jobs))]
    children = []
    for job, signal in zip(jobs, ready, strict=True):
        job = {**job, "delay": SLOW_READ, "ready": str(signal), "go": str(tmp_path / "go")}
        command = [sys.executable, "-c", CHILD, json.dumps(job)]
        children.append(subprocess.Popen(command, env=env, stderr=subprocess.PIPE, text=True))
    deadline = time.monotonic() + 60
    while not all(signal.exists() for signal in ready):
        assert all(p.poll() is None for p in children), [p.stderr.read() for p in children]
        assert time.monotonic() < deadline, "children did not start"
        time.sleep(0.005)
    (tmp_path / "go").touch()
    for process in children:
        assert process.wait(timeout=60) == 0, process.stderr.read()[-2000:]
    return [name for job in jobs for name in job.get("registers", job["runs"])]


def missing(registry: Path, names: list[str]) -> list[str]:
    """The names not (or no longer) in MODEL_SPECS; the file must parse, with only those."""
    tree = ast.parse(registry.read_text(), str(registry))
    specs = next(
        node.value
        for node in tree.body
        if isinstance(node, ast.Assign) and node.targets[0].id == "MODEL_SPECS"
    )
    keys = set(ast.literal_eval(specs))
    assert keys <= set(names), keys - set(names)
    return sorted(set(names) - keys)


def test_concurrent_scaffolds_into_one_folder_register_every_package(tmp_path):
    """Into a folder none of them finds: they also race to create it."""
    models = tmp_path / "out" / "models"
    names = run_at_once(tmp_path, writers("codegen.scaffold.write", None, models))
    assert missing(models / "__init__.py", names) == []
    assert sorted(p.name for p in models.iterdir()) == sorted([*names, "__init__.py"])
    assert all((models / name / "spec.py").is_file() for name in names)


@pytest.mark.parametrize(
    ("slow", "argv"),
    [
        ("codegen.commands.registry", ["registry", "add", "FILE", "MODEL_SPECS", "NAME", "V"]),
        ("codegen.targets.apply", ["register", "NAME", "--models", "DIR", "--allow-missing"]),
    ],
    ids=["registry-add", "register"],
)
def test_concurrent_registry_edits_keep_every_entry(tmp_path, slow, argv):
    models = tmp_path / "models"
    models.mkdir()
    registry = models / "__init__.py"
    registry.write_text(REGISTRY)
    paths = {"FILE": str(registry), "DIR": str(models), "V": "NAME.spec:SPEC"}
    argv = [paths.get(arg, arg) for arg in argv]
    names = run_at_once(tmp_path, writers(slow, argv, models))
    assert missing(registry, ["aaa", *names]) == []
    assert sorted(p.name for p in models.iterdir()) == ["__init__.py"]  # no temp file left


def test_an_out_folder_made_by_another_scaffold_meanwhile_is_used(tmp_path, monkeypatch):
    """Both found `--out` missing; the other made it first, so this mkdir says it exists."""
    from codegen.scaffold.write import install_package

    models = tmp_path / "out" / "models"
    real_mkdir = Path.mkdir

    def made_meanwhile(self, *args, **kwargs):
        real_mkdir(self, *args, **kwargs)
        raise FileExistsError(17, "File exists", str(self))

    monkeypatch.setattr(Path, "mkdir", made_meanwhile)
    install_package(models, "a", {"__init__.py": "", "spec.py": "SPEC = None\n"}, force=False)
    assert missing(models / "__init__.py", ["a"]) == []


def test_lint_fix_beside_registry_adds_keeps_every_entry(tmp_path):
    """`lint --fix` registers six unregistered packages while two `registry add`s run."""
    models = tmp_path / "models"
    models.mkdir()
    registry = models / "__init__.py"
    registry.write_text(REGISTRY)
    packages = [f"p{number}" for number in range(ROUNDS)]
    for package in packages:
        (models / package).mkdir()
        (models / package / "spec.py").write_text("SPEC = None\n")
    add = ["registry", "add", str(registry), "MODEL_SPECS", "NAME", "NAME.spec:SPEC"]
    lint = ["lint", "--models", str(models), "--fix"]
    fix = {"slow": "codegen.targets.apply", "argv": lint, "runs": ["-"], "registers": packages}
    jobs = [{**fix, "codes": [0, 1]}, *writers("codegen.commands.registry", add, models, 1)]
    names = run_at_once(tmp_path, jobs)
    assert missing(registry, ["aaa", *names]) == []
