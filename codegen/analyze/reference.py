"""The reference models as data, and the closest one to a set of Features.

Each row says which values of each compared feature the reference implements. `delta` is the
list of compared features whose value the row does not accept; the closest reference is the one
with the fewest, ties broken by `ORDER` (simplest reference first). This table describes the
references in `references/`; it is the only place that knows them.
"""

from __future__ import annotations

import ast
import re
from typing import Any

from codegen.analyze.features import Features

ANY = object()  # the reference accepts every value


def _partial(value) -> Any:
    """RoPE partial rotary compared as full (1.0) vs partial (< 1)."""
    if isinstance(value, int | float):
        return "full" if abs(value - 1.0) < 1e-9 else "partial"
    return value


def _moe_present(f: Features) -> bool:
    return f.moe is not None


def _shared(value) -> Any:
    if isinstance(value, int):
        return "yes" if value > 0 else "no"
    return value


def _scaled(value) -> Any:
    """Routed scaling compared as applied by the code ("yes", whatever the configured
    factor: real checkpoints set other values) or not ("no")."""
    if value is None:
        return "no"
    return "yes" if isinstance(value, int | float) else value


def shared_width(size) -> Any:
    """The shared expert's width compared as read from a field of its own (`own_field`:
    dots3's shared_experts_intermediate_size x n_shared_experts) or, whatever else the
    analysis read, as the experts' width times their count (`per_expert`, deepseek's)."""
    if isinstance(size, str) and "moe_intermediate_size" not in size:
        fields = re.findall(r"config\.(\w+)", size)
        if any("shared" in f and f != "n_shared_experts" for f in fields):
            return "own_field"
    return "per_expert"


# The MoE layer conditions (as the analysis restates them) the references' named rules stand
# for; any other condition is evaluated as written (`set_moe_layers`).
MOE_LAYER_RULES = {
    "sparse_step": (
        "layer_idx not in config.mlp_only_layers"
        " and (config.num_experts > 0 and (layer_idx + 1) % config.decoder_sparse_step == 0)"
    ),
    "first_k": "layer_idx >= config.first_k_dense_replace",
}


def moe_layer_rule(condition) -> Any:
    """The MoE layer condition compared as the rule it spells: every layer MoE ("all"),
    DeepSeek's first k dense ("first_k"), Qwen's step and dense list ("sparse_step"), or
    another condition ("condition")."""
    if condition is None:
        return "all"
    if condition == "unknown":
        return condition
    for rule, known in MOE_LAYER_RULES.items():
        if _same_expression(condition, known):
            return rule
    return "condition"


def _same_expression(a: str, b: str) -> bool:
    try:
        return ast.dump(ast.parse(a, mode="eval")) == ast.dump(ast.parse(b, mode="eval"))
    except SyntaxError:
        return False


def _fp32_kept(keys) -> bool | str:
    """Kept fp32 tensors: none (False), only a router's selection bias ("router_bias": a
    reference router that keeps its own has it), or others too (True)."""
    if not keys:
        return False
    names = {key.rsplit(".", 1)[-1] for key in keys}
    return "router_bias" if names == {"e_score_correction_bias"} else True


def renorm_eps(eps) -> Any:
    """The number the router adds to the sum it divides its k picked weights by (the
    analysed `moe.norm_topk_eps`), compared as the references write it: none (`"none"`: the
    bare sum, or no such division), the deepseek_v3 reference's 1e-20 (`"1e-20"`), another
    number (`"other"`: a rule writes it)."""
    if eps is None:
        return "none"
    return "1e-20" if eps == 1e-20 else "other"


def _any(value) -> Any:
    """A list of keys compared as empty (False) or not (True)."""
    return bool(value) if isinstance(value, tuple | list) else value


