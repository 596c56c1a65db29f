"""Every writer, interrupted at every write step, leaves its files as before or fully updated.

For each writer (`registry add`, `register` into the house registry and into transformers'
two auto-mapping files, `lint --fix`, `scaffold`), hypothesis draws the inputs (which entries
exist, which is added) and the step to fail and how (EIO, a full disk, EACCES, Ctrl-C). The
tree is snapshotted before; a fault-free run on the same input gives "fully updated"; the
faulty run must leave exactly one of the two (no temp file, no half-written file, no
half-swapped package), report an OSError as one line with exit 2, and a rerun without the
fault must reach the fully updated tree.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

import pytest
from fault_helpers import FAULTS, Injector, injected, run_cli, snapshot
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from codegen.scaffold.build import PackageFiles

NAMES = ("aria", "bloom", "falcon", "gemma", "llama", "mistral", "phi", "qwen2")
names = st.lists(st.sampled_from(NAMES), unique=True)
fault = st.sampled_from(sorted(FAULTS))
SETTINGS = settings(
    max_examples=20,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def check_every_outcome(capsys, data, build: Callable[[Path], list[str]]) -> None:
    """Build the tree, learn the write steps and the final tree from a clean run, then fail
    one drawn step with one drawn fault and check the outcome."""
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch) / "tree"

        def fresh() -> list[str]:
            shutil.rmtree(root, ignore_errors=True)
            root.mkdir()
            return build(root)

        args = fresh()
        before = snapshot(root)
        counter = Injector()
        with injected(counter):
            code, escaped = run_cli(args)
        assert escaped is None and code == 0, capsys.readouterr()
        after = snapshot(root)
        assert after != before, "the writer wrote nothing; the input is not a real case"
        assert counter.steps, "no write step was seen"

        step = data.draw(st.integers(0, len(counter.steps) - 1), label="failing step")
        kind = data.draw(fault, label="fault")
        fresh()
        capsys.readouterr()
        injector = Injector(step, FAULTS[kind]())
        with injected(injector):
            code, escaped = run_cli(args)
        assert injector.fired
        state = snapshot(root)
        assert state in (before, after), (
            f"step {step} ({counter.steps[step]}) left a mixed tree: "
            f"{sorted(set(state.items()) ^ set(before.items()))[:6]}"
        )
        err = capsys.readouterr().err
        if kind == "interrupt":
            assert isinstance(escaped, KeyboardInterrupt) or code == 1
        else:
            assert escaped is None, f"{type(escaped).__name__} escaped: {escaped}"
            assert code == 2 and err.count("\n") == 1 and err.startswith("codegen: error: "), err
        code, escaped = run_cli(args)  # the same command, no fault: the job gets done
        assert escaped is None and code == 0
        assert snapshot(root) == after


# -- registry add ----------------------------------------------------------------------------


@SETTINGS
@given(data=st.data(), present=names, new=st.sampled_from(NAMES))
def test_registry_add(capsys, data, present, new) -> None:
    present = sorted(set(present) - {new})

    def build(root: Path) -> list[str]:
        body = "".join(f'    "{n}": "{n}.Model",\n' for n in present)
        (root / "registry.py").write_text(f'"""Models."""\n\nMODELS = {{\n{body}}}\n')
        return ["registry", "add", root / "registry.py", "MODELS", new, f"{new}.Model"]

    check_every_outcome(capsys, data, build)


# -- register (house: one file; transformers: two files) -------------------------------------

SPEC = """from codegen.spec import ModelSpec

