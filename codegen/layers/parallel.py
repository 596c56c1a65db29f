"""Apply a model package's shard plan with PyTorch's own distributed APIs.

A plan is a table: module (or parameter) path pattern -> style name, `*` standing for one
path segment (`layers.*.attention.wq`). The styles are PyTorch's tensor-parallel styles
(`parallelize_module` with Colwise/Rowwise/SequenceParallel), routed experts sharded over
`tp` (hidden dim) or `ep` (expert dim), and FSDP2 `fully_shard` per block, then the root.
The mesh names its dims `tp`, `dp_shard` and `ep`; a dim that is absent has size 1.

The plan is checked before anything is sharded, so a bad plan fails loudly at apply time:
an entry that matches no module or parameter, a parameter no entry covers, or a style put on
a module of the wrong kind raises `PlanError` naming it.

Tensor parallelism keeps the residual stream replicated (no sequence parallelism): norms
and routers hold full weights on every rank and see full activations. `ep` is a data
parallel dim, as in torchtitan: each ep rank runs its own tokens through the whole model,
an all-to-all sends every (token, expert) pair to the rank holding that expert and another
brings the weighted outputs back (a pair of an identity expert, which has no weights, stays
on its token's rank); dense parameters are FSDP2-sharded over dp_shard x ep
(gradients averaged), experts over dp_shard. Under `tp` the routed experts see every
token, each rank runs its slice of every expert's hidden dim and the partial outputs are
summed (all-reduce); the input gradients are summed back the same way.

Imports torch and the standard library only: a generated package carries this file.
"""

from __future__ import annotations

import re
from contextlib import contextmanager

import torch
from torch import nn

STYLES = {
    "colwise": "nn.Linear split on its output features (q/k/v, gate/up)",
    "rowwise": "nn.Linear split on its input features, outputs summed (o, down)",
    "colwise_gate_up": "one nn.Linear whose output is [gate | up]: each rank takes its slice "
    "of both halves (a strided shard), so the local output still chunks into gate and up",
    "vocab_embedding": "nn.Embedding split over the vocabulary, outputs summed",
    "vocab_head": "output nn.Linear split over the vocabulary, logits gathered",
    "per_head_norm": "a norm over head_dim applied to the local heads; weight replicated",
    "per_head_shared": "a module applied to each local head alike, its input (batch, seq, "
    "heads, features) (inkling's relative-bias table, mixed by each head's states): weights "
    "whole on every rank, their gradient summed over the ranks' heads",
    "sharded_norm": "a norm over a whole column-wise projection (all heads): its weight "
    "split like the features, the mean of squares summed over the ranks",
    "replicate": "full weights on every rank (norms, routers, small latent projections, "
    "a block's own parameters)",
    "sharded_elementwise": "an elementwise module with learned scalars (xIELU's slopes) "
    "applied to a column-wise shard: weights whole on every rank, gradient summed over them",
    "rope_key_tail": "replicated nn.Linear whose last `rope_dim` outputs (its attention's "
    "`rope_dim`) are one key shared by every head: their gradient is summed over the ranks",
    "shared_key_norm": "a norm over a key every head shares (MLA's rope key when it is "
    "normed): weights whole on every rank, the gradient of its output summed over the ranks' "
    "heads (the projection making the key is then plainly replicated)",
    "colwise_qkv": "one nn.Linear whose output is [q | k | v] (all q heads, then k, then v; "
    "its attention's `n_heads` and `n_kv_heads` give the sizes): each rank holds its q "
    "heads' rows, then its kv heads' k and v rows, and computes with them alone",
    "colwise_qkv_grouped": "one nn.Linear whose rows are grouped per kv head (its q heads, "
    "then k, then v): each rank holds its kv heads' groups cut to its q heads; with fewer kv "
    "heads than ranks a group's k and v are held by every rank whose q heads read them",
    "colwise_kv": "a separate k or v nn.Linear: split by kv heads like `colwise`; with fewer "
    "kv heads than ranks (multi-query) each rank holds the kv head its q heads read, "
    "gradients summed over the ranks sharing it",
    "experts": "routed experts: all-to-all dispatch and combine under ep, a sum all-reduce "
    "of the hidden-dim shards' outputs under tp; "
    "each of its parameters needs its own expert_* entry",
    "grouped_colwise": "a block-diagonal nn.Linear (`GroupedLinear`: `rank` rows per group of "
    "heads): each rank holds its own heads' groups' rows and projects its local features",
    "head_param": "a parameter with one entry per head (attention sinks): split over tp "
    "with the heads; its module computes with its rank's entries",
    "rowwise_head_slice": "nn.Linear from the local heads' features to one entry per head "
    "(doge's value-derived score bias): split on its input like `rowwise`, outputs summed; "
    "each rank keeps its own heads' entries, their gradients summed over the ranks",
    "head_slice": "a module without weights whose output has one entry per head on dim 1 "
    "(ALiBi's score bias): each rank keeps the entries of its own heads",
    "expert_colwise": "stacked expert weight with the hidden dim on its output side (gate, "
    "up, or gate/up alternating), [experts, hidden, dim] or stored as [experts, dim, hidden]",
    "expert_colwise_gate_up": "stacked expert weight [gate | up] on its output side: under "
    "tp each rank takes its slice of both halves (a strided shard)",
    "expert_rowwise": "stacked expert weight with the hidden dim on its input side (down), "
    "[experts, dim, hidden] or stored as [experts, hidden, dim]",
    "filter_rows": "a depthwise nn.Conv1d over a row-sharded projection's outputs (`k_conv.conv` "
    "over `wk`, its sibling): each rank holds the filters of the rows the projection holds",
    "token_filter": "the nn.Linear projecting a per-token filter's taps (`k_conv.tap_proj`, "
    "one set of `kernel` taps per head, over the row-sharded projection `wk`'s outputs): each "
    "rank holds the taps of the heads the projection's rows make up, and its filter's fixed "
    "taps (`k_conv.weight`, one row per channel) the rows the projection holds",
    "token_filter_taps": "a per-token filter's fixed taps (`k_conv.weight`), split by its "
    "`token_filter` entry",
    "expert_bias": "per-expert bias `<weight>_bias` [experts, out], split as its weight "
    "(a down bias is whole on every tp rank and added by one of them)",
}
_EXPERT_STYLES = ("expert_colwise", "expert_colwise_gate_up", "expert_rowwise", "expert_bias")
_PARAM_STYLES = (*_EXPERT_STYLES, "head_param", "token_filter_taps")  # styles that name parameters
_LINEAR_STYLES = (
    "colwise",
    "colwise_gate_up",
    "colwise_qkv",
    "colwise_qkv_grouped",
    "colwise_kv",
    "rowwise",
    "rowwise_head_slice",
    "vocab_head",
    "rope_key_tail",
    "grouped_colwise",
    "token_filter",
)