# Compared features: dotted name -> projection of the value used for comparison.
COMPARED: dict[str, Any] = {
    "attention.kind": None,
    "attention.qk_norm": None,
    "attention.qk_norm_weight": None,
    "attention.qk_norm_layers": None,
    "attention.qk_norm_on": None,
    "attention.qk_norm_eps": lambda eps: "other" if eps == "other" else eps is not None,
    "attention.chunked": lambda field: field is not None,
    "attention.qkv_bias": None,
    "attention.o_bias": None,
    "attention.fused_qkv": None,
    "attention.qkv_layout": None,
    "attention.last_layer_o_bias": lambda name: name is not None,
    "norm.final": None,
    "norm.gated": lambda found: found is not None,
    "attention.sliding_window": None,
    "attention.window_rule": lambda rule: rule is not None,
    "attention.sinks": None,
    "attention.softcap": None,
    "attention.scale": None,
    "attention.output_gate": None,
    "attention.q_latent_raw": None,
    "attention.logn": lambda logn: logn is not None,
    "attention.layer_logn": lambda found: found is not None,
    "attention.layer_inputs": lambda found: found is not None,
    "attention.layer_kv_convs": lambda found: found is not None,
    "attention.sub_norm": None,
    "attention.output_rotation": None,
    "attention.kv_same": None,
    "attention.o_low_rank": lambda found: "other" if found == "other" else found is not None,
    "attention.low_rank_q": lambda found: "other" if found == "other" else found is not None,
    # the pooled form the rule builds (a dict), or another described ("other")
    "attention.compressed_kv": lambda found: (
        isinstance(found, dict) or ("other" if found else False)
    ),
    "attention.v_norm": None,
    "attention.layer_shapes": None,
    "attention.v_head_dim": lambda size: "other" if size == "other" else size is not None,
    "attention.v_scale": lambda factor: "other" if factor == "other" else factor is not None,
    "attention.sink_rule": lambda rule: "other" if rule == "other" else rule is not None,
    "attention.latent_norm_eps": None,
    "attention.latent_scale": None,
    "attention.k_rope_norm": lambda norm: norm is not None,
    "attention.latent_norms": None,
    "attention.scores_fp32": None,
    "norm.weight_fp32": None,
    "attention.differential": lambda found: found is not None,
    "attention.routed": lambda found: "other" if found == "other" else found is not None,
    "norm.layer_eps": lambda eps: eps is not None,
    "attention.alibi": None,
    "attention.rel_bias": lambda found: "other" if found == "other" else found is not None,
    "attention.key_selection": lambda found: "other" if found == "other" else found is not None,
    "attention.dynamic_mask": lambda found: "other" if found == "other" else found is not None,
    "attention.type_block": lambda found: "other" if found == "other" else found is not None,
    "attention.kv_sharing": lambda found: "other" if found == "other" else found is not None,
    "rope.type": None,
    "rope.partial_rotary": _partial,
    "rope.interleaved": None,
    "rope.reversed": None,
    "rope.nope_layers": None,
    "rope.per_layer_type": None,
    "rope.qk_norm_after_rope": None,
    "rope.ntk_alpha": lambda key: key is not None,
    "rope.fp32": None,
    "rope.fp32_types": lambda types: bool(types),
    "rope.table": lambda path: path is not None,
    "rope.rotated_slice": None,
    "rope.group": lambda label: "other" if label == "other" else label is not None,
    "rope.layer_groups": lambda found: found is not None,
    "rope.layer_bases": lambda found: found is not None,
    "ffn.kind": None,
    "ffn.bias": None,
    "ffn.fused_gate_up": None,
    "ffn.sub_norm": None,
    "ffn.product_keys": lambda found: found is not None,
    "ffn.output_gain": lambda found: found is not None,
    "ffn.activation_sparsity": lambda found: "other" if found == "other" else found is not None,
    "ffn.layer_widths": lambda found: found is not None,
    "ffn.act_fp32": None,
    "ffn.experts_act_fp32": None,
    "ffn.experts_clamp": lambda field: field is not None,
    "moe": _moe_present,
    "moe.router": None,
    "moe.router_bias": None,
    "moe.router_bias_on": None,
    "moe.router_linear_bias": None,
    "moe.router_fp32": None,
    "moe.scores_fp32": None,
    "moe.router_zero_init": None,
    "moe.shared_experts": _shared,
    "moe.shared_size": shared_width,
    "moe.routed_scaling": _scaled,
    "moe.shared_expert_gate": None,
    "moe.shared_combine": None,
    "moe.weights_on": None,
    "moe.expert_layout": None,
    "moe.expert_bias": None,
    "moe.output_norm": lambda name: name is not None,
    "moe.zero_experts": lambda count: count if count == "unknown" else count is not None,
    "moe.projections": lambda found: found is not None,
    "moe.scored_shared": lambda found: found is not None,
    "moe.router_gain": lambda found: found is not None,
    "moe.layer_top_k": lambda found: found is not None,
    "moe.layer_experts": lambda found: found is not None,
    "moe.score_activation": lambda found: found is not None,
    "moe.score_field": lambda found: found is not None,
    "moe.router_mlp": lambda found: found is not None,
    "moe.table_routing": lambda found: found is not None,
    "moe.norm_topk_eps": renorm_eps,
    "moe.norm_topk_floor": lambda found: found is not None,
    "moe.layer_condition": moe_layer_rule,
    "norm.kind": None,
    "norm.placement": None,
    "norm.bias": None,
    "norm.weight": None,
    "norm.first_layer_bare": _any,
    "embedding.scale": None,
    "embedding.positions": None,
    "embedding.init_std": lambda std: std is not None,
    "embedding.norm": None,
    "embedding.module": None,
    "embedding.position_padding": bool,
    "embedding.side_tables": _any,
    "embedding.padding_idx": lambda field: (
        False if not field else field if field == "pad_token_id" else "other"
    ),
    "embedding.extra_rows": bool,
    "head.transform": None,
    "state_dict.transposed_keys": _any,
    "state_dict.fp32_keys": _fp32_kept,
    "state_dict.unused_keys": _any,
    "state_dict.constructor_std": _any,
    "head.logit_softcap": None,
    "head.logit_scale": None,
    "head.vocab_crop": bool,
    "head.bias": None,
    "block.residual_scale": None,
    "block.residual_fp32": None,
    "block.scaled_residual_init": None,
    "block.init_cutoff": lambda cutoff: cutoff is not None,
    "block.short_conv": lambda found: found is not None,
    "block.output_convs": lambda found: found is not None,
    "block.low_rank_branch": lambda found: found is not None,
    "attention.kv_convs": lambda found: found is not None,
    "attention.conv_projection": lambda found: found is not None,
    "attention.l2_qk_norm": lambda found: found is not None,
    "attention.l2_clips": lambda found: "other" if found == "other" else found is not None,
    "block.output_scale": lambda found: found is not None,
    "block.per_layer_input": lambda found: found is not None,
    "block.hyper_connections": lambda found: found is not None,
    "block.altup": lambda found: found is not None,
    "block.attention_residuals": lambda found: found is not None,
    "block.language_adapters": lambda found: found is not None,
    "block.sublayers": lambda found: found is not None,
    "block.recurrent_stacks": lambda found: found is not None,
}

