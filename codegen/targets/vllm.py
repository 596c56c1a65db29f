"""vllm: vLLM's model registry, architectures mapped to (module, class) under models/.

`_TEXT_GENERATION_MODELS = {"Arch": ("module", "Arch"), ...}` grouped by section comments;
new decoder-only models go into the `# [Decoder-only]` section.
"""

from codegen.targets.model import Registry, Target

TARGET = Target(
    name="vllm",
    description="vLLM: _TEXT_GENERATION_MODELS, [Decoder-only] section",
    registries=(
        Registry(
            files=("vllm/model_executor/models/registry.py",),
            container="_TEXT_GENERATION_MODELS",
            key="{arch}",
            values=("{name}", "{arch}"),
            section="Decoder-only",
            resolve="module_class",
            module_root="vllm.model_executor.models",
        ),
    ),
)
