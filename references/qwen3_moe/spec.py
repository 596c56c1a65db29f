"""The qwen3_moe ModelSpec."""

from codegen.spec import ModelSpec

from .args import ModelArgs
from .model import Model
from .state_dict_adapter import StateDictAdapter

SPEC = ModelSpec(
    name="qwen3_moe",
    model=Model,
    args=ModelArgs,
    adapter=StateDictAdapter,
    supported_model_types=frozenset({"qwen3_moe"}),
)
