"""Size each layer's latent attention (MLA) by its own heads, latent ranks and head parts
(HF's `per_layer_config`)."""

from __future__ import annotations

import libcst as cst
import libcst.matchers as m

from codegen.transforms import _attention_edits as edits
from codegen.transforms._moe_edits import add_method
from codegen.transforms.base import Transform
from codegen.transforms.edits import (
    EditError,
    InsertStatements,
    add_import,
    calls_super_init,
    field_name,
    run,
)

# house field -> (per-layer field, HF config field), in the order ModelArgs declares them
SIZES = {
    "n_heads": ("layer_n_heads", "num_attention_heads"),
    "q_lora_rank": ("layer_q_lora_ranks", "q_lora_rank"),
    "kv_lora_rank": ("layer_kv_lora_ranks", "kv_lora_rank"),
    "qk_nope_head_dim": ("layer_qk_nope_head_dims", "qk_nope_head_dim"),
    "qk_rope_head_dim": ("layer_qk_rope_head_dims", "qk_rope_head_dim"),
    "v_head_dim": ("layer_v_head_dims", "v_head_dim"),
}

# per-layer overrides the package accepts without reading them: latent attention expands
# its latent to every head (HF's kv heads only group them for its backend), and its heads
# are qk_nope_head_dim + qk_rope_head_dim wide whatever head_dim says
UNREAD = ("head_dim", "num_key_value_heads")

FIELDS_HEADER = """
# each layer's latent attention sizes, where layers are sized apart (the HF config's
# per_layer_config overrides); empty: the global value on every layer
"""

# the layers sharing a RoPE table share its width: one rotated part per table
ONE_TABLE = """if len(set(self.layer_qk_rope_head_dims)) > 1:
    raise NotImplementedError("layers with different rotated head parts read one RoPE table")
"""

PER_TYPE = """rope_dims = {}
for layer_type, dim in zip(self.layer_types, self.layer_qk_rope_head_dims, strict=True):
    if rope_dims.setdefault(layer_type == "sliding_attention", dim) != dim:
        raise NotImplementedError("layers of one RoPE table with different rotated head parts")
"""

# per table: the sliding layers' and the others'
TABLE_WIDTHS = """
# each RoPE table as wide as the rotated part of its layers' heads (sliding or not)
rope_dims = {
    layer_type == "sliding_attention": dim
    for layer_type, dim in zip(args.layer_types, args.layer_qk_rope_head_dims, strict=True)
}
"""

ATTENTION_READ = "args = args.of_layer(layer_id)  # this layer's heads, latent ranks, head parts"


class LatentLayerSizes(Transform):
    """Each layer's latent `Attention` (with the modules it builds: an indexer, an output
    gate) is sized by its own heads, q/kv latent ranks and q/k/v head parts: ModelArgs'
    `layer_*` tuples, which `from_hf_config` reads from each layer's config
    (`hf_config.per_layer_config[i]`, refusing overrides of anything else), and
    `ModelArgs.of_layer(i)`, the arguments with layer i's sizes, which `Attention.__init__`
    reads instead of the global ones. Each RoPE table is as wide as its layers' rotated part
    (the sliding layers' table beside the others'); ModelArgs refuses two widths for one
    table."""

    name = "latent_layer_sizes"

    def apply(self, package, features=None) -> None:
        present = _fields(package)
        sizes = {house: SIZES[house] for house in SIZES if house in present}
        if "n_heads" not in sizes or "kv_lora_rank" not in sizes:
            raise EditError("ModelArgs has no latent attention sizes (n_heads, kv_lora_rank)")
        per_type = _has_sliding_table(package)
        _args(package, sizes, per_type and "qk_rope_head_dim" in sizes)
        own = edits.ensure_attention_layer_id(package)
        run(
            package,
            "model.py",
            InsertStatements(
                "Attention", "__init__", calls_super_init, ATTENTION_READ.replace("layer_id", own)
            ),
        )
        if per_type and "qk_rope_head_dim" in sizes:
            _table_widths(package)


def _fields(package) -> set[str]:
    module = package.module("args.py")
    (cls,) = m.findall(module, m.ClassDef(name=m.Name("ModelArgs")))
    return {name for s in cls.body.body if (name := field_name(s)) is not None}


def _has_sliding_table(package) -> bool:
    model = package.module("model.py")
    sliding = m.Assign(
        targets=[m.AssignTarget(m.Attribute(value=m.Name("self"), attr=m.Name("sliding_rotary")))]
    )
    return bool(m.findall(model, sliding))


