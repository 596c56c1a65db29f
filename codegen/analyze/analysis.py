"""`analyze(target)`: TARGET -> Features. Runs the detectors in dependency order."""

from __future__ import annotations

import dataclasses
import os

from codegen.analyze import (
    altup,
    attention_forms,
    attention_residuals,
    attention_shapes,
    constructor_init,
    conv_projection,
    depth_scale,
    detect_attention,
    detect_category,
    detect_embedding,
    detect_ffn,
    detect_init,
    detect_layout,
    detect_moe,
    detect_norm,
    detect_rope,
    ffn_sparsity,
    ffn_widths,
    final_norm,
    fp32_keys,
    fp32_stream,
    hyper_connections,
    init_cutoff,
    key_selection,
    kv_sharing,
    l2_clips,
    l2_qk_norm,
    language_adapters,
    latent_extras,
    layer_experts,
    layer_extras,
    layer_stacks,
    layer_top_k,
    low_rank_branch,
    output_scale,
    parallel_moe,
    per_layer_input,
    product_keys,
    qk_norm_eps,
    reference,
    relative_bias,
    residual_convs,
    residual_norm,
    routed_attention,
    router_forms,
    scalar_gains,
    short_conv,
    size_fields,
    state_dict,
    support,
    switches,
    table_forward,
    unused_keys,
    value_norm,
    value_scale,
)
from codegen.analyze.collector import paused
from codegen.analyze.config import attr
from codegen.analyze.context import Ctx, site_of
from codegen.analyze.evaluate import BudgetExceeded, ConfigObj, ParamRec
from codegen.analyze.features import (
    UNKNOWN,
    Block,
    Features,
    Reference,
    Source,
)
from codegen.analyze.locate import Target, resolve
from codegen.analyze.model import Model, NoModelClass, get_path, load_model, walk_tree
from codegen.analyze.source import Project
from codegen.errors import CodegenError

# Config keys that carry no architecture (tokens, generation, bookkeeping): never reported as
# "ignored by the code".
_BOOKKEEPING = {
    "architectures",
    "model_type",
    "transformers_version",
    "torch_dtype",
    "dtype",
    "auto_map",
    "bos_token_id",
    "eos_token_id",
    "pad_token_id",
    "sep_token_id",
    "unk_token_id",
    "decoder_start_token_id",
    "use_cache",
    "initializer_range",
    "tokenizer_class",
    "vocab_size",
    "max_position_embeddings",
    "quantization_config",
    "return_dict",
    "output_hidden_states",
    "output_attentions",
    "_name_or_path",
    "id2label",
    "label2id",
    "attention_dropout",
    "hidden_dropout",
    "hidden_dropout_prob",
    "attention_probs_dropout_prob",
    "resid_pdrop",
    "embd_pdrop",
    "attn_pdrop",
    "router_aux_loss_coef",
    "output_router_logits",
    "router_z_loss_coef",
    "pretraining_tp",
    "generation_config",
    "task_specific_params",
    "problem_type",
    "is_decoder",
    "chunk_size_feed_forward",
    "tie_encoder_decoder",
    "rms_norm_eps",
    "layer_norm_eps",
    "layer_norm_epsilon",
    "norm_eps",
    "text_config",
    "vision_config",
    "audio_config",
}


def analyze(target: str, config: str | None = None) -> Features:
    """Analyse one TARGET (model_type, modeling file or checkpoint folder)."""
    with paused():  # see collector.py: a tenth of the time, nothing to free
        return analyze_target(resolve(target, config))


def analyze_target(target: Target, project: Project | None = None) -> Features:
    try:
        model = load_model(target, project)
    except NoModelClass as err:  # an empty or helper file: a table of unknowns would mislead
        why = str(err).split(": ", 1)[-1]
        raise CodegenError(f"no model in this file ({why})", path=target.modeling_path) from None
    if model.config.read_log is None:
        model.config.read_log = []
    ctx = Ctx(model)
    ctx.notes.extend(model.notes)
    try:
        return _run(ctx)
    except BudgetExceeded as err:
        raise CodegenError("analysis exceeded its step budget", path=target.modeling_path) from err


