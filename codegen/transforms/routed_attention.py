"""Routed attention (JetMoE's mixture of attention heads): per-token experts own the query
and output projections; keys and values come from one shared projection."""

from __future__ import annotations

from codegen.transforms import _attention_edits as edits
from codegen.transforms import _moe_edits as moe_edits
from codegen.transforms._ffn_edits import SetClassDocstring, set_field_comment
from codegen.transforms.base import Transform
from codegen.transforms.edits import (
    EditDict,
    EditError,
    InsertStatements,
    ReplaceStatements,
    add_import,
    assigns,
    returns,
    run,
)

EXPERT_LINEAR = '''
def expert_linear(x: torch.Tensor, weight: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
    """x (..., top_k, in) -> (..., top_k, out): each slot's row times the weight
    [experts, out, in] of the expert in `indices` (..., top_k).

    The (row, slot) pairs are sorted by expert, so each expert's rows are contiguous; one
    grouped matmul multiplies every block by its own expert's weight (as `Experts` does).
    """
    flat = indices.flatten()
    order = flat.argsort(stable=True)
    offsets = torch.bincount(flat, minlength=weight.shape[0]).cumsum(0, dtype=torch.int32)
    out = grouped_mm(x.reshape(flat.numel(), -1)[order], weight.mT, offs=offsets)
    return torch.empty_like(out).index_copy_(0, order, out).view(*indices.shape, -1)
'''

QUERY_PARAMS = """
self.top_k = args.top_k
self.router = nn.Linear(args.dim, args.num_experts, bias=False)
# each expert's query projection, stacked [experts, out, in]: a token's query heads
# are its top_k experts' projections side by side (top_k * n_kv_heads heads)
self.wq = nn.Parameter(torch.empty(args.num_experts, args.n_kv_heads * args.head_dim, args.dim))
"""

KV_PARAMS = """
# keys then values, shared by every expert
self.wkv = nn.Linear(args.dim, 2 * args.n_kv_heads * args.head_dim, bias=False)
"""

OUTPUT_PARAMS = """
# each expert's output projection [experts, dim, in], applied to its own slot's heads
self.wo = nn.Parameter(torch.empty(args.num_experts, args.dim, args.n_kv_heads * args.head_dim))
"""

OUTPUT_BIAS = """self.bias = nn.Parameter(torch.empty(args.dim))  # added to the merged output
"""

QUERY = """
logits = self.router(x).float()
top, indices = logits.topk(self.top_k, dim=-1)
weights = top.softmax(dim=-1).to(x.dtype)  # over the k picked experts only
q = expert_linear(x.unsqueeze(2).expand(-1, -1, self.top_k, -1), self.wq, indices)
q = q.view(batch, seq, -1, self.head_dim).transpose(1, 2)
"""

KEYS_VALUES = """
k, v = self.wkv(x).view(batch, seq, -1, self.head_dim).transpose(1, 2).chunk(2, dim=1)
"""

# slot s's query heads read the key/value heads in order: tiled, not interleaved as GQA's
TILE = """
k, v = k.repeat(1, self.top_k, 1, 1), v.repeat(1, self.top_k, 1, 1)
"""

MERGE = """
out = out.transpose(1, 2).reshape(batch, seq, self.top_k, -1)
# each slot through its expert's output projection, weighted by the router and summed
out = (expert_linear(out, self.wo, indices) * weights.unsqueeze(-1)).sum(dim=2)
return {merged}
"""

DOCSTRING = """Mixture of attention heads: a router picks top_k experts per token.

    Each expert's query projection gives that slot's n_kv_heads heads, which attend over the
    keys and values every expert shares; the slot's output goes through the same expert's
    output projection, weighted by the router, and the slots are summed."""

_SDPA = "F.scaled_dot_product_attention"


KV_HEADS_COMMENT = "also each picked expert's query heads (top_k * n_kv_heads per token)"


