"""Size each layer's feed-forward by its own entry of a config list (gemma3n's
`intermediate_size[layer_idx]`)."""

from __future__ import annotations

from codegen.transforms import _attention_edits as edits
from codegen.transforms.base import Transform
from codegen.transforms.edits import expression

FIELD = (
    "# each layer's FFN inner size (the config's per-layer list)\n"
    "layer_hidden_dims: tuple[int, ...] = ()"
)


class LayerFfnWidths(Transform):
    """`FeedForward(args.dim, args.hidden_dim, ...)` in the block ->
    `FeedForward(args.dim, args.layer_hidden_dims[layer_id], ...)`; ModelArgs maps
    `layer_hidden_dims` from the config list `field`."""

    name = "layer_ffn_widths"

    def apply(self, package, features=None, *, field: str) -> None:
        layer = edits.ensure_layer_id(package)
        edits.replace_expressions(
            package,
            "model.py",
            "TransformerBlock",
            "__init__",
            edits.is_code("args.hidden_dim"),
            lambda _: expression(f"args.layer_hidden_dims[{layer}]"),
        )
        edits.add_args_field(package, FIELD, f"layer_hidden_dims=tuple(hf_config.{field})")