def _run(ctx: Ctx) -> Features:
    model = ctx.model
    attention, shared = detect_attention.detect(ctx)
    shape_facts = attention_shapes.check(ctx, shared)
    shape_facts["v_scale"] = value_scale.detect(ctx, shared)
    shape_facts["rel_bias"] = relative_bias.detect(ctx, shared)
    latent = latent_extras.check(ctx, shared)
    rope = detect_rope.detect(ctx, shared) if "rep" in shared else _no_rope(ctx)
    conv_qkv = conv_projection.detect(ctx, shared)
    l2_norm = l2_qk_norm.detect(ctx, shared)
    clips = l2_clips.detect(ctx, shared)
    shared["realised_qkv_modules"] = {found["module"] for found in (l2_norm,) if found} | {
        clip["module"] for clip in (clips.values() if isinstance(clips, dict) else ())
    }
    selection = key_selection.detect(ctx, shared)
    attention = dataclasses.replace(
        attention, key_selection=selection, l2_qk_norm=l2_norm, l2_clips=clips
    )
    if conv_qkv is not None:  # its projections, not found by the usual q/k/v reading
        attention = dataclasses.replace(
            attention, conv_projection=conv_qkv, qkv_bias=conv_qkv["bias"]
        )
    ffn, ffn_shared = detect_ffn.detect(ctx)
    moe = detect_moe.detect(ctx)
    if moe is not None:  # a dense model has no MoE facts
        moe = dataclasses.replace(moe, projections=detect_ffn.stacked_projections(ctx))
    norm, norm_facts = detect_norm.detect(ctx, qk_norm_eps.qk_norms(shared))
    qk_eps = qk_norm_eps.detect(ctx, shared, layers_own_eps=norm.layer_eps is not None)
    attention = dataclasses.replace(attention, qk_norm_eps=qk_eps)
    embedding, head = detect_embedding.detect(ctx)
    category = detect_category.detect(ctx, shared)
    sublayers, recurrent = layer_stacks.detect(ctx)
    per_layer = per_layer_input.detect(ctx)
    streams = altup.detect(ctx)
    hyper = hyper_connections.detect(ctx, norm_facts)
    depth_residuals = attention_residuals.detect(ctx)
    adapters = language_adapters.detect(ctx, ffn)
    output_convs, kv_convs = residual_convs.detect(ctx)
    branch = low_rank_branch.detect(ctx)
    shape_facts["kv_convs"] = kv_convs
    shared["kv_convs"] = kv_convs  # the second attention forward's filters read against it
    affine = norm_facts.get("residual_affine") if norm_facts else None
    layer_extras.detect(
        ctx,
        ffn,
        per_layer,
        hyper=hyper,
        adapters=adapters,
        convs=(output_convs, kv_convs),
        conv_projection=conv_qkv,
        affine=affine,
        altup=streams,
        branch=branch,
    )
    sharing = kv_sharing.detect(ctx, shared)
    sparsity = ffn_sparsity.detect(ctx)
    widths = ffn_widths.detect(ctx)
    if widths is not None:
        ffn = dataclasses.replace(ffn, layer_widths=widths)
    if sparsity is not None:
        ffn = dataclasses.replace(ffn, activation_sparsity=sparsity)
    forms = attention_forms.detect(ctx, shared)
    scored, router_mlp, table = router_forms.detect(ctx)
    if table is not None:
        moe = dataclasses.replace(moe, table_routing=table)
    if router_mlp is not None:
        moe = dataclasses.replace(moe, router_mlp=router_mlp)
    if scored is not None:  # the router's last rows score the shared experts, not routed ones
        moe = dataclasses.replace(moe, scored_shared=scored, num_experts=scored.pop("routed"))
    output_gain, router_gain = scalar_gains.detect(ctx)
    ffn = dataclasses.replace(ffn, output_gain=output_gain)
    if router_gain is not None:
        moe = dataclasses.replace(moe, router_gain=router_gain)
    layer_k = layer_top_k.detect(ctx)
    if layer_k is not None:
        moe = dataclasses.replace(moe, layer_top_k=layer_k)
    layer_counts = layer_experts.detect(ctx)
    if layer_counts is not None:
        moe = dataclasses.replace(moe, layer_experts=layer_counts)
    table_norm = table_forward.detect(ctx)
    if table_norm is not None:  # the table's own forward norms its rows
        embedding = dataclasses.replace(embedding, norm=True, norm_module=table_norm)
    attention = value_norm.detect(ctx, shared, attention)
    if sharing is not None:
        attention = dataclasses.replace(attention, kv_sharing=sharing)
    attention = dataclasses.replace(attention, **shape_facts, **latent, **forms)
    routed = routed_attention.detect(ctx, moe)
    if isinstance(routed, dict):  # its output bias is the routed module's, after the merge
        o_bias = routed["bias"] is not None
        attention = dataclasses.replace(attention, routed=routed, o_bias=o_bias)
        ctx.cite("attention.o_bias", ctx.evidence.get("attention.routed", ""))
    elif routed is not None:
        attention = dataclasses.replace(attention, routed=routed)
    sd, sd_info = state_dict.detect(ctx, ctx.roles)
    sd = dataclasses.replace(sd, transposed_keys=detect_layout.transposed_keys(ctx))
    sd = dataclasses.replace(sd, fp32_keys=fp32_keys.detect(model, sd))
    sd = dataclasses.replace(sd, unused_keys=unused_keys.detect(ctx, sd.checkpoint_other_keys))
    sd = dataclasses.replace(sd, constructor_std=constructor_init.detect(ctx, sd))
    if sd.fp32_keys:
        ctx.cite("state_dict.fp32_keys", f"{fp32_keys.where(model)} ({len(sd.fp32_keys)} kept)")
    embedding_norm = embedding.norm_module if embedding.norm is True else None
    norm = dataclasses.replace(
        norm,
        final=final_norm.has_final_norm(
            ctx, embedding_norm, (embedding.module_norm, head.transform_norm)
        ),
        placement=residual_norm.placement(norm.placement, norm_facts),
    )
    if norm.block_names:  # the checkpoint's names for the block norms
        disk = tuple((h, state_dict.on_disk_module(sd, sd_info, n)) for h, n in norm.block_names)
        norm = dataclasses.replace(norm, block_names=disk)

    # -- on-disk expert layout (needs the checkpoint keys) ---------------------------------
    if moe is not None:
        moe, ffn = _expert_layout(ctx, moe, ffn, sd, sd_info)
    # -- tied head keys -----------------------------------------------------------------------
    if embedding.tied is True:
        head_name = head.projection or detect_embedding._head(ctx)[0]
        if head_name:
            tied = tuple(k for k in sd.other_keys if k.startswith(head_name + ".weight"))
            if head.bias_key and head.bias_key != f"{head_name}.bias":  # shared (BERT)
                tied += tuple(k for k in sd.other_keys if k == f"{head_name}.bias")
            sd = dataclasses.replace(
                sd,
                tied_keys=tied,
                checkpoint_other_keys=tuple(k for k in sd.checkpoint_other_keys if k not in tied),
            )
    switch_list = switches.switches_of_model(model)
    keys = product_keys.detect(ctx, switch_list)
    if keys is not None:
        ffn = dataclasses.replace(ffn, product_keys=keys)
    scale, scale_trained = output_scale.detect(ctx)
    block = Block(
        num_layers=len(model.layers) if model.layers else None,
        layers_field=_layers_field(ctx),
        mixers=tuple(
            sorted(
                {
                    "attention" if p["type"] in ("full", "sliding") else p.get("mixer", p["type"])
                    for p in shared.get("per_layer", [])
                    if p["type"] != "none"
                }
            )
        ),
        # a hyper-connection's write-back weights are no residual scale
        residual_scale=(
            False if hyper else norm_facts.get("residual_scale", UNKNOWN) if norm_facts else UNKNOWN
        ),
        hyper_connections=hyper,
        attention_residuals=depth_residuals,
        stream_weights=norm_facts.get("stream_weights") if norm_facts else None,
        residual_affine=norm_facts.get("residual_affine") if norm_facts else None,
        residual_fp32=fp32_stream.detect(ctx),
        scaled_residual_init=detect_init.scaled_residual_init(ctx),
        scaled_residual_projections=detect_init.scaled_residual_projections(ctx),
        init_cutoff=init_cutoff.init_cutoff(ctx),
        short_conv=short_conv.detect(ctx, switch_list),
        output_convs=output_convs,
        low_rank_branch=branch,
        output_scale=scale,
        output_scale_trained=scale_trained,
        per_layer_input=per_layer,
        altup=streams,
        language_adapters=adapters,
        sublayers=sublayers,
        recurrent_stacks=recurrent,
        parallel_moe=parallel_moe.detect(ctx, switch_list),
    )
    if block.parallel_moe and any(
        s.field == block.parallel_moe["field"] and s.configured for s in switch_list
    ):  # switched on: the FFN's post-norm is the one on the branches' sum, not the MLP's
        post = state_dict.on_disk_module(sd, sd_info, block.parallel_moe["post_ffn_norm"])
        norm = dataclasses.replace(
            norm,
            block_names=tuple(
                (house, post if house == "post_ffn_norm" else name)
                for house, name in norm.block_names
            ),
        )
    if block.residual_scale is True:
        ctx.cite("block.residual_scale", ctx.evidence.get("norm.placement"))
    elif block.residual_scale == "depth_scaled":
        ctx.cite(
            "block.residual_scale",
            f"{ctx.evidence.get('norm.placement')} (sublayer x 1/sqrt(k) + stream x"
            f" sqrt((k-1)/k), k its term of the sum; layers 0-{depth_scale.LAYERS_CHECKED - 1})",
        )
    elif block.residual_scale == "learned_stream":
        ctx.cite(
            "block.residual_scale",
            f"{ctx.evidence.get('norm.placement')} (stream x {block.stream_weights[0]}"
            f" / {block.stream_weights[1]}, per channel, before each residual add)",
        )
    elif block.residual_scale == "affine":
        modules = " / ".join(f["module"] for f in block.residual_affine.values())
        ctx.cite(
            "block.residual_scale",
            f"{ctx.evidence.get('norm.placement')} ((out + b) * s + (x + c) * t per channel,"
            f" the parameters of {modules})",
        )
    elif norm_facts:
        ctx.cite("block.residual_scale", ctx.evidence.get("norm.placement"))
    ignored = _ignored_config_keys(ctx, switch_list)
    architectures = _architectures(model)
    source = Source(
        modeling=model.target.modeling_path,
        configuration=model.target.configuration_path,
        config=model.target.config_json_path
        or (f"defaults of {model.config_cls.name}" if model.config_cls else "none"),
        model_class=model.entry_cls.name,
        config_class=model.config_cls.name if model.config_cls else None,
    )
    draft = Features(
        model_type=model.model_type,
        architectures=architectures,
        category=category,
        attention=attention,
        rope=rope,
        ffn=ffn,
        moe=moe,
        norm=norm,
        embedding=embedding,
        head=head,
        block=block,
        reference=Reference(),
        unsupported=(),
        evidence=dict(sorted(ctx.evidence.items())),
        state_dict=sd,
        notes=tuple(dict.fromkeys(ctx.notes)),
        source=source,
        switches=switch_list,
    )
    closest, delta = reference.closest(draft, support.realised)
    unknown = tuple(reference.undetermined(draft))
    if model.target.config_values and (unknown or not model.layers):
        # "not read" is only a finding when the code was understood
        ignored = [
            f"config keys not checked for use: the analysis left {len(unknown)} "
            "compared features undetermined"
            if model.layers
            else "config keys not checked for use: no decoder stack was found"
        ]
    draft = dataclasses.replace(
        draft,
        notes=tuple(dict.fromkeys([*draft.notes, *ignored])),
        reference=Reference(closest=closest, delta=tuple(delta), unknown=unknown),
    )
    return dataclasses.replace(draft, unsupported=support.unsupported(draft, ctx.extras))


