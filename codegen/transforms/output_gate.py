"""Gate the attention output: `wo(out * sigmoid(wg(x)))`, the gate a projection of its own
(softplus in fp32 instead of sigmoid where the source has it; one gate per head where the
projection has one output per head)."""

from __future__ import annotations

from pathlib import Path

import libcst as cst
import libcst.matchers as m

from codegen.transforms import _attention_edits as edits
from codegen.transforms import _moe_edits as moe_edits
from codegen.transforms._ffn_edits import _method_body, self_assignment
from codegen.transforms.base import Transform
from codegen.transforms.edits import (
    EditError,
    InsertStatements,
    assigns,
    code_of,
    dotted,
    expression,
    run,
)
from codegen.transforms.qkv_bias import bias_setting

GATE = "self.wg = nn.Linear(args.dim, {features}, bias={bias})"
HEAD_BIAS = "self.gate_bias = nn.Parameter(torch.zeros(args.n_heads))  # added to each head's gate"
PLAIN = "torch.sigmoid(self.wg({x}))"
# the per-head bias broadcast over each head's features, then the heads flattened as `out` is
PER_HEAD = (
    "torch.sigmoid(self.wg({x}).unflatten(-1, (-1, {head})) + self.gate_bias[:, None]).flatten(-2)"
)

# the sigmoid of the gate taken in fp32, the product cast back (Inkling-2)
PLAIN_FP32 = "({out} * torch.sigmoid(self.wg({x}).float())).to({x}.dtype)"
# softplus taken in fp32 and cast back to the activations' dtype (laguna)
SOFTPLUS = "F.softplus(self.wg({x}).float()).to({x}.dtype)"
# one gate per head: the output's heads unflattened, each scaled by its gate
HEADS = "({out}.unflatten(-1, (-1, {head})) * {gate}.unsqueeze(-1)).flatten(-2)"

ZERO_INIT = """
def init_parameters(self, std: float) -> None:
    nn.init.zeros_(self.gate_bias)  # HF's _init_weights starts the gate bias at zero
"""


class AddOutputGate(Transform):
    """The attention output is multiplied by `sigmoid(wg(x))` before `wo` (AFMoE, Beam,
    HRM): `wg` projects the attention input to one gate per output feature; with
    `head_bias`, a learned per-head bias is added to the gate before the sigmoid.

    `projection` and `head_bias` are the HF attribute names the analysis found (the adapter
    maps `self_attn.<projection>` and `self_attn.<head_bias>`); `bias` is the gate
    projection's bias as analysed, read from the target's bool config switch instead where
    one biases it (HRM's `attention_bias`). `gate_bias` starts at zero where the target's
    `_init_weights` zeroes it. With `fp32` (the source upcasts the gate: Inkling-2) the
    sigmoid takes the gate in fp32 and the product is cast back to the input's dtype.
    """

    name = "add_output_gate"

    def apply(
        self,
        package,
        features=None,
        *,
        projection: str,
        bias: bool | str = False,
        head_bias: str | None = None,
        fn: str = "sigmoid",
        per_head: bool = False,
        fp32: bool = False,
    ) -> None:
        if fn not in ("sigmoid", "softplus") or (per_head and head_bias):
            raise EditError(f"an output gate through {fn!r} (per head: {per_head}) has no edit")
        fp32 = fp32 and fn == "sigmoid"  # softplus is taken in fp32 in any case
        if fp32 and (per_head or head_bias):
            raise EditError("an fp32 sigmoid gate per head or with a head bias has no edit")
        switch = _bias_switch(features, projection)
        enabled = switch or (bias is True)
        value = bias_setting(package, enabled, "attention output gate bias")
        width = _output_features(package)
        head = _head_size(package) if head_bias or per_head else None
        if per_head:
            width = "args.n_heads"
        new = GATE.format(features=width, bias=value)
        if head_bias:
            new += "\n" + HEAD_BIAS
        anchor = assigns("self.wo")
        run(package, "model.py", InsertStatements("Attention", "__init__", anchor, new))
        x = edits.param_names(package, "Attention", "forward")[1]

        def rewrite(call: cst.Call) -> cst.Call:
            out = call.args[0].value
            atom = out if isinstance(out, cst.Name | cst.Call | cst.Attribute) else _paren(out)
            code = code_of(atom)
            if fn == "softplus":
                gate = SOFTPLUS.format(x=x)
            else:
                gate = (PER_HEAD if head_bias else PLAIN).format(x=x, head=head)
            if fp32:
                gated = expression(PLAIN_FP32.format(out=code, x=x))
            elif per_head:
                gated = expression(HEADS.format(out=code, gate=gate, head=head))
            else:
                gated = cst.BinaryOperation(
                    left=atom, operator=cst.Multiply(), right=expression(gate)
                )
            return call.with_changes(args=[call.args[0].with_changes(value=gated)])

        edits.replace_expressions(
            package,
            "model.py",
            "Attention",
            "forward",
            lambda node: m.matches(node, m.Call(func=dotted("self.wo"))),
            rewrite,
        )
        hf = f"model.layers.{{}}.self_attn.{projection}"
        rows = [(f"{hf}.weight", "layers.{}.attention.wg.weight")]
        if enabled:
            rows.append((f"{hf}.bias", "layers.{}.attention.wg.bias"))
        if head_bias:
            own = f"model.layers.{{}}.self_attn.{head_bias}"
            rows.append((own, "layers.{}.attention.gate_bias"))
        adapter = package.module("state_dict_adapter.py").code
        wo = "attention.wo.bias" if "attention.wo.bias" in adapter else "attention.wo.weight"
        edits.insert_rows_after(package, f"layers.{{}}.{wo}", rows)
        if head_bias and zeroed_by_hf(features, head_bias):
            moe_edits.add_method(package, "model.py", "Attention", ZERO_INIT)


