"""Size each layer's attention by its own head size and kv heads (HF's `per_layer_config`, or
a rule over the config and the layer index)."""

from __future__ import annotations

import libcst.matchers as m

from codegen.transforms import _attention_edits as edits
from codegen.transforms.base import Transform
from codegen.transforms.edits import EditError, InsertStatements, is_name, run

FIELDS = """
# each layer's head size and kv heads, where layers are sized apart
# ({source}); empty: head_dim and n_kv_heads on every layer
layer_head_dims: tuple[int, ...] = ()
layer_n_kv_heads: tuple[int, ...] = ()
"""

POST_INIT = """
self.layer_head_dims = tuple(self.layer_head_dims or (self.head_dim,) * self.n_layers)
self.layer_n_kv_heads = tuple(self.layer_n_kv_heads or (self.n_kv_heads,) * self.n_layers)
if len(self.layer_head_dims) != self.n_layers or len(self.layer_n_kv_heads) != self.n_layers:
    raise ValueError("layer_head_dims and layer_n_kv_heads need one entry per layer")
"""

# the layers sharing a RoPE table share its width: one head size per table (a package
# that rotates nothing drops the check: no_rope)
ONE_TABLE_CHECK = """if len(set(self.layer_head_dims)) > 1:
    raise NotImplementedError("layers with different head sizes read one RoPE table")
"""
ONE_TABLE = POST_INIT + ONE_TABLE_CHECK

PER_TYPE = (
    POST_INIT
    + """head_dims = dict(zip(self.layer_types, self.layer_head_dims, strict=True))
if any(head_dims[t] != d for t, d in zip(self.layer_types, self.layer_head_dims, strict=True)):
    raise NotImplementedError("layers of one type with different head sizes (one RoPE table each)")
"""
)

# sized apart by kv heads alone (a rule that leaves the head size global)
KV_FIELD = """
# each layer's kv heads ({source}); empty: n_kv_heads on every layer
layer_n_kv_heads: tuple[int, ...] = ()
"""
KV_POST_INIT = """
self.layer_n_kv_heads = tuple(self.layer_n_kv_heads or (self.n_kv_heads,) * self.n_layers)
if len(self.layer_n_kv_heads) != self.n_layers:
    raise ValueError("layer_n_kv_heads needs one entry per layer")
"""

# sized apart by query heads too (inkling's sliding layers: heads of their own)
HEADS_FIELD = """
# each layer's query heads ({source}); empty: n_heads on every layer
layer_n_heads: tuple[int, ...] = ()
"""
HEADS_POST_INIT = """
self.layer_n_heads = tuple(self.layer_n_heads or (self.n_heads,) * self.n_layers)
if len(self.layer_n_heads) != self.n_layers:
    raise ValueError("layer_n_heads needs one entry per layer")
"""

# from_hf_config: the sizes read from each layer's own config, other overrides refused
READ = """
# each layer's config: the global one with that layer's overrides (HF's per_layer_config)
layers = hf_config.per_layer_config
overridden = {
    key for own in (hf_config.to_dict().get("per_layer_config") or {}).values() for key in own
}
if overridden - {"head_dim", "num_key_value_heads"}:
    raise NotImplementedError(
        f"per_layer_config overrides {sorted(overridden)}: only head_dim and "
        "num_key_value_heads may differ per layer"
    )
"""

# per layer type: the RoPE table's width is the head size of the layers that read it
TABLE_WIDTHS = """
# one head size per layer type: each RoPE table as wide as its layers' heads
head_dims = dict(zip(args.layer_types, args.layer_head_dims, strict=True))
"""

# a rule's sizes, per layer index `i`
BY_RULE = "tuple({rule} for i in range(hf_config.num_hidden_layers))"

_SIZES = {"head_dim": "layer_head_dims", "n_kv_heads": "layer_n_kv_heads"}
_RULE_SIZES = {**_SIZES, "n_heads": "layer_n_heads"}  # a rule may count query heads too
_HF = {"head_dim": "head_dim", "n_kv_heads": "num_key_value_heads"}
_ROTARY = m.Call(func=m.Name("RotaryEmbedding"))


class LayerAttentionSizes(Transform):
    """Each layer's `Attention` takes its own head size and kv heads: ModelArgs'
    `layer_head_dims` / `layer_n_kv_heads`, which `from_hf_config` reads from each layer's
    config (`hf_config.per_layer_config[i]`, refusing overrides of anything else) or, given
    `rules` (`{"n_kv_heads": <expression of hf_config and i>}`: MiMo-V2-Flash's sliding
    layers with twice the kv heads; inkling's with heads, kv heads and head size of their
    own, `n_heads` read into `layer_n_heads`), computes per layer as HF's `__init__` does.
    Each RoPE table turns the heads of the layers that read it: with one table per layer
    type (the sliding layers' beside the others') its width is that type's head size, and
    ModelArgs refuses layers of one type sized apart (or, with one table, any two sizes);
    without RoPE the head sizes are free."""

    name = "layer_attention_sizes"

    def apply(self, package, features=None, *, rules: dict | None = None) -> None:
        if rules is not None and (not rules or set(rules) - set(_RULE_SIZES)):
            raise ValueError(
                f"layer sizes by rule: only {sorted(_RULE_SIZES)} may differ, got {rules}"
            )
        per_type = _has_sliding_table(package)
        kv_only = rules is not None and "head_dim" not in rules
        sizes = {"n_kv_heads": _SIZES["n_kv_heads"]} if kv_only else dict(_SIZES)
        if rules is not None and "n_heads" in rules:
            sizes["n_heads"] = _RULE_SIZES["n_heads"]
        _args(package, per_type, rules, sizes)
        layer_id = edits.ensure_attention_layer_id(package)
        _attention(package, layer_id, sizes)
        if per_type and "head_dim" in sizes:
            _table_widths(package)


