"""Keys extended by pooled windows of tokens (DeepSeek-V4's heavily compressed layers).

On the layers of one config layer type, the attention builds a `Compressor`: every window of
`compress_rate` consecutive tokens is pooled into one entry (the tokens' projections weighted
by a softmax, in fp32, over a gate plus a learned bias per slot of the window, summed and
normed), whose trailing rotary slice turns at the window's first position. The entries are
appended to the keys (which are the values), and a query sees window `w` once it has passed
the window's end: `w < (position + 1) // compress_rate` (the compressor's `seen`). The
attention's float table of hidden keys gains the entries' columns, -inf where unseen.

Where the analysed fact has a `sparse` kind (DeepSeek-V4's compressed sparse layers), the
layers of that type build an `OverlapCompressor` in the same attribute: the `Compressor`
with other slots (each entry pools two windows, the previous window's first halves of the
projections with its own second halves), and an `Indexer`: its own overlapping pooler at
`index_head_dim` scored by query heads projected from the query latent (kept as
`q_latent`), of which each query sees the `index_topk` best entries whose window it has
passed. There the indexer's picks are what a query sees; the compressor's `seen` is not
worked out.
"""

from __future__ import annotations

import libcst as cst
import libcst.matchers as m

from codegen.transforms import _attention_edits as edits
from codegen.transforms.base import Transform
from codegen.transforms.edits import (
    EditError,
    InsertStatements,
    _InMethod,
    assigns,
    code_of,
    run,
)
from codegen.transforms.indexed_attention import _AddLayerType

COMPRESSOR = '''
class Compressor(nn.Module):
    """Pools each window of `rate` consecutive tokens into one key/value entry: the tokens'
    projections weighted by a softmax, taken in fp32, over their gate plus a learned bias
    per slot of the window, summed over the window and normed. An entry turns as the keys
    do, at its window's first position; tokens past the last whole window make no entry."""

    shares = 1  # entries each token's projection feeds, head_dim each: its window's

    def __init__(self, dim: int, head_dim: int, rate: int, eps: float):
        super().__init__()
        self.rate, self.head_dim = rate, head_dim
        self.wkv = nn.Linear(dim, self.shares * head_dim, bias=False)
        self.wgate = nn.Linear(dim, self.shares * head_dim, bias=False)
        self.slot_bias = nn.Parameter(torch.zeros(rate, self.shares * head_dim))
        self.norm = NORM(head_dim, eps)

    def forward(self, x: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        """`rope`: the tables at positions 0, 1, ... (window w's entry turns at w * rate).
        Returns the entries (batch, 1, windows, head_dim)."""
        windows = x.shape[1] // self.rate
        x = x[:, : windows * self.rate]
        kv = self.wkv(x).unflatten(1, (windows, self.rate))
        gate = self.wgate(x).unflatten(1, (windows, self.rate)) + self.slot_bias
        kv, gate = self.slots(kv, gate)
        weights = gate.softmax(dim=2, dtype=torch.float32).to(kv.dtype)
        pooled = self.norm((kv * weights).sum(dim=2)).unsqueeze(1)
        cos, sin = (t[:, : windows * self.rate : self.rate].to(pooled.dtype) for t in rope)
        pooled = ROTATE
        return pooled

    def slots(self, kv: torch.Tensor, gate: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The projections and gates each entry pools, (batch, windows, slots, head_dim):
        the tokens of its window."""
        return kv, gate

    def seen(self, positions: torch.Tensor, windows: int) -> torch.Tensor:
        """Which of the `windows` entries each query sees, (batch or 1, 1, seq, windows)
        bool: a window once the query's position has passed its end."""
        ends = torch.arange(windows, device=positions.device)
        return (ends < (positions[..., None] + 1) // self.rate).unsqueeze(1)
'''

