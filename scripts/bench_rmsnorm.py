"""What does normalising with `torch.rms_norm` save over transformers' RMSNorm, whole forward?

The house RMSNorm (`codegen/layers/norm.py`, copied into every package) calls torch's
`rms_norm` kernel on the fp32 values, where transformers' `Qwen3RMSNorm` (Llama's, and most
others') writes `x.pow(2)`, its mean and the product as tensors of their own; the values are
the same bit for bit. This times the qwen3 reference (block, final and q/k norms) against
the same model with every norm swapped for transformers' class holding the same weight, at
`bench_forward`'s size (4 layers, hidden 512, seq 512, batch 2, fp32, one torch thread, CPU
time). Rounds rotate (house, HF's norms, house again); each side's time is its fastest
round, and house-again against house (A/A) is the run's own noise.

    python scripts/bench_rmsnorm.py [--rounds 25] [--dtype bf16]

Prints the house/HF-norm and A/A ratios and the largest logit difference (0: the same model).
"""

from __future__ import annotations

import argparse
import copy
import sys
from pathlib import Path

# `python scripts/...` puts scripts/ on the path: the checkout's root holds `references`
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
from ablation_timing import fastest_rounds  # noqa: E402
from torch import nn  # noqa: E402
from transformers import Qwen3Config  # noqa: E402
from transformers.models.qwen3.modeling_qwen3 import Qwen3RMSNorm  # noqa: E402

from codegen.layers.norm import RMSNorm  # noqa: E402
from references.qwen3.args import ModelArgs  # noqa: E402
from references.qwen3.model import Model  # noqa: E402


def with_hf_norms(model: Model) -> Model:
    """A copy of `model` whose every RMSNorm is transformers' class with the same weight."""
    swapped = copy.deepcopy(model)
    for module in list(swapped.modules()):
        for name, child in list(module.named_children()):
            if isinstance(child, RMSNorm):
                hf_norm = Qwen3RMSNorm(child.weight.shape[0], eps=child.eps)
                hf_norm.weight = child.weight
                setattr(module, name, hf_norm)
    return swapped


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=25)
    parser.add_argument("--dtype", choices=("fp32", "bf16"), default="fp32")
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    config = Qwen3Config(
        hidden_size=512,
        intermediate_size=1536,
        num_hidden_layers=4,
        num_attention_heads=8,
        num_key_value_heads=2,
        head_dim=64,
        vocab_size=32000,
    )
    house = Model(ModelArgs.from_hf_config(config)).eval()
    for parameter in house.parameters():
        nn.init.normal_(parameter, mean=1.0 if parameter.dim() == 1 else 0.0, std=0.02)
    dtype = torch.bfloat16 if args.dtype == "bf16" else torch.float32
    house = house.to(dtype)
    hf_norms = with_hf_norms(house).eval()
    tokens = torch.randint(0, config.vocab_size, (2, 512))
    slots = [("house", house), ("hf_norms", hf_norms), ("house_again", house)]
    with torch.no_grad():
        difference = (house(tokens) - hf_norms(tokens)).abs().max().item()
    fastest = fastest_rounds(slots, tokens, args.rounds)
    print(
        f"house/hf_norms {fastest['house'] / fastest['hf_norms']:.4f}  "
        f"A/A {fastest['house_again'] / fastest['house']:.4f}  "
        f"house {fastest['house']:.3f} s  max |logit diff| {difference:.1e}  ({args.dtype})"
    )


if __name__ == "__main__":
    main()
