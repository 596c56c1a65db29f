"""Finding and importing model packages (the house references or a generated models dir).

A models package is a directory with an `__init__.py` holding `MODEL_SPECS` (name ->
"module:ATTR") and one sub-package per model. It is imported by path, so generated packages
in any directory (`--models DIR`) load exactly like the shipped references.
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import sys
import traceback
from pathlib import Path
from types import ModuleType

from codegen.errors import CodegenError
from codegen.spec import ModelSpec

_PACKAGE_ROOT = Path(__file__).resolve().parent


def references_dir() -> Path:
    """The shipped references: `references/` in a checkout, `codegen/references` in a wheel."""
    for candidate in (_PACKAGE_ROOT.parent / "references", _PACKAGE_ROOT / "references"):
        if (candidate / "__init__.py").is_file():
            return candidate
    raise CodegenError("cannot find the references package (is codegen installed correctly?)")


def import_models_package(models_dir: Path | None = None) -> ModuleType:
    """Import a models directory as a package, whatever its location."""
    directory = (models_dir or references_dir()).resolve()
    init = directory / "__init__.py"
    if not init.is_file():
        raise CodegenError("not a models package (no __init__.py)", path=str(directory))
    if directory == _PACKAGE_ROOT / "references":
        return importlib.import_module("codegen.references")
    name = directory.name
    loaded = sys.modules.get(name)
    if loaded is not None:
        if Path(loaded.__file__).resolve() == init:
            return loaded
        name = f"codegen_models_{abs(hash(str(directory))):x}"
        if name in sys.modules:
            return sys.modules[name]
    spec = importlib.util.spec_from_file_location(
        name, init, submodule_search_locations=[str(directory)]
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as err:  # noqa: BLE001 - user code: one line naming its file and line
        del sys.modules[name]
        raise _import_failure(err, directory, "the models package") from None
    return module


def registry(models_dir: Path | None = None) -> dict[str, str]:
    """The models package's `MODEL_SPECS` table, read from the file as it is now.

    Read with `ast` rather than from the imported module: a package registered after the
    models package was first imported (scaffold, then verify, in one process) is seen.
    """
    init = (models_dir or references_dir()).resolve() / "__init__.py"
    try:
        tree = ast.parse(init.read_text())
    except (OSError, SyntaxError) as err:
        raise CodegenError(f"cannot read the registry: {err}", path=str(init)) from None
    for node in tree.body:
        targets = node.targets if isinstance(node, ast.Assign) else [getattr(node, "target", None)]
        if any(isinstance(t, ast.Name) and t.id == "MODEL_SPECS" for t in targets):
            try:
                table = ast.literal_eval(node.value)
            except ValueError:
                break
            if isinstance(table, dict):
                return table
    raise CodegenError("no MODEL_SPECS dict literal", path=str(init))


def load_spec(name: str, models_dir: Path | None = None) -> ModelSpec:
    """The ModelSpec registered under `name` (or claiming `name` as an HF model_type)."""
    table = registry(models_dir)
    package = import_models_package(models_dir)
    entry = table.get(name)
    if entry is None:
        for candidate in table.values():
            try:
                spec = _resolve(package, candidate)
            except CodegenError:
                continue  # a broken entry is reported when it is asked for by name
            if name in spec.supported_model_types:
                return spec
        known = ", ".join(sorted(table))
        raise CodegenError(f"unknown model {name!r}; registered models: {known}")
    return _resolve(package, entry)


def _resolve(package: ModuleType, entry: str) -> ModelSpec:
    module_path, _, attr = entry.partition(":")
    importlib.invalidate_caches()  # the package may have been written after startup
    try:
        module = importlib.import_module(f"{package.__name__}.{module_path}")
    except Exception as err:  # noqa: BLE001 - user code: one line naming its file and line
        _forget(f"{package.__name__}.{module_path}")
        directory = Path(package.__file__).resolve().parent
        raise _import_failure(err, directory, f"registry entry {entry!r}") from None
    spec = getattr(module, attr, None)
    if not isinstance(spec, ModelSpec):
        raise CodegenError(f"{entry!r} is not a ModelSpec", path=module.__file__)
    return spec


def _import_failure(err: Exception, directory: Path, what: str) -> CodegenError:
    """One line for code under `directory` that failed to import: the file and line at fault
    (the syntax error's own, else the deepest frame inside `directory`) and the reason."""
    reason = f"{type(err).__name__}: {err}".splitlines()[0]
    if isinstance(err, SyntaxError) and err.filename:
        reason = f"syntax error: {err.msg}"
        return CodegenError(f"{what} does not import: {reason}", path=err.filename, line=err.lineno)
    frames = [
        frame
        for frame in traceback.extract_tb(err.__traceback__)
        if _inside(frame.filename, directory)
    ]
    if not frames:
        return CodegenError(f"{what} does not import: {reason}")
    frame = frames[-1]
    return CodegenError(f"{what} does not import: {reason}", path=frame.filename, line=frame.lineno)


def _inside(filename: str, directory: Path) -> bool:
    try:
        return Path(filename).resolve().is_relative_to(directory)
    except (OSError, ValueError):
        return False


def _forget(module_name: str) -> None:
    """Drop half-imported modules so a fixed file is imported afresh in the same process."""
    for name in [n for n in sys.modules if n == module_name or n.startswith(module_name + ".")]:
        del sys.modules[name]