OVERLAP = '''
class OverlapCompressor(Compressor):
    """A compressor whose entries pool two windows each: window w's entry weighs, by one
    softmax over the gates plus the slot biases, the first half of each token's projection
    in window w - 1 with the second half in window w (window 0 has no previous one)."""

    shares = 2  # the next window's entry (the first half) and its own window's

    def slots(self, kv: torch.Tensor, gate: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The projections and gates each entry pools, (batch, windows, 2 * rate, head_dim):
        the previous window's first halves, then its own window's second halves."""
        kv_prev, kv = kv.split(self.head_dim, dim=-1)  # to the next window's entry, its own
        gate_prev, gate = gate.split(self.head_dim, dim=-1)
        # the previous window's first halves; window 0's weigh nothing (a -inf gate)
        kv_prev = torch.cat([torch.zeros_like(kv_prev[:, :1]), kv_prev[:, :-1]], dim=1)
        gate_prev = torch.cat(
            [torch.full_like(gate_prev[:, :1], float("-inf")), gate_prev[:, :-1]], dim=1
        )
        return torch.cat([kv_prev, kv], dim=2), torch.cat([gate_prev, gate], dim=2)


class Indexer(nn.Module):
    """Picks the pooled entries each query attends to: `index_n_heads` query heads (from the
    query latent, turned at the query's position) score entries pooled as the attention's
    are, at `index_head_dim`; the relu'd scores, weighted per token and head, are summed
    over the heads, and of the entries whose window the query has passed the
    `index_topk` best are kept."""

    def __init__(self, args: ModelArgs):
        super().__init__()
        self.n_heads, self.head_dim = args.index_n_heads, args.index_head_dim
        self.rate, self.topk = args.overlap_rate, args.index_topk
        self.compressor = OverlapCompressor(
            args.dim, self.head_dim, self.rate, args.compress_norm_eps
        )
        self.wq_b = nn.Linear(args.q_lora_rank, self.n_heads * self.head_dim, bias=False)
        self.weights_proj = nn.Linear(args.dim, self.n_heads, bias=False)

    def forward(
        self,
        x: torch.Tensor,
        q_latent: torch.Tensor,
        positions: torch.Tensor,
        rope: tuple[torch.Tensor, torch.Tensor],
        window_rope: tuple[torch.Tensor, torch.Tensor],
    ) -> torch.Tensor:
        """`rope`: the tables at the queries' positions. -> (batch, 1, seq, windows) bool:
        True at an entry the query attends to."""
        batch, seq, _ = x.shape
        keys = self.compressor(x, window_rope)
        cos, sin = rope
        q = self.wq_b(q_latent).view(batch, seq, -1, self.head_dim).transpose(1, 2)
        q = QROTATE.transpose(1, 2)
        scores = (q.float() @ keys.transpose(-1, -2).float()).relu() * self.head_dim**-0.5
        weights = self.weights_proj(x).float() * self.n_heads**-0.5
        scores = (scores * weights.unsqueeze(-1)).sum(dim=2)  # (batch, seq, windows)
        ready = ((positions + 1) // self.rate)[..., None]  # the windows a query has passed
        passed = torch.arange(scores.shape[-1], device=x.device) < ready
        scores = scores.masked_fill(~passed, float("-inf"))
        picked = scores.topk(min(self.topk, scores.shape[-1]), dim=-1).indices
        seen = torch.zeros_like(scores, dtype=torch.bool)
        return seen.scatter_(-1, picked, picked < ready).unsqueeze(1)
'''

SPARSE_FIELDS = """
# the layers of overlap_layer_type attend to entries pooled over two windows of overlap_rate
# tokens, of which an indexer of index_n_heads heads of index_head_dim picks index_topk per
# query; None: no layer does
overlap_layer_type: str | None = None
overlap_rate: int = 1
index_n_heads: int = 1
index_head_dim: int = 1
index_topk: int = 1
"""

SPARSE_BUILD = """
if args.layer_types[{layer}] == args.overlap_layer_type:
    self.compressor = OverlapCompressor(
        args.dim, args.head_dim, args.overlap_rate, args.compress_norm_eps
    )
# the entries each query sees of the compressor's, picked on overlap_layer_type layers
self.indexer = Indexer(args) if args.layer_types[{layer}] == args.overlap_layer_type else None
"""

# the entries each query sees: every window it has passed, or on the layers that build an
# indexer, of these the ones it picks
SEEN = "seen = self.compressor.seen(positions, pooled.shape[2])"
PICK = f"""
    if self.indexer is None:  # every window the query has passed
        {SEEN}
    else:  # of these, the entries the indexer picks
        seen = self.indexer(x, q_latent, positions, (cos, sin), window_rope)"""

