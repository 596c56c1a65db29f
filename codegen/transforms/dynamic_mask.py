"""A per-key score bias from the attention's own values, with a top-k window (Doge's
dynamic mask)."""

from __future__ import annotations

import libcst.matchers as m

from codegen.transforms import _attention_edits as edits
from codegen.transforms import _moe_edits
from codegen.transforms._rope_edits import add_args_field
from codegen.transforms.base import Transform
from codegen.transforms.edits import EditError, InsertStatements, assigns, code_of, findall, run

_SDPA = "F.scaled_dot_product_attention"

PARTS = """
# the dynamic mask: per kv head, a bias exp(bias_scale * softplus(bias_proj(v))) on each key
self.bias_proj = nn.Linear(args.n_kv_heads * args.head_dim, args.n_kv_heads, bias={bias})
self.bias_scale = nn.Parameter(torch.zeros(args.n_kv_heads))
"""
WINDOW = "self.keep_window = args.{field}"

# (batch, kv heads, queries, keys), in the values' dtype as HF computes it
BIAS = '''
def dynamic_bias(self, v: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """The scores' additive mask: each key's exp(bias_scale * softplus(bias_proj(v))) per
    kv head, the dtype's minimum where {hidden}.{window_doc}"""
    seq = v.shape[2]
    dt = F.softplus(self.bias_proj(v.transpose(1, 2).flatten(2)))  # (batch, keys, kv heads)
    bias = torch.exp(self.bias_scale * dt).transpose(1, 2)[:, :, None, :]
    bias = bias.expand(-1, -1, seq, -1)
    lowest = torch.finfo(bias.dtype).min
    {masking}{window}
    return bias.repeat_interleave(self.n_heads // self.n_kv_heads, dim=1)
'''
CAUSAL = (
    "hidden = torch.ones(seq, seq, dtype=torch.bool, device=v.device).triu(1)\n"
    "    bias = bias.masked_fill(hidden if mask is None else ~mask, lowest)"
)
CAUSAL_ONLY = (
    "hidden = torch.ones(seq, seq, dtype=torch.bool, device=v.device).triu(1)\n"
    "    bias = bias.masked_fill(hidden, lowest)"
)
TOP_K = """
    if seq > self.keep_window:  # only the window's largest biases per query row stay
        kept = bias.topk(self.keep_window, dim=-1, sorted=False).indices
        keep = torch.zeros_like(bias, dtype=torch.bool).scatter(-1, kept, True)
        bias = bias.masked_fill(~keep, lowest)"""
WINDOW_DOC = (
    " Once the keys outnumber\n"
    "    `keep_window`, only that many per query row (the largest biases) stay; the rest are\n"
    "    masked."
)

ZERO_INIT = """
def init_parameters(self, std: float) -> None:
    nn.init.zeros_(self.bias_scale)  # HF's _init_weights: the bias starts at exp(0) = 1
"""


class DynamicMask(Transform):
    """`Attention` adds a bias per key to its scores, computed from its own values: a
    projection of the values to one number per kv head, `exp(scale * softplus(.))` with a
    learned per-kv-head scale (starting at zero, as HF's init), the dtype's minimum where
    the causal mask (or the window mask the attention takes) hides the key; once the keys
    outnumber the config's window (`mask["window"]`, None: no window) only that many keys
    per query row, the largest biases, stay. The bias is SDPA's additive `attn_mask` (no
    causal flag: it masks), in the values' dtype as HF computes it. `mask` is the analysis's
    `attention.dynamic_mask`: the HF attention attributes of the projection and the scale,
    which the adapter maps; the projection's bias follows the output projection's.
    """

    name = "dynamic_mask"

    def apply(self, package, features=None, *, mask: dict | None = None) -> None:
        if not isinstance(mask, dict) or not {"proj", "scale"} <= set(mask):
            raise EditError("dynamic_mask: the analysed projection and scale names")
        bias = _output_bias(package)
        run(
            package,
            "model.py",
            InsertStatements("Attention", "__init__", assigns("self.wo"), PARTS.format(bias=bias)),
        )
        window = mask.get("window")
        if window:
            add_args_field(
                package,
                window,
                "int = 2048  # keys kept per query row once the keys outnumber it",
                f"hf_config.{window}",
            )
            run(
                package,
                "model.py",
                InsertStatements(
                    "Attention", "__init__", assigns("self.wo"), WINDOW.format(field=window)
                ),
            )
        takes_mask = "mask" in edits.param_names(package, "Attention", "forward")
        code = BIAS.format(
            hidden="the causal mask hides the key\n    (`mask`, True = attend, where given)"
            if takes_mask
            else "the causal mask hides the key",
            window_doc=WINDOW_DOC if window else "",
            masking=CAUSAL if takes_mask else CAUSAL_ONLY,
            window=TOP_K if window else "",
        )
        _moe_edits.add_method(package, "model.py", "Attention", code)
        _moe_edits.add_method(package, "model.py", "Attention", ZERO_INIT)
        _sdpa_takes_the_bias(package, takes_mask)
        prefix = _attention_prefix(package)
        rows = [
            (f"{prefix}.{mask['proj']}.weight", "layers.{}.attention.bias_proj.weight"),
            (f"{prefix}.{mask['scale']}", "layers.{}.attention.bias_scale"),
        ]
        if bias != "False":
            rows.insert(1, (f"{prefix}.{mask['proj']}.bias", "layers.{}.attention.bias_proj.bias"))
        edits.insert_rows_after(package, "layers.{}.attention.wo.weight", rows)


# `self.wo = <call>(...)`
_WO = m.Assign(
    targets=[m.AssignTarget(target=m.Attribute(value=m.Name("self"), attr=m.Name("wo")))],
    value=m.Call(),
)


def _output_bias(package) -> str:
    """The `bias=` of the output projection (the projection's bias switches with it)."""
    found = findall(package.module("model.py"), _WO)
    if len(found) != 1:
        raise EditError("Attention.__init__: no single `self.wo = nn.Linear(...)`")
    value = edits.arg_value(found[0].value, "bias")
    return value if value is not None else "True"


def _sdpa_takes_the_bias(package, takes_mask: bool) -> None:
    if edits.attention_is_explicit(package):
        raise EditError("dynamic_mask: run before the attention maths is written out")
    mask = "self.dynamic_bias(v, mask)" if takes_mask else "self.dynamic_bias(v, None)"

    def rewrite(call):
        call = edits.without_arg(call, keyword="is_causal")
        if edits.arg_value(call, "attn_mask") is None:
            return edits.with_arg(call, mask, keyword="attn_mask", before="enable_gqa")
        return edits.set_arg(call, "attn_mask", mask)

    edits.replace_expressions(
        package, "model.py", "Attention", "forward", edits.call_of(_SDPA), rewrite
    )


def _attention_prefix(package) -> str:
    """The HF prefix of the attention's keys (`model.layers.{}.self_attn`), from the row of
    the output projection."""
    code = package.module("state_dict_adapter.py")
    for element in findall(code, m.DictElement()):
        if code_of(element.value).strip("\"'") == "layers.{}.attention.wo.weight":
            return code_of(element.key).strip("\"'").rsplit(".", 2)[0]
    raise EditError("state_dict_adapter.py has no row for layers.{}.attention.wo.weight")
