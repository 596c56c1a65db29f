"""Cut the logits to the vocabulary: `logits[..., :unpadded_vocab_size]` (inkling), the
columns of a head stored padded past it dropped before anyone reads them."""

from __future__ import annotations

from codegen.transforms._rope_edits import add_args_field, rewrite_return
from codegen.transforms.base import Transform


class VocabCrop(Transform):
    """`Model.forward` returns `logits[..., : self.args.<field>]`: the first `<field>`
    columns of the head's output, where the checkpoint pads the head past the vocabulary.

    `field` is the HF config field the source slices by (`features.head.vocab_crop`) and
    the new ModelArgs field's name. A slice by None, or by a bound past the head's width,
    keeps every column, which is what HF's guard around its slice (inkling's `if n is not
    None and n < logits.shape[-1]`) keeps as well; the head, its weights and the adapter
    stay as wide as the checkpoint's.
    """

    name = "vocab_crop"

    def apply(self, package, features=None, *, field: str) -> None:
        add_args_field(
            package,
            field,
            "int | None = None  # the logits' columns kept (a padded head); None: all",
            f"hf_config.{field}",
        )
        rewrite_return(
            package,
            "Model",
            "forward",
            lambda logits: f"logits = {logits}\nreturn logits[..., : self.args.{field}]",
        )
