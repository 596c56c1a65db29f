"""Package layout only (metadata lives in pyproject.toml).

`references/` and `rules/` sit at the top of the repository, where a reader looks first,
but ship inside the wheel as `codegen.references` and `codegen.rules`, so a non-editable
install carries them. pyproject's static tables cannot express that remapping with
discovered sub-packages, hence this file.
"""

from pathlib import Path

from setuptools import find_packages, setup

MOUNTED = {"codegen.references": "references", "codegen.rules": "rules"}

packages = find_packages(include=["codegen", "codegen.*"])
for package, directory in MOUNTED.items():
    if (Path(directory) / "__init__.py").is_file():
        packages.append(package)
        packages += [f"{package}.{sub}" for sub in find_packages(directory)]

setup(
    packages=packages,
    package_dir={package: directory for package, directory in MOUNTED.items()},
)