def _no_rope(ctx: Ctx):
    from codegen.analyze.features import Rope

    return Rope()


def _architectures(model: Model) -> tuple[str, ...]:
    values = model.target.config_values or {}
    archs = values.get("architectures")
    if isinstance(archs, list) and all(isinstance(a, str) for a in archs):
        return tuple(archs)
    return (model.entry_cls.name,)


def _expert_layout(ctx: Ctx, moe, ffn, sd, info):
    model = ctx.model
    keys = [k.split(" [", 1)[0] for k in sd.checkpoint_layer_keys]
    module_keys = [k for k, _ in info.get("table", [])]
    fused_modules = [
        k for k in module_keys if "experts." in k and "{}" not in k.split("experts.", 1)[1]
    ]
    per_expert = any(
        "experts.{}." in k or ".experts.{}" in k or k.startswith("experts.{}") for k in keys
    )
    source = info.get("checkpoint_source")
    if moe.module_layout == "per_expert":
        layout = "per_expert"
        where = ctx.evidence.get("moe.module_layout") or ctx.evidence.get("moe.num_experts")
    elif per_expert:
        layout = "per_expert"
        where = source or "?"
    elif fused_modules and (flat := _flat_experts(ctx, moe.num_experts)) is not None:
        layout, where = "flat", flat
    elif fused_modules:
        layout = "fused"
        if source is None and not model.target.installed:
            where = "remote code: transformers applies no checkpoint conversion to custom code"
        else:
            where = (
                source
                or f"{ctx.evidence.get('moe.module_layout', '?')} "
                "(no checkpoint conversion for this model type)"
            )
    else:
        layout = UNKNOWN
        where = "?"
    ctx.cite("moe.expert_layout", where)
    moe = dataclasses.replace(moe, expert_layout=layout)
    if ffn.source == "experts" and layout == "per_expert":
        expert_keys = [k for k in keys if "experts.{}." in k and k.endswith(".weight")]
        if len(expert_keys) >= 3:
            ffn = dataclasses.replace(ffn, fused_gate_up=False, gate_up_layout="separate")
            ctx.cite("ffn.fused_gate_up", f"{where} (separate gate/up keys on disk)")
    return moe, ffn


