"""Start the token embeddings at their own std, as HF's `_init_weights` does (Youtu)."""

from __future__ import annotations

from codegen.transforms import _attention_edits as edits
from codegen.transforms._rope_edits import add_args_field
from codegen.transforms.base import Transform
from codegen.transforms.edits import EditError, add_import

FIELD = "float = 0.02  # std the token embeddings start at (not initializer_range)"
INIT = "init_embedding(self.tok_embeddings, self.args.embedding_init_std)  # padding row at zero"


class EmbeddingInitStd(Transform):
    """`Model.init_weights` re-draws the token embeddings at `args.embedding_init_std` after
    the table's `initializer_range` init, the padding row back at zero as HF's does; the
    field is mapped from `std`, the `hf_config` expression HF's `_init_weights` uses for
    `nn.Embedding` (Youtu's
    `getattr(hf_config, "embedding_initializer_range", 2 * ...)`). A tied head is the same
    tensor, as in HF."""

    name = "embedding_init_std"

    def apply(self, package, features=None, *, std: str | None = None) -> None:
        if not std:
            raise EditError("embedding_init_std needs the hf_config expression of the std")
        if edits.find_method(package.module("model.py"), "Model", "init_weights") is None:
            raise EditError("model.py: Model has no init_weights to extend")
        add_args_field(package, "embedding_init_std", FIELD, std)
        add_import(package, "model.py", "codegen.layers.lifecycle", "init_embedding")
        edits.append_to_method(package, "model.py", "Model", "init_weights", INIT)
