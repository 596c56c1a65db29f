"""Keys extended by pooled windows of tokens (DeepSeek-V4's heavily compressed layers).

On the layers of one config layer type, the attention builds a `Compressor`: every window of
`compress_rate` consecutive tokens is pooled into one entry (the tokens' projections weighted
by a softmax, in fp32, over a gate plus a learned bias per slot of the window, summed and
normed), whose trailing rotary slice turns at the window's first position. The entries are
appended to the keys (which are the values), and a query sees window `w` once it has passed
the window's end: `w < (position + 1) // compress_rate`.
"""

from __future__ import annotations

import libcst as cst
import libcst.matchers as m

from codegen.transforms import _attention_edits as edits
from codegen.transforms.base import Transform
from codegen.transforms.edits import (
    EditError,
    InsertStatements,
    assigns,
    code_of,
    run,
)
from codegen.transforms.indexed_attention import _AddLayerType

COMPRESSOR = '''
class Compressor(nn.Module):
    """Pools each window of `compress_rate` consecutive tokens into one key/value entry: the
    tokens' projections weighted by a softmax, taken in fp32, over their gate plus a learned
    bias per slot of the window, summed over the window and normed. An entry turns as the
    keys do, at its window's first position; tokens past the last whole window make no
    entry."""

    def __init__(self, args: ModelArgs):
        super().__init__()
        self.rate = args.compress_rate
        self.wkv = nn.Linear(args.dim, args.head_dim, bias=False)
        self.wgate = nn.Linear(args.dim, args.head_dim, bias=False)
        self.slot_bias = nn.Parameter(torch.zeros(self.rate, args.head_dim))
        self.norm = NORM(args.head_dim, args.compress_norm_eps)

    def forward(
        self, x: torch.Tensor, positions: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """`rope`: the tables at positions 0, 1, ... (window w's entry turns at w * rate).
        Returns the entries (batch, 1, windows, head_dim) and which of them each query sees
        (batch or 1, 1, seq, windows): a window once the query's position has passed its
        end."""
        windows = x.shape[1] // self.rate
        x = x[:, : windows * self.rate]
        kv = self.wkv(x).unflatten(1, (windows, self.rate))
        gate = self.wgate(x).unflatten(1, (windows, self.rate)) + self.slot_bias
        weights = gate.softmax(dim=2, dtype=torch.float32).to(kv.dtype)
        pooled = self.norm((kv * weights).sum(dim=2)).unsqueeze(1)
        cos, sin = (t[:, : windows * self.rate : self.rate].to(pooled.dtype) for t in rope)
        pooled = ROTATE
        seen = torch.arange(windows, device=x.device) < (positions[..., None] + 1) // self.rate
        return pooled, seen.unsqueeze(1)
'''

FIELDS = """
# the layers of compressed_layer_type also attend to entries pooled from windows of
# compress_rate tokens; None: no layer does
compressed_layer_type: str | None = None
compress_rate: int = 1
compress_norm_eps: float = 1e-6
"""

BUILD = (
    "self.compressor = Compressor(args) if args.layer_types[{layer}] =="
    " args.compressed_layer_type else None"
)

EXTEND = """
if self.compressor is not None:  # entries pooled from windows of tokens extend the keys
    pooled, seen = self.compressor(x, positions, window_rope)
    k = v = torch.cat([k, pooled], dim=2)
    unseen = torch.zeros(seen.shape, dtype={mask}.dtype, device=seen.device)
    {mask} = torch.cat(
        [{mask}.expand(*seen.shape[:-1], seq), unseen.masked_fill_(~seen, float("-inf"))], dim=-1
    )
"""

TABLES = """
window_rope = (  # the compressed entries' tables from position 0: window w's at w * rate
    self.{rotary}(torch.arange({seq}, device=tokens.device)[None])
    if self.args.compressed_layer_type in self.args.layer_types
    else None
)
"""


class CompressedKv(Transform):
    """`pooled` is the analysed `attention.compressed_kv`: the HF attributes of the
    compressor (`module`) and its parts (`kv`, `gate`, `bias`, `norm`), the config read of
    its rate (`rate`) and of its norm's eps (`eps`), the rope_parameters label its entries
    turn with (`group`) and the layer type of the layers that build it (`kind`).

    The attention must already hand its rotated keys over as the values (`values_are_keys`)
    and take the float table of the keys it hides (`hidden`, -inf where hidden); the
    compressed layers attend over that table too (HF masks them as the sliding layers)."""

    name = "compressed_kv"

    def apply(self, package, features=None, *, pooled: dict) -> None:
        params = edits.param_names(package, "Attention", "forward")
        if "hidden" not in params:
            raise EditError("compressed entries need the attention to take its hidden keys")
        attention = edits.find_method(package.module("model.py"), "Attention", "forward")
        if not any(m.matches(s, _V_IS_K) for s in attention.body.body):
            raise EditError("compressed entries extend keys that are the values (v = k)")
        fp32 = bool(getattr(getattr(features, "rope", None), "fp32", False))
        rotate = _rotation(attention, fp32)
        norm = _key_norm(package)
        rotary = _rotary(package, features, pooled["group"])
        run(package, "args.py", _AddLayerType(pooled["kind"]))
        edits.add_args_field(
            package, FIELDS, f"compressed_layer_type={pooled['kind']!r}".replace("'", '"')
        )
        edits.add_hf_kwarg(package, f"compress_rate={pooled['rate']}")
        edits.add_hf_kwarg(package, f"compress_norm_eps=hf_config.{pooled['eps']}")
        code = COMPRESSOR.replace("NORM", norm).replace("ROTATE", rotate)
        edits.insert_definition(package, "model.py", code, before="Attention")
        layer = edits.ensure_attention_layer_id(package)
        edits.append_to_method(
            package, "model.py", "Attention", "__init__", BUILD.format(layer=layer)
        )
        tables = "window_rope: tuple[torch.Tensor, torch.Tensor] | None"
        for param in ("positions: torch.Tensor", tables):
            edits.add_param(package, "Attention", "forward", param)
            edits.hand_down(package, param)
        extend = EXTEND.format(mask="hidden")
        run(package, "model.py", InsertStatements("Attention", "forward", _gives_keys, extend))
        forward = edits.find_method(package.module("model.py"), "Model", "forward")
        seq = "seq" if any(assigns("seq")(s) for s in forward.body.body) else "tokens.shape[1]"
        run(
            package,
            "model.py",
            InsertStatements(
                "Model", "forward", assigns("rope"), TABLES.format(rotary=rotary, seq=seq)
            ),
        )
        _sliding_too(package, pooled["kind"])
        prefix = _attention_prefix(package)
        part = f"{prefix}.{pooled['module']}"
        house = "layers.{}.attention.compressor"
        edits.insert_after_layer_rows(
            package,
            [
                (f"{part}.{pooled['kv']}.weight", f"{house}.wkv.weight"),
                (f"{part}.{pooled['gate']}.weight", f"{house}.wgate.weight"),
                (f"{part}.{pooled['bias']}", f"{house}.slot_bias"),
                (f"{part}.{pooled['norm']}.weight", f"{house}.norm.weight"),
            ],
        )


