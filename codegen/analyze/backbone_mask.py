"""Masks the backbone builds for its layers, read from its traced calls of transformers'
mask builders.

A window set by the decoder's mask alone (PhiMoE): the backbone builds its one causal mask
with a sliding-window mask builder (`create_sliding_window_causal_mask`, picked under the
analysed config) and passes it to every layer, while no attention reads a window itself.
Chunked attention (Llama4): the backbone builds a chunked causal mask for the layers typed
"chunked_attention"; the builder reads the chunk size from `attention_chunk_size`.

The backbone is the module holding the word embedding, which builds the masks: the layer
stack's owner, or above it where the layers live in stacks of their own (HRM-Text)."""

from __future__ import annotations

from codegen.analyze.context import Ctx

SLIDING = "create_sliding_window_causal_mask"
FULL = ("create_causal_mask",)
CHUNKED = "create_chunked_causal_mask"
CHUNKED_KIND = "chunked_attention"
CHUNK_FIELD = "attention_chunk_size"  # what transformers' chunked mask builder reads


def backbone(ctx: Ctx):
    """The module holding the word embedding (the one that builds the masks): the stack's
    owner, or above it where the layers live in stacks of their own (HRM-Text)."""
    from codegen.analyze.evaluate import ModuleRec
    from codegen.analyze.model import _has_embedding, walk_tree

    owner = ctx.model.stack_owner
    if owner is not None and _has_embedding(ctx.model, owner):
        return owner
    return next(
        (
            rec
            for _, rec in walk_tree(ctx.model.entry)
            if isinstance(rec, ModuleRec) and rec.cls is not None and _has_embedding(ctx.model, rec)
        ),
        owner,
    )


def _builders(ctx: Ctx) -> set[str]:
    """The functions the layer stack's owner calls, and the backbone's where another
    module holds the embedding (the layers in stacks of their own)."""
    owners = {id(o): o for o in (ctx.model.stack_owner, backbone(ctx)) if o is not None}
    return {
        t.name.rsplit(".", 1)[-1]
        for owner in owners.values()
        if owner.cls is not None
        for t in ctx.trace(owner).terms
        if t.op == "fn" and t.name
    }


def window_everywhere(ctx: Ctx) -> bool:
    """The backbone's only mask is a sliding-window one (under the analysed config)."""
    names = _builders(ctx)
    return SLIDING in names and not names.intersection(FULL)


def chunk_field(ctx: Ctx, layer_types) -> str | None:
    """The config field of the chunk size when the backbone builds a chunked mask and some
    layer is typed "chunked_attention", else None."""
    if not isinstance(layer_types, list | tuple) or CHUNKED_KIND not in layer_types:
        return None
    return CHUNK_FIELD if CHUNKED in _builders(ctx) else None
