"""Attention over the keys a learned indexer picks per query (DeepSeek sparse attention)."""

from __future__ import annotations

import json

import libcst as cst
import libcst.matchers as m

from codegen.transforms import _attention_edits as edits
from codegen.transforms._ffn_edits import set_field_comment
from codegen.transforms.base import Transform
from codegen.transforms.edits import (
    EditDict,
    EditError,
    InsertStatements,
    ReplaceStatements,
    ScopedTransformer,
    add_import,
    assigns,
    calls,
    dotted,
    findall,
    is_statement,
    run,
)

# the scorer, written for the house names of its parts (the adapter maps the checkpoint's);
# ROTATE is the target's rotation of the scorer's rope dims (halves or pairs), EPS its key
# norm's epsilon; written for rotated dims leading the q/k heads (`_trailing` turns it)
INDEXER = '''
class Indexer(nn.Module):
    """Picks the keys each query attends to: `index_n_heads` query heads (from the query
    latent) score every key of one normed key head, the relu'd scores are summed with
    per-token head weights, and the `index_topk` best causal keys are kept. Its q/k heads
    lead with the rotated dims. No gradient flows through the choice (as in HF)."""

    def __init__(self, args: ModelArgs):
        super().__init__()
        self.n_heads, self.head_dim = args.index_n_heads, args.index_head_dim
        self.rope_dim, self.topk = args.qk_rope_head_dim, args.index_topk
        self.wq_b = nn.Linear(args.q_lora_rank, self.n_heads * self.head_dim, bias=False)
        self.wk = nn.Linear(args.dim, self.head_dim, bias=False)
        self.k_norm = nn.LayerNorm(self.head_dim, eps=EPS)
        self.weights_proj = nn.Linear(args.dim, self.n_heads, bias=False)

    @torch.no_grad()
    def forward(
        self, x: torch.Tensor, q_latent: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor]
    ) -> torch.Tensor:
        """-> (batch, 1, seq, seq) bool: True where a query attends to a key."""
        batch, seq, _ = x.shape
        cos, sin = rope
        split = [self.rope_dim, self.head_dim - self.rope_dim]
        q = self.wq_b(q_latent).view(batch, seq, self.n_heads, self.head_dim)
        q_pe, q_nope = q.split(split, dim=-1)
        q_pe = ROTATE(q_pe.transpose(1, 2), cos, sin).transpose(1, 2)
        q = torch.cat((q_pe, q_nope), dim=-1)
        k_pe, k_nope = self.k_norm(self.wk(x)).split(split, dim=-1)
        k = torch.cat((ROTATE(k_pe.unsqueeze(1), cos, sin).squeeze(1), k_nope), dim=-1)
        scores = torch.matmul(q.float(), k.transpose(-1, -2).float().unsqueeze(1))
        scores = F.relu(scores * self.head_dim**-0.5)  # (batch, seq, heads, keys)
        weights = self.weights_proj(x.to(self.weights_proj.weight.dtype)).float()
        weights = weights * self.n_heads**-0.5
        scores = torch.matmul(weights.unsqueeze(-2), scores).squeeze(-2)  # (batch, seq, keys)
        causal = torch.ones(seq, seq, dtype=torch.bool, device=x.device).tril()
        scores = scores.masked_fill(~causal, float("-inf"))
        chosen = scores.topk(min(self.topk, seq), dim=-1).indices
        keep = torch.zeros_like(scores, dtype=torch.bool).scatter(-1, chosen, True)
        return (keep & causal).unsqueeze(1)
'''

# the q.k scale moved from the scores (batch, seq, heads, keys) to the per-head weights
_SCALE_ON_WEIGHTS = (
    (
        "scores = F.relu(scores * self.head_dim**-0.5)  # (batch, seq, heads, keys)",
        "scores = F.relu(scores)  # (batch, seq, heads, keys)",
    ),
    (
        "weights = weights * self.n_heads**-0.5\n",
        "weights = weights * self.n_heads**-0.5 * self.head_dim**-0.5  # and the scores' scale\n",
    ),
)