_V_IS_K = m.SimpleStatementLine(
    body=[m.Assign(targets=[m.AssignTarget(m.Name("v"))], value=m.Name("k"))]
)


def _gives_keys(statement) -> bool:
    """`v = k`: the statement after which the keys are the values."""
    return m.matches(statement, _V_IS_K)


def _rotation(forward: cst.FunctionDef, fp32: bool) -> str:
    """How the attention turns its keys (the function given `k` and `cos, sin`), restated
    for the entries: on their fp32 values, cast back, where `fp32` (as HF turns them)."""
    pattern = m.Call(args=[m.Arg(), m.Arg(m.Name("cos")), m.Arg(m.Name("sin"))])
    for call in m.findall(forward, pattern):
        if m.findall(call.args[0].value, m.Name("k")):
            if fp32:
                return f"{code_of(call.func)}(pooled.float(), cos, sin).to(pooled.dtype)"
            return f"{code_of(call.func)}(pooled, cos, sin)"
    raise EditError("the attention turns no keys `k` with `cos, sin` to restate for the entries")


def _key_norm(package) -> str:
    """The class of the attention's key norm (the entries are normed by the same kind)."""
    init = edits.find_method(package.module("model.py"), "Attention", "__init__")
    for statement in init.body.body if init is not None else ():
        if assigns("self.k_norm")(statement):
            value = statement.body[0].value
            if isinstance(value, cst.Call) and isinstance(value.func, cst.Name):
                return value.func.value
    raise EditError("the attention builds no key norm `self.k_norm` to norm the entries alike")


def _rotary(package, features, group: str | None) -> str:
    """The model's rotary of the entries' rope_parameters group."""
    rope = getattr(features, "rope", None)
    groups = getattr(rope, "layer_groups", None)
    if isinstance(groups, dict) and groups.get("other") == group:
        return "other_rotary"
    first = getattr(rope, "group", None)
    if group is None or first in (group, True) or (isinstance(groups, dict) and first is None):
        return "rotary"
    raise EditError(f"the compressed entries turn with rope group {group!r}, which no table builds")


def _sliding_too(package, kind: str) -> None:
    """The blocks of `kind` attend over the window as the sliding ones do."""

    class _Either(cst.CSTTransformer):
        def leave_Comparison(self, original, updated):
            target = m.Comparison(
                comparisons=[m.ComparisonTarget(m.Equal(), m.SimpleString('"sliding_attention"'))]
            )
            if not m.matches(updated, target):
                return updated
            kinds = cst.parse_expression(f'("sliding_attention", "{kind}")')
            return updated.with_changes(comparisons=[cst.ComparisonTarget(cst.In(), kinds)])

    # the window is built where any layer of either type is in the config
    either = f'{{"sliding_attention", "{kind}"}} & set(self.args.layer_types)'
    edits.replace_expressions(
        package,
        "model.py",
        "Model",
        "forward",
        lambda node: m.matches(node, _SLIDING_IN_TYPES),
        lambda node: cst.parse_expression(either),
        required=False,
    )
    init = edits.find_method(package.module("model.py"), "TransformerBlock", "__init__")
    if init is None or not any(assigns("self.sliding")(s) for s in init.body.body):
        raise EditError("the blocks know no `self.sliding` to window the compressed layers too")
    edits.replace_expressions(
        package,
        "model.py",
        "TransformerBlock",
        "__init__",
        lambda node: isinstance(node, cst.Comparison) and "sliding_attention" in code_of(node),
        lambda node: node.visit(_Either()),
    )


_SLIDING_IN_TYPES = m.Comparison(
    left=m.SimpleString('"sliding_attention"'),
    comparisons=[m.ComparisonTarget(m.In(), m.Attribute(attr=m.Name("layer_types")))],
)


def _attention_prefix(package) -> str:
    """The HF key of the attention module, read from the adapter's key projection row."""
    from codegen.transforms._ffn_edits import rewrite_adapter

    found: list[str] = []

    def collect(hf, house):
        if house == "layers.{}.attention.wk.weight":
            found.append(hf.rsplit(".", 2)[0])
        return [(hf, house)]

    rewrite_adapter(package, collect)
    if not found:
        raise EditError("the adapter maps no key projection to place the compressor's rows by")
    return found[0]