def _args(package, sizes: dict, per_type: bool) -> None:
    fields = FIELDS_HEADER + "".join(
        f"{per_layer}: tuple[{'int | None' if house == 'q_lora_rank' else 'int'}, ...] = ()\n"
        for house, (per_layer, _) in sizes.items()
    )
    edits.add_args_field(package, fields)
    post_init = "".join(
        f"self.{per_layer} = tuple(self.{per_layer} or (self.{house},) * self.n_layers)\n"
        for house, (per_layer, _) in sizes.items()
    )
    tuples = ", ".join(f"self.{per_layer}" for per_layer, _ in sizes.values())
    post_init += (
        f"if any(len(sizes) != self.n_layers for sizes in ({tuples})):\n"
        '    raise ValueError("the per-layer attention sizes need one entry per layer")\n'
    )
    if "qk_rope_head_dim" in sizes:
        post_init += PER_TYPE if per_type else ONE_TABLE
    edits.append_to_method(package, "args.py", "ModelArgs", "__post_init__", post_init)
    replaced = ",\n".join(
        f"    {house}=self.{per_layer}[layer_id]" for house, (per_layer, _) in sizes.items()
    )
    add_method(
        package,
        "args.py",
        "ModelArgs",
        f'''
def of_layer(self, layer_id: int) -> ModelArgs:
    """These arguments with layer `layer_id`'s attention sizes as the global ones."""
    return replace(
        self,
{replaced},
    )
''',
    )
    add_import(package, "args.py", "dataclasses", "replace")
    method = edits.find_method(package.module("args.py"), "ModelArgs", "from_hf_config")
    if method is None or not m.findall(method, m.Return(value=m.Call(func=m.Name("cls")))):
        raise EditError("from_hf_config returns no cls(...) to read the layer sizes into")
    read = _read(tuple(hf for _, hf in sizes.values()))
    step = InsertStatements(
        "ModelArgs",
        "from_hf_config",
        _after_docstring,  # first: every read below may take a layer's value
        read,
        before=True,
    )
    step.new = edits.statements(read)  # the leading comment kept
    run(package, "args.py", step)
    for per_layer, hf in sizes.values():
        # the global value of an overridden field is ambiguous: layer 0's
        edits.replace_expressions(
            package,
            "args.py",
            "ModelArgs",
            "from_hf_config",
            lambda node, hf=hf: m.matches(
                node, m.Attribute(value=m.Name("hf_config"), attr=m.Name(hf))
            ),
            lambda node: edits.expression(f"layers[0].{node.attr.value}"),
            required=False,
        )
        edits.add_hf_kwarg(package, f"{per_layer}=tuple(layer.{hf} for layer in layers)")


def _after_docstring(statement) -> bool:
    """Anchor: the first statement that is not the docstring."""
    return not m.matches(
        statement, m.SimpleStatementLine([m.Expr(m.SimpleString() | m.ConcatenatedString())])
    )


def _read(read: tuple[str, ...]) -> str:
    """from_hf_config's first statements: each layer's config, other overrides refused."""
    accepted = sorted({*read, *UNREAD})
    return f"""
# each layer's config: the global one with that layer's overrides (HF's per_layer_config)
layers = hf_config.per_layer_config
overridden = {{
    key for own in (hf_config.to_dict().get("per_layer_config") or {{}}).values() for key in own
}}
if overridden - {{{", ".join(f'"{k}"' for k in accepted)}}}:
    raise NotImplementedError(
        f"per_layer_config overrides {{sorted(overridden)}}: "
        "only the latent attention's sizes may differ per layer"
    )
"""


def _table_widths(package) -> None:
    """`RotaryEmbedding(..., args.qk_rope_head_dim)`: the non-sliding layers' width for
    `self.rotary`, the sliding layers' for `self.sliding_rotary`."""
    step = InsertStatements(
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
    )
    step.new = edits.statements(TABLE_WIDTHS)
    run(package, "model.py", step)
    for table, sliding in (("rotary", False), ("sliding_rotary", True)):
        width = edits.expression(f"rope_dims.get({sliding}, args.qk_rope_head_dim)")
        run(package, "model.py", _TableWidth(table, width))


class _TableWidth(edits.InMethod):
    def __init__(self, table: str, width: cst.BaseExpression):
        super().__init__("Model", "__init__")
        self.table, self.width = table, width

    def leave_Assign(self, original, updated):
        target = updated.targets[0].target
        if (
            self.inside
            and m.matches(target, m.Attribute(value=m.Name("self"), attr=m.Name(self.table)))
            and m.matches(updated.value, m.Call(func=m.Name("RotaryEmbedding")))
        ):
            args = list(updated.value.args)
            if len(args) != 2 or not edits.is_name(args[1].value, "args.qk_rope_head_dim"):
                raise EditError(f"self.{self.table} is not built over args.qk_rope_head_dim")
            args[1] = args[1].with_changes(value=self.width)
            self.hits += 1
            return updated.with_changes(value=updated.value.with_changes(args=args))
        return updated
