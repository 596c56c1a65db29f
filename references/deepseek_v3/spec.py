"""The deepseek_v3 ModelSpec."""

from codegen.spec import ModelSpec

from .args import ModelArgs
from .model import Model
from .state_dict_adapter import StateDictAdapter

SPEC = ModelSpec(
    name="deepseek_v3",
    model=Model,
    args=ModelArgs,
    adapter=StateDictAdapter,
    supported_model_types=frozenset({"deepseek_v3"}),
)
