"""nemo: NeMo AutoModel, architectures mapped lazily to (module, class) pairs.

`MODEL_ARCH_MAPPING = OrderedDict([(arch, (module, class)), ...])` in the transformers
integration's `registry.py`; the module path is absolute.
"""

from codegen.targets.model import Registry, Target

TARGET = Target(
    name="nemo",
    description="NeMo AutoModel: MODEL_ARCH_MAPPING (arch -> (module, class))",
    registries=(
        Registry(
            files=("nemo_automodel/_transformers/registry.py",),
            container="MODEL_ARCH_MAPPING",
            key="{arch}",
            values=("nemo_automodel.components.models.{name}.model", "{arch}"),
            resolve="module_class",
        ),
    ),
)
