"""Write a generated package into a models directory, all or nothing, and register it."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from codegen.codemods.add import add_entry
from codegen.codemods.files import write_atomic
from codegen.errors import CodegenError

REGISTRY = "MODEL_SPECS"
# a new registry starts with its first entry on its own line: the codemod copies that
# multi-line shape for every later entry
NEW_REGISTRY = '''"""Generated model packages: name -> "module:ATTRIBUTE" of each ModelSpec."""

MODEL_SPECS = {{
    "{name}": "{name}.spec:SPEC",
}}
'''


def write_package(models_dir: Path, name: str, files: dict[str, str], *, force: bool) -> Path:
    """Create `models_dir/name/` from `files` atomically (a temp dir renamed into place)."""
    target = models_dir / name
    if target.exists() and not force:
        raise CodegenError("package exists; pass --force to overwrite it", path=str(target))
    models_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{name}.", dir=models_dir))
    try:
        for filename, text in files.items():
            (staging / filename).write_text(text)
        if target.exists():
            shutil.rmtree(target)
        staging.rename(target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return target


def registry_update(models_dir: Path, name: str) -> tuple[Path, str, str]:
    """(registry path, old text, new text) for registering `name` in `models_dir`."""
    registry = models_dir / "__init__.py"
    if not registry.is_file():
        return registry, "", NEW_REGISTRY.format(name=name)
    old = registry.read_text()
    outcome = add_entry(old, REGISTRY, name, [f"{name}.spec:SPEC"], path=str(registry))
    return registry, old, outcome.source


def register(models_dir: Path, name: str) -> None:
    registry, old, new = registry_update(models_dir, name)
    if new == old:
        return
    if not old:
        registry.write_text(new)
    else:
        write_atomic(registry, new)
