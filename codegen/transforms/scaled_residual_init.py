"""Start the residual-stream projections at std / sqrt(2 * n_layers) (GPT-2's init)."""

from __future__ import annotations

from codegen.transforms import _attention_edits as edits
from codegen.transforms.base import Transform
from codegen.transforms.edits import EditError

# after the plain table: each block's projections onto the residual stream
SCALED = """
# the projections per layer onto the residual stream start smaller
residual_std = self.args.initializer_range / (2 * self.args.n_layers) ** 0.5
"""
PER_LAYER = """\
for layer in self.layers:
    for projection in ({projections}):
        nn.init.normal_(projection.weight, mean=0.0, std=residual_std)
"""
# the house module of each projection HF may scale
PROJECTIONS = {"attention": "layer.attention.wo", "ffn": "layer.feed_forward.w2"}
# outside the layers: the prediction head's dense layer, and the vocabulary projection
# (a tied one is the embedding table, which keeps the embedding's start)
HEAD = {
    "head_transform": "nn.init.normal_(self.head_dense.weight, mean=0.0, std=residual_std)\n",
    "head": (
        "if not self.args.tie_word_embeddings:  # tied: the embedding's start stands\n"
        "    nn.init.normal_(self.output.weight, mean=0.0, std=residual_std)\n"
    ),
}


class ScaledResidualInit(Transform):
    """`Model.init_weights` draws the attention output (`wo`) and the feed-forward output
    (`w2`) weights of every layer with std initializer_range / sqrt(2 * n_layers), after the
    plain init, as HF's `_init_weights` does for GPT-2-style models; `projections` names
    the ones HF scales (nanochat: ("attention",), its MLP output keeps the plain std), and
    may add the prediction head's dense layer (`head_transform`) and an untied vocabulary
    projection (`head`), as ModernBERT's init does."""

    name = "scaled_residual_init"

    def apply(self, package, features=None, *, projections=("attention", "ffn")) -> None:
        unknown = set(projections) - set(PROJECTIONS) - set(HEAD)
        if unknown or not projections:
            known = (*PROJECTIONS, *HEAD)
            raise ValueError(f"scaled_residual_init projections {projections!r}: of {known}")
        chosen = [PROJECTIONS[p] for p in PROJECTIONS if p in projections]
        if edits.find_method(package.module("model.py"), "Model", "init_weights") is None:
            raise EditError("model.py: Model has no init_weights")
        code = SCALED
        if chosen:
            modules = ", ".join(chosen) + ("," if len(chosen) == 1 else "")  # a tuple either way
            code += PER_LAYER.format(projections=modules)
        code += "".join(HEAD[p] for p in HEAD if p in projections)
        edits.append_to_method(package, "model.py", "Model", "init_weights", code)
