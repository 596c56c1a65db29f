"""Helpers for the before/after tests beside each transform."""

from __future__ import annotations

import libcst as cst

from codegen.models import references_dir
from codegen.scaffold.source import SourcePackage


def package_of(files: dict[str, str], name: str = "llama") -> SourcePackage:
    """A SourcePackage holding exactly these (dedented-as-given) sources."""
    return SourcePackage(
        name, {filename: cst.parse_module(text) for filename, text in files.items()}
    )


def reference_with_adapter(adapter: str, reference: str = "llama") -> SourcePackage:
    """The reference's model.py and args.py beside `adapter` as its state_dict_adapter.py (a
    table without the row a transform rewrites, say)."""
    files = SourcePackage.from_directory(references_dir() / reference).render()
    return package_of(
        {
            "model.py": files["model.py"],
            "args.py": files["args.py"],
            "state_dict_adapter.py": adapter,
        }
    )


def held_at_projection(attention, seq: int, *inputs) -> set[str]:
    """The names `attention.forward` still binds to a (.., seq, seq) or (.., seq, seq + 1)
    tensor it made (scores, logits, probabilities; not its arguments, the model's mask) when
    its output projection `wo` starts, read from the forward's frame."""
    import sys

    import torch

    code, held = type(attention).forward.__code__, set()
    arguments = set(code.co_varnames[: code.co_argcount + code.co_kwonlyargcount])

    def look(module, args):
        frame = sys._getframe(1)
        while frame.f_code is not code:
            frame = frame.f_back
        held.update(
            name
            for name, value in frame.f_locals.items()
            if name not in arguments
            and isinstance(value, torch.Tensor)
            and tuple(value.shape[-2:]) in square
        )

    square = {(seq, seq), (seq, seq + 1)}
    handle = attention.wo.register_forward_pre_hook(look)
    try:
        with torch.no_grad():
            attention(*inputs)
    finally:
        handle.remove()
    return held
