"""atom: ROCm ATOM, its own engine's table and the tables of its vLLM/SGLang plugin.

- `support_model_arch_dict = {"Arch": "atom.models.<m>.Arch", ...}` in the model runner;
  values are sometimes wrapped in parentheses across lines. Hand-grouped (not sorted), so
  new entries land after their family.
- plugin mode (later releases; skipped where the file does not exist yet):
  `_ATOM_MODEL_CLASSES: dict[str, str]` in `atom/plugin/vllm/model_wrapper.py`
  (`"Arch": "atom.models.<m>:Arch"`), `_VLLM_MODEL_REGISTRY_OVERRIDES: dict[str, str]` in
  `atom/plugin/vllm/register.py` (`"Arch": ATOM_CAUSAL_LM_MODEL_WRAPPER`, the wrapper
  vLLM instantiates: `--set atom_wrapper=ATOM_MOE_CAUSAL_LM_MODEL_WRAPPER` for MoE models),
  and `_ATOM_SUPPORTED_MODELS` in `atom/plugin/register.py` (`"Arch": Arch`, the class
  imported at the top; its `.update({...})` under `if is_sglang():` is not the main table).
"""

from codegen.targets.model import Registry, Target

TARGET = Target(
    name="atom",
    description="ROCm ATOM: support_model_arch_dict and the plugin tables",
    registries=(
        Registry(
            files=("atom/model_engine/model_runner.py",),
            container="support_model_arch_dict",
            key="{arch}",
            values=("atom.models.{name}.{arch}",),
            resolve="dotted",
        ),
        Registry(
            files=("atom/plugin/vllm/model_wrapper.py",),
            container="_ATOM_MODEL_CLASSES",
            key="{arch}",
            values=("atom.models.{name}:{arch}",),
            resolve="colon",
            optional=True,
        ),
        Registry(
            files=("atom/plugin/vllm/register.py",),
            container="_VLLM_MODEL_REGISTRY_OVERRIDES",
            key="{arch}",
            values=("{atom_wrapper}",),
            expression=True,  # the wrapper constant, a name (a "mod:Class" string also fits)
            optional=True,
        ),
        Registry(
            files=("atom/plugin/register.py",),
            container="_ATOM_SUPPORTED_MODELS",
            key="{arch}",
            values=("{arch}",),
            imports=("from atom.models.{name} import {arch}",),
            optional=True,
        ),
    ),
    defaults={"atom_wrapper": "ATOM_CAUSAL_LM_MODEL_WRAPPER"},
)
