"""Shrink a real HF config to a few-layer toy that keeps every structural feature on.

The shrink rules are a table keyed by config attribute: a rule applies only when the config
has that attribute, so the same table serves every architecture. Rules never switch a
feature off; where a feature is optional in the config class (a sliding window, dense first
layers, a rope scaling with an original context), the toy switches it on at a size the test
sequence exercises.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from codegen.errors import CodegenError

SEQ_LEN = 32  # the long test sequence: longer than every window and original context
SHORT_SEQ_LEN = 6  # the short one: shorter than every window and original context
WINDOW = 8
ORIGINAL_CONTEXT = 16
POSITION_OFFSET = 5  # the long sequence's explicit positions start here, not at 0
DEFAULT_THETA = 10_000.0  # transformers' default RoPE base

Rule = Callable[[dict[str, Any]], Any]


def _kv_heads(cfg: dict[str, Any]) -> int:
    """MQA stays MQA; MLA keeps one key per head; everything else becomes 4:2 GQA.

    Class defaults often leave `num_key_value_heads` equal to the head count only because
    it is unset, so a toy with grouped heads exercises the code path real checkpoints use.
    """
    if "kv_lora_rank" in cfg:
        return 4  # MLA decompresses keys per head; HF would repeat them and fail
    return 1 if cfg.get("num_key_value_heads") == 1 else 2


def _layers(cfg: dict[str, Any]) -> int:
    """4 layers, or enough to hold every kind of a layer pattern; never more than the
    original has (its per-layer lists would not cover them)."""
    pattern = cfg.get("layer_types")
    layers = max(4, _first_repeat(pattern)) if pattern and len(set(pattern)) > 1 else 4
    if cfg.get("num_kv_shared_layers"):
        layers *= 2  # every kind stores keys/values in the first half and reuses them after
    original = cfg.get("num_hidden_layers")
    return min(layers, original) if isinstance(original, int) and original > 0 else layers


def _kv_shared(cfg: dict[str, Any]) -> int:
    """The second half of the toy's layers reuse the first half's keys and values (each kind
    stored by its last layer there), where the config shares any."""
    return _layers(cfg) // 2 if cfg["num_kv_shared_layers"] else 0


def _sparsity(cfg: dict[str, Any]) -> list[float]:
    """The first half of the layers sparse, each at a target of its own (the config's
    highest, then a tenth less in turn), the rest dense: a package reading another layer's
    target, or thresholding every layer or none, differs."""
    layers = _layers(cfg)
    top = max(cfg["activation_sparsity_pattern"] or [0.0]) or 0.95
    sparse = [top if i % 2 == 0 else round(top - 0.1, 6) for i in range((layers + 1) // 2)]
    return sparse + [0.0] * (layers - len(sparse))


def _first_repeat(pattern: list[str]) -> int:
    """Length of the smallest prefix that contains every layer kind."""
    kinds = set(pattern)
    for length in range(1, len(pattern) + 1):
        if set(pattern[:length]) == kinds:
            return length
    return len(pattern)


# the layer kinds every sliding-window switch setting can put in `layer_types`
_ATTENTION_KINDS = ("full_attention", "sliding_attention")


def _rope(cfg: dict[str, Any]) -> dict[str, Any] | None:
    rope = cfg.get("rope_parameters")
    if rope == {} and cfg.get("layer_types"):
        # a class that leaves RoPE unset but reads it per layer kind (`rope_parameters[kind]`):
        # default RoPE for each kind the toy or a window switch setting can have, a base of
        # its own per kind so a package reading the wrong kind's entry shows
        kinds = dict.fromkeys([*cfg["layer_types"], *_ATTENTION_KINDS])
        return {
            kind: {"rope_type": "default", "rope_theta": DEFAULT_THETA / 10**i}
            for i, kind in enumerate(kinds)
        }
    if isinstance(rope, dict) and "rope_type" not in rope:
        # per layer kind
        return {k: _proportional_base(v) for k, v in rope.items()}
    if not isinstance(rope, dict):
        return rope
    rope = _proportional_base(rope)
    if "original_max_position_embeddings" in rope:
        rope["original_max_position_embeddings"] = ORIGINAL_CONTEXT
    return rope


# a proportional table holds the frequencies past `partial_rotary_factor` at zero; under a
# real base (1e6) the default rope turns those by under 0.04 rad over the test sequence, a
# miss only fp32 sees. This base turns them by radians, so bf16 sees it too.
PROPORTIONAL_THETA = 100.0


def _proportional_base(rope: Any) -> Any:
    """A copy of one rope entry; a proportional one gets PROPORTIONAL_THETA."""
    if not isinstance(rope, dict):
        return rope
    if rope.get("rope_type") == "proportional":
        return {**rope, "rope_theta": PROPORTIONAL_THETA}
    return dict(rope)


def config_value(config, key: str, default=None):
    """`getattr(config, key, default)`; the config's own value where its layers override
    the field (a heterogeneous config, `per_layer_config`, refuses to answer for all
    layers)."""
    try:
        return getattr(config, key, default)
    except RuntimeError:  # transformers' AmbiguousGlobalPerLayerAttributeError
        return config.to_dict().get(key, default)


def _max_positions(cfg: dict[str, Any]) -> int:
    rope = cfg.get("rope_parameters") or {}
    if isinstance(rope, dict) and rope.get("rope_type") == "dynamic":
        return ORIGINAL_CONTEXT  # dynamic NTK only acts beyond max_position_embeddings
    if isinstance(rope, dict) and rope.get("rope_type") == "yarn" and not rope.get("factor"):
        return 4 * ORIGINAL_CONTEXT  # factor comes from the ratio of the two contexts
    return max(SEQ_LEN * 4, 128)


# Caps, clamps and clips small enough that the verify weights (hf_checkpoint's noise) push
# activations past them: a dropped or wrong cap then changes the logits in bf16 too, not
# only in the last digits. tests/verify/test_caps_reached.py proves each is reached.
CAPS = {
    "attn_logit_softcapping": 0.25,  # raw scores reach ~0.4
    "final_logit_softcapping": 1.5,  # raw logits reach ~2.4
    "swiglu_limit": 1.0,  # gate/up reach ~2
    "clip_qkv": 1.0,  # q/k/v reach ~2
    # head vectors' L2 norms (inkling2, medians): queries ~2.4 (all scaled down), keys ~1.1
    # and relative states ~1.2 (some scaled down, others pass)
    "qk_l2_clip_threshold": 1.25,
    "rel_l2_clip_threshold": 1.2,
}


def _rotary_dim(cfg: dict[str, Any]) -> int | None:
    """An absolute rotary width (gptj's `rotary_dim`) keeps its fraction of the head in the
    toy (64 of 256 -> 6 of 24), so partial rotary stays partial and never exceeds the head."""
    value = cfg["rotary_dim"]
    hidden, heads = cfg.get("hidden_size"), cfg.get("num_attention_heads")
    head = cfg.get("head_dim") or (hidden // heads if hidden and heads else None)
    if not isinstance(value, int) or not isinstance(head, int) or head <= 0:
        return value
    toy_head = (
        SHRINK_RULES["head_dim"](cfg)
        if cfg.get("head_dim")
        else SHRINK_RULES["hidden_size"] // SHRINK_RULES["num_attention_heads"]
    )
    return max(2, round(value / head * toy_head / 2) * 2)


def _cap(key: str) -> Rule:
    """A cap the config sets shrinks to its toy value; one it leaves off stays off (verify's
    switch settings turn it on)."""
    return lambda cfg: None if cfg[key] is None else CAPS[key]


# config attribute -> its toy value (a constant, or a function of the original config).
SHRINK_RULES: dict[str, Any | Rule] = {
    # Asymmetric on purpose (real checkpoints are): sqrt(96) is not a bf16 number, so a
    # missing dtype rounding of an embedding scale shows; head_dim (40) != hidden / heads
    # (24), so a port that derives head_dim instead of reading it shows; intermediate sizes
    # are not multiples of hidden.
    "hidden_size": 96,
    "intermediate_size": 160,
    "moe_intermediate_size": 40,
    "shared_expert_intermediate_size": 56,
    "num_attention_heads": 4,
    "num_key_value_heads": _kv_heads,
    "head_dim": lambda cfg: (
        8 if "qk_rope_head_dim" in cfg else 40
    ),  # MLA: head_dim is the rope part
    "vocab_size": 512,
    # logits cut short of the head (inkling's padded head): inside the toy's vocabulary, so
    # a package returning the head's every column, or cutting elsewhere, shows; left unset
    # where the config leaves it unset (that setting is a switch case of its own)
    "unpadded_vocab_size": lambda cfg: None if cfg["unpadded_vocab_size"] is None else 500,
    # per-layer inputs (gemma4): a slice width whose sqrt is not a bf16 number (an unrounded
    # table scale shows), and a per-layer table with rows of its own count (a package
    # sizing it from vocab_size does not load), both holding every toy token id
    "hidden_size_per_layer_input": 24,
    "vocab_size_per_layer_input": 528,
    # keys/values shared by the last layers (gemma3n): see _kv_shared
    "num_kv_shared_layers": _kv_shared,
    # a gate thresholded at mean + k * std on some layers only (gemma3n): see _sparsity
    # AltUp's layers run on a stream other than the first (the one the embedding is and the
    # streams' merge rescales to), and not the last: a package running on stream 0, or
    # taking the active stream for the first or last, differs
    "altup_active_idx": lambda cfg: min(2, max(cfg["altup_num_inputs"] - 2, 0)),
    "activation_sparsity_pattern": _sparsity,
    # OPT: embeddings as wide as the hidden states unless a checkpoint projects them in/out
    "word_embed_proj_dim": lambda cfg: (
        96 if cfg["word_embed_proj_dim"] == cfg.get("hidden_size") else 64
    ),
    "num_hidden_layers": _layers,
    "max_position_embeddings": _max_positions,
    "rotary_dim": _rotary_dim,
    "rope_parameters": _rope,
    # experts: 16, so experts stacked in string order ("10" < "2") show; top-k > 1
    "num_local_experts": 16,
    "num_experts": 16,
    "n_routed_experts": 16,
    # identity ("zero-computation") experts in LongCat-Flash's ratio to the routed ones (256
    # beside 512): kept at 256 beside the toy's 16, nearly every pick would be an identity
    "zero_expert_num": 8,
    "num_experts_per_tok": 2,
    "top_k_experts": 2,  # gemma4's name for it (unset while enable_moe_block is off)
    # 4 groups of 4, one kept: the top-2 experts must share a group, which greedy top-2
    # routing does not guarantee (with two groups kept, top-2 would always fit)
    "n_group": 4,
    "topk_group": 1,
    "n_shared_experts": lambda cfg: min(cfg["n_shared_experts"] or 0, 2),
    # a shared expert the class leaves off (cohere2_moe's 0) is switched on: its rows and
    # its combination with the routed output are part of the package
    "num_shared_experts": lambda cfg: cfg["num_shared_experts"] or 1,
    # dense and MoE layers both present
    "first_k_dense_replace": 1,
    "mlp_only_layers": lambda cfg: cfg["mlp_only_layers"] or [0],
    # Llama4: every other layer MoE (moe_layers is derived from the step)
    "interleave_moe_layer_step": 2,
    "moe_layers": lambda cfg: None if cfg.get("interleave_moe_layer_step") else cfg["moe_layers"],
    # chunked attention (Llama4): chunks shorter than the long test sequence
    "attention_chunk_size": lambda cfg: None if cfg["attention_chunk_size"] is None else WINDOW,
    # Llama4's query temperature: log1p(floor((i + 1) / floor_scale)) grows inside the sequence
    "floor_scale": 3,
    # multi-head latent attention
    "q_lora_rank": lambda cfg: None if cfg["q_lora_rank"] is None else 32,
    "kv_lora_rank": 16,
    "qk_rope_head_dim": 8,
    "qk_nope_head_dim": 16,  # qk head (24) != v head (16): catches qk/v size mix-ups
    "v_head_dim": 16,
    # an indexer (DeepSeek sparse attention) keeps 3 keys per query, fewer than both test
    # inputs hold: with every key kept, a wrong or skipped indexer would pass. Its heads and
    # head size are its own (q/k head 20 > the 8 rotated dims)
    "index_topk": 3,
    # a dynamic mask's top-k window (Doge's keep_window_size): longer than the short input,
    # shorter than the toy's sliding window and the long one, so the long input's rows lose
    # keys to the top-k (with the window off, and with it on) and the short one's do not
    "keep_window_size": WINDOW - 1,
    "index_n_heads": 6,
    "index_head_dim": 20,
    # sliding layers sized apart from the full ones (inkling's swa_* fields): heads, kv
    # heads and head size all differ from the full layers' (4, 2, 40), so a layer built
    # with the other type's sizes does not load; both head counts split over tp=2
    "swa_num_attention_heads": 8,
    "swa_num_key_value_heads": 4,
    "swa_head_dim": 24,
    # a learned relative position bias (inkling's `d_rel` states mixed over `rel_extent`
    # distances): an extent longer than the window and shorter than the long input, so its
    # clamp and the zero beyond it are reached on the full layers
    "d_rel": 6,
    "rel_extent": 12,
    # a query scale growing with the log of the position past a floor (Inkling-2's full
    # layers: 1 + alpha * log(max((pos + 1) / floor, 1))): a floor inside both test inputs
    # (positions start at 5), so some positions are scaled and others not. Left unset where
    # the config leaves it unset (inkling's scale is off by default: its setting is a
    # switch case of its own)
    "log_scaling_n_floor": lambda cfg: None if cfg["log_scaling_n_floor"] is None else 8,
    # multipliers whose class default (1.0) would hide a forgotten scale (granite-3.0 values)
    "embedding_multiplier": 12.0,
    "residual_multiplier": 0.22,
    "attention_multiplier": 0.015625,
    "logits_scaling": 8.0,
    "routed_scaling_factor": 2.5,  # DeepSeek-V3's; GLM-4-MoE defaults to a silent 1.0
    **{key: _cap(key) for key in CAPS},
    # windows shorter than the sequence, switched on where the config can switch them
    "use_sliding_window": True,
    "sliding_window": WINDOW,
    "max_window_layers": 1,
    "window_size": WINDOW,  # GPT-Neo's local layers: their mask buffer's window
    # tokens pooled into one compressed key/value entry per layer kind (DeepSeek-V4's 4 and
    # 128): at most a window, so the long input makes entries its later queries see and its
    # earlier ones do not (a rate past the sequence would make none)
    "compress_rates": lambda cfg: (
        {kind: min(rate, WINDOW) for kind, rate in cfg["compress_rates"].items()}
        if isinstance(cfg["compress_rates"], dict)
        else cfg["compress_rates"]
    ),
    # encoder families' causal LMs (BERT's *ForCausalLM) attend causally only as decoders:
    # transformers builds them bidirectional otherwise
    "is_decoder": True,
    # BigBird's block-sparse attention is its full attention only below
    # (5 + 2 * num_random_blocks) * block_size tokens (shorter inputs fall back to full): the
    # toy runs the full setting, which packages realise, and block_sparse is a setting of the
    # switch they refuse rather than differ from beyond that length
    "attention_type": lambda cfg: (
        "original_full" if cfg["attention_type"] == "block_sparse" else cfg["attention_type"]
    ),
    # X-MOD: three languages (an adapter each) and, as a user must choose one
    # (set_default_language), the second as the default: a package running the first or the
    # last adapter, or all of them, differs
    "languages": lambda cfg: _toy_languages(cfg),
    "default_language": lambda cfg: cfg["default_language"] or _toy_languages(cfg)[1],
}


def _toy_languages(cfg: dict) -> list[str]:
    """Three of the config's languages (its default among them), padded with toy codes."""
    own = [str(x) for x in cfg.get("languages") or ()]
    default = cfg.get("default_language")
    picked = own[:3] if default is None or default in own[:3] else [*own[:2], default]
    return picked + [f"toy_{i}" for i in range(3 - len(picked))]


# (sub-config, field) -> its toy value, where the class defaults cannot run in transformers
# (5.23): DBRX's attention reads `attn_config.rope_theta`, which its sub-config class never
# sets (the rotary itself reads rope_parameters), and clamps q/k/v with `clip_qkv` as bounds
# even when it is None (torch.clamp raises). The cap's None setting stays a switch case.
# An experts sub-config (DBRX's `ffn_config`, a class with no attribute_map) names the
# experts' count, top-k and width in words the shared rows above never reach: they take
# those rows' toy values. Left at the class defaults (4 experts, top-1, 3584 wide beside a
# 96-wide model) the toy's experts outweighed its residual stream and a top-1 route moved
# by a rounding step replaced a token's whole update: fp8 rounding of the attention alone
# moved its logits to cosine 0.98 against the unquantized model (0.998 at these values,
# as for every other MoE toy).
# A rule answering None leaves the sub-config as it is.
SUB_CONFIG_RULES: dict[tuple[str, str], Rule] = {
    ("attn_config", "rope_theta"): lambda cfg: (
        cfg["attn_config"].get("rope_theta")
        or (cfg.get("rope_parameters") or {}).get("rope_theta", DEFAULT_THETA)
    ),
    ("attn_config", "clip_qkv"): lambda cfg: (
        (cfg["attn_config"]["clip_qkv"] or CAPS["clip_qkv"])
        if "clip_qkv" in cfg["attn_config"]
        else None
    ),
    ("ffn_config", "moe_num_experts"): lambda cfg: _sub_field(
        cfg, "ffn_config", "moe_num_experts", SHRINK_RULES["num_experts"]
    ),
    ("ffn_config", "moe_top_k"): lambda cfg: _sub_field(
        cfg, "ffn_config", "moe_top_k", SHRINK_RULES["num_experts_per_tok"]
    ),
    ("ffn_config", "ffn_hidden_size"): lambda cfg: _sub_field(
        cfg, "ffn_config", "ffn_hidden_size", SHRINK_RULES["moe_intermediate_size"]
    ),
}


def _sub_field(cfg: dict[str, Any], sub: str, field: str, toy: Any) -> Any:
    """`toy` where the sub-config has the field, None (left as it is) where it has not."""
    return toy if field in cfg[sub] else None


def _token_id(key: str) -> Rule:
    """Special token ids past the toy vocabulary move to its last id (embeddings would
    reject them; some config classes require an int)."""

    def rule(cfg: dict[str, Any]):
        value, last = cfg[key], SHRINK_RULES["vocab_size"] - 1
        if isinstance(value, list):
            return [min(v, last) for v in value if isinstance(v, int)] or None
        return min(value, last) if isinstance(value, int) else value

    return rule


SHRINK_RULES.update({key: _token_id(key) for key in ("bos_token_id", "eos_token_id")})


def _pad_token_id(cfg: dict[str, Any]):
    """A padding id inside the toy vocabulary, also where the class leaves it unset: the
    word table's padding row (no gradient where HF builds it with `padding_idx`) is then
    one a package can get wrong, and verify's long input holds that token."""
    value = _token_id("pad_token_id")(cfg)
    if value is not None:
        return value
    taken = set()
    for key in ("bos_token_id", "eos_token_id"):
        ids = _token_id(key)(cfg) if key in cfg else None
        taken |= set(ids) if isinstance(ids, list) else {ids}
    return next(i for i in range(SHRINK_RULES["vocab_size"]) if i not in taken)


SHRINK_RULES["pad_token_id"] = _pad_token_id

# derived or bookkeeping fields the config class recomputes from the others
_RECOMPUTED = ("transformers_version", "model_type", "_name_or_path", "qk_head_dim")


def shrink(
    config_dict: dict[str, Any], keep_pattern: bool, attribute_map: dict[str, str] | None = None
) -> dict[str, Any]:
    """The toy version of `config_dict` (a `PretrainedConfig.to_dict()`).

    `attribute_map` is the config class's own name map (gptj: hidden_size -> n_embd), so a
    rule written for the standard name also shrinks the field the class really stores.
    """
    original = dict(config_dict)
    for standard, actual in (attribute_map or {}).items():
        if actual in original and standard not in original:
            original[standard] = original[actual]
    toy = {key: value for key, value in config_dict.items() if key not in _RECOMPUTED}
    stored = {standard: actual for standard, actual in (attribute_map or {}).items()}
    for key, rule in SHRINK_RULES.items():
        if key in original:
            toy[stored.get(key, key)] = rule(original) if callable(rule) else rule
    for key, value in original.items():
        if isinstance(value, dict) and "hidden_size" in value and key not in SHRINK_RULES:
            # a nested sub-model (a vision or audio tower the causal LM also builds) shrinks
            # by the same rules, or its full-size weights dwarf the toy
            toy[key] = shrink(value, keep_pattern=False)
    for (sub, field), rule in SUB_CONFIG_RULES.items():
        value = rule(original) if isinstance(original.get(sub), dict) else None
        if value is not None:
            toy[sub] = {**toy[sub], field: value}
    pattern = original.get("layer_types")
    if pattern and keep_pattern:
        toy["layer_types"] = list(pattern[: toy["num_hidden_layers"]])
    elif "layer_types" in original and pattern is None:
        # the class leaves the pattern unset and derives none, yet its layers index it
        layers = toy.get(stored.get("num_hidden_layers", "num_hidden_layers"))
        toy["layer_types"] = [_ATTENTION_KINDS[0]] * layers if isinstance(layers, int) else None
    else:
        toy.pop("layer_types", None)
    _shrink_per_layer(original, toy, stored.get("num_hidden_layers", "num_hidden_layers"))
    _shrink_widths(original, toy, {stored.get(k, k) for k in SHRINK_RULES if k in original})
    _rotate_enough(toy)
    return toy


# the fewest dims a toy rotates: two pairs, so the frequencies differ and a wrong base or
# a wrong rope group shows (one pair turns by the position alone, whatever the base)
MIN_ROTARY_DIMS = 4


def _rotate_enough(toy: dict[str, Any]) -> None:
    """A head that rotates a fraction of itself (`partial_rotary_factor`, top-level or in a
    rope_parameters group) rotates at least MIN_ROTARY_DIMS in the toy: DeepSeek-V4's 1/8 of
    an 8-wide head turned one dim, and the oracle could not tell its two rope groups apart.
    Where it falls short, the head grows to the next width that rotates an even count of at
    least that many; a rotary width the class derives from the head (`qk_rope_head_dim`
    without a key latent) is left to it."""
    head = toy.get("head_dim")
    if not isinstance(head, int) or "kv_lora_rank" in toy:
        return
    factors = [_factor(toy)] + [_factor(g) for g in _rope_groups(toy.get("rope_parameters"))]
    factors = [f for f in factors if f is not None and 0 < f < 1]
    if all(int(head * f) >= MIN_ROTARY_DIMS for f in factors):
        return
    toy.pop("qk_rope_head_dim", None)

    def rotates_enough(width: int) -> bool:
        return all(int(width * f) >= MIN_ROTARY_DIMS and int(width * f) % 2 == 0 for f in factors)

    toy["head_dim"] = next(w for w in range(head, head * 64 + 1) if rotates_enough(w))


def _factor(values: Any) -> float | None:
    factor = values.get("partial_rotary_factor") if isinstance(values, dict) else None
    return float(factor) if isinstance(factor, int | float) else None


def _rope_groups(rope: Any) -> list[dict]:
    """The entries of rope_parameters that are groups (per layer type, or labelled)."""
    if not isinstance(rope, dict):
        return []
    return [v for v in rope.values() if isinstance(v, dict)] or [rope]


# toy sizes for FFN widths the table has no row for (minimax_m3's dense_intermediate_size,
# llama4's intermediate_size_mlp, OPT's ffn_dim): even (a fused gate/up splits over 2 ranks),
# not multiples of the hidden size, and unlike every width the table gives
_SPARE_WIDTHS = (72, 88, 104, 120, 136, 152)

# the words that name an FFN width field, each with a config whose modeling code sizes its
# FFN's nn.Linear by it (transformers 5.23 class defaults); a width left None by default
# (GPT-2's n_inner: the code then uses 4 * hidden) stays None
_WIDTH_WORDS = (
    "intermediate_size",  # llama and most; minimax_m3's dense_/shared_intermediate_size
    "ffn_dim",  # OPT, XGLM, moshi (its fused [gate | up]); BART's encoder_/decoder_ffn_dim
    "ffn_hidden_size",  # Falcon (the class sets 4 * hidden where unset)
    "n_inner",  # GPT-2, GPT-J, CodeGen, GPTBigCode
    "dff",  # CTRL
    "dim_ff",  # CPM-Ant
    "d_inner",  # XLNet
    "feed_forward_size",  # Reformer
)
# a word that makes the field a ratio of a width, not one (lfm2's block_ffn_dim_multiplier)
_RATIO_WORDS = ("multiplier", "multiple", "factor", "ratio")


def _is_width(key: str) -> bool:
    """A feed-forward width field: one of `_WIDTH_WORDS` as words of its name, none of
    `_RATIO_WORDS`."""
    name = f"_{key}_"
    return any(f"_{w}_" in name for w in _WIDTH_WORDS) and not any(
        f"_{w}_" in name for w in _RATIO_WORDS
    )


def _shrink_widths(original: dict[str, Any], toy: dict[str, Any], ruled: set[str]) -> None:
    """Every other FFN width of the config takes a toy size of its own.

    Two widths that size different modules (the dense MLP's, the experts', the shared
    expert's) must differ in the toy even where the class defaults make them equal: a
    package sizing one module from the other's field then builds other shapes, and the
    oracle sees it. A width of 0 (a module switched off) stays 0. `ruled` are the fields
    the table sized (under the class's own names: longcat_flash's ffn_hidden_size).
    """
    used = {v for k, v in toy.items() if _is_width(k) and isinstance(v, int)}
    spare = iter(w for w in _SPARE_WIDTHS if w not in used)
    for key, value in original.items():
        if key in SHRINK_RULES or key in ruled or not _is_width(key):
            continue
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            toy[key] = next(spare, value)


def _shrink_per_layer(original: dict[str, Any], toy: dict[str, Any], layers_key: str) -> None:
    """Other per-layer settings (`mlp_layer_types`, `per_layer_config`...) follow the layer
    count: lists one entry per layer keep their first entries, dicts keyed by layer index
    keep the layers that still exist."""
    layers, new_layers = original.get("num_hidden_layers"), toy.get(layers_key)
    if not isinstance(layers, int) or not isinstance(new_layers, int):
        return
    for key, value in original.items():
        if key == "layer_types" or key in SHRINK_RULES:
            continue
        if isinstance(value, list) and len(value) == layers:
            toy[key] = _per_layer_size(key, value[:new_layers], original, toy)
        elif layers != new_layers and len(expanded := _run_length(value)) == layers:
            toy[key] = [[expanded[:new_layers], 1]]  # gpt_neo's [[["global", "local"], 12]]
        elif isinstance(value, dict) and value and all(_is_index(k) for k in value):
            toy[key] = {
                k: resize_overrides(v, original, toy)
                for k, v in value.items()
                if int(k) < new_layers
            }


def resize_overrides(overrides, original: dict[str, Any], toy: dict[str, Any]):
    """A layer's overrides (`per_layer_config`: gemma4's full-attention head_dim 512 over
    256) of a size the toy shrinks (or a benchmark grows): the toy's size where the layer
    repeats the config's, else the toy's size in the same ratio, so the layer stays sized
    apart (an even head size; a kv head count dividing the heads)."""
    if not isinstance(overrides, dict):
        return overrides
    out = dict(overrides)
    for field, value in overrides.items():
        size, small = original.get(field), toy.get(field)
        if field not in SHRINK_RULES or not all(
            isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in (value, size, small)
        ):
            continue
        scaled = small * value / size
        if field == "head_dim":
            out[field] = small if value == size else max(2, round(scaled / 2) * 2)
        elif field == "num_key_value_heads":
            heads = toy.get("num_attention_heads")
            counts = [n for n in range(1, heads + 1) if heads % n == 0] if heads else [small]
            out[field] = min(counts, key=lambda n: (abs(n - scaled), n))
        else:
            out[field] = small if value == size else max(1, round(scaled))
    return _whole_head(overrides, out, original, toy)


def _whole_head(overrides: dict, out: dict, original: dict[str, Any], toy: dict[str, Any]):
    """A latent-attention layer with overrides whose head_dim is its whole q/k head
    (qk_nope_head_dim + qk_rope_head_dim: dots3's sliding layers, whose config checks it)
    keeps it so in the toy, where the toy's head_dim is the rotated part alone."""
    parts = ("head_dim", "qk_nope_head_dim", "qk_rope_head_dim")
    if not all(isinstance(original.get(p), int) and isinstance(toy.get(p), int) for p in parts):
        return out
    head, nope, rope = (overrides.get(p, original[p]) for p in parts)
    if head == nope + rope:
        out["head_dim"] = out.get("qk_nope_head_dim", toy["qk_nope_head_dim"]) + out.get(
            "qk_rope_head_dim", toy["qk_rope_head_dim"]
        )
    return out


def _per_layer_size(key: str, values: list, original: dict[str, Any], toy: dict[str, Any]):
    """A per-layer copy of a size the toy shrinks (`num_attention_heads_per_layer` holding
    the original head count on every layer) takes the toy's size; other lists are kept."""
    for field in SHRINK_RULES:
        size = original.get(field)
        shrunk = key.startswith(field) and field in toy and isinstance(size, int)
        if shrunk and all(v == size for v in values):
            return [toy[field]] * len(values)
    return values


def _run_length(value) -> list:
    """`[[pattern, repeats], ...]` written out (a per-layer pattern in run-length form), else
    []."""
    if not isinstance(value, list) or not value:
        return []
    out: list = []
    for item in value:
        if not (
            isinstance(item, list | tuple)
            and len(item) == 2
            and isinstance(item[0], list | tuple)
            and isinstance(item[1], int)
        ):
            return []
        out += list(item[0]) * item[1]
    return out


def _is_index(key) -> bool:
    return isinstance(key, int) or (isinstance(key, str) and key.isdigit())


def hf_config_class(model_type: str):
    from transformers import CONFIG_MAPPING
    from transformers.utils import logging

    logging.set_verbosity_error()  # class defaults of some configs warn about their own ids

    if model_type not in CONFIG_MAPPING:
        raise CodegenError(f"transformers {_version()} has no model_type {model_type!r}")
    return CONFIG_MAPPING[model_type]


def _version() -> str:
    import transformers

    return transformers.__version__


def tiny_config(model_type: str, **overrides):
    """A toy config of `model_type` from the installed config class's defaults.

    `overrides` (e.g. `tie_word_embeddings=True`) are applied before the class derives
    its dependent fields, so they behave as if the user had written them in config.json.
    """
    config_class = hf_config_class(model_type)
    values = config_values(config_class())
    toy = shrink(values, keep_pattern=False, attribute_map=_names(config_class))
    for key in layer_count_derived(config_class):
        toy.pop(key, None)
    toy.update(overrides)
    return build_toy(config_class, toy, values, overrides)


def build_toy(config_class, toy: dict, values: dict, overrides: dict):
    """`config_class(**toy)`; where the class validates a field the toy shrank or grew
    (zaya's "supports `num_experts_per_tok=1` only"), the fields its message names in
    backticks go back to `values` (the full config's; an override stays: the caller's
    error)."""
    try:
        return config_class(**toy)
    except Exception as err:
        named = {k for k in re.findall(r"`(\w+)", str(err)) if k in toy and k not in overrides}
        if not named or any(toy[k] == values.get(k) for k in named):
            raise  # not a toy value the class refuses
        return config_class(**{**toy, **{k: values.get(k) for k in named}})


def rederive(config_class, overrides: dict) -> dict:
    """The toy of `config_class`'s defaults with `overrides` set before shrinking (the shrink
    rules that read them size the rest), as the fields the class then derives: for a
    setting the toy's own sizes cannot take (a count of layers sharing keys and values)."""
    values = {**config_values(config_class()), **overrides}
    toy = shrink(values, keep_pattern=False, attribute_map=_names(config_class))
    for key in layer_count_derived(config_class):
        toy.pop(key, None)
    return config_values(config_class(**toy))


def tiny_config_from_file(path: Path):
    """A toy of a real `config.json`, keeping its own per-layer pattern."""
    raw = read_config_file(path)
    config_class = hf_config_class(raw["model_type"])
    values = config_values(_accepted(config_class, raw, path))
    toy = shrink(values, keep_pattern=True, attribute_map=_names(config_class))
    for key in layer_count_derived(config_class):
        toy.pop(key, None)
    return config_class(**toy)


@functools.cache
def layer_count_derived(config_class) -> tuple[str, ...]:
    """Integer fields, unset by default, the class derives from `num_hidden_layers` (hrm_text's
    num_layers_per_stack, from which it then recomputes num_hidden_layers as the cache's slot
    count): the toy leaves them to the class, or the full-size value read from the defaults
    contradicts the toy's layer count (16 layers per stack, 4 cache slots)."""
    import dataclasses
    import inspect

    from codegen.analyze.derived_fields import derived_fields

    if not dataclasses.is_dataclass(config_class):
        return ()
    try:
        derived = derived_fields(Path(inspect.getsourcefile(config_class)).read_text())
    except (OSError, TypeError, UnicodeDecodeError):
        return ()
    from_layers = derived.get("num_hidden_layers", frozenset()) - {"num_hidden_layers"}
    defaults = config_class()
    return tuple(
        f.name
        for f in dataclasses.fields(config_class)
        if f.name in from_layers
        and f.default is None
        and f.name not in SHRINK_RULES
        and type(getattr(defaults, f.name, None)) is int
    )


def config_values(config) -> dict[str, Any]:
    """`config.to_dict()`, plus the layer count where the class derives `num_hidden_layers`
    from a field of its own through a property (LongCat-Flash: twice `num_layers`): the toy
    sets it through the property's setter, or it keeps the full-size stack."""
    values = config.to_dict()
    count = getattr(type(config), "num_hidden_layers", None)
    if "num_hidden_layers" not in values and isinstance(count, property) and count.fset:
        values["num_hidden_layers"] = config.num_hidden_layers
    return values


def _names(config_class) -> dict[str, str]:
    return dict(getattr(config_class, "attribute_map", {}) or {})


def config_from_file(path: Path):
    """Exactly the config in `path` (for `--config`: no shrinking)."""
    raw = read_config_file(path)
    return _accepted(hf_config_class(raw["model_type"]), raw, path)


def _accepted(config_class, raw: dict[str, Any], path: Path):
    """The config class built from a file's values; a value its validators reject is one
    line naming the file and the class's own reason, not a traceback."""
    try:
        return config_class(**_strip(raw))
    except Exception as err:  # noqa: BLE001 - a class's validators raise any exception type
        reason = str(err.__cause__ or err).strip().splitlines()[-1].strip()
        raise CodegenError(
            f"{config_class.__name__} rejects this config: {reason} (fix the file's values)",
            path=str(path),
        ) from None


def read_config_file(path: Path) -> dict[str, Any]:
    try:
        raw = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise CodegenError("config file not found", path=str(path)) from None
    except (OSError, UnicodeDecodeError) as err:
        raise CodegenError(f"cannot read config: {err}", path=str(path)) from None
    except json.JSONDecodeError as err:
        raise CodegenError(f"invalid JSON: {err.msg}", path=str(path), line=err.lineno) from None
    if not isinstance(raw, dict) or "model_type" not in raw:
        raise CodegenError("config has no model_type; add one", path=str(path))
    return raw


def _strip(raw: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in raw.items() if key not in _RECOMPUTED}
