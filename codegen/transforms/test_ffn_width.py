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
