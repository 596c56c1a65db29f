"""`Features`: what `codegen analyze` found, as one typed, frozen, JSON-serialisable value.

This is the contract between `analyze` and `scaffold` (issue 4): a plan is chosen from these
fields, so every field has a fixed vocabulary (listed beside it) and every value carries its
evidence in `Features.evidence` under the field's dotted name (`"attention.qk_norm"` ->
`"modeling_qwen3.py:160"` or `"config:rope_parameters.rope_type"`).

A value that could not be determined is the string `"unknown"` (never a guess), with the
evidence saying what was not understood.

Conventions
-----------
* Values describe the model *as configured*: conditional code paths (`if config.x:`,
  `A if cond else B`, `layer_types[i]`) are resolved with the config (config.json when given,
  else the config class defaults).
* Multiplicative scales (`embedding.scale`, `head.logit_scale`, `block.residual_scale`) are
  reported when the code applies them, whatever the configured value (the value is in the
  evidence), because a scaffold must carry them.
* Checkpoint facts (`moe.expert_layout`, `state_dict.checkpoint_*_keys`, and `ffn.*` when
  the FFN described is the experts') describe the keys on disk: read from the checkpoint's
  `model.safetensors.index.json` when there is one, else module keys after transformers'
  checkpoint conversion for installed model types (evidence `state_dict.checkpoint`). Remote-
  code models get no conversion (transformers skips custom code), so their disk keys are the
  module keys.
* `ffn` describes the dense MLP when any layer has one, else a shared expert, else the experts
  (`ffn.source` says which); `moe` is None for dense models.
* `reference.delta` lists known differences only; compared features that are "unknown" are in
  `reference.unknown`. `unsupported` = values outside `support.SUPPORTED` (what the references
  implement) plus findings no field represents (attention output gates, ALiBi, q/k/v clipping,
  absolute position embeddings), each with evidence.
* The dataclasses are frozen; the few dict-valued fields (`evidence`, `rope.parameters`) must
  be treated as read-only too.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from codegen.analyze.switches import Switch

UNKNOWN = "unknown"

# Field vocabularies (documentation and validation; "unknown" is always allowed).
VOCAB: dict[str, tuple] = {
    "category": ("decoder", "hybrid", "encoder", "multimodal", "other"),
    "attention.kind": ("mha", "gqa", "mqa", "mla"),
    "attention.qk_norm": ("none", "per_head", "full"),
    "attention.qk_norm_layers": ("all", "rope"),
    "attention.qk_norm_on": ("both", "keys", "queries"),
    "attention.v_norm": ("none", "per_head", "other"),
    "attention.output_rotation": ("none", "inverse", "forward"),
    "attention.layer_shapes": ("same", "per_layer_config", "latent", "rule", "other"),
    "attention.latent_norm_eps": ("default", "norm_eps", "other"),
    "attention.latent_norms": ("q_kv", "kv", "q", "none"),
    "attention.latent_scale": ("none", "q", "kv", "q_kv", "other"),
    "attention.qkv_layout": ("contiguous", "grouped", "interleaved", "blocked", "none"),
    "attention.sliding_window": ("none", "all", "pattern"),
    "attention.scale": ("default", "custom", "none"),
    "attention.output_gate": ("none", "sigmoid", "softplus", "sigmoid_fused_q", "other"),
    "rope.type": (
        "default",
        "linear",
        "dynamic",
        "yarn",
        "llama3",
        "longrope",
        "proportional",
        "none",
        "other",
    ),
    "rope.rotated_slice": ("leading", "trailing"),
    "ffn.kind": (
        "swiglu",
        "geglu",
        "clamped_swiglu",
        "clamped_silu_glu",
        "softcapped_swiglu",
        "gelu_mlp",
        "relu2",
        "mlp",
        "glu",
        "xielu_mlp",
        "other",
    ),
    "ffn.gate_up_layout": ("separate", "concat", "interleaved", "none"),
    "moe.router": ("softmax_topk", "sigmoid_topk", "grouped_topk", "sparsemixer", "other"),
    "moe.score_func": ("softmax", "sigmoid", "other"),
    "moe.router_bias_on": ("scores", "logits"),
    "moe.shared_combine": ("sum", "average"),
    "moe.weights_on": ("output", "input"),
    "moe.routed_scaling_on": ("weights", "output"),
    "moe.expert_layout": ("per_expert", "fused", "flat"),
    "moe.module_layout": ("per_expert", "fused"),
    "norm.kind": ("rmsnorm", "rmsnorm_offset", "layernorm", "layernorm_offset"),
    "norm.placement": ("pre", "post", "post_residual", "sandwich", "parallel"),
    "embedding.positions": ("none", "learned", "sinusoidal", "sinusoidal_pow", "sinusoidal_other"),
    "reference.closest": ("llama", "qwen2", "qwen3", "qwen3_moe", "deepseek_v3"),
    # "scaled_stream": the residual operand itself is scaled too (not only the sublayer's);
    # "depth_scaled": both by numbers of the depth, x = out / sqrt(k) + x * sqrt((k - 1) / k);
    # "learned_stream": the stream times a learned per-channel vector, x = w * x + out;
    # "affine": both operands shifted and scaled per channel, x = (out + b) * s + (x + c) * t
    "embedding.scale": (True, False, "learned_affine"),
    "block.residual_scale": (
        True,
        False,
        "scaled_stream",
        "depth_scaled",
        "learned_stream",
        "affine",
    ),
}


@dataclass(frozen=True)
class Attention:
    kind: str = UNKNOWN  # mha | gqa | mqa | mla
    qk_norm: str = UNKNOWN  # none | per_head (norm over head_dim) | full (over all heads)
    qk_norm_weight: bool = True  # the q/k norm learns a scale (Llama4's L2 norm does not)
    qk_norm_layers: str = "all"  # all | rope (only the layers that apply RoPE, Llama4)
    # which of q and k that norm is on: both | keys (DeepSeek-V4's kv_norm; its latent query
    # normed by attention.low_rank_q's own norm) | queries; None without a q/k norm
    qk_norm_on: str | None = None
    # the q/k norms' epsilon where it is not the block norms' (codegen/analyze/qk_norm_eps.py):
    # {"field": the config field or None, "value": its value}; "other" where it is not read;
    # None where it is the block norms'
    qk_norm_eps: dict | str | None = None
    # the config field of the chunk size when "chunked_attention" layers attend only inside
    # their chunk (Llama4's attention_chunk_size), else None
    chunked: str | None = None
    qkv_bias: bool | str = UNKNOWN
    o_bias: bool | str = UNKNOWN
    fused_qkv: bool | str = UNKNOWN  # one projection produces q, k and v
    # rows of the fused projection: contiguous (all q, then k, then v) | grouped (per kv
    # head: its q heads, then k, then v) | interleaved (per head: q, k, v) | none (not fused)
    qkv_layout: str = UNKNOWN
    # `blocked` layout: the rows are qkv_blocks blocks, each q, k and v in qkv_order
    qkv_blocks: int = 1
    qkv_order: str = "qkv"
    # the attention attribute of an output bias only the last layer has, which its layer adds
    # to the attention output (gpt_neox_japanese's dense_bias), else None
    last_layer_o_bias: str | None = None
    sliding_window: str = UNKNOWN  # none | all | pattern (per-layer mix)
    # learned per-head sink logits; "per_token": each token's own, projected from its input
    # (Inkling-2's sink_proj)
    sinks: bool | str = UNKNOWN
    # per-token sinks: the attention's projection (one output per head) of its input that
    # gives them, "other" for sinks from elsewhere, None without per-token sinks
    sink_projection: str | None = None
    softcap: bool | str = UNKNOWN  # tanh soft-capping of attention scores
    scale: str = UNKNOWN  # default (head_dim ** -0.5) | custom | none (scores not scaled)
    num_heads: int | None = None
    num_kv_heads: int | None = None
    head_dim: int | None = None
    # the config fields the representative attention reads its head count, key/value head
    # count and head width from, passed as they are (`self.num_heads = config.n_heads`,
    # `nn.Linear(d, config.n_heads * self.head_dim)`); None where no one field is read so
    # (a derived or chosen count): codegen/analyze/size_fields.py
    heads_field: str | None = None
    kv_heads_field: str | None = None
    head_dim_field: str | None = None
    window: int | None = None  # sliding window size, when any layer slides
    # a window cut into the attention's own mask buffer on the layers a config setting marks
    # (GPT-Neo's "local"): which layers, over `hf_config` and `i`, and the window's config
    # field (`hf_config.window_size`); None where the window is the kernel's `sliding_window`
    window_rule: str | None = None
    window_field: str | None = None
    # the attention output times sigmoid(gate) before the output projection: none |
    # sigmoid (the gate a projection of its own) | sigmoid_fused_q (chunked out of q) | other
    output_gate: str = UNKNOWN
    gate_proj: str | None = None  # the gate projection's attribute in the attention module
    gate_bias: bool | str = False  # whether that projection has a bias (under this config)
    gate_head_bias: str | None = None  # a per-head parameter added to the gate, by name
    # one gate per head (the projection's outputs), broadcast over the head's features
    gate_per_head: bool = False
    # sigmoid_fused_q: which rows of the query projection are the gate's (per_head_q_gate |
    # per_head_gate_q | concatenated_q_gate | concatenated_gate_q; codegen/analyze/fused_q_gate.py)
    gate_layout: str | None = None
    # the gate's sigmoid takes its input in fp32 (a gate cut from the query projection, or
    # a projection of its own: Inkling-2's sigmoid(gate.float()))
    gate_fp32: bool = False
    # the query up-projection reads cat([norm(latent), latent]) (A.X-K2), not norm(latent)
    q_latent_raw: bool = False
    layer_types: tuple[str, ...] = ()  # per layer: full | sliding | <mixer class> (hybrids)
    # queries times 1 + beta * log(1 + floor((pos + offset) / period)) (Ministral3, Llama4):
    # {"beta": <hf_config expression>, "period": <hf_config expression>, "offset": float}
    logn: dict | None = None
    # a second attention forward on some layers (Inkling-2's full layers), the first one's
    # with its queries (and relative states) times 1 + alpha * log(max((pos + offset) /
    # floor, 1)): {"layers", "alpha", "floor", "offset", "scaled"}; see
    # codegen/analyze/layer_attention.py
    layer_logn: dict | None = None
    # that second forward's keys and values read inputs of their own, the layer's input each
    # through a norm of its own (Inkling-2's full layers): {"norms": {"q"|"k"|"v": <HF norm
    # attribute>}, "reads": {"k"|"v": (<HF projection attributes>,)}}; layer_attention.py
    layer_inputs: dict | None = None
    # that second forward's key/value filters take per-token taps (fixed taps plus a linear
    # of the projection's input, one set per group of channels) in place of the first's
    # residual ones: {"convs": ((<attr>, <projection>),), "static", "proj", "layout",
    # "kernel", "kernel_field", "groups", "divisor", "fp32"}; see analyze/dynamic_convs.py
    layer_kv_convs: dict | None = None
    sub_norm: bool | str = False  # the attention output normed before the output projection
    # the attention output's heads rotated by the query's rotary factors before the output
    # projection: none | inverse (the conjugate rotation, sin negated: DeepSeek-V4 turns back
    # the rotation its keys-as-values carry) | forward (sin as the query's)
    output_rotation: str = "none"
    # one tensor handed to the attention as both its keys and its values (DeepSeek-V4's
    # kv_proj): no value projection of its own
    kv_same: bool = False
    # the output projected twice, each group of heads by a block of its own first, then
    # mixed to the hidden size (DeepSeek-V4's grouped o_a_proj -> o_b_proj): {"a", "b": the
    # HF attributes, "groups", "rank": the config fields of the group count and each group's
    # width}; "other" for another two-stage form; None for one output projection
    o_low_rank: dict | str | None = None
    # the query up-projected from a normed latent, the keys and values not latent
    # (DeepSeek-V4's q_a_proj -> q_a_norm -> q_b_proj -> weightless per-head q_b_norm): {"a",
    # "a_norm", "b", "b_norm": the HF attributes, "rank", "eps": the config fields of the
    # latent width and both norms' eps}; "other" for another such form; None otherwise
    low_rank_q: dict | str | None = None
    # keys and values extended by entries a module of the attention pools from windows of
    # tokens (DeepSeek-V4's heavily compressed layers): {"module", "kv", "gate", "bias",
    # "norm": the HF attributes, "rate": the window's config read over `hf_config`, "eps": the
    # norm's eps field, "group": the rope_parameters label the entries rotate with, "kind":
    # the layer type of the layers that build it, "layers"}; another form (an indexer picking
    # entries, several compressors) described in a line; None without
    compressed_kv: dict | str | None = None
    # a norm on the values before the attention (gemma4's v_norm): none | per_head (over
    # head_dim, after the view to heads) | other; v_norm_weight: it learns a scale
    v_norm: str = "none"
    v_norm_weight: bool = True
    # the layers' projections sized alike (same) or not: per_layer_config (head size and
    # counts from the config's per-layer overrides) | latent (MLA heads, ranks and head parts
    # from the per-layer overrides) | rule (computed from the config and the layer index:
    # layer_sizes) | other
    layer_shapes: str = "same"
    # rule: the sizes that differ by layer, each over `hf_config` and the layer index `i`
    # ({"n_kv_heads": "(hf_config.num_key_value_heads * 2 if ... else ...)"}), else None
    layer_sizes: dict | None = None
    # value heads of a size of their own beside the q/k heads (MiMo-V2-Flash's v_head_dim),
    # over `hf_config` ("other": not restated); None where v's heads are the q/k head size
    # (or under MLA)
    v_head_dim: str | None = None
    # the values times a factor of the config's before the attention (MiMo-V2-Flash's
    # attention_value_scale, None -> 1.0), over `hf_config` ("other": not restated); None
    # where v goes as projected
    v_scale: str | None = None
    # sinks on some layers only: the condition for layer `i` to have them, over `hf_config`
    # (MiMo-V2-Flash's sliding layers; "other": not restated); None where every layer has
    # them, or none does
    sink_rule: str | None = None
    # latent attention (codegen/analyze/latent_extras.py): the q/kv latent norms' epsilon
    # (default 1e-6 | norm_eps: rms_norm_eps | other); the latents scaled by sqrt(hidden /
    # width) before their up-projection (none | q | kv | q_kv | other); an RMSNorm on the
    # shared rope key before its rotation ({"module", "eps": default | norm_eps}, or None)
    latent_norm_eps: str = "default"
    # which latents of latent attention are normed before their up-projection: q_kv (both),
    # kv (no query latent: the query projected from the hidden states), q, none; None where
    # the attention is not latent
    latent_norms: str | None = None
    latent_scale: str = "none"
    k_rope_norm: dict | None = None
    # q and k taken to fp32 before q @ k^T (the eager attention function HF hands the
    # interface, flint): scores and softmax in fp32, the probabilities cast to v's dtype
    scores_fp32: bool = False
    # differential attention (DiffLlama): {"lambda_init": <expression of layer_id>,
    # "lambdas": (q1, k1, q2, k2 parameter names)}; see codegen/analyze/differential.py
    differential: dict | None = None
    # a mixture of attention heads (JetMoE): {"router", "query", "output", "kv", "bias"},
    # paths in the attention module, "other" in a form no rule builds; see
    # codegen/analyze/routed_attention.py
    routed: dict | str | None = None
    # ALiBi: each head adds slope * key position to its scores (no rotary), the slopes
    # 2 ** (-8 k / n) of Press et al. (mpt, bloom)
    alibi: bool = False
    # a learned relative position bias on the scores (inkling): a projection of the input
    # mixes the rows of a width x extent table into one bias per backward distance, read at
    # the clamped distance and zero beyond the extent: {"states", "table", "width",
    # "extent": expressions over hf_config and i}, "other" for another shape, None without
    # one; see codegen/analyze/relative_bias.py
    rel_bias: dict | str | None = None
    # causal depthwise convolutions added back to their input, applied to projections of the
    # attention (inkling's keys and values, before the k norm): {"convs": ((module, HF
    # projection), ...), "conv", "kernel", "kernel_field", "fp32", "divisor": the expression
    # over `kernel` the sum is divided by (Inkling-2's math.sqrt(kernel + 1)) or None}; see
    # codegen/analyze/residual_convs.py
    kv_convs: dict | None = None
    # queries and keys projected together through a depthwise then a per-head convolution
    # over the sequence, each with a mix of the two projections added, and values half from
    # the current token's projection, half from the previous one's (zaya's CCA): {"module",
    # "q", "k", "value", "delayed", "depthwise", "grouped", "kernels", "kernel_fields",
    # "conv_bias", "bias"}; see codegen/analyze/conv_projection.py
    conv_projection: dict | None = None
    # queries and keys rescaled to a fixed L2 norm ("scale": "head_dim" for sqrt(head_dim),
    # or a number), the keys then scaled by a learned vector per kv head ("key_scale"), in a
    # module of the attention's ("module"); see codegen/analyze/l2_qk_norm.py
    l2_qk_norm: dict | None = None
    # head vectors of the queries, keys or relative-bias states scaled down to a maximum L2
    # norm, some after a learned scale per head and channel (inkling2): {"q" | "k" | "rel":
    # {"module", "scale", "threshold", "eps", "fp32"}}, "other" for another shape, None
    # without; see codegen/analyze/l2_clips.py
    l2_clips: dict | str | None = None
    # a per-key bias on the scores from the attention's own values, exp(A * softplus(proj(v)))
    # per kv head, causally masked, the largest `window` kept per query row once the keys
    # outnumber the window (Doge's dynamic mask): {"proj", "scale", "window": config field or
    # None}, "other" for another shape, None without one; see codegen/analyze/dynamic_mask.py
    dynamic_mask: dict | str | None = None
    # token types the backbone's causal mask opens a bidirectional block for: a config
    # switch on, tokens of one type given in an optional id input see each other both ways
    # (HRM-Text's prefix LM): {"input", "type", "field", "on"}, "other" for another use
    # of the mask builder's block ids, None without; see codegen/analyze/type_block.py
    type_block: dict | str | None = None
    # keys chosen per query by a learned scorer of the attention's own before the softmax
    # (DeepSeek sparse attention's indexer): the scorer's names ({"module", "q_proj",
    # "k_proj", "k_norm", "weights_proj", "interleaved"}), "other" for a scorer of another
    # shape, None without one; see codegen/analyze/key_selection.py
    key_selection: dict | str | None = None
    # keys and values the last layers take from an earlier layer of their kind instead of
    # projecting their own (gemma3n / gemma4): {"field": the config field counting those
    # layers, "input": the forward's input carrying them}, "other" in another form, else
    # None; see codegen/analyze/kv_sharing.py
    kv_sharing: dict | str | None = None


@dataclass(frozen=True)
class Rope:
    type: str = UNKNOWN  # default | linear | ... | proportional | none | other (VALUES)
    partial_rotary: float | str = UNKNOWN  # fraction of the q/k head dim that is rotated
    interleaved: bool | str = UNKNOWN  # pairs (x0, x1), (x2, x3) rather than halves
    # the halves turn by -angle: rotate_half returns cat((x2, -x1)), not cat((-x2, x1)) (nanochat)
    reversed: bool = False
    nope_layers: bool | str = UNKNOWN  # some attention layers apply no RoPE
    # when nope_layers: the condition for layer `i` to apply RoPE, over `hf_config` (None: the
    # source's condition could not be restated over the config)
    nope_rule: str | None = None
    # rope_parameters nested per layer type ({"full_attention": {...}, ...}): one table each
    per_layer_type: bool = False
    theta: float | None = None
    parameters: dict = field(default_factory=dict)  # rope_parameters (per layer type if nested)
    # the q/k norms take the rotated q/k (HunYuan), not the projections before RoPE (Qwen3)
    qk_norm_after_rope: bool | str = False
    # the rope_parameters key (HunYuan's "alpha") that stretches the base once by
    # key ** (d / (d - 2)) when a "dynamic" rope sets it, instead of dynamic NTK
    ntk_alpha: str | None = None
    # the rotation upcasts q/k and turns them in fp32, casting back once (cohere)
    fp32: bool = False
    # ... because the cos/sin tables come in fp32, never rounded to the model's dtype (beam)
    tables_fp32: bool = False
    # ... only on the layers of these types, whose tables the backbone computes from fp32
    # inputs (dots3's "indexed_attention"); the other layers' tables in the model's dtype
    fp32_types: tuple[str, ...] = ()
    # the HF module path of a position table the checkpoint stores, whose rows [sin | cos]
    # the stack looks up by sequence index and the rotation reads (RoFormer's
    # `embed_positions`): sin and cos are read, not computed from positions; else None
    table: str | None = None
    # which dims of a partially rotated head turn: "leading" ([rotated | passed], llama /
    # glm4) or "trailing" ([passed | rotated]: the rotation glues the passed slice in front,
    # DeepSeek-V4's [nope | rope] heads)
    rotated_slice: str = "leading"
    # the rope_parameters label (not a layer type) whose parameters every attention layer's
    # tables are built from, where the config groups them under such labels (DeepSeek-V4's
    # "main" / "compress", picked by the attention); "other" where the layers pick several or
    # the pick is not read; None for flat (or per-layer-type) parameters
    group: str | None = None
    # where the attention layers pick two of those labels, each layer by a test over the
    # config and its index (DeepSeek-V4's sliding layers "main", its compressed ones
    # "compress"): {"other": the label the first layer does not pick, "test": the test
    # over `hf_config` and the layer index `i` of the layers that pick it}; `group` is then
    # the first layer's label. None where every layer picks `group`
    layer_groups: dict | None = None
    # a rotary base read per layer from a config list (one table per distinct entry, each
    # layer rotating with its own): {"field": the list, "base": the config value each entry
    # replaces, `rope_parameters.rope_theta`}; None where one base serves every layer
    layer_bases: dict | None = None


@dataclass(frozen=True)
class Ffn:
    # swiglu | geglu | clamped_swiglu | softcapped_swiglu | gelu_mlp | relu2 | mlp | glu
    # (gated, another activation: bitnet's relu2) | xielu_mlp | other
    kind: str = UNKNOWN
    activation: str = UNKNOWN  # activation name as configured (silu, gelu_pytorch_tanh...)
    # the config field that activation is looked up by (`ACT2FN[config.<field>]`,
    # `get_activation(config.<field>)`: falcon's "activation"), None where the code names it
    activation_field: str | None = None
    # the field names an activation of HF's ACT2FN (`ACT2FN[...]`, `get_activation(...)`), so
    # any of its names is a config the class accepts; False for a model-local table
    # (openai-gpt's `ACT_FNS[config.afn]`, whose "gelu" is gelu_new) or a named function
    activation_by_name: bool = False
    bias: bool | str = UNKNOWN
    fused_gate_up: bool | str = UNKNOWN  # gate and up in one tensor (as stored on disk)
    gate_up_layout: str = UNKNOWN  # separate | concat | interleaved | none (ungated)
    intermediate_size: int | None = None
    # the config field that width is, passed as it is to the dense MLP's projection
    # (`nn.Linear(d, config.mlp_width)`), else None (a multiple, a conditional, experts)
    width_field: str | None = None
    source: str = ""  # which module was described: dense | shared_expert | experts
    # (canonical projection, the layer's module path for it) of an ungated two-layer FFN
    # whose names no synonym pairs (CTRL's ("up_proj", "ffn.0"), ("down_proj", "ffn.2"))
    block_names: tuple[tuple[str, str], ...] = ()
    sub_norm: bool | str = False  # a norm on the inner activations, before the down projection
    # the dense (or shared) MLP's gated product taken in fp32 and cast back once:
    # (act(gate.float()) * up.float()).to(dtype) (beam); the routed experts' alike
    act_fp32: bool = False
    experts_act_fp32: bool = False
    # the MoE's routed experts' / shared expert's activation where HF looks it up in ACT2FN
    # by a config field (`self.act_fn = ACT2FN[config.hidden_act]`): {"activation": its name
    # in the config, "field"}; None where that part hard-codes it, tabulates it, or is absent
    experts_activation: dict | None = None
    shared_activation: dict | None = None
    # the config field bounding the routed experts' gate (from above) and up (both ways)
    # before silu(gate) * up (HY-V4 beside an unclamped dense MLP, DeepSeek-V4 beside a clamped
    # shared one), else None
    experts_clamp: str | None = None
    # the config field bounding the dense (or shared) MLP's gate from above and its up both
    # ways before silu(gate) * up (DeepSeek-V4's swiglu_limit) where ffn.kind is
    # clamped_silu_glu, else None
    clamp: str | None = None
    # the MoE's shared expert is a class of its own whose SwiGLU is not clamped, beside a
    # dense MLP whose is (ffn.clamp): built unclamped
    shared_unclamped: bool = False
    # softcapped_swiglu's caps: g * sigmoid(g) with the linear factor g and up each through
    # a tanh softcap, cap * tanh(x / cap), the sigmoid seeing the raw gate (inkling2):
    # {"gate": config read of the gate's cap, "up": of up's, "fp32": both inputs upcast
    # first and the product cast back once}, else None; see detect_ffn.softcaps
    softcaps: dict | None = None
    # product-key experts a bool switch puts in place of the MLP (Doge's CDMoE): {"field",
    # "router", "down", "up", "w1", "w3", "w2", "experts", "top_k"}, else None; see
    # codegen/analyze/product_keys.py
    product_keys: dict | None = None
    # the dense MLP's output times a learned one-element parameter of its own (inkling's
    # global_scale: starts at one, trained): its attribute, else None; see
    # codegen/analyze/scalar_gains.py
    output_gain: str | None = None
    # the gate thresholded before its activation at mean + k * std of each row, k the standard
    # normal's quantile of a target sparsity (gemma3n): {"field": the config field holding it,
    # "per_layer": one value per layer}, else None; see codegen/analyze/ffn_sparsity.py
    activation_sparsity: dict | None = None
    # the config list holding each layer's inner width (`intermediate_size[layer_idx]`:
    # gemma3n), else None; see codegen/analyze/ffn_widths.py
    layer_widths: str | None = None


@dataclass(frozen=True)
class Moe:
    num_experts: int | str = UNKNOWN
    top_k: int | str = UNKNOWN
    router: str = UNKNOWN  # softmax_topk | sigmoid_topk | grouped_topk | other
    score_func: str = UNKNOWN  # softmax | sigmoid | other
    # the scores another elementwise activation of the logits in a sigmoid router's place, by
    # its name (DeepSeek-V4's "sqrtsoftplus": sqrt(softplus(logits))), else None
    score_activation: str | None = None
    # the config field whose value picks the router's score activation (`ACT2FN[config.<field>]`:
    # inkling2's and DeepSeek-V4's "scoring_func"), else None; a config switch
    # (`switches._score_switches`) the package reads (rule router_score_switch)
    score_field: str | None = None
    router_bias: bool | str = UNKNOWN  # score-correction bias used for selection only
    # what that bias is added to before the pick: scores | logits (scored after, kolibri1)
    router_bias_on: str = "scores"
    router_linear_bias: bool | str = UNKNOWN  # bias of the router projection itself
    # sparsemixer routers: the config field of the relative mask threshold (PhiMoE's
    # router_jitter_noise), else None
    router_jitter: str | None = None
    # what the routing weights multiply: the experts' `output` (the usual weighted sum) or
    # their `input` (Llama4 scales each token before its experts run)
    weights_on: str = "output"
    # router logits computed in fp32: the projection's input (and weight) upcast before it
    router_fp32: bool = False
    # scores (a sigmoid) computed in fp32; False: in the logits' dtype, bf16 in a bf16 model
    # (LFM2-MoE), a correction bias added to them promoting only the sum
    scores_fp32: bool = True
    # HF's _init_weights starts the router projection's weight at zero (AFMoE)
    router_zero_init: bool = False
    norm_topk_prob: bool | str = UNKNOWN  # selected weights renormalised
    # how they are: `division` (divided by their sum, which a config flag may gate), `softmax`
    # (a softmax over the k selected logits: renormalised by construction, no flag can turn
    # it off, cohere2_moe's softmax branch), `none`
    norm_topk_by: str = "none"
    # the constant added to the sum the picked weights are divided by (`weights /
    # (weights.sum(...) + 1e-20)`: inkling2, deepseek_v3), else None: with it a token whose k
    # picks all score zero gets zero weights, without it 0 / 0
    norm_topk_eps: float | None = None
    # what the sum is clamped to at least before the division (`w / torch.clamp(w.sum(...),
    # min=config.moe_norm_min)`: Ernie-4.5): the config field the bound reads, or the number
    # the code writes; None: no clamp
    norm_topk_floor: str | float | None = None
    routed_scaling: float | None = None  # routed weights multiplied by this
    # where: on the k picked weights (deepseek), or on the experts' summed output (beam's
    # `experts(...) * routed_scaling_factor`): equal sums, but a stage of its own
    routed_scaling_on: str = "weights"
    shared_experts: int = 0
    shared_expert_gate: bool = False
    # stacked SwiGLU experts the router scores beside the routed ones (its last rows, one
    # each), their top-k and these sigmoid scores normalised together (inkling):
    # {"module": attribute in the block, "count": the config field sizing the stack,
    # "gate"/"up"/"down": its stacked weights}, else None
    scored_shared: dict | None = None
    # the router's learned one-element gain on the weights it returns, kept in fp32
    # (inkling's `gate.global_scale`): its attribute on the router, else None
    router_gain: str | None = None
    # the router's logits from an MLP over a down-projection to which the later layers add
    # the previous layer's state, one skip class past the experts' rows (zaya); see
    # codegen/analyze/router_forms.py for the dict's keys
    router_mlp: dict | None = None
    # the layers whose router picks experts by a table indexed by the token ids, typed by a
    # per-layer config list (DeepSeek-V4's hash_moe layers); see
    # codegen/analyze/router_forms.py for the dict's keys
    table_routing: dict | None = None
    # the config field giving the router's top-k, an int or a per-layer list indexed by the
    # layer (hunyuan_v1_moe's `moe_topk`), else None: one top-k for every layer
    layer_top_k: str | None = None
    # the config field giving the router's width, the routed experts, an int or a per-layer
    # list indexed by the layer (hunyuan_v1_moe's `num_experts`), else None: one count
    layer_experts: str | None = None
    # how the shared experts' output joins the routed one: `sum`, or `average`
    # ((routed + shared) / 2, cohere2_moe's shared_expert_combination_strategy)
    shared_combine: str = "sum"
    dense_layers: tuple[int, ...] | str = ()  # layers with a dense FFN instead of MoE
    dense_rule: str | None = None  # the source condition that selects them
    # that condition restated as "layer `layer_idx` is MoE" over `config` fields (None: every
    # layer is MoE; unknown: it reads something a package could not evaluate)
    layer_condition: str | None = None
    # the shared expert's inner size as HF computes it over `config` fields
    shared_size: str | None = None
    shared_optional: bool = False  # built only under a config condition
    # the selection bias's checkpoint path under the MoE module and its shape there
    router_bias_key: str | None = None
    # the MoE block's output goes through a norm of its own before the residual add (axk1's
    # `post_mlp_layernorm` inside its MoE): the norm's attribute on the block, else None
    output_norm: str | None = None
    router_bias_shape: tuple = ()
    # on disk: per_expert | fused (a 3-D tensor per projection) | flat (one 2-D matrix per
    # projection, the experts' rows stacked: DBRX)
    expert_layout: str = UNKNOWN
    module_layout: str = UNKNOWN  # per_expert | fused (transformers module)
    expert_bias: bool | str = False
    # identity ("zero-computation") experts the router picks beside the routed ones: a token
    # sent to one passes on unchanged times its weight (LongCat-Flash): {"count": the config
    # expression HF computes their number from ("config.zero_expert_num or 0"), "rows": the
    # experts' stacked weights with rows for them too, never read ("gate_up_proj")}, else None
    zero_experts: dict | str | None = None
    # a MoE running its gated product itself over stacked projection modules (JetMoE's
    # `input_linear` / `output_linear`): {"router", "gate_up", "down", "bias"} paths in the
    # MoE module (bias: a parameter added to the merged output, or None)
    projections: dict | None = None


@dataclass(frozen=True)
class Norm:
    kind: str = UNKNOWN  # rmsnorm | rmsnorm_offset (x * (1 + w)) | layernorm | layernorm_offset
    # pre | post (sublayer output normed) | post_residual (residual sum normed) | sandwich |
    # parallel
    placement: str = UNKNOWN
    bias: bool | str = UNKNOWN
    # the epsilon the code adds where no config field holds it (OLMo's fixed 1e-5), else None
    eps: float | None = None
    # the norms scale by a learned weight (False: OLMo's non-parametric LayerNorm)
    weight: bool | str = True
    # the RMSNorm weight multiplies the fp32 normalised values and the product is cast to
    # the input dtype last (T5-style: OLMo-2, flint), not cast before the weight (Llama)
    weight_fp32: bool = False
    # the config field the block norms read their epsilon from (cohere2_moe's layer_norm_eps
    # beside an unset rms_norm_eps), when the code passes one
    eps_field: str | None = None
    # the layer norms' epsilon where the code builds them without one (the class default)
    # while the final norm reads the config's (JetMoE: 1e-6 whatever rms_norm_eps), else None
    layer_eps: float | None = None
    # where each norm's epsilon comes from (codegen/analyze/norm_eps_sources.py), by group:
    # {"block": "literal 1e-06", "final": "config.layer_norm_epsilon", "qk": ...}, each
    # "config.<field>" | "literal <n>" | "class default <n>" | "other" ("a | b" where a
    # group's norms differ); None where no norm is found
    eps_sources: dict | None = None
    # (house block norm, the checkpoint's module name for it) by where each norm sits:
    # attention_norm / post_attention_norm / ffn_norm / post_ffn_norm
    block_names: tuple[tuple[str, str], ...] = ()
    # sublayers (attention, mlp) whose pre-norm layer 0 does not have (modernbert-decoder's
    # nn.Identity before the first attention)
    first_layer_bare: tuple[str, ...] = ()
    # a norm on the last layer's output before the head (False: post-norm GPT-1 has none)
    final: bool | str = True
    # layer norms whose output is multiplied by a gate computed from it (A.X-K2's gated
    # RMSNorm: norm(x) * sigmoid(mlp(norm(x)))): their names and class, else None
    gated: str | None = None
    # what a package builds them from (codegen/analyze/detect_norm.py `_gated_parts`)
    gated_parts: dict | None = None


@dataclass(frozen=True)
class Embedding:
    tied: bool | str = UNKNOWN
    scale: bool | str = UNKNOWN  # embeddings multiplied before the first layer
    # scale "learned_affine": (x + bias) * scale with learned per-channel vectors of the
    # backbone (zaya); {"scale", "bias"} their checkpoint keys, bias "" when none is added
    learned_affine: dict | None = None
    # absolute positions added to the token embeddings: none | learned (a table indexed by
    # position + position_offset, the module at position_table) | sinusoidal (tensor2tensor's
    # [sin | cos] table, row position + position_offset) | sinusoidal_pow ([sin | cos] halves
    # of position / 10000^(2 * (i // 2) / dim), CTRL) | sinusoidal_other (another sin/cos)
    positions: str = UNKNOWN
    position_offset: int = 0
    position_table: str = ""  # e.g. "transformer.wpe"
    # HF's _init_weights starts the token embeddings at this std (an hf_config expression),
    # not initializer_range (Youtu); None: the plain initializer_range
    init_std: str | None = None
    norm: bool = False  # the embeddings pass through a norm before the first layer (nanochat)
    # that norm's HF module path when it is a module of its own (bloom's
    # "transformer.word_embeddings_layernorm"); "" when it is the final norm, applied twice
    norm_module: str = ""
    # the tables live in a module of their own (BERT's `bert.embeddings`): word, learned
    # position and token-type tables summed there, then maybe normed (module_norm, its HF
    # path); a causal LM gets token_type_ids of zeros, so row 0 of token_type_table is added
    module: bool = False
    word_table: str = ""  # e.g. "bert.embeddings.word_embeddings" (when module)
    token_type_table: str = ""  # e.g. "bert.embeddings.token_type_embeddings"
    module_norm: str = ""  # e.g. "bert.embeddings.LayerNorm"; "" when the sum is not normed
    # tables narrower than the model (RemBERT): the config field of their width, and the HF
    # path of the linear layer projecting them to the hidden size before the first layer
    module_width: str = ""
    module_projection: str = ""
    # that projection is built only when the widths differ (ELECTRA's embeddings_project)
    module_projection_switched: bool = False
    # default positions count the tokens that are not padding (RoBERTa): a padding token reads
    # row `pad`, the others pad + 1, pad + 2, ...; the config field of that id ("" otherwise)
    position_padding: str = ""
    # side tables of the embeddings module (RoCBert's glyph shape and pronunciation): their
    # rows concatenated to the token rows, in this order, and mapped back to the hidden size
    # by `side_projection` (HF path) before the token-type and position rows are added; per
    # table (HF path, rows field, width field, the bool field switching it or "", the forward
    # input its ids come in through); HF reads row 0 where the caller gives no ids
    side_tables: tuple[tuple[str, str, str, str, str], ...] = ()
    side_projection: str = ""
    # the bool field HF builds that projection under (RoCBert's concat_input), "" = always
    side_switch: str = ""
    # the config field HF builds the word table's padding row from (`nn.Embedding(...,
    # padding_idx=config.pad_token_id)`: that row starts at zero and learns nothing); ""
    # when the table has none (GPT-2)
    padding_idx: str = ""
    # rows the word table has past the head's vocabulary (`nn.Embedding(config.vocab_size
    # + 1, ...)`: ids only ever fed in); codegen/analyze/word_rows.py
    extra_rows: int = 0
    # the config field the word table's rows are, passed as it is (`nn.Embedding(config.
    # n_tokens, ...)`), else None: codegen/analyze/size_fields.py
    vocab_field: str | None = None


@dataclass(frozen=True)
class Head:
    logit_softcap: bool | str = UNKNOWN
    logit_scale: bool | str = UNKNOWN
    # where that scale applies: "logits" (the head's output, cohere) or "input" (the hidden
    # states on their way into the head, MiniCPM3: one small tensor, not a vocab-wide copy)
    logit_scale_on: str = "logits"
    bias: bool | str = UNKNOWN  # the output projection adds a bias
    # the config field the logits' last axis is cut to (`logits[..., :unpadded_vocab_size]`:
    # a head stored padded past the vocabulary), "" = the logits as wide as the head; see
    # codegen/analyze/vocab_crop.py
    vocab_crop: str = ""
    # a prediction head module: dense -> activation -> norm before the vocabulary projection
    # (BERT's cls.predictions); HF paths of its dense, norm and projection, and the key the
    # logits bias is stored under (BERT ties decoder.bias to cls.predictions.bias)
    transform: bool = False
    transform_dense: str = ""
    transform_norm: str = ""
    transform_activation: str = ""  # its activation's name (hidden_act: "gelu")
    # the config field that name is looked up by (`ACT2FN[config.classifier_activation]`),
    # "" when the code calls the function itself (RoBERTa's `gelu(x)`)
    transform_activation_field: str = ""
    transform_dense_bias: bool = True
    transform_width: str = ""  # config field of the head's own width (RemBERT), "" = hidden
    projection: str = ""
    bias_key: str = ""


@dataclass(frozen=True)
class Block:
    num_layers: int | None = None
    # the config field the layer list is counted by (`range(config.decoder_layers)`), else None
    layers_field: str | None = None
    mixers: tuple[str, ...] = ()  # token mixer kinds present: attention, and e.g. mamba-style
    residual_scale: bool | str = UNKNOWN  # sublayer output (or residual) scaled before the add
    # learned_stream: the layer attributes (per-channel parameters) weighting the stream
    # before the attention's and before the FFN's residual add, else None
    stream_weights: tuple[str, str] | None = None
    # affine: per sublayer ("attention", "mlp"), the layer's module holding the four
    # per-channel parameters of `(out + out_bias) * out_scale + (x + stream_bias) *
    # stream_scale` and their attributes; see codegen/analyze/residual_affine.py
    residual_affine: dict | None = None
    # the residual stream is kept in fp32 whatever the model's dtype: the embeddings cast
    # before the first layer, each norm reading the stream cast to its weight's dtype (zaya);
    # see codegen/analyze/fp32_stream.py
    residual_fp32: bool = False
    # hyper-connections: the residual stream is several streams, read before and written
    # after each sublayer by a module of the layer (Sinkhorn-mixed, DeepSeek-V4); see
    # codegen/analyze/hyper_connections.py for the dict's keys
    hyper_connections: dict | None = None
    # block attention residuals: each sublayer's input an attention of learned queries over
    # the states at block boundaries (inkling2); see codegen/analyze/attention_residuals.py
    attention_residuals: dict | None = None
    # the attention and MLP output projections start at std / sqrt(2 * n_layers) (GPT-2 init)
    scaled_residual_init: bool | str = False
    # which of the two ("attention", "ffn") that init scales: GPT-2 both, nanochat attention only
    scaled_residual_projections: tuple[str, ...] = ("attention", "ffn")
    # every normal init is truncated at +-this many stds (an hf_config expression: ModernBERT's
    # initializer_cutoff_factor); None: plain normals
    init_cutoff: str | None = None
    # layers whose token mixer is a gated causal depthwise convolution (LFM2), selected by
    # a per-layer config list: {"field", "layer_type", "module", "in_proj", "conv",
    # "out_proj", "parts", "post_gate", "kernel", "kernel_field", "bias", "bias_field"};
    # see codegen/analyze/short_conv.py
    short_conv: dict | None = None
    # causal depthwise convolutions added back to their input, applied to the attention's and
    # the FFN's outputs before the residual adds (inkling): {"convs": ((module, "attention" |
    # "ffn"), ...), "conv", "kernel", "kernel_field", "fp32", "divisor"}; see
    # codegen/analyze/residual_convs.py
    output_convs: dict | None = None
    # a low-rank branch beside the attention on its normed input, x + norm(up(down(x))),
    # summed with the attention's residual sum and that sum divided by a constant (gemma3n's
    # Laurel): {"module", "down", "up", "norm" (HF attributes), "rank", "rank_field",
    # "divisor" (or None)}; see codegen/analyze/low_rank_branch.py
    low_rank_branch: dict | None = None
    # the layer attribute (a tensor the checkpoint holds) the layer's output is multiplied
    # by (gemma4's layer_scalar), else None; output_scale_trained: a parameter, not a buffer
    output_scale: str | None = None
    output_scale_trained: bool = False
    # per-layer inputs (gemma4's per-layer embeddings): a second token table with a slice of
    # `width` per layer, mixed with a projection of the embeddings, gating each layer's own
    # addition; see codegen/analyze/per_layer_input.py. {"input", "width", "vocab" (config
    # fields of the slice width and the table's rows), "table", "projection", "mix_norm"
    # (backbone HF paths), "table_scale" (sqrt_width_dtype | sqrt_width | none),
    # "projection_scale" (rsqrt_dim | rsqrt_dim_dtype), "mix_scale" (a constant's source),
    # "mix_scale_dtype" (a buffer rounded to the embeddings' dtype), "into" (output: the
    # layer's output, gemma4 | streams: AltUp's corrected streams after the first, gemma3n),
    # "correct_scale" (the config field under which the gate reads the active stream times
    # AltUp's output scale, or None), "gate", "up", "norm" (the layer's modules)}, else None
    per_layer_input: dict | None = None
    # AltUp: the residual stream kept as several streams; each layer runs on the active
    # one's prediction and corrects them all ({"module", "streams", "active", "clip",
    # "params", "embed", "unembed"}); see codegen/analyze/altup.py
    altup: dict | None = None
    # language adapters (X-MOD): a bottleneck FFN per language in every layer, each sample's
    # applied after the FFN's residual sum; see codegen/analyze/language_adapters.py.
    # {"owner", "bank" (layer-relative HF paths of the sublayer and its ModuleDict), "down",
    # "up" (the adapter's Linears), config fields "reduction" (bottleneck = hidden // it),
    # "languages" (the adapters' keys), "default" (the language when none is passed),
    # "own_norm", "reuse_norm", "residual_after_norm" (bool switches: a norm of the
    # adapters' own, else the FFN's norm, else none; the residual taken after that norm)},
    # else None
    language_adapters: dict | None = None
    # several attention sublayers per layer, each with its own dense MLP and pre-norms, and
    # the layer's MoE as a shortcut branch (LongCat-Flash; codegen/analyze/layer_stacks.py):
    # {"count": 2, "moe": "mlp", "moe_input": i (it reads sublayer i's normed MLP input; its
    # output joins the last residual sum), "names": {house part: checkpoint module list}}
    sublayers: dict | None = None
    # two alike layer stacks run in nested cycles (HRM; codegen/analyze/recurrent_stacks.py):
    # {"backbone" (HF path), "inner", "outer" (its stack attributes: the inner loop's and the
    # one after it), "layers", "norm" (a stack's layer list and final norm), config fields
    # "layer_count" (layers per stack), "cycles", "inner_cycles" (the loops' counts),
    # "grad_cycles" (the list of how many of each cycle's last inner runs carry gradients,
    # left-padded with 1), "init" (the vector parameter the inner state starts from)}
    recurrent_stacks: dict | None = None
    # a routed MoE a bool config switch adds beside the dense MLP, each branch normed before
    # and after, summed before the FFN's post-norm (gemma4's enable_moe_block; read with the
    # switch on, see codegen/analyze/parallel_moe.py): {"field" (the switch), the layer's
    # modules "router", "experts", "moe_norm", "post_dense_norm", "post_moe_norm",
    # "post_ffn_norm" (the FFN's post-norm, on the sum: norm.block_names when on); the
    # router's "router_norm" (weightless), "router_scale" (per channel, times
    # hidden ** -0.5), "router_proj", "expert_scale" (per expert, on the renormalised top-k
    # fp32 softmax weights); the experts' "gate_up" ([E, 2I, H], gate = first half), "down",
    # "activation"; "fields": config fields of num_experts, top_k, moe_hidden}, else None
    parallel_moe: dict | None = None


@dataclass(frozen=True)
class StateDict:
    """HF checkpoint keys with `{}` for the layer index (and a second `{}` for the expert)."""

    prefix: str = ""  # path of the decoder stack, e.g. "model.layers"
    layer_keys: tuple[str, ...] = ()  # relative to "<prefix>.{}."; "key [layers 0-2]" if partial
    other_keys: tuple[str, ...] = ()  # embeddings, final norm, head...
    checkpoint_layer_keys: tuple[str, ...] = ()  # on disk, after transformers' conversion
    checkpoint_other_keys: tuple[str, ...] = ()
    tied_keys: tuple[str, ...] = ()  # module keys absent from the checkpoint (tied)
    # checkpoint keys of modules whose output the logits never read (BigBird's pooler): dropped
    unused_keys: tuple[str, ...] = ()
    # fused checkpoint tensors transformers splits into equal row blocks on load: (on-disk key
    # tail, the module key tails it holds, in order); the adapter splits and joins them
    # (hrm_text's `attn.gqkv_proj.weight` -> gate, q, k, v)
    chunked: tuple[tuple[str, tuple[str, ...]], ...] = ()
    # checkpoint tensors transformers de-interleaves on load along a dim (on-disk key tail,
    # dim): Inkling-2's `mlp.experts.w13_weight` stores gate and up rows alternating, the
    # module [gate | up]; the adapter de-interleaves them on load and interleaves on save
    interleaved: tuple[tuple[str, int], ...] = ()
    # the layers' prefix on disk where transformers' load-time renames change it (inkling2's
    # `model.llm.layers`); "" where it is `prefix`
    checkpoint_prefix: str = ""
    # layer keys of projections stored [in, out] (transformers' Conv1D), not nn.Linear's [out, in]
    transposed_keys: tuple[str, ...] = ()
    # module keys of the parameters HF loads in fp32 in a bf16/fp16 model
    # (`_keep_in_fp32_modules_strict`: flint's router weight and attention sinks)
    fp32_keys: tuple[str, ...] = ()
    # (module key, std) of the parameters HF's `_init_weights` chain leaves as their module's
    # own constructor drew them, normal(0, std) whatever initializer_range (GPT-1's Conv1D
    # projections, 0.02); see codegen/analyze/constructor_init.py
    constructor_std: tuple[tuple[str, float], ...] = ()


@dataclass(frozen=True)
class Reference:
    closest: str = UNKNOWN
    delta: tuple[str, ...] = ()  # compared features whose value the reference does not implement
    unknown: tuple[str, ...] = ()  # compared features that could not be determined (not in delta)


@dataclass(frozen=True)
class Unsupported:
    feature: str
    detail: str
    evidence: str


@dataclass(frozen=True)
class Source:
    modeling: str = ""
    configuration: str | None = None
    config: str = ""  # config.json path, or "defaults of <ConfigClass>"
    model_class: str = ""
    config_class: str | None = None


@dataclass(frozen=True)
class Features:
    model_type: str | None
    architectures: tuple[str, ...]
    category: str
    attention: Attention
    rope: Rope
    ffn: Ffn
    moe: Moe | None
    norm: Norm
    embedding: Embedding
    head: Head
    block: Block
    reference: Reference
    unsupported: tuple[Unsupported, ...]
    evidence: dict[str, str]
    state_dict: StateDict
    notes: tuple[str, ...] = ()
    source: Source = field(default_factory=Source)
    # config fields the code branches on, with the value classes it distinguishes
    switches: tuple[Switch, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict; key names are the public `--json` contract."""
        return _plain(self)

    def get(self, dotted: str) -> Any:
        """`features.get("attention.qk_norm")`; None for a missing `moe.*` when moe is None."""
        value: Any = self
        for part in dotted.split("."):
            if value is None:
                return None
            value = getattr(value, part)
        return value


