"""Rotate the trailing rotary_dim dims of each q/k head; the leading ones pass."""

from __future__ import annotations

import libcst as cst
import libcst.matchers as m

from codegen.transforms._rope_edits import use_rotation
from codegen.transforms.base import Transform
from codegen.transforms.edits import EditError, add_import, is_statement, run, statements

# the package's rope.py when the reference has none (the house layout: rope.py exists only
# where the RoPE differs from the shared one)
ROPE_MODULE = '''
"""RoPE on the trailing dims of each head, by the shared rotary tables (`RotaryEmbedding`)."""

from __future__ import annotations

import torch
'''

APPLY_ROTARY_TRAILING = '''
def apply_rotary_trailing(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate the trailing rotary_dim = cos.shape[-1] dims of x (batch, heads, seq, head_dim)
    with `{rotate}`; the leading dims pass (each head is [passed | rotated])."""
    rotary_dim = cos.shape[-1]
    passed, turned = x[..., :-rotary_dim], x[..., -rotary_dim:]
    return torch.cat((passed, {rotate}(turned, cos, sin)), dim=-1)
'''

# the rotations a package's attention calls, and where the one that is not the package's
# own comes from
ROTATIONS = {"apply_rotary": "codegen.layers.rope", "apply_rotary_interleaved": None}
# `interleaved_rope`'s rotation turns its leading slice where the tables are narrower than the
# head: the slice and the glue, the docstring's sentence, each as trailing
PAIRS = "apply_rotary_interleaved"
PAIRS_SLICES = (
    (
        "turned, passed = x[..., :rotary_dim], x[..., rotary_dim:]",
        "passed, turned = x[..., :-rotary_dim], x[..., -rotary_dim:]",
    ),
    (
        "return torch.cat((turned * cos + rotate_pairs(turned) * sin, passed), dim=-1)",
        "return torch.cat((passed, turned * cos + rotate_pairs(turned) * sin), dim=-1)",
    ),
)
PAIRS_DOC = (
    "Only the leading rotary_dim dims turn.",
    "Only the trailing rotary_dim dims turn.",
)


class TrailingRotary(Transform):
    """A partial rotation turns the trailing `cos.shape[-1]` dims of each q/k head, glued after
    the leading dims that pass: in halves, attention rotates with `apply_rotary_trailing`
    (new in the package's rope.py, the shared `apply_rotary` on that slice); in pairs
    (after `interleaved_rope`), `apply_rotary_interleaved` splits and glues its slice the
    other way round.

    HF lays such heads out as [nope | rope] (DeepSeek-V4: `nope, rope = x[..., :-d],
    x[..., -d:]`, `cat([nope, rotated])`), where the partial rotary of the references turns
    the leading dims; the tables are the same, only the slice they turn differs.
    """

    name = "trailing_rotary"

    def apply(self, package, features=None) -> None:
        called = _Rotations()
        package.files["model.py"].visit(called)
        if len(called.names) != 1:
            raise EditError(f"model.py calls {sorted(called.names) or 'no'} rotation(s), not one")
        (rotate,) = called.names
        if rotate == PAIRS:  # the package's own partial rotation: its slice turned around
            run(package, "rope.py", _TurnTrailing())
            return
        _add_function(package, rotate)
        use_rotation(package, rotate, "apply_rotary_trailing")


class _TurnTrailing(cst.CSTTransformer):
    """In `apply_rotary_interleaved`: the leading slice's split and glue become the trailing
    slice's (`PAIRS_SLICES`), its docstring says so; each statement found or no hit."""

    def __init__(self):
        super().__init__()
        self.hits = 0

    def leave_FunctionDef(self, original, updated):
        if original.name.value != PAIRS:
            return updated
        body = list(updated.body.body)
        for old, new in PAIRS_SLICES:
            at = [i for i, statement in enumerate(body) if is_statement(old)(statement)]
            if len(at) != 1:
                raise EditError(f"{PAIRS} has no statement {old!r}")
            body[at[0]] = statements(new)[0].with_changes(leading_lines=body[at[0]].leading_lines)
        doc = body[0].body[0].value if m.matches(body[0], _DOCSTRING) else None
        if doc is None or PAIRS_DOC[0] not in doc.value:
            raise EditError(f"{PAIRS}'s docstring does not say which dims turn")
        text = doc.value.replace(*PAIRS_DOC)
        body[0] = body[0].with_changes(body=[cst.Expr(doc.with_changes(value=text))])
        self.hits += 1
        return updated.with_changes(body=updated.body.with_changes(body=body))


_DOCSTRING = m.SimpleStatementLine(body=[m.Expr(value=m.SimpleString())])


class _Rotations(cst.CSTVisitor):
    def __init__(self):
        super().__init__()
        self.names: set[str] = set()

    def visit_Call(self, node):
        if isinstance(node.func, cst.Name) and node.func.value in ROTATIONS:
            self.names.add(node.func.value)


def _add_function(package, rotate: str) -> None:
    module = package.files.get("rope.py") or cst.parse_module(ROPE_MODULE.lstrip())
    defined = {s.name.value for s in module.body if isinstance(s, cst.FunctionDef)}
    if "apply_rotary_trailing" in defined:
        raise EditError("rope.py already defines apply_rotary_trailing")
    if ROTATIONS[rotate] is None and rotate not in defined:
        raise EditError(f"model.py calls {rotate}, which rope.py does not define")
    new = statements(APPLY_ROTARY_TRAILING.format(rotate=rotate))
    package.files["rope.py"] = module.with_changes(body=[*module.body, *new])
    if ROTATIONS[rotate] is not None:
        add_import(package, "rope.py", ROTATIONS[rotate], rotate)
