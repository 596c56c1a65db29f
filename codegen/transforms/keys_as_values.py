"""Full-attention layers take their values from the key projection when the config sets
`attention_k_eq_v` (Gemma 4's larger checkpoints).

HF builds no value projection on those layers and reads the values from the keys' raw
projection, before the key norm and the rotation (the value norm still applies). The package
keeps both settings: `Attention.__init__` leaves `self.wv` as None on a non-sliding layer when
the field is set, and `Attention.forward` projects the keys once and uses that projection
as the values where `self.wv` is None. The kv head count of those layers comes with the
per-layer sizes (HF's config derives it from num_global_key_value_heads).
"""

from __future__ import annotations

import libcst as cst
import libcst.matchers as m

from codegen.transforms import _attention_edits as attention_edits
from codegen.transforms import _moe_edits as moe_edits
from codegen.transforms.base import Transform
from codegen.transforms.edits import EditError, ScopedTransformer, expression, run, sets

FIELD = (
    "# full-attention layers have no value projection: their values are the keys' projection\n"
    "attention_k_eq_v: bool = False"
)
CHOICE = (
    "# with attention_k_eq_v a full-attention layer reads its values from the key projection\n"
    'keys_as_values = args.attention_k_eq_v and args.layer_types[{layer_id}] != "sliding_attention"'
)


def _self_call(attr: str) -> m.Call:
    return m.Call(func=m.Attribute(value=m.Name("self"), attr=m.Name(attr)))


class KeysAsValues(Transform):
    """With attention_k_eq_v, full-attention layers have no wv: values are the keys'
    projection (before k_norm and the rotation)."""

    name = "keys_as_values"

    def apply(self, package, features=None) -> None:
        layer_id = attention_edits.ensure_attention_layer_id(package)
        moe_edits.insert_statements(
            package,
            "Attention",
            "__init__",
            sets("self.wv"),
            CHOICE.format(layer_id=layer_id),
            before=True,
        )
        run(package, "model.py", _OptionalValueProjection())
        forward = _KeysOnce()
        run(package, "model.py", forward)
        if forward.hits != 2:
            raise EditError("Attention.forward: no k from self.wk(...) and v from self.wv(...)")
        moe_edits.insert_statements(
            package,
            "Attention",
            "forward",
            _assigns_with("k", "wk"),
            f"keys = {forward.call}",
            before=True,
        )
        moe_edits.add_args_fields(package, FIELD)
        moe_edits.add_config_kwargs(package, {"attention_k_eq_v": "hf_config.attention_k_eq_v"})


def _assigns_with(target: str, projection: str):
    assign = m.Assign(targets=[m.AssignTarget(target=m.Name(target))])

    def matches(statement: cst.CSTNode) -> bool:
        if not isinstance(statement, cst.SimpleStatementLine) or not statement.body:
            return False
        node = statement.body[0]
        return m.matches(node, assign) and bool(
            m.findall(node.value, _self_call(projection) | m.Name("keys"))
        )

    return matches


class _OptionalValueProjection(ScopedTransformer):
    """`self.wv = <build>` -> `self.wv = None if keys_as_values else <build>`."""

    def __init__(self):
        super().__init__("Attention", "__init__")

    def leave_Assign(self, original, updated):
        target = m.AssignTarget(target=m.Attribute(value=m.Name("self"), attr=m.Name("wv")))
        if not self.in_scope() or not m.matches(updated, m.Assign(targets=[target])):
            return updated
        self.hits += 1
        return updated.with_changes(
            value=cst.IfExp(
                test=cst.Name("keys_as_values"), body=cst.Name("None"), orelse=updated.value
            )
        )


class _KeysOnce(ScopedTransformer):
    """In Attention.forward, `self.wk(x)` in the `k = ...` statement becomes `keys` and
    `self.wv(x)` in the `v = ...` statement `(keys if self.wv is None else self.wv(x))`;
    `call` keeps the key projection's call for the `keys = ...` statement."""

    def __init__(self):
        super().__init__("Attention", "forward")
        self.target: str | None = None
        self.call: str | None = None

    def visit_Assign(self, node):
        if (
            self.in_scope()
            and len(node.targets) == 1
            and isinstance(node.targets[0].target, cst.Name)
        ):
            self.target = node.targets[0].target.value

    def leave_Assign(self, original, updated):
        self.target = None
        return updated

    def leave_Call(self, original, updated):
        if not self.in_scope():
            return updated
        if self.target == "k" and m.matches(updated, _self_call("wk")):
            self.hits += 1
            self.call = cst.Module([]).code_for_node(updated)
            return cst.Name("keys")
        if self.target == "v" and m.matches(updated, _self_call("wv")):
            self.hits += 1
            values = expression(
                f"keys if self.wv is None else {cst.Module([]).code_for_node(updated)}"
            )
            return values.with_changes(lpar=[cst.LeftParen()], rpar=[cst.RightParen()])
        return updated
