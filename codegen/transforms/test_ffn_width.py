"""ComputedFfnWidth: an MLP width computed in __init__ is restated over hf_config."""

from __future__ import annotations

import textwrap

from codegen.models import references_dir
from codegen.scaffold.source import SourcePackage
from codegen.transforms.ffn_width import ComputedFfnWidth, restate_width

ADJUSTED = textwrap.dedent(
    """
    class MLP(nn.Module):
        def __init__(self, cfg):
            super().__init__()
            width = cfg.intermediate_size
            if cfg.adjust:
                width = int(2 * width / 3)
                if cfg.multiplier is not None:
                    width = int(cfg.multiplier * width)
                width = cfg.multiple_of * ((width + cfg.multiple_of - 1) // cfg.multiple_of)
            self.up = nn.Linear(cfg.hidden_size, width, bias=False)

        def forward(self, x):
            return self.up(x)
    """
)


def _width(source: str, **config) -> int:
    """The restated width evaluated for a config (a namespace named hf_config)."""
    from types import SimpleNamespace

    expression = restate_width(source, source.splitlines().index("    def forward(self, x):") + 1)
    return eval(expression, {}, {"hf_config": SimpleNamespace(**config)})


def test_a_width_computed_behind_switches_is_restated_for_every_setting():
    base = {"intermediate_size": 160, "hidden_size": 96, "multiple_of": 64}
    assert _width(ADJUSTED, **base, adjust=False, multiplier=None) == 160
    assert _width(ADJUSTED, **base, adjust=True, multiplier=None) == 128  # 106 -> 128
    assert _width(ADJUSTED, **base, adjust=True, multiplier=0.5) == 64  # 53 -> 64


def test_a_width_read_from_config_as_is_is_left_alone():
    plain = ADJUSTED.replace("nn.Linear(cfg.hidden_size, width", "nn.Linear(cfg.hidden_size, 7")
    assert restate_width(plain, plain.splitlines().index("    def forward(self, x):") + 1) is None
    read = ADJUSTED.replace(
        "nn.Linear(cfg.hidden_size, width", "nn.Linear(cfg.hidden_size, cfg.intermediate_size"
    )
    assert restate_width(read, read.splitlines().index("    def forward(self, x):") + 1) is None


def test_anything_but_arithmetic_over_config_is_not_restated():
    """Remote code is untrusted: a call or a global in the computation stops the restating."""
    for line in ("width = os.system('x')", "width = helper(width)", "width = GLOBAL * width"):
        source = ADJUSTED.replace("width = int(cfg.multiplier * width)", line)
        assert (
            restate_width(source, source.splitlines().index("    def forward(self, x):") + 1)
            is None
        )


def test_the_package_passes_the_restated_width():
    package = SourcePackage.from_directory(references_dir() / "llama")
    ComputedFfnWidth().apply(package, width="hf_config.intermediate_size * 2 // 3")
    assert "hidden_dim=hf_config.intermediate_size * 2 // 3," in package.render()["args.py"]


def test_without_a_computed_width_the_package_is_unchanged():
    package = SourcePackage.from_directory(references_dir() / "llama")
    before = package.render()["args.py"]
    ComputedFfnWidth().apply(package, features=None)
    assert package.render()["args.py"] == before


def test_a_local_named_like_a_field_does_not_rename_the_field():
    source = ADJUSTED.replace(
        "width = cfg.intermediate_size",
        "hidden_size = cfg.hidden_size\n        width = cfg.intermediate_size or 4 * hidden_size",
    )
    line = source.splitlines().index("    def forward(self, x):") + 1
    assert "hf_config.hf_config" not in restate_width(source, line)
    assert _width(source, intermediate_size=None, hidden_size=96, adjust=False) == 384


PASSED_WIDTH = textwrap.dedent(
    """
    class DenseMLP(nn.Module):
        def __init__(self, config, intermediate_size=None):
            super().__init__()
            inter = intermediate_size if intermediate_size is not None else config.dense_size
            self.gate_up_proj = nn.Linear(config.hidden_size, 2 * inter, bias=False)
            self.down_proj = nn.Linear(inter, config.hidden_size, bias=False)

        def forward(self, x):
            return self.down_proj(self.gate_up_proj(x))


    class MoE(nn.Module):
        def __init__(self, config):
            super().__init__()
            self.shared = DenseMLP(config, intermediate_size=config.shared_size)


    class Layer(nn.Module):
        def __init__(self, config, layer_idx):
            super().__init__()
            self.mlp = MoE(config) if layer_idx else DenseMLP(config, WIDTH)

        def forward(self, x):
            return self.mlp(x)
    """
)


def _passed(source: str, **kwargs) -> str | None:
    lines = source.splitlines()
    mlp = lines.index("        return self.down_proj(self.gate_up_proj(x))") + 1
    layer = lines.index("        return self.mlp(x)") + 1
    return restate_width(source, mlp, **{"layer_line": layer, "fused": True, **kwargs})


