"""Rendering Features: the onboarding checklist table (human) and the `--json` list.

Both renderers take a batch in which a target that could not be analysed is its one-line
error message (a `str`) instead of Features, so one bad target is a row, not an abort.
"""

from __future__ import annotations

import json

from codegen.analyze.features import Features, layer_ranges

# (feature, label) rows of the checklist, in reading order.
ROWS = (
    ("category", "category"),
    ("attention.kind", "attention"),
    ("attention.qk_norm", "QK-norm"),
    ("attention.qk_norm_on", "QK-norm on"),
    ("attention.qkv_bias", "QKV bias"),
    ("attention.o_bias", "O bias"),
    ("attention.fused_qkv", "fused QKV"),
    ("attention.qkv_layout", "fused QKV layout"),
    ("attention.sliding_window", "sliding window"),
    ("attention.sinks", "attention sinks"),
    ("attention.sink_rule", "sinks on layers where"),
    ("attention.v_head_dim", "value head size"),
    ("attention.v_scale", "values scaled by"),
    ("attention.layer_sizes", "sizes per layer"),
    ("attention.softcap", "attention softcap"),
    ("attention.scale", "attention scale"),
    ("attention.output_gate", "output gate"),
    ("attention.dynamic_mask", "dynamic mask"),
    ("attention.type_block", "token types seen both ways"),
    ("attention.q_latent_raw", "q up-projection input"),
    ("attention.routed", "routed attention"),
    ("attention.compressed_kv", "keys from pooled windows"),
    ("rope.type", "RoPE"),
    ("rope.partial_rotary", "partial rotary"),
    ("rope.interleaved", "RoPE interleaved"),
    ("rope.rotated_slice", "rotated dims"),
    ("rope.group", "rope group"),
    ("rope.layer_groups", "rope group per layer"),
    ("rope.layer_bases", "RoPE base per layer"),
    ("rope.nope_layers", "NoPE layers"),
    ("rope.fp32", "RoPE in fp32"),
    ("ffn.kind", "FFN"),
    ("ffn.bias", "FFN bias"),
    ("ffn.fused_gate_up", "fused gate/up"),
    ("ffn.product_keys", "product-key experts"),
    ("ffn.activation_sparsity", "activation sparsity"),
    ("moe.num_experts", "experts"),
    ("moe.top_k", "top-k"),
    ("moe.layer_top_k", "top-k per layer"),
    ("moe.layer_experts", "experts per layer"),
    ("moe.router", "router"),
    ("moe.router_bias", "router correction bias"),
    ("moe.router_fp32", "router logits in fp32"),
    ("moe.norm_topk_prob", "renormalise top-k"),
    ("moe.routed_scaling", "routed scaling"),
    ("moe.shared_experts", "shared experts"),
    ("moe.shared_expert_gate", "shared expert gate"),
    ("moe.output_norm", "MoE output norm"),
    ("moe.dense_layers", "dense layers"),
    ("moe.expert_layout", "expert layout (disk)"),
    ("moe.projections", "stacked MoE projections"),
    ("norm.kind", "norm"),
    ("norm.placement", "norm placement"),
    ("norm.gated", "gated norms"),
    ("norm.layer_eps", "layer norms' own eps"),
    ("norm.eps_sources", "norm eps from"),
    ("embedding.tied", "tied embeddings"),
    ("embedding.scale", "embedding scale"),
    ("embedding.positions", "absolute positions"),
    ("embedding.side_tables", "side tables"),
    ("embedding.extra_rows", "word rows past the vocab"),
    ("head.logit_softcap", "logit softcap"),
    ("head.logit_scale", "logit scale"),
    ("head.vocab_crop", "logits cut to"),
    ("head.bias", "output head bias"),
    ("block.residual_scale", "residual scale"),
    ("block.residual_fp32", "residual stream fp32"),
    ("block.low_rank_branch", "low-rank branch"),
    ("moe.zero_experts", "identity experts"),
    ("block.short_conv", "short-conv layers"),
    ("block.sublayers", "attention sublayers"),
    ("block.parallel_moe", "switched MoE beside MLP"),
    ("block.hyper_connections", "hyper-connections"),
    ("block.recurrent_stacks", "stacks in cycles"),
)


