"""Attention both ways where a config setting makes it non-causal (Gemma 4's
`use_bidirectional_attention="all"`).

That setting makes the config non-causal (`is_causal = False`, and the attention's own
`is_causal`), and transformers' masking_utils then builds its bidirectional masks: a full
layer sees every key, a sliding layer the keys at most `sliding_window` away on either side
(`abs(q_idx - kv_idx) <= sliding_window`; the config has already converted its window for
this). The package reads the setting into `causal`: SDPA is causal only while `causal`
holds and no mask is given, and the window mask is symmetric when not causal.
"""

from __future__ import annotations

import json
import textwrap

import libcst as cst
import libcst.matchers as m

from codegen.transforms import _attention_edits as edits
from codegen.transforms import _moe_edits as moe_edits
from codegen.transforms.base import Transform
from codegen.transforms.edits import (
    EditError,
    InsertStatements,
    calls_super_init,
    expression,
    run,
    set_call_keyword,
    statements,
)

FIELD = "causal: bool = True  # False: attention sees the later tokens too (windows both ways)"
WINDOW = "sliding_window_mask"
_SDPA = "F.scaled_dot_product_attention"
BOTH_WAYS = """
if not causal:  # as masking_utils: abs(q_idx - kv_idx) <= window
    return torch.ones(seq, seq, dtype=torch.bool, device=device).tril(window).triu(-window)
"""
CAUSAL = "Causal mask limited to the last `window` keys (query included)"
BOTH = ", or, not `causal`, the keys at most `window` away on either side"


class BidirectionalAttention(Transform):
    """`causal = hf_config.<field> != <value>`: SDPA is causal only while it holds (and no
    mask is given), and the sliding window's mask looks both ways when it does not."""

    name = "bidirectional_attention"

    def apply(self, package, features=None, *, field: str, value) -> None:
        if edits.attention_is_explicit(package):
            raise EditError("Attention.forward writes its causal masking out")
        edits.replace_expressions(
            package,
            "model.py",
            "Attention",
            "forward",
            _causal_sdpa,
            lambda call: edits.set_arg(call, "is_causal", "self.causal and mask is None"),
        )
        run(
            package,
            "model.py",
            InsertStatements(
                "Attention", "__init__", calls_super_init, "self.causal = args.causal"
            ),
        )
        if edits.has_definition(package, "model.py", WINDOW):
            run(package, "model.py", _WindowBothWays())
            edits.replace_expressions(
                package,
                "model.py",
                "Model",
                None,
                edits.call_of(WINDOW),
                lambda call: set_call_keyword(call, "causal", expression("self.args.causal")),
            )
        moe_edits.add_args_fields(package, FIELD)
        moe_edits.add_config_kwargs(
            package, {"causal": f"hf_config.{field} != {json.dumps(value)}"}
        )


def _causal_sdpa(node: cst.CSTNode) -> bool:
    """`F.scaled_dot_product_attention(..., is_causal=mask is None, ...)`."""
    return edits.call_of(_SDPA)(node) and edits.arg_value(node, "is_causal") == "mask is None"


class _WindowBothWays(cst.CSTTransformer):
    """`def sliding_window_mask(seq, window, device)` takes `causal: bool` and returns the
    symmetric band before its causal one when it is False."""

    def __init__(self):
        super().__init__()
        self.hits = 0

    def leave_FunctionDef(self, original, updated):
        if updated.name.value != WINDOW:
            return updated
        body = list(updated.body.body)
        if not m.matches(body[-1], m.SimpleStatementLine(body=[m.Return()])):
            raise EditError(f"{WINDOW} does not end with its mask's return")
        if m.matches(body[0], m.SimpleStatementLine(body=[m.Expr(m.SimpleString())])):
            doc = body[0].body[0].value
            text = " ".join(doc.evaluated_value.split())
            if text.startswith(CAUSAL):
                lines = textwrap.wrap(CAUSAL + BOTH + text.removeprefix(CAUSAL), width=92)
                described = doc.with_changes(value='"""' + "\n    ".join(lines) + '"""')
                body[0] = body[0].with_changes(body=[body[0].body[0].with_changes(value=described)])
        body[-1:-1] = statements(BOTH_WAYS)
        self.hits += 1
        param = cst.Param(name=cst.Name("causal"), annotation=cst.Annotation(cst.Name("bool")))
        params = [*updated.params.params, param]
        params[-2:] = [p.with_changes(comma=cst.MaybeSentinel.DEFAULT) for p in params[-2:]]
        return updated.with_changes(
            params=updated.params.with_changes(params=params),
            body=updated.body.with_changes(body=body),
        )
