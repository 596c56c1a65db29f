"""Differential attention (DiffLlama): two attention maps per head pair, the second scaled by
a learned lambda and subtracted, then a weightless RMSNorm and a (1 - lambda_init) scale."""

from __future__ import annotations

import libcst as cst

from codegen.transforms import _attention_edits as edits
from codegen.transforms import _moe_edits as moe_edits
from codegen.transforms._rope_edits import add_args_field
from codegen.transforms.base import Transform
from codegen.transforms.edits import EditError, InsertStatements, assigns, run

PARAMS = """
# the second map's weight at the start (then learned), a function of the layer index
self.lambda_init = {lambda_init}
self.lambda_q1 = nn.Parameter(torch.zeros(args.head_dim))
self.lambda_k1 = nn.Parameter(torch.zeros(args.head_dim))
self.lambda_q2 = nn.Parameter(torch.zeros(args.head_dim))
self.lambda_k2 = nn.Parameter(torch.zeros(args.head_dim))
self.norm_eps = args.norm_eps
"""

# each value head split in two halves; both maps of a head pair read [half 1 | half 2]
VALUES = """
v1, v2 = v.chunk(2, dim=1)
v1, v2 = v1.repeat(1, 2, 1, 1), v2.repeat(1, 2, 1, 1)
"""

# heads [0, n/2) are the first maps, heads [n/2, n) the second ones of the same pairs; `out`
# is laid out (batch, seq, heads, 2 * head_dim), as the output projection reads it
COMBINE = """
out1, out2 = out.chunk(2, dim=2)
lambda_1 = torch.exp((self.lambda_q1 * self.lambda_k1).sum(-1, dtype=torch.float32))
lambda_2 = torch.exp((self.lambda_q2 * self.lambda_k2).sum(-1, dtype=torch.float32))
lambda_full = lambda_1.to(q.dtype) - lambda_2.to(q.dtype) + self.lambda_init
out = out1 - lambda_full * out2
out = (1 - self.lambda_init) * F.rms_norm(out, (out.shape[-1],), eps=self.norm_eps)
"""

INIT = """
def init_parameters(self, std: float) -> None:
    for weight in (self.lambda_q1, self.lambda_k1, self.lambda_q2, self.lambda_k2):
        nn.init.normal_(weight, mean=0.0, std=self.lambda_std)  # HF: config.{field}
"""

HOUSE_LAMBDAS = ("lambda_q1", "lambda_k1", "lambda_q2", "lambda_k2")
STD = "float = 0.1  # std of the lambda vectors' random start"

_SDPA = "F.scaled_dot_product_attention"


class DifferentialAttention(Transform):
    """`Attention` computes (softmax(q1 k1) - lambda * softmax(q2 k2)) v per head pair:
    the values are halved and both halves read by every head (one SDPA call per half, their
    outputs side by side), heads [0, n/2) minus lambda times heads [n/2, n), a weightless RMSNorm
    over the pair's 2 * head_dim features, times (1 - lambda_init).

    `differential` is the analysed `attention.differential`: `lambda_init`, an expression of
    `layer_id` (the block hands its index to the attention); `lambdas`, the HF names of the
    four learned vectors (q1, k1, q2, k2), mapped by the adapter; `init_std`, the config
    field their normal start reads (else they start like any parameter).
    """

    name = "differential_attention"

    def apply(self, package, features=None, *, differential: dict) -> None:
        lambda_init = differential.get("lambda_init")
        lambdas = tuple(differential.get("lambdas") or ())
        init_std = differential.get("init_std")
        if not lambda_init or len(lambdas) != 4:
            raise EditError(f"differential attention needs four lambda vectors, got {lambdas}")
        layer_id = edits.ensure_layer_id(package)
        edits.add_param(package, "Attention", "__init__", "layer_id: int")
        edits.replace_expressions(
            package,
            "model.py",
            "TransformerBlock",
            "__init__",
            edits.call_of("Attention"),
            lambda call: edits.with_arg(call, layer_id),
        )
        new = PARAMS.format(lambda_init=lambda_init)
        if init_std:
            new += "self.lambda_std = args.lambda_std\n"
        run(package, "model.py", InsertStatements("Attention", "__init__", assigns("self.wo"), new))
        if "import math" not in package.module("model.py").code and "math." in lambda_init:
            edits.insert_definition(package, "model.py", "import math\n")  # tidy sorts it
        sdpa = assigns("out", calling=_SDPA)
        values = InsertStatements("Attention", "forward", sdpa, VALUES, before=True)
        run(package, "model.py", values)
        run(package, "model.py", InsertStatements("Attention", "forward", sdpa, COMBINE))
        edits.replace_expressions(
            package, "model.py", "Attention", "forward", edits.call_of(_SDPA), _per_half
        )
        # already (batch, seq, heads, features): the output projection's input is a view of
        # it, where a transpose back would copy the whole attention output in every layer
        edits.replace_expressions(
            package,
            "model.py",
            "Attention",
            "forward",
            edits.is_code("out.transpose(1, 2)"),
            lambda _: cst.Name("out"),
        )
        if init_std:
            add_args_field(package, "lambda_std", STD, f"hf_config.{init_std}")
            moe_edits.add_method(package, "model.py", "Attention", INIT.format(field=init_std))
        rows = [
            (f"model.layers.{{}}.self_attn.{hf}", f"layers.{{}}.attention.{house}")
            for hf, house in zip(lambdas, HOUSE_LAMBDAS, strict=True)
        ]
        adapter = package.module("state_dict_adapter.py").code
        anchor = "layers.{}.attention.wo.weight"
        if "attention.wo.bias" in adapter:
            anchor = "layers.{}.attention.wo.bias"
        edits.insert_rows_after(package, anchor, rows)


def _per_half(call: cst.Call) -> cst.Call:
    """`torch.cat((sdpa(.., v1, ..).transpose(1, 2), sdpa(.., v2, ..).transpose(1, 2)),
    dim=-1)`: each call's value is as wide as its queries, which keeps SDPA on its fused CPU
    kernel; one call with a value twice as wide falls back to the unfused path (diffllama's
    forward took 1.10x HF's CPU time). The halves are joined with the sequence before the
    heads, so the pair difference, its norm and the output projection's reshape copy nothing
    more (joined by heads, the reshape copied every layer's output: 1.009x HF's bytes)."""
    template = cst.parse_expression(
        "torch.cat((first.transpose(1, 2), second.transpose(1, 2)), dim=-1)"
    )
    pair = template.args[0].value
    halves = [_with_value(call, name) for name in ("v1", "v2")]
    elements = [
        e.with_changes(value=e.value.with_changes(func=e.value.func.with_changes(value=h)))
        for e, h in zip(pair.elements, halves, strict=True)
    ]
    first = template.args[0].with_changes(value=pair.with_changes(elements=elements))
    return template.with_changes(args=[first, *template.args[1:]])


def _with_value(call: cst.Call, name: str) -> cst.Call:
    """The SDPA call with its value argument (third positional, or `value=`) read from `name`."""
    positional = [index for index, arg in enumerate(call.args) if arg.keyword is None]
    keyed = [i for i, arg in enumerate(call.args) if arg.keyword and arg.keyword.value == "value"]
    index = keyed[0] if keyed else positional[2] if len(positional) > 2 else None
    if index is None:
        raise EditError(f"{_SDPA} without a value argument")
    args = list(call.args)
    args[index] = args[index].with_changes(value=cst.Name(name))
    return call.with_changes(args=args)