def _fmt(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, tuple | list):
        if not value:
            return "none"
        if all(isinstance(v, int) for v in value):
            return layer_ranges(list(value))
        return ", ".join(str(v) for v in value)
    return str(value)


def render_text(features: Features) -> str:
    lines: list[str] = []
    title = features.model_type or features.source.model_class
    lines.append(f"{title}  ({features.source.model_class}, {features.source.modeling})")
    lines.append(f"config: {features.source.config}")
    rows = []
    for name, label in ROWS:
        if name.startswith("moe.") and features.moe is None:
            continue
        if name == "attention.qkv_layout" and features.attention.fused_qkv is not True:
            continue  # only a fused projection has a row layout
        if name == "rope.group" and features.rope.group is None:
            continue  # only labelled rope_parameters have groups
        if name == "rope.layer_groups" and features.rope.layer_groups is None:
            continue  # the layers pick one group
        if name == "rope.layer_bases" and features.rope.layer_bases is None:
            continue  # one base for every layer
        value = features.get(name)
        if name == "rope.layer_bases" and value:
            value = f"config:{value['field']}"
        if name == "embedding.side_tables" and value:
            value = tuple(table[0].rsplit(".", 1)[-1] for table in value)
        if name == "attention.kind":
            a = features.attention
            extra = f" ({a.num_heads}/{a.num_kv_heads} heads)" if a.num_heads else ""
            value = f"{a.kind}{extra}"
        elif name == "attention.sliding_window" and features.attention.window:
            value = f"{features.attention.sliding_window} (window {features.attention.window})"
        elif name == "attention.output_gate" and features.attention.gate_proj:
            a = features.attention
            parts = [a.gate_proj] + (["bias"] if a.gate_bias is True else [])
            parts += [f"+ per-head {a.gate_head_bias}"] if a.gate_head_bias else []
            parts += [a.gate_layout] if a.gate_layout else []
            parts += ["fp32"] if a.gate_fp32 else []
            value = f"{a.output_gate} ({' '.join(parts)})"
        elif name == "attention.q_latent_raw":
            value = "cat(norm(latent), latent)" if features.attention.q_latent_raw else "no"
        elif name in ("attention.routed", "moe.projections", "norm.eps_sources"):
            found = features.get(name)
            if isinstance(found, dict):
                value = ", ".join(f"{k} {v}" for k, v in found.items() if v)
            else:
                value = found or "no"
        elif name == "norm.gated":
            value = features.norm.gated or "no"
        elif name == "block.short_conv":
            found = features.block.short_conv
            value = (
                f"{found['field']} == {found['layer_type']!r} (kernel {found['kernel']})"
                if found
                else "no"
            )
        elif name == "block.sublayers":
            found = features.block.sublayers
            value = (
                f"{found['count']} per layer, shortcut MoE from {found['moe_input']}"
                if found
                else "one per layer"
            )
        elif name == "block.parallel_moe":
            found = features.block.parallel_moe
            value = f"{found['field']}: {found['router']} + {found['experts']}" if found else "no"
        elif name == "block.hyper_connections":
            found = features.block.hyper_connections
            if found:
                form = (
                    f"Sinkhorn x {found['sinkhorn_iters']}"
                    if found["mix"]
                    else f"added back unmixed, post {found['post_scale']} x sigmoid"
                )
                value = (
                    f"{found['streams']} streams, {form}"
                    f" ({', '.join(found['layer'])}; collapsed by {found['head']})"
                )
            else:
                value = "no"
        elif name == "block.recurrent_stacks":
            found = features.block.recurrent_stacks
            value = (
                f"{found['inner']} x {found['inner_cycles']}, {found['outer']}; x {found['cycles']}"
                if found
                else "no"
            )
        elif name == "moe.zero_experts":
            found = features.moe.zero_experts
            value = (
                f"{found['count']} (unread rows in {', '.join(found['rows']) or 'none'})"
                if isinstance(found, dict)
                else _fmt(found)
            )
        elif name == "rope.type" and features.rope.theta:
            value = f"{features.rope.type} (theta {features.rope.theta:g})"
        evidence = features.evidence.get(name, "")
        rows.append((label, _fmt(value) if not isinstance(value, str) else value, evidence))
    if features.moe is None:
        rows.insert(
            next(i for i, r in enumerate(rows) if r[0] == "norm"),
            ("MoE", "no", features.evidence.get("ffn.kind", "")),
        )
    width = [max(len(r[i]) for r in rows + [("feature", "value", "evidence")]) for i in range(2)]
    lines.append("")
    lines.append(f"{'feature':<{width[0]}}  {'value':<{width[1]}}  evidence")
    lines.append(f"{'-' * width[0]}  {'-' * width[1]}  {'-' * 8}")
    for label, value, evidence in rows:
        lines.append(f"{label:<{width[0]}}  {value:<{width[1]}}  {evidence}".rstrip())
    lines.append("")
    lines.extend(_checkpoint_keys(features))
    lines.append("")
    ref = features.reference
    lines.append(f"closest reference: {ref.closest}")
    lines.append(f"delta: {', '.join(ref.delta) if ref.delta else 'none'}")
    if ref.unknown:
        lines.append(f"not determined: {', '.join(ref.unknown)}")
    if features.unsupported:
        lines.append("unsupported:")
        for u in features.unsupported:
            lines.append(f"  - {u.feature}: {u.detail}  ({u.evidence})")
    else:
        lines.append("unsupported: none")
    lines.extend(switch_lines(features))
    if features.notes:
        lines.append("notes:")
        for note in features.notes:
            lines.append(f"  - {note}")
    return "\n".join(lines)


