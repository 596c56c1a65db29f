"""house: codegen's own layout, `references/` (or any `--models` package shaped like it).

One package per model with a `spec.py` defining `SPEC = ModelSpec(...)`, registered as
`"name": "name.spec:SPEC"` in the `MODEL_SPECS` dict of the models package `__init__.py`.
"""

from codegen.targets.model import Registry, Target

TARGET = Target(
    name="house",
    description="codegen's own model packages: MODEL_SPECS in <models>/__init__.py",
    registries=(
        Registry(
            files=("__init__.py",),
            container="MODEL_SPECS",
            key="{name}",
            values=("{name}.spec:{spec_attr}",),
            resolve="colon",
        ),
    ),
    models_dir=".",
    marker="spec.py",
    defaults={"spec_attr": "SPEC"},
)