def _has_sliding_table(package) -> bool:
    model = package.module("model.py")
    sliding = m.Assign(
        targets=[m.AssignTarget(m.Attribute(value=m.Name("self"), attr=m.Name("sliding_rotary")))]
    )
    return bool(m.findall(model, sliding))


def _args(package, per_type: bool, rules: dict | None, sizes: dict) -> None:
    source = (
        "computed as HF's attention does" if rules else "the HF config's per_layer_config overrides"
    )
    if "head_dim" in sizes:
        edits.add_args_field(package, FIELDS.format(source=source))
        post_init = PER_TYPE if per_type else ONE_TABLE if _has_rotary(package) else POST_INIT
    else:
        edits.add_args_field(package, KV_FIELD.format(source=source))
        post_init = KV_POST_INIT
    if "n_heads" in sizes:
        edits.add_args_field(package, HEADS_FIELD.format(source=source))
        post_init += HEADS_POST_INIT
    edits.append_to_method(package, "args.py", "ModelArgs", "__post_init__", post_init)
    method = edits.find_method(package.module("args.py"), "ModelArgs", "from_hf_config")
    cls_call = m.Return(value=m.Call(func=m.Name("cls")))
    if method is None or not m.findall(method, cls_call):
        raise EditError("from_hf_config returns no cls(...) to read the layer sizes into")
    if rules:
        for house, rule in rules.items():
            edits.add_hf_kwarg(package, f"{_RULE_SIZES[house]}=" + BY_RULE.format(rule=rule))
        return
    _insert(
        package,
        "args.py",
        InsertStatements(
            "ModelArgs",
            "from_hf_config",
            lambda s: True,  # first: every read below may take a layer's value
            READ,
            before=True,
        ),
        READ,
    )
    for house, hf in _HF.items():
        # the global value of an overridden field is ambiguous (HF raises): layer 0's
        edits.replace_expressions(
            package,
            "args.py",
            "ModelArgs",
            "from_hf_config",
            lambda node, hf=hf: m.matches(
                node, m.Attribute(value=m.Name("hf_config"), attr=m.Name(hf))
            ),
            lambda node: edits.expression(f"layers[0].{node.attr.value}"),
        )
        edits.add_hf_kwarg(package, f"{_SIZES[house]}=tuple(layer.{hf} for layer in layers)")


def _has_rotary(package) -> bool:
    """The model builds a RoPE table (one head size for every layer that reads it)."""
    return bool(m.findall(package.module("model.py"), _ROTARY))


def _insert(package, filename: str, step: InsertStatements, code: str) -> None:
    """Run `step` inserting `code` with its leading comment kept (on the first statement)."""
    step.new = edits.statements(code)
    run(package, filename, step)


def _attention(package, layer_id: str, sizes: dict) -> None:
    """`self.head_dim` / `self.n_kv_heads` (those in `sizes`) from the layer's entries; every
    size in `Attention.__init__` read from them, not from the global fields."""

    for house, per_layer in sizes.items():
        assigned = m.Assign(
            targets=[m.AssignTarget(m.Attribute(value=m.Name("self"), attr=m.Name(house)))]
        )
        edits.replace_expressions(
            package,
            "model.py",
            "Attention",
            "__init__",
            lambda node, house=house: m.matches(
                node, m.Attribute(value=m.Name("args"), attr=m.Name(house))
            ),
            lambda node, house=house: edits.expression(f"self.{house}"),
        )
        # ... except the assignment itself, which reads the layer's entry
        run(package, "model.py", _ReadEntry(assigned, f"args.{per_layer}[{layer_id}]"))


class _ReadEntry(edits.InMethod):
    """`self.X = self.X` (after the size reads were redirected) -> `self.X = <entry>`."""

    def __init__(self, assigned, entry: str):
        super().__init__("Attention", "__init__")
        self.assigned, self.entry = assigned, edits.expression(entry)

    def leave_Assign(self, original, updated):
        if self.inside and m.matches(updated, self.assigned):
            self.hits += 1
            return updated.with_changes(value=self.entry)
        return updated


def _table_widths(package) -> None:
    """`RotaryEmbedding(..., args.head_dim)`: the full layers' width for `self.rotary`, the
    sliding layers' for `self.sliding_rotary`."""
    _insert(
        package,
        "model.py",
        InsertStatements(
            "Model",
            "__init__",
            lambda s: m.matches(
                s,
                m.SimpleStatementLine(
                    [m.Assign(targets=[m.AssignTarget(m.Attribute(attr=m.Name("rotary")))])]
                ),
            ),
            TABLE_WIDTHS,
            before=True,
        ),
        TABLE_WIDTHS,
    )
    for table, layer_type in (
        ("rotary", "full_attention"),
        ("sliding_rotary", "sliding_attention"),
    ):
        width = edits.expression(f'head_dims.get("{layer_type}", args.head_dim)')
        run(package, "model.py", _TableWidth(table, width))


class _TableWidth(edits.InMethod):
    def __init__(self, table: str, width):
        super().__init__("Model", "__init__")
        self.table, self.width = table, width

    def leave_Assign(self, original, updated):
        target = updated.targets[0].target
        if (
            self.inside
            and m.matches(target, m.Attribute(value=m.Name("self"), attr=m.Name(self.table)))
            and m.matches(updated.value, _ROTARY)
        ):
            args = list(updated.value.args)
            if len(args) != 2 or not is_name(args[1].value, "args.head_dim"):
                raise EditError(f"self.{self.table} is not built over args.head_dim")
            args[1] = args[1].with_changes(value=self.width)
            self.hits += 1
            return updated.with_changes(value=updated.value.with_changes(args=args))
        return updated
