"""transformers: Hugging Face transformers' own auto mappings (a source checkout or the
installed package directory).

The config class goes into `CONFIG_MAPPING_NAMES` (in `auto_mappings.py` since 5.x, in
`configuration_auto.py` before), the base and causal-LM classes into the `OrderedDict`s of
`modeling_auto.py`. All of them are kept sorted by model type. `configuration_auto.py` of
5.x also extends `CONFIG_MAPPING_NAMES` in an `.update({...})` block whose comment says new
models must not go there; the codemods never pick such a binding on their own.

The model's own files (`models/<model_type>/configuration_*.py`, `modeling_*.py`) must
exist first (`--allow-missing` to register anyway).
"""

from codegen.targets.model import Registry, Target

AUTO = ("src/transformers/models/auto/", "transformers/models/auto/", "models/auto/")

TARGET = Target(
    name="transformers",
    description="transformers auto mappings: config, base model, causal LM",
    registries=(
        Registry(
            files=tuple(d + f for f in ("auto_mappings.py", "configuration_auto.py") for d in AUTO),
            container="CONFIG_MAPPING_NAMES",
            key="{model_type}",
            values=("{Name}Config",),
            requires="../{name}/configuration_{name}.py",
        ),
        Registry(
            files=tuple(d + "modeling_auto.py" for d in AUTO),
            container="MODEL_MAPPING_NAMES",
            key="{model_type}",
            values=("{Name}Model",),
            requires="../{name}/modeling_{name}.py",
        ),
        Registry(
            files=tuple(d + "modeling_auto.py" for d in AUTO),
            container="MODEL_FOR_CAUSAL_LM_MAPPING_NAMES",
            key="{model_type}",
            values=("{arch}",),
            requires="../{name}/modeling_{name}.py",
        ),
    ),
)