def _flat_experts(ctx: Ctx, num_experts) -> str | None:
    """Where the experts' weights are held as one 2-D matrix each, the experts' rows stacked
    ([num_experts * out, in]: DBRX's w1, v1, w2), not a 3-D tensor per projection; None
    otherwise."""
    if not isinstance(num_experts, int) or num_experts < 2:
        return None
    for path, rec in walk_tree(ctx.model.entry):
        shape = getattr(rec, "shape", None) if isinstance(rec, ParamRec) else None
        if ".experts." not in f".{path}" or not shape or len(shape) != 2:
            continue
        rows = shape[0]
        if isinstance(rows, int) and rows > num_experts and rows % num_experts == 0:
            where = rec.site.cite() if rec.site is not None else path
            return f"{where} ({path.rsplit('.', 1)[-1]}: the experts' rows in one matrix)"
    return None


def _ignored_config_keys(ctx: Ctx, switch_list) -> list[str]:
    """Notes on the config.json keys that the modeling code never reads. A switch's field is
    read, even where only the config class or transformers reads it (a layer pattern the
    config class derives from `max_window_layers`, the head tied by `tie_word_embeddings`)."""
    model = ctx.model
    values = model.target.config_values
    out: list[str] = []
    if not values:
        return out
    read = {switch.container or switch.field for switch in switch_list}
    for cfg in _configs(model.config):
        read |= {k.split(".")[-1] for k in (cfg.read_log or [])}
    prefix = model.config_prefix
    scope = values
    if prefix:
        sub = values.get(prefix.rstrip("."))
        scope = sub if isinstance(sub, dict) else values
    if not model.config.read_log:
        return out
    cfg = model.config
    for key, value in scope.items():
        mapped = cfg.key(key)
        if key in _BOOKKEEPING or mapped in _BOOKKEEPING or key.startswith("_"):
            continue
        if key in read or mapped in read:
            continue
        if (
            key in ("rope_scaling", "rope_theta", "partial_rotary_factor")
            and "rope_parameters" in read
        ):
            continue
        if isinstance(value, dict | list) and len(str(value)) > 60:
            shown = type(value).__name__
        else:
            shown = repr(value)
        out.append(f"config:{prefix}{key}={shown} is not read by the modeling code")
    return out


def _configs(cfg: ConfigObj):
    yield cfg
    for value in cfg.attrs.values():
        if isinstance(value, ConfigObj):
            yield from _configs(value)


def analyze_many(targets: list[str], config: str | None = None) -> list[Features]:
    return [analyze(t, config) for t in targets]


def label_of(features: Features) -> str:
    return features.model_type or os.path.basename(features.source.modeling)


_ = attr


def _layers_field(ctx: Ctx) -> str | None:
    """The config field the decoder's layer list is counted by, cited there; else None."""
    model = ctx.model
    stack = get_path(model.entry, model.stack_path) if model.stack_path else None
    field = size_fields.count_field(stack)
    if field is not None:
        ctx.cite("block.layers_field", f"{site_of(stack.site)} (range(config.{field}))")
    return field