FIELDS = """
# the indexer: each query attends only to the index_topk causal keys it scores highest
index_topk: int = 2048
index_n_heads: int = 64  # the indexer's query heads
index_head_dim: int = 128  # its q/k head size, the first qk_rope_head_dim dims rotated
"""

EPS_FIELD = "index_k_norm_eps: float = 1e-6  # the indexer's key norm's epsilon"

# the indexer's lines for rotated dims that trail its q/k heads (HY-V4's), by the leading form's
_TRAILING = {
    "lead with the rotated dims": "end with the rotated dims",
    "split = [self.rope_dim, self.head_dim - self.rope_dim]": (
        "split = [self.head_dim - self.rope_dim, self.rope_dim]"
    ),
    "q_pe, q_nope = q.split(split, dim=-1)": "q_nope, q_pe = q.split(split, dim=-1)",
    "q = torch.cat((q_pe, q_nope), dim=-1)": "q = torch.cat((q_nope, q_pe), dim=-1)",
    "k_pe, k_nope = self.k_norm(": "k_nope, k_pe = self.k_norm(",
    "k = torch.cat((ROTATE(k_pe.unsqueeze(1), cos, sin).squeeze(1), k_nope), dim=-1)": (
        "k = torch.cat((k_nope, ROTATE(k_pe.unsqueeze(1), cos, sin).squeeze(1)), dim=-1)"
    ),
}


def _trailing(code: str) -> str:
    """The indexer whose q/k heads end with their rotated dims."""
    for old, new in _TRAILING.items():
        if code.count(old) != 1:
            raise EditError(f"the indexer template has no single {old!r}")
        code = code.replace(old, new)
    return code


KWARGS = (
    "index_topk=hf_config.index_topk",
    "index_n_heads=hf_config.index_n_heads",
    "index_head_dim=hf_config.index_head_dim",
)

_Q_LOW_RANK = "self.q_lora_rank is None"
Q_LATENT = "the query latent (wq_a -> q_norm -> wq_b); the indexer reads it"
_Q = "q = self.wq(x) if self.q_lora_rank is None else self.wq_b(self.q_norm(self.wq_a(x)))"
_Q_SPLIT = """
q_latent = self.q_norm(self.wq_a(x))  # the indexer's queries start from it too
q = self.wq_b(q_latent)
"""
_KEEP = "keep = self.indexer(x, q_latent, rope)  # the keys each query attends to"

# house module -> the indexer part's role in the analysis
_PARTS = (
    ("wq_b", "q_proj", ("weight",)),
    ("wk", "k_proj", ("weight",)),
    ("k_norm", "k_norm", ("weight", "bias")),
    ("weights_proj", "weights_proj", ("weight",)),
)