FIELDS = """
# the layers of compressed_layer_type also attend to entries pooled from windows of
# compress_rate tokens; None: no layer does
compressed_layer_type: str | None = None
compress_rate: int = 1
compress_norm_eps: float = 1e-6
"""

BUILD = """
self.compressor = (
    Compressor(args.dim, args.head_dim, args.compress_rate, args.compress_norm_eps)
    if args.layer_types[{layer}] == args.compressed_layer_type
    else None
)
"""

EXTEND = """
if self.compressor is not None:  # entries pooled from windows of tokens extend the keys
    pooled = self.compressor(x, window_rope){seen}
    k = v = torch.cat([k, pooled], dim=2)
    {mask} = torch.cat(  # -inf at an entry the query does not see, as at a hidden key
        [
            {mask}.expand(*seen.shape[:-1], seq),
            {mask}.new_full(seen.shape, float("-inf")).masked_fill_(seen, 0.0),
        ],
        dim=-1,
    )
"""

TABLES = """
window_rope = (  # the compressed entries' tables from position 0: window w's at w * rate
    self.{rotary}(torch.arange({seq}, device=tokens.device)[None])
    if {present}
    else None
)
"""


class CompressedKv(Transform):
    """`pooled` is the analysed `attention.compressed_kv`: the HF attributes of the
    compressor (`module`) and its parts (`kv`, `gate`, `bias`, `norm`), the config read of
    its rate (`rate`) and of its norm's eps (`eps`), the rope_parameters label its entries
    turn with (`group`) and the layer type of the layers that build it (`kind`); and, under
    `sparse`, the same of the overlapping compressor of another layer type with its
    `indexer` (its pooling parts, query projection `q`, head weights `weights` and the
    config reads of `heads`, `head_dim` and `topk`). The sparse kind needs the query
    projected up from a latent by `self.wq_b`.

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
        sparse = pooled.get("sparse")
        kinds = [pooled["kind"], *([sparse["kind"]] if sparse else [])]
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
        extend = EXTEND.format(mask="hidden", seen=PICK if sparse else f"\n    {SEEN}")
        run(package, "model.py", InsertStatements("Attention", "forward", _gives_keys, extend))
        if sparse:
            _add_sparse(package, sparse, norm, attention, fp32, layer)
        forward = edits.find_method(package.module("model.py"), "Model", "forward")
        seq = "seq" if any(assigns("seq")(s) for s in forward.body.body) else "tokens.shape[1]"
        run(
            package,
            "model.py",
            InsertStatements(
                "Model",
                "forward",
                assigns("rope"),
                TABLES.format(rotary=rotary, seq=seq, present=_present(bool(sparse))),
            ),
        )
        _sliding_too(package, kinds)
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
                *(_sparse_rows(part, pooled, sparse) if sparse else []),
            ],
        )


def _present(sparse: bool) -> str:
    """The test, in Model.forward, that a layer of the config builds compressed entries."""
    if not sparse:
        return "self.args.compressed_layer_type in self.args.layer_types"
    kinds = "{self.args.compressed_layer_type, self.args.overlap_layer_type}"
    return f"{kinds} & set(self.args.layer_types)"


def _add_sparse(package, sparse: dict, norm: str, attention, fp32: bool, layer: str) -> None:
    """The layers of `sparse["kind"]` build an `OverlapCompressor` in place of the
    `Compressor` and an `Indexer` whose picks are the entries each query sees; the query
    latent is kept as `q_latent` for the indexer's queries."""
    index = sparse["indexer"]
    run(package, "args.py", _AddLayerType(sparse["kind"]))
    edits.add_args_field(
        package, SPARSE_FIELDS, f"overlap_layer_type={sparse['kind']!r}".replace("'", '"')
    )
    edits.add_hf_kwarg(package, f"overlap_rate={sparse['rate']}")
    for field, read in (("n_heads", "heads"), ("head_dim", "head_dim"), ("topk", "topk")):
        edits.add_hf_kwarg(package, f"index_{field}={index[read]}")
    code = (
        OVERLAP.replace("NORM", norm)
        .replace("QROTATE", _rotation(attention, fp32, "q"))
        .replace("ROTATE", _rotation(attention, fp32, "pooled"))
    )
    edits.insert_definition(package, "model.py", code, before="Attention")
    edits.append_to_method(
        package, "model.py", "Attention", "__init__", SPARSE_BUILD.format(layer=layer)
    )
    run(package, "model.py", _HoistLatent())