def _plain(value):
    """`value` as JSON data: dataclasses and mappings become objects, sequences and sets lists.

    Anything else the static interpreter left behind (its own unknown marker, a config or
    module object it could not reduce to a literal) was not determined, so it becomes
    "unknown" as the convention above says; a non-finite float becomes its name ("inf"),
    which strict JSON cannot otherwise carry.
    """
    if isinstance(value, str | bool | int) or value is None:
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if hasattr(value, "__dataclass_fields__") and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in fields(value)}
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    if isinstance(value, set | frozenset):
        return sorted((_plain(v) for v in value), key=repr)
    return UNKNOWN


def feature_names() -> list[str]:
    """Dotted names of the checklist features (the rows of the human table)."""
    out = ["category"]
    for section, cls in (
        ("attention", Attention),
        ("rope", Rope),
        ("ffn", Ffn),
        ("moe", Moe),
        ("norm", Norm),
        ("embedding", Embedding),
        ("head", Head),
        ("block", Block),
    ):
        for f in fields(cls):
            out.append(f"{section}.{f.name}")
    return out


def layer_ranges(indices: list[int]) -> str:
    """[0, 1, 2, 5] -> "0-2,5": layer lists as the report and the key patterns print them."""
    out, start, prev = [], None, None
    for i in indices:
        if start is None:
            start = prev = i
        elif i == prev + 1:
            prev = i
        else:
            out.append(f"{start}-{prev}" if start != prev else str(start))
            start = prev = i
    if start is not None:
        out.append(f"{start}-{prev}" if start != prev else str(start))
    return ",".join(out)