def _checkpoint_keys(features: Features) -> list[str]:
    """The checkpoint key pattern (`{}` = layer index, then expert index) with its evidence."""
    sd = features.state_dict
    layer = sd.checkpoint_layer_keys or sd.layer_keys
    other = sd.checkpoint_other_keys or sd.other_keys
    if not (layer or other):
        return ["checkpoint keys: not determined"]
    source = features.evidence.get("state_dict.checkpoint") or "module keys"
    lines = [f"checkpoint keys ({source}):"]
    stack = (sd.checkpoint_prefix or sd.prefix) if sd.checkpoint_layer_keys else sd.prefix
    prefix = f"{stack}.{{}}." if stack else ""
    lines.extend(f"  {prefix}{key}" for key in layer)
    lines.extend(f"  {key}" for key in other)
    lines.extend(f"  {key}  (tied: not on disk)" for key in sd.tied_keys)
    return lines


def render_error(target: str, message: str) -> str:
    """The row of a target that could not be analysed."""
    return f"{target}: error: {message}"


def switch_lines(features: Features) -> list[str]:
    """The "config switches" section: each field, its value classes, what they select."""
    if not features.switches:
        return ["config switches: none"]
    lines = ["config switches:"]
    for switch in features.switches:
        now = f", configured {_fmt(switch.configured)}" if switch.configured is not None else ""
        lines.append(f"  - {switch.name} ({switch.kind}{now})")
        for value in switch.values:
            selects = f" -> {value.selects}" if value.selects else ""
            lines.append(f"      {value.label}{selects}  ({', '.join(value.evidence[:3])})")
    return lines


def render_json(results: list[Features | str], targets: list[str] | None = None) -> str:
    """One object per target, in order; a failed target is `{"target", "error"}`."""
    targets = list(targets) if targets is not None else [None] * len(results)
    out = []
    for target, result in zip(targets, results, strict=True):
        if isinstance(result, str):
            out.append({"target": target, "error": result})
            continue
        data = result.to_dict()
        out.append({"target": target, **data} if target is not None else data)
    return json.dumps(out, indent=2, allow_nan=False)
