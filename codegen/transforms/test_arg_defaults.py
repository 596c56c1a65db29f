"""SetArgDefaults: before/after on an args.py, with a config class's defaults."""

from codegen.models import references_dir
from codegen.scaffold.source import SourcePackage
from codegen.transforms.arg_defaults import SetArgDefaults
from codegen.transforms.testing import package_of

BEFORE = """
@dataclass
class ModelArgs:
    dim: int = 4096
    head_dim: int = 128  # explicit
    layers: tuple[int, ...] = ()
    window: int | None = None
    kept: int = 3
    rope: RopeScaling = field(default_factory=lambda: RopeScaling(theta=500000.0))

    @classmethod
    def from_hf_config(cls, hf_config) -> ModelArgs:
        heads = hf_config.num_attention_heads
        return cls(
            dim=hf_config.hidden_size,
            head_dim=getattr(hf_config, "head_dim", None)
            or hf_config.hidden_size // heads,
            layers=tuple(hf_config.mlp_only_layers or ()),
            window=hf_config.sliding_window,
            kept=hf_config.not_in_the_config,
            rope=RopeScaling.from_hf(hf_config.rope_parameters, hf_config.max_position_embeddings),
        )
"""

AFTER = BEFORE.replace("dim: int = 4096", "dim: int = 2304").replace(
    "head_dim: int = 128", "head_dim: int = 96"
)
AFTER = AFTER.replace("layers: tuple[int, ...] = ()", "layers: tuple[int, ...] = (1, 2)")
AFTER = AFTER.replace("window: int | None = None", "window: int | None = 4096")
AFTER = AFTER.replace("theta=500000.0", "theta=10000.0")

CONFIG = {
    "hidden_size": 2304,
    "num_attention_heads": 24,
    "mlp_only_layers": [1, 2],
    "sliding_window": 4096,
    "rope_parameters": {"rope_theta": 10000.0, "rope_type": "default"},
    "max_position_embeddings": 8192,
}


def test_defaults_follow_the_mapping_over_the_config_defaults():
    package = package_of({"args.py": BEFORE})
    SetArgDefaults().apply(package, config=CONFIG)
    assert package.render()["args.py"] == AFTER


def test_an_explicit_head_dim_wins():
    package = package_of({"args.py": BEFORE})
    SetArgDefaults().apply(package, config={**CONFIG, "head_dim": 256})
    assert "head_dim: int = 256  # explicit" in package.render()["args.py"]


def test_a_reference_from_its_own_config_class_keeps_its_mapping():
    package = SourcePackage.from_directory(references_dir() / "llama")
    config = {
        "hidden_size": 4096,
        "num_hidden_layers": 32,
        "num_attention_heads": 32,
        "num_key_value_heads": None,
        "intermediate_size": 11008,
        "vocab_size": 32000,
        "rms_norm_eps": 1e-6,
        "rope_parameters": {"rope_theta": 10000.0, "rope_type": "default"},
        "max_position_embeddings": 2048,
        "attention_bias": False,
        "mlp_bias": False,
        "tie_word_embeddings": False,
        "hidden_act": "silu",
    }
    SetArgDefaults().apply(package, config=config)
    args = package.render()["args.py"]
    assert "vocab_size: int = 32000" in args
    assert "hidden_dim: int = 11008" in args
    assert "RopeScaling(theta=10000.0)" in args


def test_none_stays_out_of_a_field_whose_type_has_no_none():
    package = package_of({"args.py": BEFORE})
    SetArgDefaults().apply(package, config={**CONFIG, "hidden_size": None, "sliding_window": None})
    args = package.render()["args.py"]
    assert "    dim: int = 4096\n" in args  # unset in the class: the field keeps a usable value
    assert "    window: int | None = None\n" in args


def test_a_repeating_tuple_is_written_as_its_unit_times_a_count():
    source = BEFORE.replace("layers: tuple[int, ...] = ()", "layers: tuple[str, ...] | None = None")
    package = package_of({"args.py": source})
    types = ["sliding", "full"] * 13
    SetArgDefaults().apply(package, config={**CONFIG, "mlp_only_layers": types})
    assert (
        "layers: tuple[str, ...] | None = ('sliding', 'full') * 13\n" in package.render()["args.py"]
    )
    package = package_of({"args.py": source})
    SetArgDefaults().apply(package, config={**CONFIG, "mlp_only_layers": [1, 1, 2]})
    assert "layers: tuple[str, ...] | None = (1, 1, 2)\n" in package.render()["args.py"]
