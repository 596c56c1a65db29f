"""transformers: Hugging Face transformers' own auto mappings (a source checkout or the
installed package directory).

The config class goes into `CONFIG_MAPPING_NAMES` (in `auto_mappings.py` since 5.x, in
`configuration_auto.py` before), the base and causal-LM classes into the `OrderedDict`s of
`modeling_auto.py`. All of them are kept sorted by model type.
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
        ),
        Registry(
            files=tuple(d + "modeling_auto.py" for d in AUTO),
            container="MODEL_MAPPING_NAMES",
            key="{model_type}",
            values=("{Name}Model",),
        ),
        Registry(
            files=tuple(d + "modeling_auto.py" for d in AUTO),
            container="MODEL_FOR_CAUSAL_LM_MAPPING_NAMES",
            key="{model_type}",
            values=("{arch}",),
        ),
    ),
)
