"""Threshold the feed-forward's gate at each row's mean + k * std before its activation."""

from __future__ import annotations

import libcst as cst

from codegen.transforms import _attention_edits as edits
from codegen.transforms.base import Transform
from codegen.transforms.edits import InsertStatements, expression, returns, run

GAUSSIAN_TOPK = '''
def gaussian_topk(x: torch.Tensor, k: float) -> torch.Tensor:
    """The values of each row above mean + k * std (population std), less that cutoff; k is
    taken in x's dtype."""
    mean = x.mean(dim=-1, keepdim=True)
    std = x.std(dim=-1, keepdim=True, unbiased=False)
    return F.relu(x - (mean + std * x.new_tensor(k)))
'''

CUTOFF = """
# the gate keeps only its values above mean + k * std of each row, k the standard normal's
# `sparsity` quantile (0: the gate as projected)
self.k = None
if sparsity > 0:
    with torch.device("cpu"):  # a number, also where the model is built on the meta device
        target = torch.tensor(sparsity, dtype=torch.float32)
        self.k = torch.distributions.Normal(0.0, 1.0).icdf(target).item()
"""

THRESHOLD = """
gate = self.w1(x)
if self.k is not None:
    gate = gaussian_topk(gate, self.k)
"""


class ActivationSparsity(Transform):
    """`self.w1(x)` in FeedForward.forward -> `gaussian_topk(self.w1(x), k)` where the layer's
    target sparsity is positive (gemma3n's Gaussian top-k).

    `sparsity` is the analysis's `ffn.activation_sparsity`: the config field holding the
    target sparsity and whether it holds one value per layer. FeedForward takes `sparsity`
    (default 0: no threshold) and turns it into k, the standard normal's quantile, once in
    fp32 as HF does; the block passes the layer's value, ModelArgs maps the field.
    """

    name = "activation_sparsity"

    def apply(self, package, features=None, *, sparsity: dict) -> None:
        field, per_layer = sparsity["field"], sparsity["per_layer"]
        edits.add_param(package, "FeedForward", "__init__", "sparsity: float = 0.0")
        edits.append_to_method(package, "model.py", "FeedForward", "__init__", CUTOFF)
        # the first `self.w1(x)` becomes `gate`, computed (and thresholded) the line before
        edits.replace_expressions(
            package,
            "model.py",
            "FeedForward",
            "forward",
            edits.is_code("self.w1(x)"),
            lambda _: expression("gate"),
        )
        run(
            package,
            "model.py",
            InsertStatements("FeedForward", "forward", returns("gate"), THRESHOLD, before=True),
        )
        edits.insert_definition(package, "model.py", GAUSSIAN_TOPK.strip(), before="FeedForward")
        layer = edits.ensure_layer_id(package)
        value = f"args.activation_sparsity[{layer}]" if per_layer else "args.activation_sparsity"
        edits.replace_expressions(
            package,
            "model.py",
            "TransformerBlock",
            "__init__",
            edits.call_of("FeedForward"),
            lambda call: edits.with_arg(call, value, keyword="sparsity"),
        )
        if per_layer:
            code = (
                "# each layer's target sparsity of the FFN gate (the fraction cut, before the"
                " activation)\nactivation_sparsity: tuple[float, ...] = ()"
            )
            hf = f"activation_sparsity=tuple(hf_config.{field})"
        else:
            code = "activation_sparsity: float = 0.0  # the FFN gate's target sparsity (0: none)"
            hf = f"activation_sparsity=hf_config.{field}"
        edits.add_args_field(package, code, hf)
        run(package, "model.py", _DocstringNote())
        if "parallelize.py" in package.files:  # the shard plan keeps the FFN whole
            run(package, "parallelize.py", _WholeFfnInPlanDocstring(), required=False)


class _DocstringNote(cst.CSTTransformer):
    """FeedForward's docstring gains a line on the threshold."""

    hits = 0

    def leave_ClassDef(self, original, updated):
        if original.name.value != "FeedForward":
            return updated
        first = updated.body.body[0]
        doc = first.body[0].value if isinstance(first, cst.SimpleStatementLine) else None
        if not isinstance(doc, cst.SimpleString):
            return updated
        self.hits += 1
        text = doc.evaluated_value.rstrip()
        text += "\n\n    The gate goes through gaussian_topk first where `sparsity` > 0.\n    "
        line = cst.SimpleStatementLine([cst.Expr(cst.SimpleString(f'"""{text}"""'))])
        return updated.with_changes(
            body=updated.body.with_changes(body=[line, *updated.body.body[1:]])
        )


# the references' shard-plan docstring, and what it says with the FFN replicated
_SPLIT = (
    "Column-wise q/k/v and gate/up, row-wise o and down, the embedding and the output head"
    " split\nover the vocabulary (logits gathered), "
)
_WHOLE = (
    "Column-wise q/k/v, row-wise o, the feed-forward replicated (its top-k needs the whole\n"
    "gate), the embedding and the output head split over the vocabulary (logits gathered),\n"
)


class _WholeFfnInPlanDocstring(cst.CSTTransformer):
    """parallelize.py's module docstring: the FFN is not split (rules/sharding.py)."""

    hits = 0

    def leave_Module(self, original, updated):
        first = updated.body[0] if updated.body else None
        doc = first.body[0].value if isinstance(first, cst.SimpleStatementLine) else None
        if not isinstance(doc, cst.SimpleString) or _SPLIT not in doc.value:
            return updated
        self.hits += 1
        new = doc.with_changes(value=doc.value.replace(_SPLIT, _WHOLE, 1))
        statement = first.with_changes(body=[first.body[0].with_changes(value=new)])
        return updated.with_changes(body=[statement, *updated.body[1:]])
