"""Category: decoder | hybrid | encoder | multimodal | other, from structure.

* multimodal: the loaded class takes token ids *and* image/audio/video inputs;
* other: encoder-decoder (a second attention per layer or decoder ids), a non-text model
  (images/audio only), or, where no layers were read, what `unread_stack` finds instead (a
  drafter, a two-stream permutation LM, no stack at all); a causal stack the reader cannot
  take apart is still a decoder there, its missing capabilities named unsupported;
* encoder: the attention is bidirectional (`is_causal` false) or the head is a masked LM;
* hybrid: some decoder layers mix tokens with something other than softmax attention
  (state-space, linear attention, recurrence), instead of or beside their attention;
* decoder: a causal stack of attention layers, some of them possibly gated short
  convolutions (LFM2; `short_conv`), which packages realise as a layer kind.
"""

from __future__ import annotations

from codegen.analyze import unread_stack
from codegen.analyze.context import Ctx
from codegen.analyze.detect_attention import mixer_kind
from codegen.analyze.evaluate import ModuleRec
from codegen.analyze.model import layer_slots
from codegen.analyze.roles import ATTENTION, MIXER

_MEDIA_INPUTS = {
    "pixel_values",
    "pixel_values_videos",
    "pixel_values_images",
    "image_embeds",
    "images",
    "input_features",
    "input_values",
    "audio_values",
    "input_audio_embeds",
    "audio_features",
    "input_image_embeds",
    "image_features",
    "video_values",
    "speech",
}
_TOKEN_INPUTS = {"input_ids", "inputs_embeds"}
# a parameter named for a medium (phi4_multimodal's image_pixel_values, audio_input_features)
# is a media input too, whatever the rest of its name
_MEDIA_WORDS = {"pixel", "image", "images", "audio", "video", "videos", "speech"}


# what a package cannot be: a plan stops on these rather than write a model that drops the
# encoder's part of the checkpoint (whisper's `encoder_attn.*`) and reads its decoder's fields
ENCODER_DECODER = (
    "an encoder-decoder (the entry takes decoder_input_ids); codegen writes decoder-only LMs"
)
CROSS_ATTENTION = (
    "an encoder-decoder's decoder: each layer also attends to encoder_hidden_states "
    "(cross-attention); codegen writes decoder-only LMs"
)


def _is_media(name: str) -> bool:
    return name in _MEDIA_INPUTS or bool(_MEDIA_WORDS & set(name.split("_")))


def detect(ctx: Ctx, shared: dict) -> str:
    model = ctx.model
    params = unread_stack.forward_params(ctx)
    where = model.entry_cls.cite()
    media = {name for name in params if _is_media(name)}
    tokens = params & _TOKEN_INPUTS
    if media and tokens and model.layers:
        ctx.cite("category", f"{where} (inputs: {', '.join(sorted(media | tokens))})")
        return "multimodal"
    if not model.layers:
        return unread_stack.classify(ctx)
    if media and not tokens:
        ctx.cite("category", f"{where} (inputs: {', '.join(sorted(media))})")
        return "other"
    if "decoder_input_ids" in params:
        ctx.cite("category", f"{where} (encoder-decoder: decoder_input_ids)")
        ctx.unsupported("category.encoder_decoder", ENCODER_DECODER, where)
        return "other"
    layer = model.layers[0]
    found = model.project.find_method(layer.cls, "forward") if layer.cls is not None else None
    if found is not None:
        names = {
            p.name.value for p in list(found[1].params.params) + list(found[1].params.kwonly_params)
        }
        if "encoder_hidden_states" in names and layer_slots(model, layer).get(ATTENTION, [])[1:]:
            site = ctx.class_site(layer)
            ctx.cite("category", f"{site} (cross-attention in the layer)")
            ctx.unsupported("category.encoder_decoder", CROSS_ATTENTION, site)
            return "other"
    per_layer = shared.get("per_layer", [])
    rep = shared.get("rep")
    causal = None
    if rep is not None:
        value = rep.rec.attrs.get("is_causal")
        if isinstance(value, bool):
            causal = value
    if model.entry_cls.name.endswith("ForMaskedLM") or causal is False:
        ctx.cite(
            "category", f"{ctx.class_site(rep.rec) if rep else where} (bidirectional attention)"
        )
        return "encoder"
    # a gated short convolution (LFM2) is a layer kind packages realise, not a hybrid's mixer
    mixers = [p for p in per_layer if p["type"] == "mixer" and p["mixer"] != "short_conv"]
    if mixers:
        kinds = sorted({p["mixer"] for p in mixers})
        rec = mixers[0].get("rec")
        site = ctx.class_site(rec) if isinstance(rec, ModuleRec) else where
        ctx.cite("category", f"{site} (token mixers: attention + {', '.join(kinds)})")
        return "hybrid"
    beside = _mixers_beside_attention(ctx)
    if beside:
        site, kinds = beside
        ctx.cite("category", f"{site} (token mixers in parallel: attention + {kinds})")
        return "hybrid"
    ctx.cite("category", f"{where} (causal attention stack)")
    return "decoder"


def _mixers_beside_attention(ctx: Ctx) -> tuple[str, str] | None:
    """(site, kinds) of a non-attention token mixer a layer holds beside its attention
    (falcon_h1's mamba mixer run in parallel with self_attn), or None."""
    for layer in ctx.model.layers:
        slots = layer_slots(ctx.model, layer)
        others = [rec for _, rec in slots.get(MIXER, [])]
        if slots.get(ATTENTION) and others:
            kinds = ", ".join(sorted({mixer_kind(ctx, rec) for rec in others}))
            return ctx.class_site(others[0]), kinds
    return None
