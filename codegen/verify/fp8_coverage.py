"""What an FP8 release of the model must hold in fp8, read off the HF model's structure.

The release writer (`fp8.py`) finds expert stacks stored whole through the package's key
table; a table that hides them (a row it does not show, a stack split before the table is
read) leaves them bf16, the package loads them as they are, and every other check of
`verify --fp8` passes with no expert fp8-tested. So the routed experts are counted from the
HF model (the package model where HF shows none), never from the table: a 3-D parameter
(conv weights and buffers aside) is a stack of `shape[0]` experts, alike matrices under a
second index inside a layer are one expert's each, and a layer's expert count is the largest
of them. The decoder layers are the module list indexed exactly 0..num_hidden_layers-1. The
release must hold every expert weight of those layers in fp8 (each stack whole, every expert
of the layer), and some projection of each of their sublayers (attention, FFN).
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass, field

import torch

from codegen.adapter import is_fp8

SHOWN = 3  # keys named in a problem line before "(+N more)"


@dataclass(frozen=True)
class Experts:
    """The routed experts of each decoder layer, and what no expert weight is: the paths
    inside a layer of conv weights and buffers (3-D, no experts: a mamba conv, minimax's
    decay tables), matched on the checkpoint whatever it calls the layer stack."""

    per_layer: dict[int, int]
    no_experts: frozenset[str] = frozenset()

    @classmethod
    def of(cls, layers: int, *models: torch.nn.Module) -> Experts:
        """The counts of the first of `models` showing experts (HF's, else the package's:
        DBRX's HF experts are flat 2-D matrices, its package's a 3-D stack; a package with
        experts where HF has none fails on its own keys, not here)."""
        per_layer: dict[int, int] = {}
        no_experts: set[str] = set()
        for model in models:
            convs = conv_weights(model)
            shapes = {n: tuple(p.shape) for n, p in model.named_parameters() if n not in convs}
            per_layer = per_layer or expert_counts(shapes, layers)
            others = convs | {name for name, _ in model.named_buffers()}
            stacks = layer_stacks([*shapes, *others], layers)
            no_experts |= {where[1] for name in others if (where := locate(name, stacks))}
        return cls(per_layer, frozenset(no_experts))

    @property
    def total(self) -> int:
        return sum(self.per_layer.values())


@dataclass
class Coverage:
    """What the release quantized in the decoder layers, and what it should have."""

    weights: int = 0  # fp8 tensors (an expert stack stored whole counts once)
    expert_weights: int = 0  # of them, expert stacks and per-expert matrices
    experts: int = 0  # experts with weights in fp8, summed over the layers
    model_experts: int = 0  # the model's routed experts, summed over the layers
    problems: list[str] = field(default_factory=list)


def conv_weights(model: torch.nn.Module) -> set[str]:
    return {
        f"{name}.{param}" if name else param
        for name, module in model.named_modules()
        if isinstance(module, torch.nn.modules.conv._ConvNd)
        for param, _ in module.named_parameters(recurse=False)
    }


def layer_stacks(keys, layers: int) -> set[str]:
    """The prefixes (up to the index) of the module lists holding exactly the decoder
    layers 0..layers-1, one more allowed (a multi-token-prediction layer)."""
    indices = defaultdict(set)
    for key in keys:
        found = _first_index(key)
        if found:
            indices[found[0]].add(found[1])
    return {
        prefix
        for prefix, seen in indices.items()
        if set(range(layers)) <= seen <= set(range(layers + 1))
    }


def locate(key: str, stacks: set[str]) -> tuple[int, str] | None:
    """(layer index, the key inside the layer) of a key under a layer stack."""
    found = _first_index(key)
    if found is None or found[0] not in stacks:
        return None
    prefix, index = found
    return index, key[len(prefix) + len(str(index)) + 1 :]


def per_expert(rest: str) -> tuple[str, int] | None:
    """(template, expert) of a key inside a layer under a second index (`mlp.experts.3.w`)."""
    found = re.search(r"(^|\.)(\d+)\.", rest)
    if found is None:
        return None
    return rest[: found.start(2)] + "{}" + rest[found.end(2) :], int(found.group(2))


def expert_counts(shapes: dict[str, tuple[int, ...]], layers: int) -> dict[int, int]:
    """Layer -> its routed experts: 3-D tensors' leading dim, matrices under a second index
    (at least two, alike)."""
    stacks = layer_stacks(shapes, layers)
    counts: dict[int, int] = defaultdict(int)
    groups: dict[tuple[int, str], dict[int, tuple]] = defaultdict(dict)
    for key, shape in shapes.items():
        where = locate(key, stacks)
        if where is None or where[0] >= layers or len(shape) < 2:
            continue
        layer, rest = where
        if len(shape) == 3:
            counts[layer] = max(counts[layer], shape[0])
        elif (found := per_expert(rest)) is not None:
            groups[(layer, found[0])][found[1]] = shape
    for (layer, _), members in groups.items():
        if len(members) >= 2 and len(set(members.values())) == 1:
            counts[layer] = max(counts[layer], len(members))
    return dict(counts)


def coverage(
    release: dict[str, torch.Tensor],
    layers: int,
    experts: Experts,
    hidden: int,
    is_router=lambda key: False,
    scales: frozenset[str] = frozenset(),
) -> Coverage:
    """What `release` (the fp8 checkpoint, its block scales `scales`) quantized in layers
    0..layers-1, and a problem line for each expert weight left high precision, each layer
    with fewer experts fp8 than the model routes to, each sublayer with no projection fp8."""
    stacks = layer_stacks(release, layers)
    result = Coverage(model_experts=experts.total)
    left: list[str] = []  # expert weights left high precision
    fp8_experts: dict[int, set[int]] = defaultdict(set)
    groups: dict[tuple[int, str], list[str]] = defaultdict(list)
    sublayers: dict[tuple[int, str], list[str]] = defaultdict(list)
    for key, tensor in release.items():
        where = locate(key, stacks)
        if where is None or where[0] >= layers or key in scales or tensor.dim() < 2:
            continue
        if not (tensor.is_floating_point() or is_fp8(tensor)) or is_router(key):
            continue
        layer, rest = where
        quantized = is_fp8(tensor)
        result.weights += quantized
        count = experts.per_layer.get(layer, 0)
        whole = rest not in experts.no_experts and _stack_count(key, tensor, count, hidden)
        if whole:
            result.expert_weights += quantized
            if quantized:
                fp8_experts[layer] |= set(range(whole))
            elif count:
                left.append(key)
        elif (found := per_expert(rest)) is not None:
            groups[(layer, found[0])].append(key)
        elif not (tensor.dim() == 2 and key.endswith("weight")):
            continue  # no projection: an expert bias stack, a mamba A_log
        sublayers[(layer, rest.split(".", 1)[0])].append(key)
    for (layer, _), keys in groups.items():
        if len(keys) < 2 or len({tuple(release[key].shape) for key in keys}) > 1:
            continue  # no experts: a Sequential's numbered projections
        for key in keys:
            index = per_expert(locate(key, stacks)[1])[1]
            if is_fp8(release[key]):
                result.expert_weights += 1
                fp8_experts[layer].add(index)
            elif experts.per_layer.get(layer):
                left.append(key)
    result.experts = sum(len(found) for found in fp8_experts.values())
    left.sort(key=natural)
    if left:
        result.problems.append(
            f"{len(left)} expert weights of the model's routed experts left unquantized"
            f" ({_named(left)}); the release quantizes what the package's key table"
            " (from_hf_map) shows"
        )
    short = [
        f"layer {layer}: {len(fp8_experts.get(layer, ()))} of its {count}"
        for layer, count in sorted(experts.per_layer.items())
        if layer < layers and len(fp8_experts.get(layer, ())) < count
    ]
    if short and not left:
        result.problems.append(f"fewer experts quantized than the model routes to: {short[0]}")
    bare = [
        f"layer {layer} `{sublayer}` ({len(keys)}: {_named(keys)})"
        for (layer, sublayer), keys in sorted(sublayers.items())
        if not any(is_fp8(release[key]) for key in keys)
    ]
    if bare:
        result.problems.append(
            f"no projection of {len(bare)} sublayers was quantized: {bare[0]}"
            + (f" (+{len(bare) - 1} more)" if len(bare) > 1 else "")
        )
    return result


def _stack_count(key: str, tensor, count: int, hidden: int) -> int:
    """The experts `key` holds when it is a stack stored whole: 3-D, or a flat matrix of
    the layer's `count` experts' rows by the hidden size (DBRX's `w1`)."""
    if tensor.dim() == 3:
        return tensor.shape[0]
    if tensor.dim() == 2 and not key.endswith("weight") and count:
        rows, cols = tensor.shape
        if cols == hidden and rows % count == 0 and rows // count >= 2:
            return count
    return 0


def _first_index(key: str) -> tuple[str, int] | None:
    found = re.search(r"(^|\.)(\d+)(\.|$)", key)
    return None if found is None else (key[: found.start(2)], int(found.group(2)))


def _named(keys: list[str]) -> str:
    more = f" (+{len(keys) - SHOWN} more)" if len(keys) > SHOWN else ""
    return ", ".join(keys[:SHOWN]) + more


def natural(key: str):
    """Sort key: numbers in a key by value (`experts.8` before `experts.10`)."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", key)]
