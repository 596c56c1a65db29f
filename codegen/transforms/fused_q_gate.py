"""Gate the attention output with rows of the query projection: `wo(out * sigmoid(gate))`,
the gate cut out of the same matmul as the queries (A.X-K2's `q_gate_proj`)."""

from __future__ import annotations

import libcst as cst
import libcst.matchers as m

from codegen.transforms import _attention_edits as edits
from codegen.transforms._ffn_edits import rewrite_adapter, self_assignment
from codegen.transforms.base import Transform
from codegen.transforms.edits import (
    EditError,
    InsertStatements,
    ScopedTransformer,
    code_of,
    dotted,
    expression,
    run,
)

LAYOUTS = ("per_head_q_gate", "per_head_gate_q", "concatenated_q_gate", "concatenated_gate_q")

# the projection's output cut into the queries and the gate, in the checkpoint's row order
PER_HEAD = (
    "{first}, {second} = q.unflatten(-1, (-1, {qk} + self.v_head_dim))"
    ".split([{sizes}], dim=-1)  # each head's rows: {what}"
)
CONCATENATED = "{first}, {second} = q.split([{sizes}], dim=-1)  # {what}"
GATE = "torch.sigmoid({gate})"
GATE_FP32 = "({out} * torch.sigmoid({gate}.float())).to({x}.dtype)"


