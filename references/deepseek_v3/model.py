"""DeepSeek-V3: the llama reference with multi-head latent attention and a routed MoE.

What differs from llama:
- MLA attention. Queries go through a low-rank bottleneck (`wq_a` -> `q_norm` -> `wq_b`; a
  plain `wq` when `q_lora_rank` is None). Keys and values come from one compressed latent:
  `wkv_a` gives [kv latent | k_pe], the latent is normed (`kv_norm`) and expanded per head by
  `wkv_b` into [k_nope | v]. Each q/k head is [nope | rope]: RoPE turns only the last
  `qk_rope_head_dim` dims, and k's rope part is one head shared by every head. v_head_dim
  may differ from the q/k head size. The latent norms use eps 1e-6, not rms_norm_eps (as HF).
- RoPE in interleaved pairs (`rope_interleave`) and a softmax scale of qk_head_dim**-0.5,
  times mscale**2 for scaled ropes with `mscale_all_dim` (see rope.py); yarn's attention
  factor on cos/sin comes from the shared RotaryEmbedding.
- MoE after the first `n_dense_layers` dense layers: a sigmoid router in fp32; a per-expert
  correction bias (kept in fp32 like HF's `_keep_in_fp32_modules_strict`) shifts which
  experts are *chosen* but not their weights; experts are chosen only inside the best
  `n_limited_groups` of `n_expert_groups` groups (a group scores the sum of its top 2);
  the k weights are optionally renormalised, then multiplied by `route_scale`. Routed SwiGLU
  experts are stacked 3-D weights; a shared SwiGLU expert is always added.

No KV cache, no MTP head, single device, inference only.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from codegen.layers.experts import Experts
from codegen.layers.lifecycle import init_module_buffers, init_module_weights
from codegen.layers.norm import RMSNorm
from codegen.layers.packing import forward_packed
from codegen.layers.rope import RotaryEmbedding, apply_rotary

from .args import ModelArgs
from .rope import apply_rotary_interleaved, softmax_scale


class Attention(nn.Module):
    """Multi-head latent attention."""

    def __init__(self, args: ModelArgs):
        super().__init__()
        self.n_heads = args.n_heads
        self.q_lora_rank = args.q_lora_rank
        self.kv_lora_rank = args.kv_lora_rank
        self.nope_dim, self.rope_dim = args.qk_nope_head_dim, args.qk_rope_head_dim
        self.v_head_dim = args.v_head_dim
        qk_dim = args.qk_head_dim
        if self.q_lora_rank is None:
            self.wq = nn.Linear(args.dim, args.n_heads * qk_dim, bias=False)
        else:
            self.wq_a = nn.Linear(args.dim, args.q_lora_rank, bias=args.attention_bias)
            self.q_norm = RMSNorm(args.q_lora_rank)
            self.wq_b = nn.Linear(args.q_lora_rank, args.n_heads * qk_dim, bias=False)
        self.wkv_a = nn.Linear(
            args.dim, args.kv_lora_rank + self.rope_dim, bias=args.attention_bias
        )
        self.kv_norm = RMSNorm(args.kv_lora_rank)
        self.wkv_b = nn.Linear(
            args.kv_lora_rank, args.n_heads * (self.nope_dim + self.v_head_dim), bias=False
        )
        self.wo = nn.Linear(args.n_heads * self.v_head_dim, args.dim, bias=args.attention_bias)
        self.scale = softmax_scale(args.rope, qk_dim)
        self.rotate = apply_rotary_interleaved if args.rope_interleave else apply_rotary

    def forward(self, x: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        batch, seq, _ = x.shape
        q = self.wq(x) if self.q_lora_rank is None else self.wq_b(self.q_norm(self.wq_a(x)))
        q = q.view(batch, seq, -1, self.nope_dim + self.rope_dim).transpose(1, 2)
        q_nope, q_pe = q.split([self.nope_dim, self.rope_dim], dim=-1)
        kv, k_pe = self.wkv_a(x).split([self.kv_lora_rank, self.rope_dim], dim=-1)
        kv = self.wkv_b(self.kv_norm(kv)).view(batch, seq, -1, self.nope_dim + self.v_head_dim)
        kv = kv.transpose(1, 2)
        k_nope, v = kv.split([self.nope_dim, self.v_head_dim], dim=-1)
        cos, sin = rope
        q_pe = self.rotate(q_pe, cos, sin)
        k_pe = self.rotate(k_pe.unsqueeze(1), cos, sin)  # one rope key for all heads
        q = torch.cat((q_nope, q_pe), dim=-1)
        k = torch.cat((k_nope, k_pe.expand(-1, q.shape[1], -1, -1)), dim=-1)
        out = F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=self.scale)
        return self.wo(out.transpose(1, 2).reshape(batch, seq, -1))


class FeedForward(nn.Module):
    """SwiGLU: w2(silu(w1(x)) * w3(x))."""

    def __init__(self, dim: int, hidden_dim: int):
        super().__init__()
        self.w1 = nn.Linear(dim, hidden_dim, bias=False)
        self.w2 = nn.Linear(hidden_dim, dim, bias=False)
        self.w3 = nn.Linear(dim, hidden_dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.w2(F.silu(self.w1(x)) * self.w3(x))


class Gate(nn.Module):
    """Sigmoid router with a selection-only correction bias and grouped top-k, in fp32."""

    def __init__(self, args: ModelArgs):
        super().__init__()
        self.top_k = args.n_activated_experts
        self.n_groups, self.topk_groups = args.n_expert_groups, args.n_limited_groups
        self.norm_topk_prob = args.norm_topk_prob
        self.route_scale = args.route_scale
        self.weight = nn.Parameter(torch.empty(args.n_routed_experts, args.dim))
        self.register_buffer("e_score_correction_bias", torch.zeros(args.n_routed_experts))

    def _apply(self, fn, recurse=True):
        # like HF's _keep_in_fp32_modules_strict: `.to(bf16)` moves the bias but keeps fp32
        bias = self.e_score_correction_bias
        super()._apply(fn, recurse)
        device = self.e_score_correction_bias.device
        # a bias on the meta device has no data to move: `to_empty` gets fresh fp32 memory
        moved = torch.empty_like(bias, device=device) if bias.is_meta else bias.to(device)
        self.e_score_correction_bias = moved
        return self

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """x (..., dim) -> router logits (tokens, experts), weights and indices (tokens, k)."""
        logits = F.linear(x.reshape(-1, x.shape[-1]).float(), self.weight.float())
        scores = logits.sigmoid()
        biased = (scores + self.e_score_correction_bias).view(scores.shape[0], self.n_groups, -1)
        group_scores = biased.topk(2, dim=-1)[0].sum(dim=-1)
        top_groups = group_scores.topk(self.topk_groups, dim=-1, sorted=False)[1]
        keep = torch.zeros_like(group_scores, dtype=torch.bool).scatter_(1, top_groups, True)
        biased = biased.masked_fill(~keep[..., None], float("-inf")).flatten(1)
        indices = biased.topk(self.top_k, dim=-1, sorted=False)[1]
        weights = scores.gather(1, indices)  # from the unbiased scores
        if self.norm_topk_prob:
            weights = weights / (weights.sum(dim=-1, keepdim=True) + 1e-20)
        return logits, weights * self.route_scale, indices


class MoE(nn.Module):
    def __init__(self, args: ModelArgs):
        super().__init__()
        self.gate = Gate(args)
        self.experts = Experts(args.n_routed_experts, args.dim, args.moe_hidden_dim)
        self.shared_experts = FeedForward(args.dim, args.n_shared_experts * args.moe_hidden_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _, weights, indices = self.gate(x)
        routed = self.experts(x.view(-1, x.shape[-1]), indices, weights).view_as(x)
        return routed + self.shared_experts(x)


class TransformerBlock(nn.Module):
    def __init__(self, args: ModelArgs, layer_id: int):
        super().__init__()
        self.attention_norm = RMSNorm(args.dim, args.norm_eps)
        self.attention = Attention(args)
        self.ffn_norm = RMSNorm(args.dim, args.norm_eps)
        self.is_moe = layer_id >= args.n_dense_layers
        if self.is_moe:
            self.moe = MoE(args)
        else:
            self.feed_forward = FeedForward(args.dim, args.hidden_dim)

    def forward(self, x: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        h = x + self.attention(self.attention_norm(x), rope)
        ffn = self.moe if self.is_moe else self.feed_forward
        return h + ffn(self.ffn_norm(h))


class Model(nn.Module):
    def __init__(self, args: ModelArgs):
        super().__init__()
        self.args = args
        self.tok_embeddings = nn.Embedding(args.vocab_size, args.dim, padding_idx=args.pad_token_id)
        self.rotary = RotaryEmbedding(args.rope, args.qk_rope_head_dim)
        self.layers = nn.ModuleList(TransformerBlock(args, i) for i in range(args.n_layers))
        self.norm = RMSNorm(args.dim, args.norm_eps)
        self.output = nn.Linear(args.dim, args.vocab_size, bias=False)
        if args.tie_word_embeddings:
            self.output.weight = self.tok_embeddings.weight

    def init_buffers(self, buffer_device: torch.device | str | None = None) -> None:
        """Rebuild the non-persistent buffers after `to_empty` (built on the meta device)."""
        init_module_buffers(self, buffer_device)

    def init_weights(self, buffer_device: torch.device | str | None = None) -> None:
        """Initialise as HF's `_init_weights` does, with the config's initializer_range."""
        init_module_weights(self, self.args.initializer_range, buffer_device)

    def forward(
        self,
        tokens: torch.Tensor,
        positions: torch.Tensor | None = None,
        cu_seqlens: torch.Tensor | None = None,
        max_seqlen: int | None = None,
    ) -> torch.Tensor:
        """`cu_seqlens`: documents packed in the flattened batch (varlen layout); attention
        stays inside each document and positions restart there. `max_seqlen` is accepted
        for engines that pass it."""
        if cu_seqlens is not None:
            return forward_packed(self, tokens, positions, cu_seqlens)
        if positions is None:
            # one row for every sequence: tables of positions are built once, not per row
            positions = torch.arange(tokens.shape[1], device=tokens.device).unsqueeze(0)
        h = self.tok_embeddings(tokens)
        rope = self.rotary(positions)
        for layer in self.layers:
            h = layer(h, rope)
        h = self.norm(h)  # the last layer's output is freed before the head
        return self.output(h)
