"""ParallelResidualSwitch: one block, both layouts, chosen by the config flag."""

import pytest

from codegen.models import references_dir
from codegen.scaffold.source import SourcePackage
from codegen.transforms.edits import EditError
from codegen.transforms.parallel_residual import ParallelResidualSwitch
from codegen.transforms.testing import package_of

PARALLEL = """\
    def forward(self, x: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        if self.parallel:
            normed = self.attention_norm(x)
            h = x + self.attention(normed, rope)
            return h + self.feed_forward(normed)
        h = x + self.attention(self.attention_norm(x), rope)
        return h + self.feed_forward(self.ffn_norm(h))
"""


def _llama() -> SourcePackage:
    return SourcePackage.from_directory(references_dir() / "llama")


def test_the_block_branches_on_the_flag():
    package = _llama()
    ParallelResidualSwitch().apply(package, field="use_parallel_residual")
    files = package.render()
    model = files["model.py"]
    assert PARALLEL in model
    assert (
        "        self.parallel = args.use_parallel_residual\n"
        "        self.attention_norm = RMSNorm(args.dim, args.norm_eps)\n"
    ) in model
    assert (
        "        if not self.parallel:\n"
        "            self.ffn_norm = RMSNorm(args.dim, args.norm_eps)\n"
    ) in model
    assert "use_parallel_residual: bool = False" in files["args.py"]
    assert "use_parallel_residual=hf_config.use_parallel_residual," in files["args.py"]
    # the sequential layout's norm rows stay: checkpoints with the flag off carry them
    assert '"layers.{}.ffn_norm.weight"' in files["state_dict_adapter.py"]
    compile(model, "model.py", "exec")


def test_a_block_without_a_feed_forward_norm_is_an_error():
    package = package_of(
        {
            "model.py": (
                "class TransformerBlock:\n"
                "    def __init__(self, args):\n"
                "        super().__init__()\n"
                "        self.attention_norm = Norm()\n"
                "    def forward(self, x):\n"
                "        return x + self.attention(self.attention_norm(x))\n"
            ),
            "args.py": "",
        }
    )
    with pytest.raises(EditError):
        ParallelResidualSwitch().apply(package)


def _neox_like(parallel_calls: str):
    """Features whose switch's parallel setting calls `parallel_calls` (GPT-NeoX's
    `mlp, post_attention_layernorm`: the feed-forward keeps its own norm)."""
    from types import SimpleNamespace

    on = SimpleNamespace(label="True", selects=f"parallel residual; calls {parallel_calls}")
    switch = SimpleNamespace(field="use_parallel_residual", values=(on,))
    names = (("attention_norm", "input_layernorm"), ("ffn_norm", "post_attention_layernorm"))
    return SimpleNamespace(norm=SimpleNamespace(block_names=names), switches=(switch,))


def test_a_parallel_setting_with_the_ffn_norm_keeps_both_norms():
    package = _llama()
    features = _neox_like("mlp, post_attention_layernorm")
    ParallelResidualSwitch().apply(package, features, field="use_parallel_residual")
    files = package.render()
    model = files["model.py"]
    assert (
        "        if self.parallel:\n"
        "            h = x + self.attention(self.attention_norm(x), rope)\n"
        "            return h + self.feed_forward(self.ffn_norm(x))\n"
        "        h = x + self.attention(self.attention_norm(x), rope)\n"
        "        return h + self.feed_forward(self.ffn_norm(h))\n"
    ) in model
    assert "if not self.parallel" not in model  # ffn_norm is built for both layouts
    assert "# attention and MLP in parallel each off its own norm" in files["args.py"]


def test_a_parallel_setting_without_the_ffn_norm_shares_one():
    package = _llama()
    ParallelResidualSwitch().apply(package, _neox_like("mlp, dropout"))
    assert PARALLEL in package.render()["model.py"]