def _output_features(package) -> str:
    """The gate's width: `wo`'s input features (n_heads * v_head_dim under MLA)."""
    return code_of(_wo_input(package))


def _wo_input(package) -> cst.BaseExpression:
    wo = self_assignment(package, "model.py", "Attention", "__init__", "wo")
    if not m.matches(wo, m.Call(args=[m.Arg(), m.Arg(), m.ZeroOrMore()])):
        raise EditError("Attention.__init__ builds no `self.wo = nn.Linear(in, out, ...)`")
    return wo.args[0].value


def _head_size(package) -> str:
    """The attribute holding one head's width of the attention output `wo` reads: `wo`'s
    input features are `heads * size`, `size` an attribute of the attention (`self.v_head_dim`
    under MLA, whose query/key heads are wider) or the `args` field one holds
    (`self.head_dim = args.head_dim`). A per-head gate or bias splits the output by it."""
    features = _wo_input(package)
    heads = m.Attribute(value=m.Name("args") | m.Name("self"), attr=m.Name("n_heads"))
    if m.matches(features, m.BinaryOperation(operator=m.Multiply(), left=heads)):
        size = features.right
    elif m.matches(features, m.BinaryOperation(operator=m.Multiply(), right=heads)):
        size = features.left
    else:
        raise EditError(f"wo reads {code_of(features)} features: no heads * head size")
    if m.matches(size, m.Attribute(value=m.Name("self"))):
        return code_of(size)
    body = _method_body(package.module("model.py"), "Attention", "__init__")
    for statement in body:
        if m.matches(
            statement,
            m.SimpleStatementLine(
                body=[m.Assign(targets=[m.AssignTarget(m.Attribute(value=m.Name("self")))])]
            ),
        ) and statement.body[0].value.deep_equals(size):
            return code_of(statement.body[0].targets[0].target)
    raise EditError(f"no Attention attribute holds one head's size ({code_of(size)})")


def _paren(node: cst.BaseExpression) -> cst.BaseExpression:
    return node.with_changes(lpar=[cst.LeftParen()], rpar=[cst.RightParen()])


def _bias_switch(features, projection: str) -> str | None:
    """The target's bool config field whose True setting biases the gate projection."""
    for switch in getattr(features, "switches", ()):
        if switch.kind != "bool" or switch.container:
            continue
        for value in switch.values:
            if value.label != "True":
                continue
            for part in value.selects.split("; "):
                names = part.removeprefix("bias on ").split(",")
                if part.startswith("bias on ") and projection in {n.strip() for n in names}:
                    return switch.field
    return None


def zeroed_by_hf(features, name: str) -> bool:
    """Whether the target's HF modeling source zeroes `<module>.<name>` in its weight init
    (`init.zeros_(module.gate_bias)`, any `zeros_` spelling)."""
    path = getattr(getattr(features, "source", None), "modeling", "")
    if not path or not Path(path).is_file():
        return False
    zeros = m.Call(
        func=m.Attribute(attr=m.Name("zeros_")),
        args=[m.Arg(m.Attribute(attr=m.Name(name))), m.ZeroOrMore()],
    )
    return bool(m.findall(cst.parse_module(Path(path).read_text()), zeros))
