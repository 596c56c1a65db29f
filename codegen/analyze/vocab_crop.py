"""The logits cut to a config field's width: `logits[..., :config.unpadded_vocab_size]`.

A checkpoint may store its output head padded past the vocabulary (rows added for a size
that shards evenly); the model then drops the padding columns of the logits before anyone
reads them. Read from the causal LM's `forward` by its structure: a subscript whose last
element is a slice `:<bound>` (no start, no step, every element before it `...` or `:`), of
a name that holds the head's output (assigned from a call of the head attribute, or from an
expression over such a name: `logits = self.lm_head(h).float()`, `logits =
self.softcap(logits)`), the bound one config field read directly (`self.config.X`) or
through a local the method assigns from it (`n = self.config.X`). The crop is a fact of the
code whatever the analysed config holds: a guard around it (`if n is not None and n <
logits.shape[-1]`, inkling) keeps every column where the crop would not cut any, which a
slice by `None` or by a bound past the width does as well.
"""

from __future__ import annotations

import libcst as cst
import libcst.matchers as m

from codegen.analyze.context import Ctx
from codegen.analyze.walk import findall
from codegen.analyze.word_padding import _assigned, _field, _target

KEY = "head.vocab_crop"


def detect(ctx: Ctx, head_name: str | None) -> str:
    """The config field the logits' last axis is cut to; "" where the logits keep it whole."""
    model = ctx.model
    found = model.project.find_method(model.entry_cls, "forward") if head_name else None
    if found is None:
        ctx.cite(KEY, model.entry_cls.cite())
        return ""
    cls, forward = found
    logits = _head_outputs(forward, head_name)
    assigned = _assigned(forward)
    for node in findall(forward, m.Subscript(value=m.Name())):
        assert isinstance(node, cst.Subscript)
        bound = _last_axis_bound(node)
        if node.value.value not in logits or bound is None:
            continue
        field = _field(bound, assigned, depth=0)
        if field:
            config = model.config
            field = config.key(field) if config is not None else field
            ctx.cite(KEY, f"{cls.sf.cite(node, cls.node, forward)} (logits[..., :{field}])")
            return field
    ctx.cite(KEY, cls.cite(forward))
    return ""


def _head_outputs(forward: cst.FunctionDef, head_name: str) -> set[str]:
    """Local names holding the head's output: assigned from an expression calling
    `self.<head_name>`, or reading a name that does (to a fixed point)."""
    head_call = m.Call(func=m.Attribute(value=m.Name("self"), attr=m.Name(head_name)))
    assigns = [
        (name, node.value)
        for node in findall(forward, m.Assign())
        if len(node.targets) == 1 and (name := _target(node.targets[0].target))
    ]
    names: set[str] = set()
    grown = True
    while grown:
        grown = False
        for name, value in assigns:
            if name in names:
                continue
            reads = {n.value for n in findall(value, m.Name())}
            if findall(value, head_call) or reads & names:
                names.add(name)
                grown = True
    return names


def _last_axis_bound(node: cst.Subscript) -> cst.BaseExpression | None:
    """`<bound>` of `x[..., :<bound>]` / `x[:, :, :<bound>]`: the last of three axes or
    more; None for any other subscript."""
    *leading, last = node.slice
    sl = last.slice
    if not isinstance(sl, cst.Slice) or sl.lower is not None or sl.step is not None:
        return None
    if sl.upper is None or not leading:
        return None
    ellipsis = [m.matches(e.slice, m.Index(value=m.Ellipsis())) for e in leading]
    for element, is_ellipsis in zip(leading, ellipsis, strict=True):
        part = element.slice
        whole = isinstance(part, cst.Slice) and part.lower is part.upper is part.step is None
        if not whole and not is_ellipsis:
            return None
    # `x[:, :n]` cuts the sequence of (batch, seq, vocab) logits, not their vocabulary
    return sl.upper if any(ellipsis) or len(leading) >= 2 else None