class PlanError(ValueError):
    """A shard plan that does not fit the model it is applied to."""


class ShardRefused(NotImplementedError):
    """A right plan this model's sizes cannot be split by over this mesh (a layer's expert
    count not divisible by ep): the package declines the setting in one line, as
    `from_hf_config` declines a config it does not support."""


def mesh_size(mesh, name: str) -> int:
    """The size of the mesh dim `name`, 1 when the mesh has no such dim."""
    names = mesh.mesh_dim_names or ()
    return mesh[name].size() if name in names else 1


def apply_plan(
    model: nn.Module,
    mesh,
    plan: dict[str, str],
    blocks: tuple[str, ...] = ("layers.*",),
    optional: frozenset[str] = frozenset(),
) -> nn.Module:
    """Shard `model` in place over `mesh` by `plan`; FSDP2 wraps each of `blocks`, then
    the root. `optional` names plan entries a config switch may leave without a match."""
    modules, params = check_plan(model, plan, optional)
    tp, ep, dp = (mesh_size(mesh, name) for name in ("tp", "ep", "dp_shard"))
    if tp > 1 and ep > 1:
        raise PlanError("tp and ep both above 1: experts are sharded over one of them")
    # a plan without experts cannot use ep; a config that builds no MoE layer (its experts
    # entries optional) leaves the model replicated over ep
    if ep > 1 and "experts" not in plan.values():
        raise PlanError(f"ep={ep} but the plan shards no experts of {type(model).__name__}")
    if ep > 1:
        _refuse_unsplit_experts(model, [n for n, s in modules.items() if s == "experts"], ep)
    tied = _aliases(model)
    if tp > 1:
        _tensor_parallel(model, mesh["tp"], modules)
        _head_params(model, mesh["tp"], params)
    if tp > 1 or ep > 1:
        _expert_parallel(model, mesh["tp" if tp > 1 else "ep"], modules, params, by_expert=ep > 1)
    _retie(model, tied)
    if dp > 1 or ep > 1:
        _data_parallel(model, mesh, blocks, [n for n, s in modules.items() if s == "experts"])
    return model


def _refuse_unsplit_experts(model: nn.Module, experts: list[str], ep: int) -> None:
    """Before anything is sharded: every experts module's routed count (its `num_experts`,
    each layer's own where the counts differ per layer) splits over ep, else `ShardRefused`
    naming the first module that does not."""
    for name in experts:
        module = model.get_submodule(name)
        count = getattr(module, "num_experts", None)
        if isinstance(count, int) and count % ep:
            raise ShardRefused(
                f"{name}: {count} routed experts do not split over ep={ep}: expert parallel "
                f"needs every layer's expert count divisible by {ep}"
            )


def _data_parallel(model: nn.Module, mesh, blocks, experts: list[str]) -> None:
    """FSDP2 over the data-parallel ranks: `dp_shard` and, as in torchtitan, `ep` (each ep
    rank runs its own tokens). Dense parameters are sharded and their gradients averaged
    over dp_shard x ep; routed experts, already split over ep, get their own FSDP2 over
    dp_shard only (their gradient is already summed over ep by the all-to-all and divided
    by ep in the experts' forward)."""
    from torch.distributed.fsdp import fully_shard

    dp, ep = mesh_size(mesh, "dp_shard"), mesh_size(mesh, "ep")
    # an empty parameter (a zero-width layer of a toy config) has nothing to shard and
    # FSDP2's gradient reduce-scatter refuses it
    empty = {param for param in model.parameters() if not param.numel()}
    ignored = set(empty)
    if ep > 1:
        dense = mesh["ep"] if dp == 1 else mesh["dp_shard", "ep"]._flatten("dp_shard_ep")
        for name in experts:
            module = model.get_submodule(name)
            if dp > 1:
                fully_shard(
                    module, mesh=mesh["dp_shard"], ignored_params=empty, shard_placement_fn=_dp_dim
                )
            else:  # split over ep, whole over the (absent) dp_shard: nothing for FSDP2
                ignored.update(module.parameters())
    else:
        dense = mesh["dp_shard"]
    options = {"mesh": dense, "ignored_params": ignored, "shard_placement_fn": _dp_dim}
    for name in _matching([n for n, _ in model.named_modules()], blocks):
        fully_shard(model.get_submodule(name), **options)
    fully_shard(model, **options)


def _dp_dim(param):
    """FSDP2's dim for a parameter: dim 0 (its default), except for a weight whose tp
    shard is strided on dim 0 ([gate | up] slices): FSDP2 cannot stack its own split on
    that one, so it takes dim 1."""
    from torch.distributed.tensor import Shard
    from torch.distributed.tensor.placement_types import _StridedShard

    placements = getattr(param, "placements", ())
    strided = any(isinstance(p, _StridedShard) and p.dim == 0 for p in placements)
    if strided and param.dim() > 1:
        return Shard(1)
    if strided:
        raise PlanError(f"a 1-D parameter of shape {tuple(param.shape)} is strided over tp")
    return None


def _over_empty_container(model: nn.Module, pattern: str) -> bool:
    """`layers.*.x` where `layers` holds no entry (a config with no decoder layer): the entry
    has nothing to shard, which is not a misnamed module."""
    head, star, _ = pattern.partition(".*")
    if not star:
        return False
    try:
        container = model.get_submodule(head)
    except AttributeError:
        return False
    return isinstance(container, nn.ModuleList | nn.ModuleDict) and len(container) == 0