class FusedQGate(Transform):
    """The query projection also yields the output gate: its rows widen by one value head
    per head, its output is cut into the queries and the gate in the checkpoint's `layout`
    (see `codegen.analyze.fused_q_gate`), and the attention output is multiplied by
    `sigmoid(gate)` before `wo` (taken in fp32 and cast back with `fp32`, as the source does).

    Works on latent attention (MLA): the query up-projection is the one whose output is
    viewed as `(batch, seq, heads, qk head)`; the gate is one value head (`v_head_dim`) wide
    per head. The projection keeps its house name and checkpoint row; its rows are the
    fused matrix as stored.
    """

    name = "fused_q_gate"

    def apply(
        self, package, features=None, *, layout: str, fp32: bool = False, projection=None
    ) -> None:
        if layout not in LAYOUTS:
            raise EditError(f"a query projection fused with its gate in layout {layout!r}")
        if not self_assignment(package, "model.py", "Attention", "__init__", "v_head_dim"):
            raise EditError("the fused query gate needs latent attention's Attention.v_head_dim")
        qk = code_of(_query_view(package).args[-1].value)
        called = _query_projections(package)
        widened = run(package, "model.py", _Widen(called), required=False)
        if not widened:
            raise EditError("Attention.__init__ builds no query projection of args.n_heads * d")
        if projection:
            # the up-projection (wq_b after a query latent, else wq) holds the target's rows
            _map_rows(package, features, "wq_b" if "wq_b" in called else "wq", projection)
        per_head = layout.startswith("per_head")
        q_first = layout.endswith("q_gate")
        if per_head:
            sizes = [qk, "self.v_head_dim"]
            template, what = PER_HEAD, "its query, then its gate"
        else:
            sizes = [f"self.n_heads * ({qk})", "self.n_heads * self.v_head_dim"]
            template, what = CONCATENATED, "every query row, then every gate row"
        if not q_first:
            sizes.reverse()
            what = what.replace("query", "@").replace("gate", "query").replace("@", "gate")
        first, second = ("q", "gate") if q_first else ("gate", "q")
        cut = template.format(first=first, second=second, qk=qk, sizes=", ".join(sizes), what=what)
        run(package, "model.py", InsertStatements("Attention", "forward", _views_q, cut, True))
        gate = "gate.flatten(-2)" if per_head else "gate"
        x = edits.param_names(package, "Attention", "forward")[1]

        def rewrite(call: cst.Call) -> cst.Call:
            out = call.args[0].value
            if fp32:
                gated = expression(GATE_FP32.format(out=code_of(out), gate=gate, x=x))
            else:
                atom = out if isinstance(out, cst.Name | cst.Call | cst.Attribute) else _paren(out)
                gated = cst.BinaryOperation(
                    left=atom, operator=cst.Multiply(), right=expression(GATE.format(gate=gate))
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


_VIEW = m.Call(
    func=m.Attribute(value=m.Name("q"), attr=m.Name("view")),
    args=[m.Arg(), m.Arg(), m.Arg(), m.Arg()],
)


_ASSIGNS_Q = m.SimpleStatementLine(body=[m.Assign(targets=[m.AssignTarget(m.Name("q"))])])


def _views_q(statement) -> bool:
    """`q = q.view(batch, seq, -1, <qk head>)...`: where the queries get their head axis."""
    return bool(
        m.matches(
            statement, m.SimpleStatementLine(body=[m.Assign(targets=[m.AssignTarget(m.Name("q"))])])
        )
        and m.findall(statement, _VIEW)
    )


def _map_rows(package, features, house: str, projection: str) -> None:
    """The adapter reads `house`'s weight from the target's fused projection, under the
    checkpoint's name for it (transformers renames A.X-K2's `q_b_proj` to `q_gate_proj` on
    load; remote code stores `q_gate_proj`)."""
    state = getattr(features, "state_dict", None)
    keys = [k.split(" [", 1)[0] for k in getattr(state, "layer_keys", ())]
    own = [k for k in keys if k.endswith(f".{projection}.weight")]
    if not own:
        return  # no key list to read the name from: the reference's row stays
    module = own[0].removesuffix(f".{projection}.weight")
    prefix = f"{state.prefix}.{{}}." if state.prefix else ""
    hf = prefix + own[0]
    disk = edits.disk_names(features, module).get(hf, hf)
    target = f"layers.{{}}.attention.{house}.weight"
    rewrite_adapter(package, lambda k, v: [(disk, v)] if v == target else [(k, v)])


def _query_view(package) -> cst.Call:
    method = edits.find_method(package.module("model.py"), "Attention", "forward")
    if method is None:
        raise EditError("no Attention.forward")
    for statement in method.body.body:
        if _views_q(statement):
            return m.findall(statement, _VIEW)[0]
    raise EditError("Attention.forward gives q no head axis (`q = q.view(batch, seq, -1, d)`)")


def _query_projections(package) -> set[str]:
    """The attention's projections whose output becomes `q` before its head axis: the
    `self.<name>(...)` calls in the statements that assign `q` up to the view."""
    method = edits.find_method(package.module("model.py"), "Attention", "forward")
    names: set[str] = set()
    for statement in method.body.body:
        if not m.matches(statement, _ASSIGNS_Q):
            continue
        for call in m.findall(statement, m.Call(func=m.Attribute(value=m.Name("self")))):
            names.add(call.func.attr.value)
        if _views_q(statement):
            break
    return names


class _Widen(ScopedTransformer):
    """`self.<p> = nn.Linear(in, args.n_heads * size, ...)` for p in `names` gets
    `args.n_heads * (size + self.v_head_dim)` outputs: one value head more per head."""

    def __init__(self, names: set[str]):
        super().__init__("Attention", "__init__")
        self.names = names

    def leave_Assign(self, original, updated):
        target = updated.targets[0].target
        if not (
            self.inside
            and m.matches(target, m.Attribute(value=m.Name("self")))
            and target.attr.value in self.names
            and m.matches(updated.value, m.Call(args=[m.Arg(), m.Arg(), m.ZeroOrMore()]))
        ):
            return updated
        out = updated.value.args[1].value
        heads = m.Attribute(value=m.Name("args"), attr=m.Name("n_heads"))
        if not m.matches(out, m.BinaryOperation(left=heads, operator=m.Multiply())):
            return updated
        self.hits += 1
        rows = expression(f"args.n_heads * ({code_of(out.right)} + self.v_head_dim)")
        args = list(updated.value.args)
        args[1] = args[1].with_changes(value=rows)
        return updated.with_changes(value=updated.value.with_changes(args=args))


def _paren(node: cst.BaseExpression) -> cst.BaseExpression:
    return node.with_changes(lpar=[cst.LeftParen()], rpar=[cst.RightParen()])
