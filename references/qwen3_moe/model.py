"""Qwen3-MoE: the llama reference plus three deltas.

- QK-norm: RMSNorm over head_dim on every query and key head (`q_norm`, `k_norm`), before RoPE.
- MoE feed-forward: a linear router (`gate`) -> softmax in fp32 -> top-k -> optional
  renormalisation of the k probabilities (`norm_topk_prob`); the routed SwiGLU experts are
  stacked 3-D weights [num_experts, out, in] run as grouped GEMMs. Which layers are MoE
  follows HF's `decoder_sparse_step` / `mlp_only_layers` rule (`ModelArgs.is_moe_layer`);
  the others keep a dense `feed_forward`. No shared expert, no router bias.
- Optional sliding window on every layer (HF applies `config.sliding_window`, when set, to
  all layers of this model).

No q/k/v/o biases by default, no MLP biases. Single-device and inference-only: no KV cache,
no load-balancing loss.
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


class Attention(nn.Module):
    def __init__(self, args: ModelArgs):
        super().__init__()
        self.n_heads = args.n_heads
        self.n_kv_heads = args.n_kv_heads
        self.head_dim = args.head_dim
        self.wq = nn.Linear(args.dim, args.n_heads * args.head_dim, bias=args.attention_bias)
        self.wk = nn.Linear(args.dim, args.n_kv_heads * args.head_dim, bias=args.attention_bias)
        self.wv = nn.Linear(args.dim, args.n_kv_heads * args.head_dim, bias=args.attention_bias)
        self.wo = nn.Linear(args.n_heads * args.head_dim, args.dim, bias=args.attention_bias)
        self.q_norm = RMSNorm(args.head_dim, args.norm_eps)
        self.k_norm = RMSNorm(args.head_dim, args.norm_eps)

    def forward(
        self,
        x: torch.Tensor,
        rope: tuple[torch.Tensor, torch.Tensor],
        mask: torch.Tensor | None,
    ) -> torch.Tensor:
        batch, seq, _ = x.shape
        q = self.q_norm(self.wq(x).view(batch, seq, -1, self.head_dim)).transpose(1, 2)
        k = self.k_norm(self.wk(x).view(batch, seq, -1, self.head_dim)).transpose(1, 2)
        v = self.wv(x).view(batch, seq, -1, self.head_dim).transpose(1, 2)
        cos, sin = rope
        q, k = apply_rotary(q, cos, sin), apply_rotary(k, cos, sin)
        out = F.scaled_dot_product_attention(
            q,
            k,
            v,
            attn_mask=mask,
            is_causal=mask is None,
            enable_gqa=self.n_heads != self.n_kv_heads,
        )
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


class MoE(nn.Module):
    def __init__(self, args: ModelArgs):
        super().__init__()
        self.top_k = args.top_k
        self.norm_topk_prob = args.norm_topk_prob
        self.gate = nn.Linear(args.dim, args.num_experts, bias=False)  # the router
        self.experts = Experts(args.num_experts, args.dim, args.moe_hidden_dim)

    def route(self, logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Router logits -> (weights, expert indices), each (tokens, top_k)."""
        probs = F.softmax(logits, dim=-1, dtype=torch.float32)
        weights, indices = probs.topk(self.top_k, dim=-1)
        if self.norm_topk_prob:
            weights = weights / weights.sum(dim=-1, keepdim=True)
        return weights.to(logits.dtype), indices

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, seq, dim = x.shape
        x = x.view(-1, dim)
        weights, indices = self.route(self.gate(x))
        return self.experts(x, indices, weights).view(batch, seq, dim)


class TransformerBlock(nn.Module):
    def __init__(self, args: ModelArgs, layer_id: int):
        super().__init__()
        self.attention_norm = RMSNorm(args.dim, args.norm_eps)
        self.attention = Attention(args)
        self.ffn_norm = RMSNorm(args.dim, args.norm_eps)
        self.is_moe = args.is_moe_layer(layer_id)
        if self.is_moe:
            self.moe = MoE(args)
        else:
            self.feed_forward = FeedForward(args.dim, args.hidden_dim)

    def forward(
        self,
        x: torch.Tensor,
        rope: tuple[torch.Tensor, torch.Tensor],
        mask: torch.Tensor | None,
    ) -> torch.Tensor:
        h = x + self.attention(self.attention_norm(x), rope, mask)
        ffn = self.moe if self.is_moe else self.feed_forward
        return h + ffn(self.ffn_norm(h))


def sliding_window_mask(seq_len: int, window: int, device: torch.device) -> torch.Tensor:
    """Boolean (seq, seq): key j is visible from query i iff i - window < j <= i (as HF)."""
    distance = torch.arange(seq_len, device=device)[:, None] - torch.arange(seq_len, device=device)
    return (distance >= 0) & (distance < window)


class Model(nn.Module):
    def __init__(self, args: ModelArgs):
        super().__init__()
        self.args = args
        self.tok_embeddings = nn.Embedding(args.vocab_size, args.dim, padding_idx=args.pad_token_id)
        self.rotary = RotaryEmbedding(args.rope, args.head_dim)
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
        mask = None  # plain causal
        if self.args.sliding_window is not None:
            mask = sliding_window_mask(tokens.shape[1], self.args.sliding_window, tokens.device)
        for layer in self.layers:
            h = layer(h, rope, mask)
        h = self.norm(h)  # the last layer's output is freed before the head
        return self.output(h)
