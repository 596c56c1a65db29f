"""Packed sequences: several documents concatenated in one row, split by `cu_seqlens`.

Engines pack documents into one row and pass `cu_seqlens` (flash-attn varlen layout: the
start of every document and the total length, over the flattened batch). Attention must not
cross a document boundary, and positions restart per document. Here every document runs
through the model alone, so block-diagonal causal attention, windows and sinks hold per
document exactly as in an unpacked run; no varlen kernel is needed on CPU.
"""

from __future__ import annotations

import torch
from torch import nn


def document_bounds(cu_seqlens: torch.Tensor, total: int) -> list[tuple[int, int]]:
    """[(start, end)] per document; a clear error when cu_seqlens does not cover the row."""
    bounds = [int(b) for b in cu_seqlens.flatten().tolist()]
    if len(bounds) < 2 or bounds[0] != 0 or bounds[-1] != total:
        raise ValueError(f"cu_seqlens must run from 0 to {total} tokens, got {bounds}")
    pairs = list(zip(bounds[:-1], bounds[1:], strict=True))
    if any(end <= start for start, end in pairs):
        raise ValueError(f"cu_seqlens must be strictly increasing, got {bounds}")
    return pairs


def forward_packed(
    model: nn.Module,
    tokens: torch.Tensor,
    positions: torch.Tensor | None,
    cu_seqlens: torch.Tensor,
    **per_token: torch.Tensor | None,
) -> torch.Tensor:
    """Logits (*tokens.shape, vocab) with each document of the flattened batch run alone;
    `positions` None: 0..n-1 within each document. `per_token`: further inputs shaped as
    `tokens` (token types), each document handed its own slice under the same name; None
    ones are left out."""
    flat = tokens.reshape(-1)
    cut = {name: ids.reshape(-1) for name, ids in per_token.items() if ids is not None}
    if positions is not None:
        cut["positions"] = positions.reshape(-1)
    logits = []
    for start, end in document_bounds(cu_seqlens, flat.numel()):
        document = {name: ids[start:end][None] for name, ids in cut.items()}
        logits.append(model(flat[start:end][None], **document))
    return torch.cat(logits, dim=1).view(*tokens.shape, -1)