class IndexedAttention(Transform):
    """Each query attends only to the `index_topk` causal keys a learned indexer scores
    highest (DeepSeek sparse attention); the other keys are masked before the softmax.

    Starts from multi-head latent attention with a query latent (`wq_a` -> `q_norm`), which
    the indexer's query heads read: the single `wq` (q_lora_rank None) goes, as the target
    has none. The indexer (`Indexer`) scores without gradients; its mask replaces SDPA's
    causal flag. `indexer` is the analysis's `attention.key_selection`: the checkpoint names
    of the indexer and its parts, whether its rotation turns interleaved pairs, its key
    norm's epsilon, and whether the q.k scale goes on the per-head weights (as HY-V4 applies
    it) instead of the scores. The adapter maps the parts; the shard plan replicates them.
    """

    name = "indexed_attention"

    def apply(self, package, features=None, *, indexer: dict) -> None:
        rotate = "apply_rotary_interleaved" if indexer["interleaved"] else "apply_rotary"
        if rotate == "apply_rotary":
            add_import(package, "model.py", "codegen.layers.rope", "apply_rotary")
        elif not findall(package.module("model.py"), m.ImportAlias(name=m.Name(rotate))):
            raise EditError(f"model.py imports no {rotate} for the indexer")
        eps = indexer["k_norm_eps"]
        if isinstance(eps, str):  # a config field: the package reads it too
            edits.add_args_field(package, EPS_FIELD, f"index_k_norm_eps=hf_config.{eps}")
            eps = "args.index_k_norm_eps"
        else:
            eps = repr(eps)
        code = INDEXER if indexer["rope_dims"] == "leading" else _trailing(INDEXER)
        if indexer.get("k_norm_in_weight_dtype"):
            key = "self.k_norm(self.wk(x))"
            if code.count(key) != 1:
                raise EditError("the indexer template has no single key norm call")
            code = code.replace(
                key, "self.k_norm(self.wk(x).to(self.k_norm.weight.dtype)).to(x.dtype)"
            )
        if indexer.get("scale_on_weights"):  # HF scales the weights, not the scores
            for line, scaled in _SCALE_ON_WEIGHTS:
                if code.count(line) != 1:
                    raise EditError("the indexer template has no single scaled line")
                code = code.replace(line, scaled)
        code = code.replace("ROTATE", rotate).replace("EPS", eps)
        edits.insert_definition(package, "model.py", code, before="Attention")
        run(package, "model.py", KeepElse("Attention", "__init__", _Q_LOW_RANK))
        edits.remove_statements(
            package, "model.py", "Attention", "__init__", assigns("self.q_lora_rank")
        )
        set_field_comment(package, "q_lora_rank", Q_LATENT)
        edits.drop_docstring_paragraphs(package, "state_dict_adapter.py", ("q_lora_rank is None",))
        own = "self.indexer = Indexer(args)"
        layer_type = _indexed_type(features, indexer["module"])
        shared = _shared_kind(features, indexer["module"])
        if layer_type is not None and shared is not None:
            raise EditError("an indexer on some layer types and shared by others")
        if layer_type is not None:
            own = _typed(package, layer_type)
        elif shared is not None:
            own = _shared(package, *shared)
        run(package, "model.py", InsertStatements("Attention", "__init__", assigns("self.wo"), own))
        split = ReplaceStatements("Attention", "forward", is_statement(_Q), _Q_SPLIT)
        run(package, "model.py", split)
        code = _KEEP_TYPED if layer_type else _KEEP_SHARED if shared else _KEEP
        if edits.attention_is_explicit(package):
            if layer_type is not None:
                raise EditError("an indexer on some layer types of explicit attention")
            # before the scores are made: the indexer's own (batch, seq, heads, keys) scores
            # are not held beside the attention's (HF selects before it attends, too)
            scoring = assigns("scores")
            keep = InsertStatements("Attention", "forward", scoring, code, before=True)
            run(package, "model.py", keep)
            edits.replace_expressions(
                package,
                "model.py",
                "Attention",
                "forward",
                edits.call_of("scores.add_"),
                _hidden_unless_kept,
            )
        else:
            sdpa = "F.scaled_dot_product_attention"
            keep = InsertStatements("Attention", "forward", calls(sdpa), code, before=True)
            run(package, "model.py", keep)
            if layer_type is None:
                edits.replace_expressions(
                    package,
                    "model.py",
                    "Attention",
                    "forward",
                    edits.call_of(sdpa),
                    _masked_by_keep,
                )
        edits.add_args_field(package, FIELDS)
        for kwarg in KWARGS:
            edits.add_hf_kwarg(package, kwarg)
        _adapter_rows(package, indexer)


# where the layer types say which layers build an indexer (dots3: "indexed_attention"
# beside "sliding_attention"), the others have none, and its mask joins the layer's own
_KEEP_TYPED = """
if self.indexer is not None:  # the keys each query attends to
    keep = self.indexer(x, q_latent, rope)
    mask = keep if mask is None else keep & mask
"""


