"""A learned relative position bias on the attention scores: each head's states, projected
from the query's input, mix a table of bias profiles over the backward distances (inkling)."""

from __future__ import annotations

import libcst as cst
import libcst.matchers as m

from codegen.transforms import _attention_edits as edits
from codegen.transforms import _moe_edits
from codegen.transforms.base import Transform
from codegen.transforms.edits import EditError, InsertStatements, assigns, expression, run

FIELDS = """
# the learned relative position bias: states per head that mix the table's rows, and each
# layer's extent (the backward distances that get a bias)
rel_dim: int = 16
layer_rel_extents: tuple[int, ...] = ()
"""
POST_INIT = """
if len(self.layer_rel_extents) != self.n_layers:
    raise ValueError("layer_rel_extents needs one entry per layer")
"""
BY_LAYER = "tuple({rule} for i in range(hf_config.num_hidden_layers))"

MODULE = """
class RelativeBias(nn.Module):
    \"\"\"A learned table of position-bias profiles over the backward distances
    0 .. extent - 1, one per state: each head's states (projected from the query's input)
    mix them into that head's own profile.\"\"\"

    def __init__(self, rel_dim: int, extent: int):
        super().__init__()
        self.table = nn.Parameter(torch.zeros(rel_dim, extent))

    def forward(self, states: torch.Tensor) -> torch.Tensor:
        \"\"\"`states`: (batch, seq, heads, rel_dim) -> profiles (batch, seq, heads, extent).\"\"\"
        return states @ self.table
"""

BY_DISTANCE = """
def bias_by_distance(profiles: torch.Tensor) -> torch.Tensor:
    \"\"\"Each head's profiles (batch, seq, heads, extent) -> its bias on the scores (batch,
    heads, seq, seq): each score reads its key's backward distance, clamped into the
    profile; keys ahead of the query or `extent` or more tokens back get none (the causal
    mask hides the former).\"\"\"
    profiles = profiles.transpose(1, 2)
    seq, extent = profiles.shape[2], profiles.shape[3]
    i = torch.arange(seq, device=profiles.device)
    distance = i[:, None] - i[None, :]  # query index - key index: how far back the key is
    index = distance.clamp(0, extent - 1).expand(*profiles.shape[:2], -1, -1)
    bias = profiles.gather(-1, index)
    return bias.masked_fill((distance < 0) | (distance >= extent), 0.0)
"""

PARTS = """
# the relative position bias: each head's states mixing this layer's table of profiles
self.wr = nn.Linear(args.dim, self.n_heads * args.rel_dim, bias=False)
self.rel_bias = RelativeBias(args.rel_dim, args.layer_rel_extents[{layer_id}])
"""
# where the attention maths is written out (HF's default kernel is its eager one, or an
# earlier transform wrote it out: soft-capping, sinks): after the scaled scores, before the
# mask (HF: scores * scale + bias, then masked); the states viewed per head of q (the
# rank's own heads under tensor parallelism)
ADD = (
    "scores = scores + bias_by_distance(self.rel_bias(self.wr(x).view(batch, seq, q.shape[1], -1)))"
)
# otherwise SDPA takes the bias as its additive mask, the dtype's lowest on the keys a query
# does not see (HF's SDPA path: `torch.where(mask, position_bias, finfo.min)`)
BIAS = "bias = bias_by_distance(self.rel_bias(self.wr(x).view(batch, seq, q.shape[1], -1)))"
CAUSAL = "torch.ones(seq, seq, dtype=torch.bool, device=x.device).tril()"
VISIBLE = f"visible = {CAUSAL}"
VISIBLE_MASK = f"visible = {CAUSAL} if mask is None else mask"
# grouped k/v heads given a mask: repeated as HF's SDPA path repeats them (a copy), where
# without a mask SDPA's GQA reads them as they are; the kernel SDPA picks on the CPU
# depends on that layout (the keys' and values' filtered sums are laid out channels first)
REPEAT = """
# as HF's SDPA path: with a mask the k/v heads are repeated per q head, without one SDPA's
# GQA reads them as they are (the kernel SDPA picks follows their layout)
if mask is not None and self.n_heads != self.n_kv_heads:
    groups = self.n_heads // self.n_kv_heads
    k, v = k.repeat_interleave(groups, dim=1), v.repeat_interleave(groups, dim=1)
"""
ATTN_MASK = "torch.where(visible, bias, torch.finfo(bias.dtype).min)"