def _sparse_rows(part: str, pooled: dict, sparse: dict) -> list[tuple[str, str]]:
    """Adapter rows of the overlapping compressor's parts named otherwise than the pooling
    compressor's (their house names are the same), and of its indexer's parts."""
    house = "layers.{}.attention"
    rows = [
        (f"{part}.{sparse[key]}{suffix}", f"{house}.compressor.{mine}{suffix}")
        for key, mine, suffix in _POOL_PARTS
        if sparse[key] != pooled[key]
    ]
    index = sparse["indexer"]
    hf = f"{part}.{index['module']}"
    rows += [
        (f"{hf}.{index[key]}{suffix}", f"{house}.indexer.compressor.{mine}{suffix}")
        for key, mine, suffix in _POOL_PARTS
    ]
    rows += [
        (f"{hf}.{index['q']}.weight", f"{house}.indexer.wq_b.weight"),
        (f"{hf}.{index['weights']}.weight", f"{house}.indexer.weights_proj.weight"),
    ]
    return rows


_POOL_PARTS = (
    ("kv", "wkv", ".weight"),
    ("gate", "wgate", ".weight"),
    ("bias", "slot_bias", ""),
    ("norm", "norm", ".weight"),
)


class _HoistLatent(_InMethod):
    """`... self.wq_b(<latent>) ...` -> `q_latent = <latent>` before it, read there by
    name: the indexer's queries are projected from the same latent."""

    def __init__(self):
        super().__init__("Attention", "forward")

    def edit_statements(self, body):
        pattern = m.Call(func=m.Attribute(value=m.Name("self"), attr=m.Name("wq_b")))
        for index, statement in enumerate(body):
            found = m.findall(statement, pattern)
            if len(found) != 1 or not isinstance(statement, cst.SimpleStatementLine):
                continue
            (call,) = found
            if len(call.args) != 1 or m.matches(call.args[0].value, m.Name()):
                continue
            latent = cst.SimpleStatementLine(
                [cst.Assign([cst.AssignTarget(cst.Name("q_latent"))], call.args[0].value)]
            )
            renamed = statement.deep_replace(
                call, call.with_changes(args=[cst.Arg(cst.Name("q_latent"))])
            )
            self.hits += 1
            return [*body[:index], latent, renamed, *body[index + 1 :]]
        return body


_V_IS_K = m.SimpleStatementLine(
    body=[m.Assign(targets=[m.AssignTarget(m.Name("v"))], value=m.Name("k"))]
)


def _gives_keys(statement) -> bool:
    """`v = k`: the statement after which the keys are the values."""
    return m.matches(statement, _V_IS_K)


def _rotation(forward: cst.FunctionDef, fp32: bool, name: str = "pooled") -> str:
    """How the attention turns its keys (the function given `k` and `cos, sin`), restated
    for `name`: on its fp32 values, cast back, where `fp32` (as HF turns them)."""
    pattern = m.Call(args=[m.Arg(), m.Arg(m.Name("cos")), m.Arg(m.Name("sin"))])
    for call in m.findall(forward, pattern):
        if m.findall(call.args[0].value, m.Name("k")):
            if fp32:
                return f"{code_of(call.func)}({name}.float(), cos, sin).to({name}.dtype)"
            return f"{code_of(call.func)}({name}, cos, sin)"
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


def _sliding_too(package, kinds: list[str]) -> None:
    """The blocks of `kinds` attend over the window as the sliding ones do."""

    class _Either(cst.CSTTransformer):
        def leave_Comparison(self, original, updated):
            target = m.Comparison(
                comparisons=[m.ComparisonTarget(m.Equal(), m.SimpleString('"sliding_attention"'))]
            )
            if not m.matches(updated, target):
                return updated
            listed = ", ".join(f'"{kind}"' for kind in kinds)
            types = cst.parse_expression(f'("sliding_attention", {listed})')
            return updated.with_changes(comparisons=[cst.ComparisonTarget(cst.In(), types)])

    # the window is built where any layer of these types is in the config
    listed = ", ".join(f'"{kind}"' for kind in kinds)
    either = f'{{"sliding_attention", {listed}}} & set(self.args.layer_types)'
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
