"""vllm: vLLM's model registry, architectures mapped to (module, class), and its test examples.

`_TEXT_GENERATION_MODELS = {"Arch": ("module", "Arch"), ...}` grouped by section comments;
new decoder-only models go into the `# [Decoder-only]` section. vLLM resolves the module
like this: a name starting with `vllm.` is absolute (`("vllm.models.deepseek_v4", ...)`,
the package layout since 0.27), any other is relative to `vllm.model_executor.models`. A
new model is written in whichever layout its code is in (`model_executor/models/NAME.py`
first, then `vllm/models/NAME/`).

The registry's docstring asks for an example checkpoint in `tests/models/registry.py`
(`"Arch": _HfExamplesInfo("org/model")`), which vLLM's own tests require for every
architecture; `--set example=ORG/MODEL` names it.
"""

from codegen.targets.model import Registry, Target

TARGET = Target(
    name="vllm",
    description="vLLM: _TEXT_GENERATION_MODELS [Decoder-only], and its tests' example model",
    registries=(
        Registry(
            files=("vllm/model_executor/models/registry.py",),
            container="_TEXT_GENERATION_MODELS",
            key="{arch}",
            values=("{name}", "{arch}"),
            alternatives=(("vllm.models.{name}", "{arch}"),),
            section="Decoder-only",
            resolve="module_class",
            module_root="vllm.model_executor.models",
            absolute=("vllm.",),
        ),
        Registry(
            files=("tests/models/registry.py",),
            container="_TEXT_GENERATION_EXAMPLE_MODELS",
            key="{arch}",
            values=('_HfExamplesInfo("{example}")',),
            expression=True,
            section="Decoder-only",
            optional=True,
        ),
    ),
)