_GQA = ("mha", "gqa", "mqa")  # grouped-query attention covers MHA (kv = heads) and MQA (kv = 1)
_LLAMA_ROPE = ("default", "linear", "dynamic", "yarn", "llama3", "proportional")

_DENSE_COMMON: dict[str, tuple] = {
    "attention.kind": _GQA,
    "attention.qk_norm": ("none",),
    "attention.qk_norm_weight": (True,),  # a q/k norm, if any, learns a scale
    "attention.qk_norm_layers": ("all",),  # ... and runs on every layer
    "attention.qk_norm_on": (None, "both"),  # ... on the queries and the keys alike
    "attention.qk_norm_eps": (False,),  # ... at the block norms' epsilon
    "attention.chunked": (False,),  # no layer attends only inside a chunk
    "attention.fused_qkv": (False,),
    # any row layout: the fused_qkv rule splits in the layout it is given
    "attention.qkv_layout": ("none", "contiguous", "grouped", "interleaved", "blocked"),
    "attention.last_layer_o_bias": (False,),  # no layer's attention output has a bias of its own
    "norm.final": (True,),  # the last layer's output is normed before the head
    "norm.gated": (False,),  # a norm's output goes on as it is, ungated
    "attention.sliding_window": ("none",),
    "attention.window_rule": (False,),  # sliding layers, if any, typed "sliding_attention"
    "attention.sinks": (False,),
    "attention.softcap": (False,),
    "attention.scale": ("default",),
    "attention.output_gate": ("none",),
    "attention.q_latent_raw": (False,),  # a query up-projection reads the normed latent only
    "attention.layer_logn": (False,),  # every attention layer runs one forward
    "attention.layer_inputs": (False,),  # queries, keys and values read one input
    "attention.layer_kv_convs": (False,),  # no key/value filters with per-token taps
    "attention.logn": (False,),  # queries not scaled by position
    "attention.sub_norm": (False,),  # the attention output goes to o_proj as it is
    "attention.output_rotation": ("none",),  # ... unrotated
    "attention.kv_same": (False,),  # the values projected apart from the keys
    "attention.o_low_rank": (False,),  # one output projection
    "attention.low_rank_q": (False,),  # the query projected from the hidden states
    "attention.compressed_kv": (False,),  # the keys are the projected tokens' alone
    "attention.v_norm": ("none",),  # the values go to the attention as projected
    "attention.layer_shapes": ("same",),  # every layer's attention sized alike
    "attention.v_head_dim": (False,),  # value heads as wide as the key heads
    "attention.v_scale": (False,),  # the values go to the attention as projected
    "attention.kv_sharing": (False,),  # every layer projects its own keys and values
    "attention.sink_rule": (False,),  # sinks, if any, on every layer
    "attention.latent_norm_eps": ("default",),  # latent norms at 1e-6 (MLA)
    "attention.latent_scale": ("none",),  # the normed latents go up as they are
    "attention.k_rope_norm": (False,),  # the shared rope key rotated as projected
    # not latent, or both latents normed (the kv latent alone without a query latent)
    "attention.latent_norms": (None, "q_kv", "kv"),
    "attention.scores_fp32": (False,),  # q @ k^T and the softmax in the model's dtype
    "norm.weight_fp32": (False,),  # RMSNorm casts back to the input dtype before the weight
    "ffn.act_fp32": (False,),  # the gated product rounded after the activation and again after
    "ffn.experts_act_fp32": (False,),  # ... in the routed experts too
    "ffn.experts_clamp": (False,),  # the routed experts' branches unclamped
    "attention.differential": (False,),  # one attention map per head
    "attention.routed": (False,),  # dense query and output projections
    "norm.layer_eps": (False,),  # every norm at the config's epsilon
    "attention.alibi": (False,),  # no ALiBi bias on the scores
    "attention.rel_bias": (False,),  # no learned relative position bias on the scores
    "attention.key_selection": (False,),  # every causal key reaches the softmax
    "attention.dynamic_mask": (False,),  # the scores carry no bias computed from the values
    "attention.type_block": (False,),  # causal whatever ids come beside the tokens
    "rope.type": _LLAMA_ROPE,
    "rope.partial_rotary": ("full",),
    "rope.interleaved": (False,),
    "rope.reversed": (False,),  # rotate_half is cat((-x2, x1))
    "rope.nope_layers": (False,),
    "rope.per_layer_type": (False,),
    "rope.qk_norm_after_rope": (False,),  # q/k norms (qwen3) take q/k before the rotation
    "rope.ntk_alpha": (False,),  # a "dynamic" rope is the sequence-length NTK
    "rope.fp32": (False,),  # q/k turn in the model's dtype
    "rope.fp32_types": (False,),  # no layer type's tables in fp32 apart
    "rope.table": (False,),  # cos/sin computed from the positions, no table stored
    "rope.rotated_slice": ("leading",),  # a partial rotary turns a head's leading dims
    "rope.group": (False,),  # rope_parameters flat (or keyed by layer type), read as they are
    "rope.layer_groups": (False,),  # every layer rotates with the same tables
    "rope.layer_bases": (False,),  # one RoPE base, read from rope_parameters
    "ffn.kind": ("swiglu",),
    "ffn.bias": (False,),
    "ffn.fused_gate_up": (False,),
    "ffn.sub_norm": (False,),  # the inner activations go to the down projection as they are
    "ffn.product_keys": (False,),  # no switch puts product-key experts in the MLP's place
    "ffn.output_gain": (False,),  # the MLP's output is its down projection's
    "ffn.activation_sparsity": (False,),  # the gate goes to its activation as projected
    "ffn.layer_widths": (False,),  # every layer's FFN as wide as intermediate_size
    "moe": (False,),
    "norm.kind": ("rmsnorm",),
    "norm.placement": ("pre",),
    "norm.bias": (False,),
    "norm.weight": (True,),  # every norm scales by a learned weight
    "norm.first_layer_bare": (False,),  # layer 0 norms its sublayers' inputs like the rest
    "embedding.scale": (False,),
    "embedding.positions": ("none",),  # RoPE (or nothing) in the attention, no absolute table
    "embedding.init_std": (False,),  # embeddings start at initializer_range like the rest
    "embedding.norm": (False,),  # embeddings reach the first layer as they are
    "embedding.module": (False,),  # the tables are the backbone's own, no embeddings module
    "embedding.position_padding": (False,),  # default positions are 0..n-1
    "embedding.side_tables": (False,),  # no tables beside the token table concatenated to it
    "embedding.padding_idx": ("pad_token_id",),  # the word table's padding row (HF's)
    "embedding.extra_rows": (False,),  # the word table as tall as the head is wide
    "head.transform": (False,),  # the vocabulary projection takes the final hidden states
    "state_dict.transposed_keys": (False,),  # nn.Linear weights stored [out, in]
    "state_dict.fp32_keys": (False,),  # every parameter in the model's dtype
    "state_dict.unused_keys": (False,),  # the logits read every checkpoint tensor
    "state_dict.constructor_std": (False,),  # HF's _init_weights re-draws every tensor
    "head.logit_softcap": (False,),
    "head.logit_scale": (False,),
    "head.vocab_crop": (False,),  # the logits as wide as the head
    "head.bias": (False,),
    "block.residual_scale": (False,),
    "block.residual_fp32": (False,),  # the residual stream in the model's dtype
    "block.scaled_residual_init": (False,),
    "block.init_cutoff": (False,),  # normal inits are not truncated
    "block.short_conv": (False,),  # every layer's token mixer is attention
    "block.output_convs": (False,),  # sublayer outputs join the residual as computed
    "block.low_rank_branch": (False,),  # the attention's residual sum is the stream and its output
    "attention.kv_convs": (False,),  # keys and values are their projections' outputs
    "attention.conv_projection": (False,),  # q, k and v are projections of the current token
    "attention.l2_qk_norm": (False,),  # no fixed-norm rescaling of queries and keys
    "attention.l2_clips": (False,),  # head vectors handed on at whatever norm they have
    "block.output_scale": (False,),  # a layer's output leaves it as summed
    "block.per_layer_input": (False,),  # a layer reads the hidden states alone
    "block.hyper_connections": (False,),  # one residual stream, plain adds
    "block.altup": (False,),  # one residual stream, not predicted and corrected
    "block.attention_residuals": (False,),  # each sublayer reads the stream as it is
    "block.language_adapters": (False,),  # no per-language weights in a layer
    "block.sublayers": (False,),  # one attention and one feed-forward per layer
    "block.recurrent_stacks": (False,),  # one stack of layers, run once
}
# What an MoE block grafted onto a dense reference starts as (the `add_moe` transform): the
# dense rows list these too, so a target's other MoE features show up as deltas.
_MOE_BASE: dict[str, tuple] = {
    "moe.router": ("softmax_topk",),
    "moe.router_bias": (False,),
    "moe.router_bias_on": ("scores",),  # a selection bias, if any, is added to the scores
    "moe.router_linear_bias": (False,),
    "moe.router_fp32": (False,),  # the router Linear runs in the model's dtype
    "moe.scores_fp32": (True,),  # the router's scores are taken in fp32
    "moe.router_zero_init": (False,),  # the router weight starts normal(0, std)
    "moe.shared_experts": ("no",),
    "moe.shared_expert_gate": (False,),
    "moe.shared_combine": ("sum",),  # a shared expert, if any, is added to the routed output
    "moe.weights_on": ("output",),  # the routing weights scale the experts' outputs
    "moe.output_norm": (False,),  # the block's output reaches the residual add unnormed
    "moe.routed_scaling": ("no",),
    "moe.expert_layout": ("per_expert",),
    "moe.expert_bias": (False,),
    "moe.zero_experts": (False,),  # every expert the router picks computes
    "moe.projections": (False,),  # the experts' own module computes the gated product
    "moe.scored_shared": (False,),  # the router's rows score the routed experts only
    "moe.router_gain": (False,),  # the routing weights carry no learned gain
    "moe.layer_top_k": (False,),  # one top-k, an int, for every layer
    "moe.layer_experts": (False,),  # one expert count, an int, for every layer
    "moe.score_activation": (False,),  # scored by the router's softmax or sigmoid itself
    "moe.score_field": (False,),  # the activation the code names, not a config field
    "moe.router_mlp": (False,),  # the router's logits are one projection of the input
    "moe.table_routing": (False,),  # every router picks the top-k of its scores
    "moe.norm_topk_eps": ("none",),  # a renormalisation, if any, divides by the bare sum
    "moe.norm_topk_floor": (False,),  # ... never clamped to a lower bound first
}
_DENSE_COMMON.update(_MOE_BASE)

