"""Set the dense feed-forward projections' biases to the target's."""

from __future__ import annotations

from codegen.transforms.base import Transform
from codegen.transforms.edits import SetKeyword, run
from codegen.transforms.qkv_bias import set_adapter_rows

_ROWS = [
    (f'"model.layers.{{}}.mlp.{hf}.bias"', f'"layers.{{}}.feed_forward.{house}.bias"')
    for hf, house in (("gate_proj", "w1"), ("up_proj", "w3"), ("down_proj", "w2"))
]


class SetFeedForwardBias(Transform):
    """FeedForward's w1/w2/w3 are built with `bias=<enabled>`; adapter rows follow."""

    name = "set_ffn_bias"

    def apply(self, package, features=None, *, enabled: bool) -> None:
        run(
            package,
            "model.py",
            SetKeyword("FeedForward", "__init__", {"w1", "w2", "w3"}, "bias", str(enabled)),
        )
        set_adapter_rows(package, _ROWS, enabled)