class RoutedAttention(Transform):
    """`Attention` becomes a mixture of attention heads: a router picks top_k experts per token
    (softmax over the k picked logits, in fp32), each expert's stacked query projection gives
    that slot's heads, keys and values come from one shared projection (tiled over the slots),
    and each slot's attention output goes through the same expert's output projection,
    weighted and summed, plus a bias.

    `routed` is the analysed `attention.routed`: the HF paths (in the attention module) of the
    router's linear, the query and output experts, the shared key/value linear and the output
    bias (None: no bias). The experts count and top_k are the MoE's fields (`num_experts`,
    `top_k`); a package without them gets them.
    """

    name = "routed_attention"

    def apply(self, package, features=None, *, routed: dict) -> None:
        missing = [k for k in ("router", "query", "output", "kv") if not routed.get(k)]
        if missing:
            raise EditError(f"routed attention without {', '.join(missing)}: {routed}")
        _ensure_expert_fields(package)
        init = ("Attention", "__init__")
        moe_edits.replace_statement(package, "model.py", *init, assigns("self.wq"), QUERY_PARAMS)
        moe_edits.replace_statement(package, "model.py", *init, assigns("self.wk"), KV_PARAMS)
        run(package, "model.py", ReplaceStatements(*init, assigns("self.wv"), ""))
        output = OUTPUT_PARAMS + (OUTPUT_BIAS if routed.get("bias") else "")
        moe_edits.replace_statement(package, "model.py", *init, assigns("self.wo"), output)
        forward = ("Attention", "forward")
        run(package, "model.py", ReplaceStatements(*forward, assigns("q"), QUERY))
        run(package, "model.py", ReplaceStatements(*forward, assigns("k"), KEYS_VALUES))
        run(package, "model.py", ReplaceStatements(*forward, assigns("v"), ""))
        sdpa = assigns("out", calling=_SDPA)
        run(package, "model.py", InsertStatements(*forward, sdpa, TILE, before=True))
        edits.replace_expressions(
            package,
            "model.py",
            *forward,
            edits.call_of(_SDPA),
            lambda call: edits.without_arg(call, keyword="enable_gqa"),
        )
        merged = "out + self.bias" if routed.get("bias") else "out"
        merge = MERGE.format(merged=merged)
        run(package, "model.py", ReplaceStatements(*forward, returns("self.wo"), merge))
        for count in ("n_heads", "n_kv_heads"):  # GQA's head counts: SDPA no longer groups
            if not edits.method_uses(package, "Attention", "forward", count):
                run(package, "model.py", ReplaceStatements(*init, assigns(f"self.{count}"), ""))
        run(package, "model.py", SetClassDocstring("Attention", lambda old: DOCSTRING))
        # no query head count of its own: a token has as many query heads per picked expert
        set_field_comment(package, "n_kv_heads", KV_HEADS_COMMENT)
        edits.insert_definition(package, "model.py", EXPERT_LINEAR, before="Attention")
        add_import(package, "model.py", moe_edits.GROUPED_MM_MODULE, "grouped_mm")
        self._rows(package, routed)

    @staticmethod
    def _rows(package, routed: dict) -> None:
        def hf(path: str) -> str:
            return f"model.layers.{{}}.self_attn.{path}"

        rows = [
            (hf(f"{routed['router']}.weight"), "layers.{}.attention.router.weight"),
            (hf(f"{routed['query']}.weight"), "layers.{}.attention.wq"),
            (hf(f"{routed['kv']}.weight"), "layers.{}.attention.wkv.weight"),
            (hf(f"{routed['output']}.weight"), "layers.{}.attention.wo"),
        ]
        if routed.get("bias"):
            rows.append((hf(routed["bias"]), "layers.{}.attention.bias"))
        # a row too long for one line is laid out as ruff wraps it
        rows = [moe_edits.row(hf, house) for hf, house in rows]
        moe_edits.insert_rows_after(package, "layers.{}.attention.wo.weight", rows)
        run(
            package,
            "state_dict_adapter.py",
            EditDict("from_hf_map", lambda k, v: [] if _dense(_house(v)) else [(k, v)]),
        )


def _house(value: str) -> str:
    """The house key of a table value's source (`"k"`, or `("k")` laid out over lines)."""
    return moe_edits.house_of(value).strip('"')


def _dense(house: str) -> bool:
    """A row of the dense projections this attention no longer has (wq/wk/wv/wo.weight|bias)."""
    prefix = "layers.{}.attention."
    if not house.startswith(prefix):
        return False
    name, _, part = house[len(prefix) :].partition(".")
    return name in ("wq", "wk", "wv", "wo") and part in ("weight", "bias")


def _ensure_expert_fields(package) -> None:
    """The experts count and top_k the router reads: the MoE's fields, or new ones."""
    args = package.module("args.py").code
    if "num_experts:" in args and "top_k:" in args:
        return
    moe_edits.add_args_fields(
        package,
        "num_experts: int = 8  # attention experts a token is routed among\n"
        "top_k: int = 2  # attention experts each token runs\n",
    )
    moe_edits.add_config_kwargs(
        package,
        {"num_experts": "hf_config.num_experts", "top_k": "hf_config.num_experts_per_tok"},
    )
