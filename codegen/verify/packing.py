"""Verify packed sequences: documents concatenated in one row with `cu_seqlens` give, per
document, HF's logits for that document run alone (block-diagonal causal attention,
positions restarting per document, windows and sinks per document).

The documents are of different lengths, one longer than every tiny config's sliding window,
so a mask that leaks across a boundary or a window applied to the whole row shows.

Optional id inputs both models take (`id_inputs`: the token types of a mask block) are
drawn per document and packed beside the tokens; HF runs each document with its own slice,
so a type block that crosses a document, or types the packed path drops, shows. Ids whose
packed run the package refuses in one line (side-table ids) are left out of both runs.
"""

from __future__ import annotations

import torch

from codegen.verify.compare import bound, compare
from codegen.verify.id_inputs import random_ids
from codegen.verify.tiny_config import SEQ_LEN, SHORT_SEQ_LEN

DOCUMENT_LENGTHS = (SHORT_SEQ_LEN, SEQ_LEN, 3)


def packed_batch(vocab_size: int, seed: int = 0) -> tuple[list[torch.Tensor], torch.Tensor]:
    """The documents (each (1, n)) and the cu_seqlens of their concatenation."""
    generator = torch.Generator().manual_seed(seed + 7)
    documents = [
        torch.randint(0, vocab_size, (1, n), generator=generator) for n in DOCUMENT_LENGTHS
    ]
    cu_seqlens = torch.tensor([0, *torch.tensor(DOCUMENT_LENGTHS).cumsum(0).tolist()])
    return documents, cu_seqlens.to(torch.int32)


def check(
    house_model, hf_model, vocab_size: int, noise, seed: int = 0, id_rows: dict | None = None
) -> str | None:
    """None when the packed logits match HF per document within HF's own fp32 noise, else
    one line naming the first document that differs. `id_rows`: `id_input_rows`' ids."""
    documents, cu_seqlens = packed_batch(vocab_size, seed)
    generator = torch.Generator().manual_seed(seed + 11)
    ids = [random_ids(id_rows or {}, document.shape, generator) for document in documents]
    row = torch.cat(documents, dim=1)
    with torch.no_grad():
        try:
            packed = _packed(house_model, row, cu_seqlens, _joined(ids))
        except NotImplementedError:  # the package refuses these ids packed: run without
            ids = [{} for _ in documents]
            packed = _packed(house_model, row, cu_seqlens, {})
        for index, document in enumerate(documents):
            start, end = int(cu_seqlens[index]), int(cu_seqlens[index + 1])
            want = hf_model(input_ids=document, **ids[index]).logits.float()
            got = packed[:, start:end]
            comparison = compare(got, want)
            if not bound("fp32", noise).admits(comparison):
                return (
                    f"packed document {index} (tokens {start}:{end}) differs from HF run alone: "
                    f"cos={comparison.cosine:.6f} max_diff={comparison.max_abs_diff:.2e}"
                )
    return None


def _joined(ids: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Each id input's per-document tensors concatenated along the row, as the tokens are."""
    return {name: torch.cat([each[name] for each in ids], dim=1) for name in ids[0]}


def _packed(house_model, row, cu_seqlens, ids) -> torch.Tensor:
    return house_model(row, cu_seqlens=cu_seqlens, max_seqlen=max(DOCUMENT_LENGTHS), **ids).float()
