"""Rotate q/k in adjacent pairs (x0, x1), (x2, x3), ... instead of llama's two halves."""

from __future__ import annotations

import libcst as cst

from codegen.transforms._rope_edits import use_rotation
from codegen.transforms.base import Transform
from codegen.transforms.edits import EditError, statements

# the package's rope.py when the reference has none (the house layout: rope.py exists only
# where the RoPE differs from the shared one)
ROPE_MODULE = '''
"""RoPE in interleaved pairs, turned by the shared rotary tables (`RotaryEmbedding`)."""

from __future__ import annotations

import torch
'''

ROTATE_PAIRS = '''
def rotate_pairs(x: torch.Tensor) -> torch.Tensor:
    """(x0, x1, x2, x3, ...) -> (-x1, x0, -x3, x2, ...)."""
    even, odd = x[..., 0::2], x[..., 1::2]
    return torch.stack((-odd, even), dim=-1).flatten(-2)
'''

APPLY_ROTARY_INTERLEAVED = '''
def apply_rotary_interleaved(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate x (batch, heads, seq, head_dim) pair by pair: pair i turns by frequency i.

    cos/sin (batch, seq, rotary_dim) are the shared cat(freqs, freqs) tables; their first half
    is repeated per pair, one frequency to each. Only the leading rotary_dim dims turn.
    """
    half = cos.shape[-1] // 2
    cos = cos[..., :half].repeat_interleave(2, dim=-1).unsqueeze(1).to(x.dtype)
    sin = sin[..., :half].repeat_interleave(2, dim=-1).unsqueeze(1).to(x.dtype)
    rotary_dim = cos.shape[-1]
    if rotary_dim == x.shape[-1]:  # full rotary: no pass-through to glue back (no copy)
        return x * cos + rotate_pairs(x) * sin
    turned, passed = x[..., :rotary_dim], x[..., rotary_dim:]
    return torch.cat((turned * cos + rotate_pairs(turned) * sin, passed), dim=-1)
'''


class InterleavedRope(Transform):
    """Attention rotates q/k with `apply_rotary_interleaved` (new in the package's rope.py):
    pairs of adjacent dims, each pair by one frequency (glm / glm4 / cohere style).

    HF writes it two ways with the same result: cohere builds `repeat_interleave(freqs, 2)`
    tables, glm4 repeats the first half of the usual `cat(freqs, freqs)` tables; both then
    rotate with `rotate_every_two`. The house version keeps the shared tables and does the
    glm4 re-layout. Results stay in place (not de-interleaved), so q/k match HF dim for dim.
    Cohere upcasts q/k to fp32 for the rotation; in bf16 that differs from this by rounding
    only. Partial rotary composes: the leading `cos.shape[-1]` dims turn, the rest pass.
    """

    name = "interleaved_rope"

    def apply(self, package, features=None) -> None:
        _add_rope_functions(package)
        use_rotation(package, "apply_rotary", "apply_rotary_interleaved")


def _add_rope_functions(package) -> None:
    module = package.files.get("rope.py") or cst.parse_module(ROPE_MODULE.lstrip())
    defined = {s.name.value for s in module.body if isinstance(s, cst.FunctionDef)}
    if "apply_rotary_interleaved" in defined:
        raise EditError("rope.py already defines apply_rotary_interleaved")
    if "import torch" not in module.code:
        raise EditError("the package's rope.py does not import torch")
    new = [s for s in statements(ROTATE_PAIRS + "\n" + APPLY_ROTARY_INTERLEAVED)]
    package.files["rope.py"] = module.with_changes(body=[*module.body, *new])
