"""Qwen2: llama with two differences.

- q/k/v projections carry a bias (o_proj and the MLP do not).
- Layers marked "sliding_attention" in `args.layer_types` attend to a window: the query at
  i sees keys i - sliding_window < j <= i (HF `sliding_window_overlay`: kv > q - window).
  Other layers are plain causal. The window mask is built once per forward, by sequence
  index (as HF does without a cache), and skipped when the sequence fits in the window.

Single-device and inference-only: no KV cache, no parallelism plumbing.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

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
        self.wq = nn.Linear(args.dim, args.n_heads * args.head_dim, bias=True)
        self.wk = nn.Linear(args.dim, args.n_kv_heads * args.head_dim, bias=True)
        self.wv = nn.Linear(args.dim, args.n_kv_heads * args.head_dim, bias=True)
        self.wo = nn.Linear(args.n_heads * args.head_dim, args.dim, bias=False)

    def forward(
        self, x: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor], mask: torch.Tensor | None
    ) -> torch.Tensor:
        """`mask`: boolean (seq, seq), True = attend; None = plain causal."""
        batch, seq, _ = x.shape
        q = self.wq(x).view(batch, seq, -1, self.head_dim).transpose(1, 2)
        k = self.wk(x).view(batch, seq, -1, self.head_dim).transpose(1, 2)
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


class TransformerBlock(nn.Module):
    def __init__(self, args: ModelArgs, layer_id: int):
        super().__init__()
        self.sliding = args.layer_types[layer_id] == "sliding_attention"
        self.attention_norm = RMSNorm(args.dim, args.norm_eps)
        self.attention = Attention(args)
        self.ffn_norm = RMSNorm(args.dim, args.norm_eps)
        self.feed_forward = FeedForward(args.dim, args.hidden_dim)

    def forward(
        self, x: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor], mask: torch.Tensor | None
    ) -> torch.Tensor:
        h = x + self.attention(self.attention_norm(x), rope, mask)
        return h + self.feed_forward(self.ffn_norm(h))


def sliding_window_mask(seq: int, window: int, device: torch.device) -> torch.Tensor | None:
    """Causal mask limited to the last `window` keys (query included); None if nothing is cut."""
    if seq <= window:
        return None
    # the keys 0 .. window - 1 positions back: on or below the diagonal, above its band's edge
    return torch.ones(seq, seq, dtype=torch.bool, device=device).tril().triu(1 - window)


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
        seq = tokens.shape[1]
        if positions is None:
            # one row for every sequence: tables of positions are built once, not per row
            positions = torch.arange(seq, device=tokens.device).unsqueeze(0)
        h = self.tok_embeddings(tokens)
        rope = self.rotary(positions)
        window = None
        if "sliding_attention" in self.args.layer_types:
            window = sliding_window_mask(seq, self.args.sliding_window, tokens.device)
        for layer in self.layers:
            h = layer(h, rope, window if layer.sliding else None)
        h = self.norm(h)  # the last layer's output is freed before the head
        return self.output(h)