def check_plan(model: nn.Module, plan: dict[str, str], optional=frozenset()):
    """(module name -> style, parameter name -> style) resolved from the plan; PlanError
    when an entry matches nothing, a style is unknown or misplaced, or a parameter is left
    out."""
    module_names = [name for name, _ in model.named_modules() if name]
    param_names = [name for name, _ in model.named_parameters(remove_duplicate=False)]
    modules: dict[str, str] = {}
    params: dict[str, str] = {}
    for pattern, style in plan.items():
        if style not in STYLES:
            raise PlanError(f"plan entry {pattern!r}: unknown style {style!r}")
        found_modules = _matching(module_names, [pattern])
        found_params = _matching(param_names, [pattern])
        empty = _over_empty_container(model, pattern)
        if not found_modules and not found_params and pattern not in optional and not empty:
            raise PlanError(
                f"plan entry {pattern!r} names no module or parameter of {type(model).__name__}"
            )
        for name in found_modules:
            _check_kind(model.get_submodule(name), name, style)
            modules[name] = style
        for name in found_params:
            # a parameter held by its block itself (learned stream weights) may be whole
            if style not in _PARAM_STYLES and style != "replicate":
                raise PlanError(f"plan entry {pattern!r}: {style!r} is a module style")
            params[name] = style
    for name in param_names:
        owner = name.rpartition(".")[0]
        if name not in params and (owner not in modules or modules[owner] == "experts"):
            raise PlanError(f"parameter {name} is not covered by the plan")
        if params.get(name) in _EXPERT_STYLES and modules.get(owner) != "experts":
            raise PlanError(f"{name}: {params[name]!r} needs its module styled 'experts'")
    return modules, params


def _check_kind(module: nn.Module, name: str, style: str) -> None:
    want = {"vocab_embedding": nn.Embedding, **dict.fromkeys(_LINEAR_STYLES, nn.Linear)}
    if style in want and not isinstance(module, want[style]):
        raise PlanError(f"{name}: style {style!r} needs an nn.{want[style].__name__}")
    if style in _PARAM_STYLES:
        raise PlanError(f"{name}: {style!r} is a parameter style, not a module one")


def _matching(names: list[str], patterns) -> list[str]:
    regexes = [
        re.compile("\\.".join("[^.]+" if s == "*" else re.escape(s) for s in p.split(".")))
        for p in patterns
    ]
    return [name for name in names if any(r.fullmatch(name) for r in regexes)]


def _tensor_parallel(model: nn.Module, tp_mesh, modules: dict[str, str]) -> None:
    from torch.distributed.tensor import Replicate
    from torch.distributed.tensor.parallel import (
        ColwiseParallel,
        RowwiseParallel,
        SequenceParallel,
        parallelize_module,
    )

    styles = {
        "colwise": ColwiseParallel(),
        "rowwise": RowwiseParallel(),
        "rowwise_head_slice": RowwiseParallel(),
        "vocab_embedding": RowwiseParallel(input_layouts=Replicate()),
        "vocab_head": ColwiseParallel(output_layouts=Replicate()),
        # the local heads (batch, seq, heads, head_dim) as a shard of dim 2: the weight
        # becomes a replicated DTensor whose gradient is summed over the ranks' heads
        "per_head_norm": SequenceParallel(sequence_dim=2, use_local_output=True),
        "per_head_shared": SequenceParallel(sequence_dim=2, use_local_output=True),
        # the local features (batch, seq, features) as a shard of the last dim, likewise
        "sharded_elementwise": SequenceParallel(sequence_dim=-1, use_local_output=True),
    }
    plan = {name: styles[style] for name, style in modules.items() if style in styles}
    parallelize_module(model, tp_mesh, plan)
    size, rank = tp_mesh.size(), tp_mesh.get_local_rank()
    for name, style in modules.items():
        module = model.get_submodule(name)
        if style == "colwise":
            module.shard_features = ("output", _blocks(module.out_features, 1, size, rank))
        elif style == "rowwise":
            module.shard_features = ("input", _blocks(module.in_features, 1, size, rank))
        elif style == "colwise_gate_up":
            module.shard_features = ("output", _blocks(module.out_features, 2, size, rank))
        if style == "rope_key_tail":
            _sum_tail_grads(model, name, tp_mesh)
        elif style == "rowwise_head_slice":
            _slice_last_dim_heads(module, name, tp_mesh)
        elif style == "shared_key_norm":
            module.register_forward_hook(lambda _, args, out: _sum_grads(out, tp_mesh))
        elif style == "sharded_norm":
            _shard_norm(model.get_submodule(name), tp_mesh)
        elif style == "colwise_gate_up":
            _fused_colwise(model.get_submodule(name), name, tp_mesh, parts=2)
        elif style in ("colwise_qkv", "colwise_qkv_grouped"):
            _fused_qkv(model, name, tp_mesh, grouped=style == "colwise_qkv_grouped")
        elif style == "colwise_kv":
            _colwise_kv(model, name, tp_mesh)
        elif style == "filter_rows":
            _filter_rows(model, name, tp_mesh)
        elif style == "token_filter":
            _token_filter(model, name, tp_mesh)
        elif style == "head_slice":
            _slice_heads(module, name, size, rank)
        elif style == "grouped_colwise":
            _grouped_colwise(module, name, tp_mesh)


def _grouped_colwise(module: nn.Module, name: str, mesh) -> None:
    """A block-diagonal Linear over the heads' features: rank r holds the rows of the groups
    its column-wise q heads make up (contiguous), fed its local features as they are."""
    size = mesh.size()
    groups = module.out_features // module.rank
    if groups % size:
        raise PlanError(f"{name}: {groups} groups of heads do not split over {size}")
    step = module.out_features // size
    _row_shard(
        module, name, mesh, lambda r: torch.arange(r * step, (r + 1) * step), local_input=True
    )


def _slice_heads(module: nn.Module, name: str, size: int, rank: int) -> None:
    """The module's output (batch, heads, ...) cut to rank `rank`'s heads, the contiguous
    1/size of them its column-wise q rows hold."""

    def local(module, args, out):
        if out.shape[1] % size:
            raise PlanError(f"{name}: {out.shape[1]} heads do not split over {size}")
        step = out.shape[1] // size
        return out[:, rank * step : (rank + 1) * step]

    module.register_forward_hook(local)


