"""Run every dead-code rule over a package (a folder on disk or sources in memory)."""

from __future__ import annotations

from pathlib import Path

import libcst as cst

from codegen.errors import CodegenError
from codegen.quality.facts import package_facts
from codegen.quality.rule import Finding
from codegen.quality.rules import RULES


def check_sources(files: dict[str, str], rules=RULES) -> list[Finding]:
    """Findings for a package given as {filename: source}; `test_*.py` files are skipped
    (a test may build ModelArgs freely: it is not a config from_hf_config accepts)."""
    modules = {}
    for filename, text in files.items():
        if filename.startswith("test_") or not filename.endswith(".py"):
            continue
        try:
            modules[filename] = cst.parse_module(text)
        except cst.ParserSyntaxError as err:
            raise CodegenError(str(err).splitlines()[0], path=filename) from None
    facts = package_facts(modules)
    return sorted(finding for rule in rules for finding in rule().check(facts))


def check_package(directory: Path, rules=RULES) -> list[Finding]:
    """Findings for the model package in `directory`, paths relative to its parent."""
    if not (directory / "model.py").is_file():
        raise CodegenError("not a model package (no model.py)", path=str(directory))
    files = {path.name: path.read_text() for path in sorted(directory.glob("*.py"))}
    return [
        Finding(f"{directory.name}/{f.path}", f.line, f.code, f.message)
        for f in check_sources(files, rules)
    ]


def check_folders(paths: list[Path]) -> list[Finding]:
    """Findings for each path that is a model package, or for the packages a models
    folder holds (its sub-folders with a model.py)."""
    if not paths:
        raise CodegenError("--dead-code needs model package folders")
    findings = []
    for path in paths:
        if not path.is_dir():
            raise CodegenError("not a folder", path=str(path))
        packages = (
            [path]
            if (path / "model.py").is_file()
            else sorted(sub for sub in path.iterdir() if (sub / "model.py").is_file())
        )
        if not packages:
            raise CodegenError("no model package here (no model.py)", path=str(path))
        for package in packages:
            findings += check_package(package)
    return findings
