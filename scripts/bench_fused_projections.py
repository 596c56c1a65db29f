"""Would fusing q/k/v into one matmul, and gate/up into another, make a package faster?

The question behind it: generated packages keep a projection per checkpoint tensor (wq, wk,
wv; w1, w3), where vLLM and gpt-fast run one wide matmul each. A wider matmul alone is a
little faster on this CPU, so fusing looked like the way to put a margin between a package
and transformers' time. This answers it at the level that counts, the whole forward: the
llama reference against the same model with its projections fused (the weights
concatenated once, before timing, so the fused side pays no copy), at `bench_forward`'s
size (4 layers, hidden 512, intermediate 1536, seq 512, batch 2, fp32, one torch thread,
CPU time). Rounds rotate (base, fused, base again); each side's time is its fastest round,
and base-again against base (A/A) is the run's own noise.

    python scripts/bench_fused_projections.py [--kv-heads 8] [--rounds 25]

Prints the fused/base and A/A ratios and the largest logit difference (0: the same model).
"""

from __future__ import annotations

import argparse
import copy
import sys
from pathlib import Path

# `python scripts/...` puts scripts/ on the path: the checkout's root holds `references`
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from ablation_timing import fastest_rounds  # noqa: E402
from torch import nn  # noqa: E402
from transformers import LlamaConfig  # noqa: E402

from references.llama.args import ModelArgs  # noqa: E402
from references.llama.model import Attention, FeedForward, Model, apply_rotary  # noqa: E402


class FusedAttention(nn.Module):
    """`Attention` with wq, wk and wv run as one matmul whose output is split."""

    def __init__(self, separate: Attention):
        super().__init__()
        self.separate = separate
        weights = [separate.wq.weight, separate.wk.weight, separate.wv.weight]
        self.wqkv = nn.Parameter(torch.cat(weights).detach().clone())

    def forward(self, x: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        attention = self.separate
        batch, seq, _ = x.shape
        kv_width = attention.n_kv_heads * attention.head_dim
        qkv = F.linear(x, self.wqkv)
        q, k, v = (
            part.view(batch, seq, -1, attention.head_dim).transpose(1, 2)
            for part in qkv.split([qkv.shape[-1] - 2 * kv_width, kv_width, kv_width], dim=-1)
        )
        cos, sin = rope
        q, k = apply_rotary(q, cos, sin), apply_rotary(k, cos, sin)
        out = F.scaled_dot_product_attention(
            q, k, v, is_causal=True, enable_gqa=attention.n_heads != attention.n_kv_heads
        )
        return attention.wo(out.transpose(1, 2).reshape(batch, seq, -1))


class FusedFeedForward(nn.Module):
    """`FeedForward` with w1 and w3 run as one matmul whose output is halved."""

    def __init__(self, separate: FeedForward):
        super().__init__()
        self.w2 = separate.w2
        self.w13 = nn.Parameter(torch.cat([separate.w1.weight, separate.w3.weight]).detach())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate, up = F.linear(x, self.w13).chunk(2, dim=-1)
        return self.w2(F.silu(gate) * up)


def fused_copy(model: Model) -> Model:
    fused = copy.deepcopy(model)
    for layer in fused.layers:
        layer.attention = FusedAttention(layer.attention)
        layer.feed_forward = FusedFeedForward(layer.feed_forward)
    return fused


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kv-heads", type=int, default=8, help="of 8 query heads")
    parser.add_argument("--rounds", type=int, default=25)
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    config = LlamaConfig(
        hidden_size=512,
        intermediate_size=1536,
        num_hidden_layers=4,
        num_attention_heads=8,
        num_key_value_heads=args.kv_heads,
        vocab_size=32000,
    )
    base = Model(ModelArgs.from_hf_config(config)).eval()
    for parameter in base.parameters():
        nn.init.normal_(parameter, std=0.02)
    fused = fused_copy(base).eval()
    tokens = torch.randint(0, config.vocab_size, (2, 512))
    slots = [("base", base), ("fused", fused), ("base_again", base)]
    with torch.no_grad():
        difference = (base(tokens) - fused(tokens)).abs().max().item()
    fastest = fastest_rounds(slots, tokens, args.rounds)
    print(
        f"fused/base {fastest['fused'] / fastest['base']:.4f}  "
        f"A/A {fastest['base_again'] / fastest['base']:.4f}  "
        f"base {fastest['base']:.3f} s  max |logit diff| {difference:.1e}"
    )


if __name__ == "__main__":
    main()