_MOE_COMMON: dict[str, tuple] = {"moe": (True,), **_MOE_BASE}

REFERENCES: dict[str, dict[str, tuple]] = {
    # dense GQA, SwiGLU, RMSNorm pre-norm, RoPE incl. scaling; attention_bias switches
    # q/k/v/o biases together, mlp_bias gate/up/down
    "llama": {
        **_DENSE_COMMON,
        "attention.qkv_bias": (False, True),
        "attention.o_bias": ("same_as_qkv",),
        "ffn.bias": (False, True),
    },
    # llama + bias on q/k/v (not o); sliding window where the config enables it
    "qwen2": {
        **_DENSE_COMMON,
        "attention.qkv_bias": (True,),
        "attention.o_bias": (False,),
        "attention.sliding_window": ("none", "all", "pattern"),
    },
    # llama + per-head RMSNorm on q and k; attention_bias switches q/k/v/o biases together;
    # sliding window from layer_types where the config enables it
    "qwen3": {
        **_DENSE_COMMON,
        "attention.qkv_bias": (False, True),
        "attention.o_bias": ("same_as_qkv",),
        "attention.qk_norm": ("per_head",),
        "attention.sliding_window": ("none", "all", "pattern"),
    },
    # qwen3 + MoE: softmax top-k router, optional renormalisation, per-expert checkpoint keys
    "qwen3_moe": {
        **_DENSE_COMMON,
        **_MOE_COMMON,
        "attention.qkv_bias": (False,),
        "attention.o_bias": (False,),
        "attention.qk_norm": ("per_head",),
        "attention.sliding_window": ("none", "all"),  # every layer, when configured
        "ffn.fused_gate_up": (False,),  # dense layers separate; fused only as experts
        "moe.layer_condition": ("all", "sparse_step"),
    },
    # MLA (q/kv LoRA, rope/nope split, interleaved rope, yarn with mscale); sigmoid router with
    # correction bias, grouped top-k, routed scaling, shared experts, dense first layers
    "deepseek_v3": {
        **_DENSE_COMMON,
        **_MOE_COMMON,
        "attention.kind": ("mla",),
        "attention.qkv_bias": (False,),
        "attention.o_bias": (False,),
        "rope.type": ("default", "yarn"),
        "rope.partial_rotary": ("partial", "full"),
        "rope.interleaved": (True, False),
        "moe.router": ("grouped_topk", "sigmoid_topk"),
        "moe.router_bias": (True, False),
        # its Gate projects in fp32 (router_half_logits projects in the model's dtype)
        "moe.router_fp32": (True,),
        # its Gate scores the logits in their dtype: fp32 as it projects; where the logits
        # are half, router_half_logits upcasts them for the scores or not as HF does
        "moe.scores_fp32": (True, False),
        # its Gate keeps the correction bias fp32 itself (as HF's strict fp32 list does)
        "state_dict.fp32_keys": (False, "router_bias"),
        "moe.shared_experts": ("yes",),  # one always-on shared expert
        "moe.shared_size": ("per_expert",),  # n_shared_experts x moe_intermediate_size
        "moe.routed_scaling": ("yes", "no"),
        "moe.layer_condition": ("all", "first_k"),
        "moe.norm_topk_eps": ("1e-20",),  # its Gate divides by the sum + 1e-20
    },
}