SPEC = ModelSpec(
    name="{name}", model=None, args=None, adapter=None,
    supported_model_types=frozenset({{"{name}"}}),
)
"""


def house(root: Path, registered: list[str], unregistered: list[str]) -> Path:
    models = root / "models"
    models.mkdir()
    for name in (*registered, *unregistered):
        (models / name).mkdir(parents=True)
        (models / name / "__init__.py").write_text("")
        (models / name / "spec.py").write_text(SPEC.format(name=name))
    body = "".join(f'    "{n}": "{n}.spec:SPEC",\n' for n in sorted(registered))
    (models / "__init__.py").write_text(f'"""Models."""\n\nMODEL_SPECS = {{\n{body}}}\n')
    return models


@SETTINGS
@given(data=st.data(), present=names, new=st.sampled_from(NAMES))
def test_register_house(capsys, data, present, new) -> None:
    present = sorted(set(present) - {new})

    def build(root: Path) -> list[str]:
        models = house(root, present, [new])
        return ["register", new, "--models", models]

    check_every_outcome(capsys, data, build)


def mapping(name: str, entries: list[tuple[str, str]]) -> str:
    rows = "".join(f'        ("{k}", "{v}"),\n' for k, v in entries)
    return f"{name} = OrderedDict(\n    [\n{rows}    ]\n)\n"


@SETTINGS
@given(data=st.data(), present=names, new=st.sampled_from(NAMES))
def test_register_transformers_two_files(capsys, data, present, new) -> None:
    """Three entries in two files: a fault in the second file must undo the first."""
    present = sorted(set(present) - {new})

    def build(root: Path) -> list[str]:
        models = root / "repo" / "models"
        for name in (*present, new):
            (models / name).mkdir(parents=True)
            (models / name / f"configuration_{name}.py").write_text("")
            (models / name / f"modeling_{name}.py").write_text("")
        auto = models / "auto"
        auto.mkdir()
        head = "from collections import OrderedDict\n\n"
        pairs = [(n, n.capitalize()) for n in present]
        configs = mapping("CONFIG_MAPPING_NAMES", [(n, f"{c}Config") for n, c in pairs])
        (auto / "auto_mappings.py").write_text(head + configs)
        base = mapping("MODEL_MAPPING_NAMES", [(n, f"{c}Model") for n, c in pairs])
        causal = mapping(
            "MODEL_FOR_CAUSAL_LM_MAPPING_NAMES", [(n, f"{c}ForCausalLM") for n, c in pairs]
        )
        (auto / "modeling_auto.py").write_text(head + base + "\n\n" + causal)
        return ["register", new, "--target", "transformers", "--repo", root / "repo"]

    check_every_outcome(capsys, data, build)


# -- lint --fix ------------------------------------------------------------------------------


@SETTINGS
@given(data=st.data(), present=names, missing=st.lists(st.sampled_from(NAMES), min_size=1))
def test_lint_fix(capsys, data, present, missing) -> None:
    """Several unregistered packages: all are registered, or none."""
    missing = sorted(set(missing))
    present = sorted(set(present) - set(missing))

    def build(root: Path) -> list[str]:
        models = house(root, present, missing)
        return ["lint", "--models", models, "--fix"]

    check_every_outcome(capsys, data, build)


# -- scaffold --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def llama_files() -> dict[str, str]:
    """The files `codegen scaffold llama` writes (built once; writing is what is tested)."""
    from codegen.scaffold.build import build_package
    from codegen.scaffold.testgen import test_file

    files = build_package("llama", "llama", ["llama"], [])
    filename, text = test_file("llama", "llama")
    files[filename] = text
    return files


@SETTINGS
@given(
    data=st.data(),
    present=names,
    new=st.sampled_from(NAMES),
    replace=st.booleans(),
    registry=st.booleans(),
)
def test_scaffold(capsys, monkeypatch, llama_files, data, present, new, replace, registry):
    """A new package, or `--force` over an existing registered one; with or without an
    existing registry. The build is stubbed with llama's files: only the writer is tested."""
    import codegen.scaffold.pipeline as pipeline

    monkeypatch.setattr(pipeline, "build_package", lambda *a, **k: PackageFiles(llama_files))
    present = sorted(set(present) - {new} | ({new} if replace else set()))
    if not registry:
        present = [new] if replace else []

    def build(root: Path) -> list[str]:
        models = root / "models"
        if registry or replace:
            house(root, present, [])
            if replace:
                (models / new / "model.py").write_text("# the old package\n")
        args = ["scaffold", "llama", "--name", new, "--out", models]
        return [*args, "--force"] if replace else args

    check_every_outcome(capsys, data, build)