def _slice_last_dim_heads(module: nn.Module, name: str, mesh) -> None:
    """The summed (..., heads) output cut to the rank's contiguous block of heads (those of
    the column-wise k/v rows it holds). Each rank uses only its block, so the gradient of
    the whole output is summed over the ranks before the row-wise backward."""
    size, rank = mesh.size(), mesh.get_local_rank()

    def local(module, args, out):
        if out.shape[-1] % size:
            raise PlanError(f"{name}: {out.shape[-1]} heads do not split over {size}")
        step = out.shape[-1] // size
        return _sum_grads(out, mesh)[..., rank * step : (rank + 1) * step]

    module.register_forward_hook(local)


def _blocks(features: int, parts: int, size: int, rank: int) -> torch.Tensor:
    """The features rank `rank` holds when each of `parts` equal blocks is split `size`
    ways; set as `shard_features` (side, indices) on a sharded Linear, so a check can
    compare its local activations with the one-device ones."""
    block = features // parts
    step = block // size
    return torch.cat(
        [torch.arange(b * block + rank * step, b * block + (rank + 1) * step) for b in range(parts)]
    )


def _fused_colwise(module: nn.Module, name: str, mesh, parts: int) -> None:
    """A Linear whose output is `parts` equal blocks: rank r holds block slice r of each
    (DTensor `_StridedShard`), runs the Linear on its local rows and sums the input
    gradient over the ranks, as ColwiseParallel does."""
    from torch.distributed.tensor import distribute_tensor
    from torch.distributed.tensor.placement_types import _StridedShard

    if module.out_features % (parts * mesh.size()):
        raise PlanError(
            f"{name}: {module.out_features} outputs do not split {parts} x {mesh.size()}"
        )
    names = [attr for attr, _ in module.named_parameters(recurse=False)]
    for attr in names:
        param = getattr(module, attr)
        sharded = distribute_tensor(param.detach(), mesh, [_StridedShard(0, split_factor=parts)])
        module.register_parameter(attr, nn.Parameter(sharded, param.requires_grad))
    forward = module.forward

    def local_forward(x, *args, **kwargs):
        with _local_weights(module, names, None):
            return forward(_sum_grads(x, mesh), *args, **kwargs)

    module.forward = local_forward


def _head_counts(model: nn.Module, name: str, style: str, size: int) -> tuple:
    """(attention module, n_heads, n_kv_heads) of the attention owning `name`; PlanError
    unless the heads split over `size` ranks and the kv heads either split or divide it."""
    attention = model.get_submodule(name.rpartition(".")[0]) if "." in name else model
    heads = getattr(attention, "n_heads", None)
    # an attention without a kv count (no GQA) has a kv head per query head
    kv_heads = getattr(attention, "n_kv_heads", heads)
    if not isinstance(heads, int) or not isinstance(kv_heads, int) or heads % kv_heads:
        raise PlanError(f"{name}: {style!r} needs its attention's int n_heads, n_kv_heads")
    if heads % size or (kv_heads % size and size % kv_heads):
        raise PlanError(f"{name}: {heads} heads over {kv_heads} kv heads do not split over {size}")
    return attention, heads, kv_heads