def test_a_width_the_decoder_layer_passes_is_read_from_its_call():
    """The class that is the shared expert in the MoE block (shared_size) and the dense MLP
    in the layer (the argument there): the dense FFN's width is the layer's argument, half
    of the fused gate/up projection."""
    from types import SimpleNamespace

    source = PASSED_WIDTH.replace("WIDTH", "intermediate_size=config.dense_mlp_size")
    sizes = {"dense_mlp_size": 72, "dense_size": 12, "shared_size": 88, "other_size": 104}
    assert eval(_passed(source), {}, {"hf_config": SimpleNamespace(**sizes)}) == 72
    positional = PASSED_WIDTH.replace("WIDTH", "config.other_size")
    assert eval(_passed(positional), {}, {"hf_config": SimpleNamespace(**sizes)}) == 104
    # minimax_m3: the layer passes the field the class falls back to; one read remains
    same = PASSED_WIDTH.replace("WIDTH", "intermediate_size=config.dense_size")
    assert _passed(same) == "hf_config.dense_size"


def test_a_parameter_left_at_its_default_takes_the_class_fallback():
    source = PASSED_WIDTH.replace("DenseMLP(config, WIDTH)", "DenseMLP(config)")
    assert _passed(source) == "hf_config.dense_size"
    assert _passed(source, layer_line=None) == "hf_config.dense_size"


def test_a_passed_width_that_is_not_config_arithmetic_is_not_restated():
    for width in ("helper(config)", "self.width", "intermediate_size=GLOBAL"):
        assert _passed(PASSED_WIDTH.replace("WIDTH", width)) is None
    other_config = PASSED_WIDTH.replace("DenseMLP(config, WIDTH)", "DenseMLP(cfg2, 8)")
    assert _passed(other_config) is None


def test_an_unfused_projection_is_not_halved():
    """Read as unfused, `2 * inter` is no local width: left to the config read."""
    source = PASSED_WIDTH.replace("WIDTH", "config.dense_mlp_size")
    assert _passed(source, fused=False) is None


# GPT-Neo's shape: the MLP takes (width, config), the block computes the width in a local
# and the class the placement evidence points at is the attention wrapper, not the block
LOCAL_WIDTH = """
class Mlp(nn.Module):
    def __init__(self, intermediate_size, config):
        super().__init__()
        self.c_fc = nn.Linear(config.hidden_size, intermediate_size)


class AttentionWrapper(nn.Module):
    def forward(self, x):
        return self.attention(x)


class Block(nn.Module):
    def __init__(self, config, layer_id=None):
        super().__init__()
        hidden_size = config.hidden_size
        inner_dim = (
            config.intermediate_size if config.intermediate_size is not None else 4 * hidden_size
        )
        self.ln_1 = nn.LayerNorm(hidden_size)
        self.mlp = Mlp(inner_dim, config)
"""


def test_a_width_local_to_the_block_that_builds_the_mlp_is_restated():
    from types import SimpleNamespace

    lines = LOCAL_WIDTH.splitlines()
    mlp = lines.index("class Mlp(nn.Module):") + 2
    wrapper = lines.index("class AttentionWrapper(nn.Module):") + 2
    expression = restate_width(LOCAL_WIDTH, mlp, layer_line=wrapper)
    assert expression is not None
    for intermediate, width in ((None, 384), (160, 160)):
        config = SimpleNamespace(hidden_size=96, intermediate_size=intermediate)
        assert eval(expression, {}, {"hf_config": config}) == width


# moshi's shape: one fused [gate | up] projection as wide as a config field of its own (each
# half the FFN's width), built in a branch on a local the layer's flag decides
FUSED_FIELD = """
class GatingMLP(nn.Module):
    def __init__(self, config, use_flexible_linear=False):
        super().__init__()
        self.activation_fn = ACT2FN[config.hidden_act]
        ffn_dim = config.ffn_dim
        hidden_size = config.hidden_size
        num_layers = config.num_codebooks if use_flexible_linear else 1
        if num_layers == 1:
            self.fc1 = nn.Linear(hidden_size, ffn_dim, bias=False)
            self.fc2 = nn.Linear(ffn_dim // 2, hidden_size, bias=False)
        else:
            self.fc1 = Flexible(hidden_size, ffn_dim, num_layers)

    def forward(self, x):
        return self.fc2(self.fc1(x))


class Layer(nn.Module):
    def __init__(self, config, layer_idx, use_flexible_linear):
        super().__init__()
        self.mlp = GatingMLP(config, use_flexible_linear)

    def forward(self, x):
        return self.mlp(x)
"""


def test_a_fused_projection_of_a_width_of_its_own_is_halved():
    """Not `2 * width`: the fused projection's own width, halved. The local the layer's
    flag decides (`num_layers`) cannot be restated, and the width never reads it."""
    lines = FUSED_FIELD.splitlines()
    mlp = lines.index("        return self.fc2(self.fc1(x))") + 1
    layer = lines.index("        return self.mlp(x)") + 1
    assert restate_width(FUSED_FIELD, mlp, layer_line=layer, fused=True) == (
        "hf_config.ffn_dim // 2"
    )
    # read as unfused, the projection's width is the FFN's
    assert restate_width(FUSED_FIELD, mlp, layer_line=layer, fused=False) == "hf_config.ffn_dim"