class RelativePositionBias(Transform):
    """`Attention` adds a learned relative position bias to its scaled scores, before the
    mask: a projection `wr` of the input gives each head `rel_dim` states, which mix the
    rows of its layer's `RelativeBias` table (`rel_dim` x extent: one bias profile over the
    backward distances per state) into one bias per distance; `bias_by_distance` has each
    score read its distance's entry (the distance clamped into the table), unbiased where
    the key is ahead of the query or `extent` or more tokens back. The distance is the token index
    difference, as HF computes it (position ids do not enter). `bias` is the analysis's
    `attention.rel_bias`: the HF names of the states projection and the table (which the
    adapter maps), `width` (`rel_dim`) and `extent` as expressions of `hf_config` and the
    layer index `i` (inkling: the window on sliding layers, `rel_extent` elsewhere), read
    per layer into `layer_rel_extents`. The attention computes what HF's default kernel
    (`bias["kernel"]`) does, in its order and dtype: for "sdpa", SDPA takes the bias as its
    additive `attn_mask`, the dtype's lowest on the keys the causal mask (or the attention's
    `mask`) hides, so no scores are written out (HF's SDPA path builds the same one float
    mask); for "eager", or where an earlier transform wrote the maths out (soft-cap, sinks),
    the bias is added to the written-out scaled scores before the mask."""

    name = "relative_position_bias"

    def apply(self, package, features=None, *, bias: dict | None = None) -> None:
        keys = {"states", "table", "width", "extent", "kernel"}
        if not isinstance(bias, dict) or not keys <= set(bias):
            raise EditError(
                "relative_position_bias: the analysed states, table, width, extent, kernel"
            )
        if bias["kernel"] not in ("sdpa", "eager"):
            raise EditError(f"relative_position_bias: HF's kernel {bias['kernel']!r}")
        if _mentions_layer(bias["width"]):
            raise EditError("relative_position_bias: a states width that differs by layer")
        edits.add_args_field(package, FIELDS, f"rel_dim={bias['width']}")
        edits.add_hf_kwarg(package, "layer_rel_extents=" + BY_LAYER.format(rule=bias["extent"]))
        edits.append_to_method(package, "args.py", "ModelArgs", "__post_init__", POST_INIT)
        _moe_edits.insert_before_class(package, "model.py", "Attention", MODULE)
        _moe_edits.insert_before_class(package, "model.py", "Attention", BY_DISTANCE)
        layer_id = edits.ensure_attention_layer_id(package)
        run(
            package,
            "model.py",
            InsertStatements(
                "Attention", "__init__", assigns("self.wo"), PARTS.format(layer_id=layer_id)
            ),
        )
        if bias["kernel"] == "eager":
            edits.make_attention_explicit(package)
        if edits.attention_is_explicit(package):
            run(
                package,
                "model.py",
                InsertStatements("Attention", "forward", assigns("scores"), ADD),
            )
        else:
            _sdpa_takes_the_bias(package)
        prefix = _attention_prefix(package)
        edits.insert_rows_after(
            package,
            "layers.{}.attention.wo.weight",
            [
                (f"{prefix}.{bias['states']}.weight", "layers.{}.attention.wr.weight"),
                (f"{prefix}.{bias['table']}", "layers.{}.attention.rel_bias.table"),
            ],
        )


def _sdpa_takes_the_bias(package) -> None:
    """`bias` and the keys each query sees before the SDPA call, which takes them as one
    additive mask (the bias where a key is seen, the dtype's lowest elsewhere) in place of
    its causal flag or boolean mask."""
    takes_mask = "mask" in edits.param_names(package, "Attention", "forward")
    init = edits.find_method(package.module("model.py"), "Attention", "__init__")
    grouped = bool(
        m.findall(init, m.AssignTarget(m.Attribute(m.Name("self"), m.Name("n_kv_heads"))))
    )
    visible = "# the keys each query sees\n" + (VISIBLE_MASK if takes_mask else VISIBLE)
    code = BIAS + (REPEAT if takes_mask and grouped else "\n") + visible
    run(
        package,
        "model.py",
        InsertStatements("Attention", "forward", assigns("out"), code, before=True),
    )

    def rewrite(call):
        call = edits.without_arg(call, keyword="is_causal")
        if edits.arg_value(call, "attn_mask") is None:
            return edits.with_arg(call, ATTN_MASK, keyword="attn_mask", before="scale")
        return edits.set_arg(call, "attn_mask", ATTN_MASK)

    edits.replace_expressions(
        package, "model.py", "Attention", "forward", edits.call_of(edits._SDPA), rewrite
    )


def _mentions_layer(code: str) -> bool:
    return bool(m.findall(expression(code), m.Name("i")))


def _attention_prefix(package) -> str:
    """The HF prefix of the attention's keys (`model.layers.{}.self_attn`), from the row of
    the output projection."""
    adapter = package.module("state_dict_adapter.py")
    for element in m.findall(adapter, m.DictElement()):
        value = cst.Module([]).code_for_node(element.value).strip("\"'")
        if value == "layers.{}.attention.wo.weight":
            return cst.Module([]).code_for_node(element.key).strip("\"'").rsplit(".", 2)[0]
    raise EditError("state_dict_adapter.py has no row for layers.{}.attention.wo.weight")