# Tie-break order (simplest reference first).
ORDER = ("llama", "qwen2", "qwen3", "qwen3_moe", "deepseek_v3")


def compared_value(features: Features, name: str):
    if name == "moe":
        return _moe_present(features)
    project = COMPARED.get(name)
    value = features.get(name)
    if name == "ffn.fused_gate_up" and features.get("ffn.source") == "experts":
        return False  # routed experts' fusion is their layout (moe.expert_layout), not the FFN's
    return project(value) if callable(project) else value


def shown_value(features: Features, name: str, described: Features | None = None):
    """The value a text cites for a compared feature: where the comparison categorises it
    (`moe.norm_topk_eps` 1e-06 compared as "other"), the analysed number or expression the
    code uses, read under the real config (`described`); the category where there is none
    to read (no such analysis; a finding that is a structure, such as a dict or a list of
    keys; an absent value) or where the real config falls in another category than the toy
    `features` (whose values, toy sizes, are no fact about the target)."""
    value = compared_value(features, name)
    if not callable(COMPARED.get(name)) or described is None:
        return value
    analysed = described.get(name)
    if isinstance(analysed, bool) or not isinstance(analysed, int | float | str) or analysed == "":
        return value
    return analysed if compared_value(described, name) == value else value


def applies(features: Features, name: str) -> bool:
    """Whether the compared feature `name` says anything of the target: an MoE detail of a
    target without MoE does not (the `moe` presence row covers it)."""
    return not (name.startswith("moe.") and features.moe is None)