def _indexed_type(features, module: str) -> str | None:
    """The layer type whose layers alone build the indexer: a per-layer switch (layer_types)
    that selects `<module>: ...` on the layers of one type, and other types beside it."""
    for switch in getattr(features, "switches", ()):
        if switch.kind != "per_layer" or not isinstance(switch.configured, list | tuple):
            continue
        building = [
            v.operand
            for v in switch.values
            if v.test == "layers"
            and any(
                part.startswith(f"{module}: ") and part != f"{module}: None"
                for part in v.selects.split("; ")
            )
        ]
        if len(building) == 1 and set(switch.configured) - {building[0]}:
            return building[0]
    return None


def _typed(package, layer_type: str) -> str:
    """`self.indexer` on the layers of `layer_type` only (None elsewhere), the type known to
    ModelArgs' LAYER_TYPES; the attention must already take a mask (a window pattern's),
    which the indexer's narrows."""
    if "mask" not in edits.param_names(package, "Attention", "forward"):
        raise EditError(
            f"an indexer on {layer_type!r} layers only needs the attention to take a mask"
        )
    if not edits.has_definition(package, "args.py", "LAYER_TYPES"):
        raise EditError(f"ModelArgs knows no layer types to add {layer_type!r} to")
    run(package, "args.py", _AddLayerType(layer_type))
    layer = edits.ensure_attention_layer_id(package)
    return (
        f"self.indexer = Indexer(args) if args.layer_types[{layer}] == {layer_type!r} else None"
    ).replace("'", '"')


class _AddLayerType(cst.CSTTransformer):
    """`LAYER_TYPES = (...)` gains `layer_type` (those layers attend fully, with the indexer)."""

    def __init__(self, layer_type: str):
        super().__init__()
        self.layer_type, self.hits = layer_type, 0

    def leave_Assign(self, original, updated):
        if m.matches(updated, m.Assign(targets=[m.AssignTarget(m.Name("LAYER_TYPES"))])):
            if not isinstance(updated.value, cst.Tuple):
                raise EditError("LAYER_TYPES is not a tuple")
            self.hits += 1
            element = cst.Element(cst.SimpleString(f'"{self.layer_type}"'))
            return updated.with_changes(
                value=updated.value.with_changes(elements=[*updated.value.elements, element])
            )
        return updated


# a per-layer setting that leaves a layer without an indexer of its own (GLM-5's and
# HY-V4's "shared"): that layer reuses the keys the last layer with one chose, which the
# model hands from layer to layer in `selection`
_KEEP_SHARED = """
if self.indexer is not None:  # the other layers reuse the keys the last indexer chose
    selection["keep"] = self.indexer(x, q_latent, rope)
keep = selection["keep"]  # the keys each query attends to
"""
# a first layer with no indexer has no earlier keys to reuse (HF raises too)
_FIRST_SHARED = """
if hf_config.{field}[0] == {kind!r}:
    raise NotImplementedError(
        f"{field}={{hf_config.{field}!r}}:"
        " the first layer has no earlier indexer to reuse"
    )
"""
SELECTION_PARAM = "selection: dict[str, torch.Tensor]"
SELECTION = """
selection: dict[str, torch.Tensor] = {}  # the last indexer's keys, for the next layers
"""
SHARED_FIELD = (
    "{field}: tuple[str, ...] = ()  # per layer: {kind!r} ones reuse the last indexer's keys"
)


def _shared_kind(features, module: str) -> tuple[str, str] | None:
    """(field, kind) of the per-layer switch whose layers of `kind` build no indexer
    (`<module>: None` in what they select), or None."""
    for switch in getattr(features, "switches", ()):
        if switch.kind != "per_layer":
            continue
        for value in switch.values:
            if value.test == "layers" and f"{module}: None" in value.selects.split("; "):
                return switch.field, value.operand
    return None