def _kv_rows(kv: int, kv_heads: int, size: int, rank: int) -> torch.Tensor:
    """Of `kv` rows (kv_heads heads), those of the kv heads rank `rank`'s q heads read (its
    1/size of the q heads). With fewer kv heads than ranks each kv head is held by
    size // kv_heads ranks (replicas), as serving engines do."""
    parts = min(kv_heads, size)
    part = rank * parts // size
    return torch.arange(kv * part // parts, kv * (part + 1) // parts)


def _fused_qkv(model: nn.Module, name: str, mesh, grouped: bool = False) -> None:
    """q/k/v rows of one Linear: rank r holds exactly its q heads' rows and its kv heads' k
    and v rows, in the layout its forward splits by the local head counts, and no weight is
    gathered. [q | k | v] (grouped-query heads): [q_r | k_r | v_r]. `grouped` (per kv head:
    its q heads, then k, then v): the rank's groups, each cut to the rank's q heads."""
    module = model.get_submodule(name)
    size = mesh.size()
    style = "colwise_qkv_grouped" if grouped else "colwise_qkv"
    attention, heads, kv_heads = _head_counts(model, name, style, size)
    group = heads // kv_heads
    head = module.out_features // (heads + 2 * kv_heads)
    kv = kv_heads * head
    q = module.out_features - 2 * kv

    def rows(r):
        q_rows = torch.arange(q * r // size, q * (r + 1) // size)
        kv_rows = _kv_rows(kv, kv_heads, size, r)
        if not grouped:
            return torch.cat([q_rows, q + kv_rows, q + kv + kv_rows])
        parts = []
        for g in kv_rows[::head].div(head, rounding_mode="floor").tolist():
            start = g * (group + 2) * head  # the group's rows: its q heads, k, v
            mine = q_rows[(q_rows >= g * group * head) & (q_rows < (g + 1) * group * head)]
            parts += [
                start + mine - g * group * head,
                torch.arange(start + group * head, start + (group + 2) * head),
            ]
        return torch.cat(parts)

    _local_heads(attention, heads, kv_heads, size)
    _row_shard(module, name, mesh, rows)


def _colwise_kv(model: nn.Module, name: str, mesh) -> None:
    """A separate k or v projection: split by kv heads like `colwise` when they divide over
    the ranks; with fewer kv heads than ranks each rank holds the kv head its q heads read
    (the projection's rows replicated, gradients summed over the ranks sharing them)."""
    module = model.get_submodule(name)
    size = mesh.size()
    attention, heads, kv_heads = _head_counts(model, name, "colwise_kv", size)
    if module.out_features % kv_heads:
        raise PlanError(f"{name}: {module.out_features} outputs are not {kv_heads} kv heads")
    _local_heads(attention, heads, kv_heads, size)
    _row_shard(module, name, mesh, lambda r: _kv_rows(module.out_features, kv_heads, size, r))


def _local_heads(attention: nn.Module, heads: int, kv_heads: int, size: int) -> None:
    """With kv heads replicated the local q-per-kv ratio changes: the attention's counts
    become the rank's own (engines keep local head counts), so its forward splits right."""
    if kv_heads < size:
        attention.n_heads, attention.n_kv_heads = heads // size, 1


def _filter_rows(model: nn.Module, name: str, mesh) -> None:
    """A depthwise filter `<owner>.<x>_conv.conv` over the outputs of the row-sharded
    projection `<owner>.w<x>` (styled before it): rank r holds the filters of the rows the
    projection holds, in its order, and filters its local outputs with them."""
    owner, conv, _ = name.rsplit(".", 2)
    projection = model.get_submodule(f"{owner}.w{conv.removesuffix('_conv')}")
    order = getattr(projection, "tp_rows", None)
    if not isinstance(model.get_submodule(name), nn.Conv1d) or order is None:
        raise PlanError(f"{name}: 'filter_rows' needs a Conv1d beside a row-sharded projection")
    per_rank = order.view(mesh.size(), -1)
    module = model.get_submodule(name)
    _row_shard(module, name, mesh, lambda r: per_rank[r], local_input=True)
    # one filter per local channel: the rank's module is as wide as its rows
    module.in_channels = module.out_channels = module.groups = per_rank.shape[1]


def _token_filter(model: nn.Module, name: str, mesh) -> None:
    """`<owner>.<x>_conv.tap_proj` (styled after the row-sharded projection `<owner>.w<x>`):
    the filter over that projection's outputs computes one set of `kernel` taps per head
    (`weight` rows of the head's channels plus the linear's rows of the head); rank r holds
    the rows of the heads the projection's rows on it make up, whole heads, and filters its
    local outputs with them."""
    owner, conv, _ = name.rsplit(".", 2)
    projection = model.get_submodule(f"{owner}.w{conv.removesuffix('_conv')}")
    order = getattr(projection, "tp_rows", None)
    module, proj = model.get_submodule(f"{owner}.{conv}"), model.get_submodule(name)
    if order is None or not isinstance(getattr(module, "weight", None), nn.Parameter):
        raise PlanError(f"{name}: 'token_filter' needs a filter beside a row-sharded projection")
    kernel = module.weight.shape[1]
    heads = proj.out_features // kernel
    width = module.weight.shape[0] // heads  # channels per head
    per_rank = order.view(mesh.size(), -1)
    firsts = per_rank[:, ::width]
    whole = per_rank.view(mesh.size(), -1, width) - firsts[..., None]
    if per_rank.shape[1] % width or (firsts % width).any() or (whole != torch.arange(width)).any():
        raise PlanError(f"{name}: the projection's rows on a rank are not whole heads")
    taps = (firsts // width)[..., None] * kernel + torch.arange(kernel)  # (ranks, heads, kernel)
    _row_shard(module, f"{owner}.{conv}", mesh, lambda r: per_rank[r], local_input=True)
    _row_shard(proj, name, mesh, lambda r: taps[r].flatten())


def _row_shard(module: nn.Module, name: str, mesh, rows_of, local_input: bool = False) -> None:
    """Rank r holds the output rows `rows_of(r)` of the Linear's weight (and bias), in that
    order, and computes with them alone. Stored as a DTensor split on dim 0 of the ranks'
    rows laid end to end (`tp_rows`: its row -> the Linear's row; a row several ranks hold
    appears once per rank, as in vLLM's QKVParallelLinear), so FSDP2 and `full_tensor`
    work on it; `full_rows` turns a gathered tensor back into the Linear's layout. A row
    several ranks hold gets its gradient summed over them. The input is the replicated one
    (its gradient summed over the ranks), or with `local_input` the rank's own features
    (a filter over its rows)."""
    from torch.distributed.tensor import Shard, distribute_tensor

    size, rank = mesh.size(), mesh.get_local_rank()
    per_rank = [rows_of(r) for r in range(size)]
    if len({len(r) for r in per_rank}) != 1:
        raise PlanError(f"{name}: its ranks would hold unequal numbers of rows")
    order = torch.cat(per_rank)
    rows = module.weight.shape[0]  # a Linear's output features, a Conv1d's output channels
    if not torch.equal(order.unique(), torch.arange(rows)):
        raise PlanError(f"{name}: the plan leaves rows of its {rows} unheld")
    counts = torch.bincount(order, minlength=rows)
    mine = per_rank[rank]
    shared = (counts[mine] > 1).nonzero().flatten()
    slots = torch.searchsorted((counts > 1).nonzero().flatten(), mine[shared])
    width = int((counts > 1).sum())
    module.shard_features = ("output", mine)
    module.tp_rows = order
    names = [attr for attr, _ in module.named_parameters(recurse=False)]
    for attr in names:
        param = getattr(module, attr)
        sharded = distribute_tensor(param.detach()[order], mesh, [Shard(0)])
        module.register_parameter(attr, nn.Parameter(sharded, param.requires_grad))
    forward = module.forward
    group = mesh.get_group()

    def local(attr):
        tensor = getattr(module, attr).to_local()
        return _SumShared.apply(tensor, shared, slots, width, group) if width else tensor

    def local_forward(x, *args, **kwargs):
        try:
            for attr in names:
                module.__dict__[attr] = local(attr)
            return forward(x if local_input else _sum_grads(x, mesh), *args, **kwargs)
        finally:
            for attr in names:
                module.__dict__.pop(attr, None)

    module.forward = local_forward


def full_rows(module: nn.Module, tensor: torch.Tensor) -> torch.Tensor:
    """A gathered parameter (or gradient) of a Linear sharded by held rows (`tp_rows`, the
    `colwise_qkv` and `colwise_kv` styles) or of experts whose unread rows follow each ep
    rank's own (`ep_rows`) in the module's own row order; other tensors as they are. A row
    held by several ranks is taken from its first holder."""
    order = _held_rows(module)
    if order is None or tensor.shape[0] != len(order):
        return tensor
    counts = torch.bincount(order)
    first = order.argsort(stable=True)[counts.cumsum(0) - counts]
    return tensor[first]


def _held_rows(module: nn.Module) -> torch.Tensor | None:
    """The module's rows as its ranks hold them, laid end to end (None: in its own order)."""
    order = getattr(module, "tp_rows", None)
    return getattr(module, "ep_rows", None) if order is None else order


def load_full_state_dict(model: nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Copy a full state dict (unsharded tensors in the package's own layout) into a model
    `apply_plan` sharded, as an engine does after `to_empty`: each DTensor parameter takes
    its rank's part (a Linear sharded by held rows, or experts with unread rows under ep,
    get their rows put in the per-rank order first), a plain one the whole tensor.
    Collective: every rank calls it."""
    from torch.distributed.tensor import DTensor, distribute_tensor

    with torch.no_grad():
        for name, param in model.named_parameters():
            full = state[name]
            owner = model.get_submodule(name.rpartition(".")[0]) if "." in name else model
            order = _held_rows(owner)
            if order is not None and full.shape[0] == int(order.max()) + 1:  # of those rows
                full = full[order]
            if isinstance(param, DTensor):
                part = distribute_tensor(full.to(param.dtype), param.device_mesh, param.placements)
                param.to_local().copy_(part.to_local())
            else:
                param.copy_(full)


class _SumShared(torch.autograd.Function):
    """Identity forward; the backward sums the gradient of the local rows at `positions`
    (held by several ranks, `slots` their place among the `width` shared rows) over the
    ranks holding them: each rank's copy only saw its own q heads."""

    @staticmethod
    def forward(ctx, tensor, positions, slots, width, group):
        ctx.save_for_backward(positions, slots)
        ctx.width, ctx.group = width, group
        return tensor.view_as(tensor)

    @staticmethod
    def backward(ctx, grad):
        positions, slots = (index.to(grad.device) for index in ctx.saved_tensors)
        total = grad.new_zeros((ctx.width, *grad.shape[1:]))
        total.index_add_(0, slots, grad[positions])
        torch.distributed.all_reduce(total, group=ctx.group)
        grad = grad.clone()
        grad[positions] = total[slots]
        return grad, None, None, None, None


def _shard_norm(module: nn.Module, mesh) -> None:
    """The norm sees its rank's features as a shard of the last dim: DTensor sums the
    squares over the ranks, each rank keeps its slice of the weight (and bias)."""
    from torch.distributed.tensor import DTensor, Shard, distribute_module, distribute_tensor

    def partition(name, module, mesh):
        for attr, param in list(module.named_parameters(recurse=False)):
            sharded = distribute_tensor(param.detach(), mesh, [Shard(0)])
            module.register_parameter(attr, nn.Parameter(sharded, param.requires_grad))

    def inputs(module, args, mesh):
        x = args[0]
        return (DTensor.from_local(x, mesh, [Shard(x.dim() - 1)], run_check=False), *args[1:])

    def outputs(module, out, mesh):
        return out.to_local()

    distribute_module(module, mesh, partition, inputs, outputs)


def _sum_tail_grads(model: nn.Module, name: str, mesh) -> None:
    """MLA's kv down-projection gives [latent | rope key]: each rank's heads use all of the
    rope key, so its gradient is partial per rank; the latent's is already whole (the
    column-wise up-projection sums its input gradient)."""
    parent = model.get_submodule(name.rpartition(".")[0]) if "." in name else model
    width = getattr(parent, "rope_dim", None)
    if not isinstance(width, int):
        raise PlanError(f"{name}: 'rope_key_tail' needs its attention's int `rope_dim`")

    def hook(module, args, out):
        head, tail = out.split([out.shape[-1] - width, width], dim=-1)
        return torch.cat((head, _sum_grads(tail, mesh)), dim=-1)

    model.get_submodule(name).register_forward_hook(hook)


def _expert_parallel(model, mesh, modules, params, by_expert: bool) -> None:
    """Shard each `experts` module's parameters (dim 0 under ep, the hidden dim under tp)
    and wrap it so it computes its shard and sums the partial outputs."""
    for name, style in modules.items():
        if style == "experts":
            module = model.get_submodule(name)
            own = {
                attr: params[f"{name}.{attr}"] for attr, _ in module.named_parameters(recurse=False)
            }
            once = _shard_experts(module, name, mesh, own, by_expert)
            _wrap_experts(module, mesh, by_expert, list(own), once)


def _shard_experts(module, name, mesh, own: dict[str, str], by_expert: bool) -> list[str]:
    """Distribute the experts' parameters; returns the down biases that stay whole on every
    tp rank (added by rank 0 only). Under ep, weights with unread rows past the routed
    experts hold them after each rank's own (`_unread_rows_last`)."""
    from torch.distributed.tensor import Replicate, Shard, distribute_tensor
    from torch.distributed.tensor.placement_types import _StridedShard

    weights = {attr: s for attr, s in own.items() if s != "expert_bias"}
    counts = {attr: getattr(module, attr).shape[0] for attr in weights}
    rows = None  # under ep, the order of the rows of weights holding unread ones too
    if by_expert and len(set(counts.values())) > 1:  # identity experts' unread rows
        rows = _unread_rows_last(module, name, counts, mesh.size())
        module.ep_rows = rows
    hidden = {} if by_expert else _hidden_dims(module, name, weights)
    once = []
    for attr, style in own.items():
        param = getattr(module, attr)
        if style == "expert_bias":
            weight = attr.removesuffix("_bias")
            if weight == attr or weight not in weights:
                raise PlanError(f"{name}.{attr}: 'expert_bias' needs its weight {weight}")
            style, dim = weights[weight], 1
        else:
            dim = hidden.get(attr, 0)
        if param.dim() not in (2, 3):
            raise PlanError(f"{name}.{attr}: expert parameters are stacked [experts, ...]")
        if by_expert:
            dim = 0
            placement = Shard(0)
        elif style == "expert_rowwise" and param.dim() == 2:
            placement, dim = Replicate(), None
            once.append(attr)
        elif style == "expert_colwise_gate_up":
            placement = _StridedShard(dim, split_factor=2)
        else:
            placement = Shard(dim)
        parts = mesh.size() * (2 if isinstance(placement, _StridedShard) else 1)
        if dim is not None and param.shape[dim] % parts:
            raise PlanError(f"{name}.{attr}: dim {dim} ({param.shape[dim]}) does not split {parts}")
        full = param.detach()
        if rows is not None and full.shape[0] == len(rows):
            full = full[rows]
        sharded = distribute_tensor(full, mesh, [placement])
        module.register_parameter(attr, nn.Parameter(sharded, param.requires_grad))
    return once


def _unread_rows_last(module, name, counts: dict[str, int], size: int) -> torch.Tensor:
    """Stacked weights holding rows past the module's `num_experts` (HF's gate/up rows for
    identity experts, which the forward never reads: it takes `self.w1[: self.num_experts]`)
    are split over ep as the routed experts are, each rank's unread share after its own
    experts: the order of the wider weights' rows laid end to end per rank (`ep_rows`, put
    back by `full_rows`), so rank r's local `w[: local]` are its experts."""
    routed, wider = min(counts.values()), set(counts.values()) - {min(counts.values())}
    if getattr(module, "num_experts", None) != routed or len(wider) != 1:
        raise PlanError(
            f"{name}: its stacked weights hold different expert counts ({counts}) and its "
            f"`num_experts` ({getattr(module, 'num_experts', None)}) is not the smallest: "
            "expert parallel needs the routed experts first, any unread rows after them"
        )
    (total,) = wider
    if routed % size or (total - routed) % size:
        raise PlanError(
            f"{name}: {routed} experts and {total - routed} unread rows after them do not "
            f"both split {size}"
        )
    local, extra = routed // size, (total - routed) // size
    return torch.cat(
        [
            torch.cat(
                [
                    torch.arange(r * local, (r + 1) * local),
                    routed + torch.arange(r * extra, (r + 1) * extra),
                ]
            )
            for r in range(size)
        ]
    )


def _hidden_dims(module, name, weights: dict[str, str]) -> dict[str, int]:
    """The hidden dim of each stacked weight: the house's [experts, out, in] (the forward
    multiplies by `self.<w>.mT`) or the checkpoint's [experts, in, out] (by `self.<w>`)."""
    transposed = _transposed_in_forward(type(module))
    dims = {}
    for attr, style in weights.items():
        if getattr(module, attr).dim() != 3:
            raise PlanError(f"{name}.{attr}: expert weights are stacked 3-D tensors")
        if attr not in transposed:
            raise PlanError(f"{name}.{attr}: {type(module).__name__}.forward never reads it")
        output_side = style != "expert_rowwise"
        dims[attr] = 1 if transposed[attr] == output_side else 2
    return dims


def _transposed_in_forward(cls) -> dict[str, bool]:
    """attribute -> whether `cls.forward` reads it as `self.<attr>.mT` (else as stored)."""
    import ast
    import inspect
    import textwrap

    tree = ast.parse(textwrap.dedent(inspect.getsource(cls.forward)))
    found: dict[str, bool] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
            if node.value.id == "self":
                found.setdefault(node.attr, False)
        if isinstance(node, ast.Attribute) and node.attr == "mT":
            read = node.value
            if isinstance(read, ast.Subscript):  # `self.w1[: self.num_experts].mT`
                read = read.value
            if (
                isinstance(read, ast.Attribute)
                and isinstance(read.value, ast.Name)
                and read.value.id == "self"
            ):
                found[read.attr] = True
    return found


def _head_params(model: nn.Module, mesh, params: dict[str, str]) -> None:
    """Per-head parameters split on dim 0 like the heads; the owning module's forward sees
    its local entries (gradients flow back to the DTensor parameter)."""
    from torch.distributed.tensor import Shard, distribute_tensor

    owners: dict[str, list[str]] = {}
    for name, style in params.items():
        if style == "head_param":
            owner, _, attr = name.rpartition(".")
            owners.setdefault(owner, []).append(attr)
    for owner, attrs in owners.items():
        module = model.get_submodule(owner)
        for attr in attrs:
            param = getattr(module, attr)
            if param.shape[0] % mesh.size():
                raise PlanError(
                    f"{owner}.{attr}: {param.shape[0]} heads do not split {mesh.size()}"
                )
            sharded = distribute_tensor(param.detach(), mesh, [Shard(0)])
            module.register_parameter(attr, nn.Parameter(sharded, param.requires_grad))
        _run_locally(module, attrs)


def _run_locally(module: nn.Module, attrs: list[str]) -> None:
    forward = module.forward

    def local_forward(*args, **kwargs):
        with _local_weights(module, attrs, None):
            return forward(*args, **kwargs)

    module.forward = local_forward


def _wrap_experts(module, mesh, by_expert: bool, attrs: list[str], once) -> None:
    """Experts' forward(x, indices, weights) on this rank's shard: under ep by all-to-all
    dispatch and combine, under tp on every token with the outputs summed. A bias in `once`
    (whole on every rank) is added by rank 0; its gradient is summed over ranks."""
    forward = module.forward
    # a DTensor's shape is the global one; rows past the routed experts are never read
    total = min(getattr(module, attr).shape[0] for attr in attrs)
    local = total // mesh.size() if by_expert else None  # tp: every rank has every expert
    sharded = [attr for attr in attrs if attr not in once]

    def sharded_forward(x, indices, weights, *args, **kwargs):
        if by_expert:  # this rank's own tokens; their gradients come back by all-to-all
            with _local_weights(module, sharded, local):
                for attr in sharded:  # summed over the ep ranks' tokens: their mean
                    module.__dict__[attr] = _MeanGrad.apply(module.__dict__[attr], mesh.size())
                return _dispatch_combine(forward, x, indices, weights, local, mesh)
        x, weights = _sum_grads(x, mesh), _sum_grads(weights, mesh)
        weights = _weight_free_slots_once(module, indices, weights, mesh)
        with _local_weights(module, sharded, local):
            for attr in once:
                bias = _summed_local(getattr(module, attr))
                module.__dict__[attr] = bias if mesh.get_local_rank() == 0 else bias * 0
            try:
                out = forward(x, indices, weights, *args, **kwargs)
            finally:
                for attr in once:
                    module.__dict__.pop(attr, None)
        return _sum_outputs(out, mesh)

    module.forward = sharded_forward


def _weight_free_slots_once(module, indices, weights, mesh) -> torch.Tensor:
    """Slots at or past the module's `num_experts` are identity experts: they run no
    weights, so each tp rank would pass the same token on and the summed outputs would
    count it once per rank. Rank 0 alone keeps their routing weights."""
    routed = getattr(module, "num_experts", None)
    if routed is None or mesh.get_local_rank() == 0:
        return weights
    return weights.masked_fill(indices >= routed, 0)


def _dispatch_combine(forward, x, indices, weights, local: int, mesh) -> torch.Tensor:
    """Expert parallel over this rank's own tokens: each (token, expert) pair goes to the
    rank holding that expert (all-to-all dispatch), which runs its experts on the pairs it
    receives (one slot each, the routing weight travelling with the pair) and sends the
    weighted outputs back (all-to-all combine); each token's pairs are summed. A pair of an
    identity expert (an index past the routed ones: no weights) stays on this rank, where
    the forward passes its token on, weighted, once."""
    size, rank, group = mesh.size(), mesh.get_local_rank(), mesh.get_group()
    tokens, top_k = indices.shape
    experts, pair_weights = indices.flatten(), weights.flatten()
    owners = _owner(experts, local, size, rank)
    order = owners.argsort(stable=True)  # by the rank holding the expert
    send = torch.bincount(owners[order], minlength=size)
    receive = torch.empty_like(send)
    torch.distributed.all_to_all_single(receive, send, group=group)
    send, receive = send.tolist(), receive.tolist()
    rows = _AllToAll.apply(x.repeat_interleave(top_k, 0)[order], receive, send, group)
    got_weights = _AllToAll.apply(pair_weights[order], receive, send, group)
    # local indices; an identity pair (from this rank) stays past the local experts
    got_experts = _AllToAll.apply(experts[order], receive, send, group) - rank * local
    out = forward(rows, got_experts[:, None], got_weights[:, None])
    back = _AllToAll.apply(out, send, receive, group)
    pairs = torch.empty_like(back).index_copy(0, order, back)
    return pairs.view(tokens, top_k, -1).sum(dim=1)


def _owner(experts: torch.Tensor, local: int, size: int, rank: int) -> torch.Tensor:
    """The ep rank holding each expert (rank r holds experts r*local ... r*local+local-1);
    an identity expert's (past the routed ones) is this rank: its token's own."""
    return torch.where(experts < local * size, experts // local, rank)


class _AllToAll(torch.autograd.Function):
    """all_to_all_single over rows with the given split sizes; the backward sends the
    gradients back the way the rows came."""

    @staticmethod
    def forward(ctx, tensor, out_sizes, in_sizes, group):
        ctx.sizes, ctx.group = (out_sizes, in_sizes), group
        out = tensor.new_empty((sum(out_sizes), *tensor.shape[1:]))
        torch.distributed.all_to_all_single(
            out, tensor.contiguous(), out_sizes, in_sizes, group=group
        )
        return out

    @staticmethod
    def backward(ctx, grad):
        out_sizes, in_sizes = ctx.sizes
        back = grad.new_empty((sum(in_sizes), *grad.shape[1:]))
        torch.distributed.all_to_all_single(
            back, grad.contiguous(), in_sizes, out_sizes, group=ctx.group
        )
        return back, None, None, None


class _MeanGrad(torch.autograd.Function):
    """Identity forward; the backward divides the gradient by `parts`."""

    @staticmethod
    def forward(ctx, tensor, parts):
        ctx.parts = parts
        return tensor.view_as(tensor)

    @staticmethod
    def backward(ctx, grad):
        return grad / ctx.parts, None


def _summed_local(param):
    """A replicated DTensor's local tensor whose gradient is summed over the ranks."""
    from torch.distributed.tensor import Partial

    return param.to_local(grad_placements=[Partial()])


@contextmanager
def _local_weights(module: nn.Module, names: list[str], num_experts: int | None):
    """The module's forward sees its local shards (plain tensors, gradients flowing back to
    the DTensor parameters) and, for experts, its local expert count."""
    saved = module.__dict__.get("num_experts") if num_experts is not None else None
    try:
        for attr in names:
            module.__dict__[attr] = getattr(module, attr).to_local()
        if saved is not None:
            module.__dict__["num_experts"] = num_experts
        yield
    finally:
        for attr in names:
            module.__dict__.pop(attr, None)
        if saved is not None:
            module.__dict__["num_experts"] = saved


def _sum_grads(tensor: torch.Tensor, mesh) -> torch.Tensor:
    """Identity forward; the backward sums the ranks' partial gradients."""
    from torch.distributed.tensor import DTensor, Partial, Replicate

    replicated = DTensor.from_local(tensor, mesh, [Replicate()], run_check=False)
    return replicated.to_local(grad_placements=[Partial()])


def _sum_outputs(tensor: torch.Tensor, mesh) -> torch.Tensor:
    """Sum all-reduce of the ranks' partial outputs (the backward passes the gradient on)."""
    from torch.distributed.tensor import DTensor, Partial, Replicate

    partial = DTensor.from_local(tensor, mesh, [Partial()], run_check=False)
    return partial.redistribute(mesh, [Replicate()]).to_local()


def _aliases(model: nn.Module) -> list[list[str]]:
    """Groups of names sharing one parameter (a tied output head)."""
    groups: dict[int, list[str]] = {}
    for name, param in model.named_parameters(remove_duplicate=False):
        groups.setdefault(id(param), []).append(name)
    return [names for names in groups.values() if len(names) > 1]


def _retie(model: nn.Module, groups: list[list[str]]) -> None:
    """Sharding replaces parameters one module at a time: tie the copies again."""
    for first, *others in groups:
        param = model.get_parameter(first)
        for name in others:
            owner, _, attr = name.rpartition(".")
            old = model.get_parameter(name)
            if getattr(old, "placements", None) != getattr(param, "placements", None):
                raise PlanError(f"{name} is tied to {first} but sharded differently")
            setattr(model.get_submodule(owner), attr, param)