def accepts(row: dict[str, tuple], features: Features, name: str) -> bool:
    allowed = row.get(name, ANY)
    if allowed is ANY or not applies(features, name):
        return True
    value = compared_value(features, name)
    if value == "unknown":
        return True  # not a known difference
    if "same_as_qkv" in allowed:
        return value == features.attention.qkv_bias
    return value in allowed


def undetermined(features: Features) -> list[str]:
    """Compared features whose value is unknown: neither a match nor a known difference."""
    out = []
    for name in COMPARED:
        if applies(features, name) and compared_value(features, name) == "unknown":
            out.append(name)
    return out


def delta(features: Features, name: str) -> list[str]:
    row = REFERENCES[name]
    return [f for f in COMPARED if not accepts(row, features, f)]


def closest(features: Features, realised=None) -> tuple[str, list[str]]:
    """Fewest deltas that no rule realises (`realised(features, name)`: a rule takes the
    target's value; without it every delta counts alike), then fewest deltas; ties go to a
    reference with the same MoE-ness (the MoE machinery is the larger piece to reuse), then
    to the first in ORDER. A reference a delta of which nothing realises is no place to
    start (deepseek_v3's latent attention for a GQA target)."""
    scored = []
    for rank, name in enumerate(ORDER):
        d = delta(features, name)
        stuck = sum(1 for f in d if realised is not None and not realised(features, f))
        same_moe = "moe" not in d
        scored.append((stuck, len(d), 0 if same_moe else 1, rank, name, d))
    scored.sort(key=lambda s: s[:4])
    *_, name, d = scored[0]
    return name, d
