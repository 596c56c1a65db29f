"""archon: AReaL's Archon engine, models registered by importing their packages.

The models package `__init__.py` imports each model sub-package for its registration side
effect, either as a parenthesised `from <pkg> import (qwen2,  # noqa: F401 ...)` list or as
one `from <pkg>.<m> import spec as <m>_spec  # noqa: F401` line per model; the codemod finds
whichever the file uses.
"""

from codegen.targets.model import Registry, Target

PACKAGE = "areal.experimental.models.archon"

TARGET = Target(
    name="archon",
    description="AReaL Archon: side-effect import of each model package",
    registries=(
        Registry(
            files=("areal/experimental/models/archon/__init__.py",),
            container=f"from {PACKAGE}",
            key="{name}",
        ),
    ),
    models_dir="areal/experimental/models/archon",
    marker="spec.py",
)
