"""A learned one-element gain on the dense MLP's output (inkling's `global_scale`)."""

from __future__ import annotations

import libcst as cst

from codegen.transforms import _attention_edits as edits
from codegen.transforms._ffn_edits import rewrite_adapter
from codegen.transforms.base import Transform
from codegen.transforms.edits import (
    EditError,
    ScopedTransformer,
    run,
)

BUILD = "self.gain = nn.Parameter(torch.ones(1))  # a learned scale on the output, from one"
INIT = '''
def init_parameters(self, std: float) -> None:
    """The gain starts at one (the projections by the table)."""
    nn.init.ones_(self.gain)
'''


class FfnOutputGain(Transform):
    """`FeedForward` holds `gain`, a one-element parameter starting at one, and returns its
    output times it; the adapter maps the MLP's `gain` (the analysed `ffn.output_gain`, an
    attribute of HF's MLP) beside its down projection. A toy initialised as HF does holds
    one there, so verify's perturbed checkpoint is what shows a dropped gain."""

    name = "ffn_output_gain"

    def apply(self, package, features=None, *, gain: str = "") -> None:
        if not gain:
            raise EditError("ffn_output_gain needs the MLP's gain attribute")
        edits.append_to_method(package, "model.py", "FeedForward", "__init__", BUILD)
        run(package, "model.py", _DocumentGain(), required=False)
        scaled = _ScaleReturn()
        run(package, "model.py", scaled)
        edits.add_method_after_init(package, "FeedForward", INIT)
        found = []

        def rows(hf, house):
            if house is not None and house.endswith(".feed_forward.w2.weight"):
                found.append(house)
                prefix = hf.rsplit(".", 2)[0]
                return [(hf, house), (f"{prefix}.{gain}", house.replace("w2.weight", "gain"))]
            return [(hf, house)]

        rewrite_adapter(package, rows)
        if not found:
            raise EditError("state_dict_adapter.py has no row for the MLP's down projection")


class _ScaleReturn(ScopedTransformer):
    """`return <out>` in `FeedForward.forward` -> `return <out> * self.gain`."""

    def __init__(self):
        super().__init__("FeedForward", "forward")

    def leave_Return(self, original, updated):
        if not self.inside or updated.value is None:
            return updated
        self.hits += 1
        gain = cst.parse_expression("self.gain")
        return updated.with_changes(value=cst.BinaryOperation(updated.value, cst.Multiply(), gain))


class _DocumentGain(cst.CSTTransformer):
    """`FeedForward`'s one-line docstring (`SwiGLU: w2(silu(w1(x)) * w3(x)).`) ends
    `..., times `gain`.`: it says what the forward returns."""

    def __init__(self):
        super().__init__()
        self.hits = 0

    def leave_ClassDef(self, original, updated):
        body = updated.body.body
        if updated.name.value != "FeedForward" or not body:
            return updated
        first = body[0]
        doc = first.body[0].value if isinstance(first, cst.SimpleStatementLine) else None
        if not isinstance(doc, cst.SimpleString) or not doc.value.endswith('."""'):
            return updated
        self.hits += 1
        new = doc.with_changes(value=doc.value[: -len('."""')] + ', times `gain`."""')
        line = first.with_changes(body=[first.body[0].with_changes(value=new)])
        return updated.with_changes(body=updated.body.with_changes(body=[line, *body[1:]]))