def _shared(package, field: str, kind: str) -> str:
    """The per-layer field in ModelArgs, `selection` handed from the model's loop through
    each block to its attention; `self.indexer` None on the layers of `kind`."""
    declaration = SHARED_FIELD.format(field=field, kind=kind)
    edits.add_args_field(package, declaration, f"{field}=tuple(hf_config.{field})")
    refuse = InsertStatements(
        "ModelArgs",
        "from_hf_config",
        calls("require_settings"),
        _FIRST_SHARED.format(field=field, kind=kind),
    )
    run(package, "args.py", refuse)
    layer = edits.ensure_attention_layer_id(package)
    for class_name in ("TransformerBlock", "Attention"):
        edits.add_param(package, class_name, "forward", SELECTION_PARAM)
    for class_name, callee in (("TransformerBlock", "self.attention"), ("Model", "layer")):
        edits.replace_expressions(
            package,
            "model.py",
            class_name,
            "forward",
            edits.call_of(callee),
            lambda call: edits.with_arg(call, "selection"),
        )
    loop = m.For(iter=m.MatchIfTrue(lambda node: bool(m.findall(node, dotted("self.layers")))))
    run(
        package,
        "model.py",
        InsertStatements("Model", "forward", lambda s: m.matches(s, loop), SELECTION, before=True),
    )
    return f"self.indexer = None if args.{field}[{layer}] == {kind!r} else Indexer(args)".replace(
        "'", '"'
    )


def _hidden_unless_kept(call: cst.Call) -> cst.Call:
    """Explicit attention's masking (`scores.add_(table)`, the additive table of the keys it
    hides) also hides the keys the indexer left out: `scores.add_(torch.where(keep, table,
    -inf))`, the same values as widening the hidden keys by `~keep`."""
    if not m.matches(call, m.Call(args=[m.Arg(m.Name(), keyword=None)])):
        raise EditError("the attention's masking is not scores.add_(table)")
    table = call.args[0].value.value
    kept = edits.expression(f'torch.where(keep, {table}, float("-inf"))')
    return call.with_changes(args=[call.args[0].with_changes(value=kept)])


class KeepElse(ScopedTransformer):
    """`if <test>: A else: B` -> B, inside `class_name.method`."""

    def __init__(self, class_name: str, method: str, test: str):
        super().__init__(class_name, method)
        self.test = edits.is_code(test)

    def leave_If(self, original, updated):
        if self.in_scope() and self.test(updated.test) and isinstance(updated.orelse, cst.Else):
            self.hits += 1
            return cst.FlattenSentinel(updated.orelse.body.body)
        return updated


def _masked_by_keep(call: cst.Call) -> cst.Call:
    """SDPA's causal flag becomes the indexer's mask (which is causal too); a mask the
    attention already takes (a sliding window's, None where the layer does not slide)
    narrows it further."""
    if edits.arg_value(call, "is_causal") is None:
        raise EditError("the attention call has no causal flag for the indexer's mask")
    call = edits.without_arg(call, keyword="is_causal")
    mask = edits.arg_value(call, "attn_mask")
    if mask is None:
        return edits.with_arg(call, "keep", keyword="attn_mask", before="scale")
    return edits.set_arg(call, "attn_mask", f"keep if {mask} is None else keep & {mask}")


def _adapter_rows(package, indexer: dict) -> None:
    """The indexer's checkpoint keys, beside the attention's (`<attention>.<indexer>.<part>`)."""
    anchor = "layers.{}.attention.wkv_b.weight"
    found: list[str] = []

    def look(key, value):
        if value.strip().strip("()").strip() == json.dumps(anchor):
            found.append(json.loads(key))
        return [(key, value)]

    run(package, "state_dict_adapter.py", EditDict("from_hf_map", look))
    if not found:
        raise EditError(f"state_dict_adapter.py has no row for {anchor}")
    attention = found[0].rsplit(".", 2)[0]
    rows = [
        (
            f"{attention}.{indexer['module']}.{indexer[role]}.{tensor}",
            f"layers.{{}}.attention.indexer.{house}.{tensor}",
        )
        for house, role, tensors in _PARTS
        for tensor in tensors
    ]
    edits.insert_rows_after(package, anchor, rows)
