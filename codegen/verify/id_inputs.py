"""Optional id inputs beside the token ids: the side tables' ids verify passes to both models.

Some models look up more tables than the word table, each with ids of its own that the
forward takes as an optional argument (RoCBert's glyph-shape and pronunciation ids). Without
them HF reads one row of each table (row 0, which is the padding row, zero, when the pad id
is 0), so a table the package drops or concatenates in the wrong place changes nothing.

An argument counts when HF's forward takes it (named `*_ids`, default None, other than the
token and position ids), the package's forward takes it under the same name, and HF runs
with it given. Where HF hands it, unchanged, to one of its embedding tables, that table's
row count bounds the random ids. Where no table reads it, it is drawn in 0/1 when it is a
token type of a mask block (HRM-Text's `token_type_ids`: the tokens of type 1 see each other
both ways): a lone token of type 1 changes none of HF's logits (a block of one token is the
causal mask). So are types HF ignores (its config switch off): the package must ignore
them too. An argument HF uses otherwise (X-MOD's `lang_ids`, which pick an adapter per
token) is not drawn.
"""

from __future__ import annotations

import inspect

import torch

# the arguments verify already drives
KNOWN = frozenset({"input_ids", "position_ids"})
TYPES = 2  # ids no table reads: token types 0 and 1


def _optional_ids(forward) -> list[str]:
    """The forward's optional `*_ids` arguments, other than `KNOWN`."""
    try:
        parameters = inspect.signature(forward).parameters.values()
    except (TypeError, ValueError):
        return []
    return [
        p.name
        for p in parameters
        if p.name.endswith("_ids") and p.name not in KNOWN and p.default is None
    ]


def id_input_rows(hf_model, house_model, tokens: torch.Tensor) -> dict[str, int]:
    """Per optional id argument both forwards take: the row count of the HF table it indexes
    (found by running HF on `tokens` once per argument, given as zeros shaped like them), or
    `TYPES` for the token types of a mask block."""
    names = set(_optional_ids(house_model.forward))
    names = [name for name in _optional_ids(hf_model.forward) if name in names]
    rows: dict[str, int] = {}
    for name in names:
        probe, seen = torch.zeros_like(tokens), []

        def record(module, args, probe=probe, seen=seen):
            if args and args[0] is probe:
                seen.append(module.num_embeddings)

        hooks = [
            module.register_forward_pre_hook(record)
            for module in hf_model.modules()
            if isinstance(module, torch.nn.Embedding)
        ]
        try:
            with torch.no_grad():
                hf_model(input_ids=tokens, **{name: probe})
        except Exception:  # HF cannot run with it (a table too wide to add): not drawn
            continue
        finally:
            for hook in hooks:
                hook.remove()
        if seen:
            rows[name] = seen[0]
        elif _block_types(hf_model, tokens, name):
            rows[name] = TYPES
    return rows


def _block_types(hf_model, tokens: torch.Tensor, name: str) -> bool:
    """HF's logits with `name` all 0 equal those with one token of type 1 (the last: a
    block of its own)."""
    zeros = torch.zeros_like(tokens)
    lone = zeros.clone()
    lone[:, -1] = 1
    with torch.no_grad():
        plain, one = (hf_model(input_ids=tokens, **{name: ids}).logits for ids in (zeros, lone))
    return torch.equal(plain, one)


def random_ids(rows: dict[str, int], shape, generator: torch.Generator) -> dict[str, torch.Tensor]:
    """Random ids for each argument of `rows`, shaped like the tokens."""
    return {
        name: torch.randint(0, count, shape, generator=generator) for name, count in rows.items()
    }


def package_id_rows(config, house_model, tokens: torch.Tensor, seed: int = 0) -> dict[str, int]:
    """`id_input_rows` for a check that builds no HF model of its own (tensor parallel): a
    random one of `config` is built only when the package's forward takes optional ids."""
    if not _optional_ids(house_model.forward):
        return {}
    from codegen.verify.hf_checkpoint import random_hf_model

    return id_input_rows(random_hf_model(config, seed), house_model, tokens)
