"""Name the first stage where the package and the HF model part ways.

Modules are paired by structure, not by names: the verify checkpoint's weights are random,
so every parameter value is unique, and a house parameter is found inside the HF
parameter that holds the same numbers (a split, stacked, transposed or renamed tensor keeps
its values). A house module pairs with the smallest HF module that holds exactly the same
weights: `layers.0.feed_forward` with Mixtral's `model.layers.0.mlp` although its
checkpoint keys say `block_sparse_moe`, a fused `wqkv` with nothing (its HF weights live in
three modules), a whole attention with the whole HF attention.

The stages, in execution order:
- `embedding`: the hidden states the first layer receives on both sides, so an embedding
  scale HF applies inside its embedding module and the package applies after it is compared
  where both sides mean the same thing;
- every paired module inside and including each layer, then the final norm;
- `output head`: the head's own output, then `output head post-processing`: the final
  logits, so a dropped final softcap or logit scale is named as itself.
The culprit is the stage whose input still agrees but whose output does not (every tensor
it is given: a MoE's experts handed other indices or weights than HF's router picks are no
culprit); inside the earliest diverging layer the deepest culprit wins. A layer that is the
culprit with none inside it is wired differently: the modules HF runs there and the package
never does (a dropped sublayer) are named, else the first module given another input than
its HF pair (a shortcut branch fed from the wrong sublayer, a router fed the normed input),
else the first given another input on a later call (the norm X-MOD runs before and after
its adapters): the module run before it is named, its output stage being what the layer's
own code combines otherwise (an adapter's residual dropped). So is the module run before
a first reader of another input when HF's own module holding that module returns the
value the reader is given (X-MOD without a norm before the adapters: HF's `output` adds
their residual and returns the sum its norm reads once). A part pairing with HF's whole
layer (a MoE whose router and experts HF keeps in the layer) has its parts judged as the
layer's. Judged against HF's own noise in a low
precision, a package whose logits fail may have no stage beyond its per-stage bound (the
excess accumulates a little at many stages): then the stage that adds the most excess over
HF's noise (its output's excess over its input's) is named, marked as such.

`narrowed_stage` is a check of its own for the same-dtype run: the first paired module
whose output the package returns in a narrower float dtype than HF's module returns its
own, where HF's values need the wider dtype (a router HF projects in fp32, rounded to bf16
by the package; not one HF projects in bf16 and only widens after).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

EMBEDDING_STAGE = "embedding"
HEAD_STAGE = "output head"
POST_STAGE = "output head post-processing"


@dataclass(frozen=True)
class Divergence:
    house_module: str
    hf_module: str
    relative_diff: float
    # set when no stage exceeded its bound: how much the named stage grows the excess
    growth: float | None = None
    # set by `narrowed_stage`: (package dtype, HF dtype) of the output
    dtypes: tuple[str, str] | None = None
    # set where an integer output differs (a router's expert indices): (rows, of rows)
    rows_picked_apart: tuple[int, int] | None = None
    # set where the layer is the culprit because of its wiring: "never runs" (HF runs the
    # paired module, the package does not) or "reads another input" (the module's input
    # differs from its HF pair's while everything run before it inside the layer agrees),
    # or "hands on" (the layer's own code after this module hands `reader` another input)
    wiring: str | None = None
    # with "hands on": (package module, HF module, call index) of the part given the value
    reader: tuple[str, str, int] | None = None
    # set where a paired module runs another number of times per forward than HF's (a
    # stack run in cycles): (package's calls, HF's)
    calls: tuple[int, int] | None = None

    def __str__(self) -> str:
        if self.rows_picked_apart is not None:
            apart, rows = self.rows_picked_apart
            text = (
                f"{self.house_module} (HF {self.hf_module}), picks other indices than HF's"
                f" on {apart} of {rows} rows"
            )
        else:
            text = (
                f"{self.house_module} (HF {self.hf_module}), relative diff {self.relative_diff:.2e}"
            )
        if self.calls is not None:
            text = (
                f"{self.house_module} (HF {self.hf_module}) runs {self.calls[0]} times per"
                f" forward, HF's {self.calls[1]}"
            )
        elif self.wiring == "never runs":
            text = f"{self.house_module} (HF {self.hf_module}): never run, HF runs them"
        elif self.reader is not None:
            house, hf, call = self.reader
            text = (
                f"{self.house_module} (HF {self.hf_module}) output stage: what the layer's own"
                f" code makes of it differs from HF's where {house} (HF {hf}) reads it on its"
                f" call {call + 1} (relative diff {self.relative_diff:.2e}), inside a layer"
                " whose output differs"
            )
        elif self.wiring is not None:
            text = (
                f"{self.house_module} (HF {self.hf_module}) {self.wiring} than HF's (relative"
                f" diff {self.relative_diff:.2e}) inside a layer whose output differs"
            )
        if self.dtypes is not None:
            house, hf = self.dtypes
            text += f" (returns {house} where HF returns {hf})"
        if self.growth is not None:
            text += (
                f" (no stage beyond HF's noise; this one grows the excess most, x{self.growth:.1f})"
            )
        return text


def _owners(house_model: nn.Module, hf_model: nn.Module) -> dict[str, str]:
    """House parameter name -> the HF parameter that holds the same values."""
    hf_params = [(n, p) for n, p in hf_model.named_parameters() if p.is_floating_point()]
    if not hf_params:
        return {}
    values = torch.cat([p.detach().float().flatten() for _, p in hf_params])
    owner = torch.cat(
        [torch.full((p.numel(),), i, dtype=torch.long) for i, (_, p) in enumerate(hf_params)]
    )
    values, order = values.sort()
    owner = owner[order]
    found: dict[str, str] = {}
    for name, param in house_model.named_parameters():
        flat = param.detach().float().flatten()
        if flat.numel() == 0:
            continue
        probes = flat[torch.linspace(0, flat.numel() - 1, steps=min(5, flat.numel())).long()]
        where = torch.searchsorted(values, probes).clamp(max=values.numel() - 1)
        hits = owner[where][values[where] == probes]
        if hits.numel():
            index = int(hits.mode().values)
            found[name] = hf_params[index][0]
    return found


def _module_of(param_name: str) -> str:
    return param_name.rsplit(".", 1)[0] if "." in param_name else ""


def _common_prefix(names: list[str]) -> str:
    parts = [name.split(".") for name in names]
    prefix = []
    for column in zip(*parts, strict=False):
        if len(set(column)) != 1:
            break
        prefix.append(column[0])
    return ".".join(prefix)


def module_pairs(
    house_model: nn.Module, hf_model: nn.Module, unloaded: frozenset[str] = frozenset()
) -> list[tuple[str, str]]:
    """(house module, HF module) pairs: the smallest HF module holding all the house
    module's weights (and perhaps more: a bias the port forgot). `unloaded`: house
    parameters the checkpoint has no key for (a tensor HF's module lacks, a sink on a layer
    that has none); the module pairs by the weights it did load, so the divergence search
    names it rather than everything up to the head."""
    owners = _owners(house_model, hf_model)
    hf_modules = dict(hf_model.named_modules())
    hf_weights = {
        name: {f"{name}.{p}" if name else p for p, _ in module.named_parameters()}
        for name, module in hf_modules.items()
    }
    pairs = []
    for house_name, module in house_model.named_modules():
        if not house_name or isinstance(module, nn.Embedding):
            continue
        params = [f"{house_name}.{p}" for p, _ in module.named_parameters()]
        params = [p for p in params if p not in unloaded]
        if not params or any(p not in owners for p in params):
            continue
        held = {owners[p] for p in params}
        candidate = _common_prefix([_module_of(p) for p in held])
        while candidate not in hf_modules and "." in candidate:
            candidate = candidate.rsplit(".", 1)[0]
        # the HF module may hold more (a bias the port forgot), never less
        if not held <= hf_weights.get(candidate, set()):
            continue
        if isinstance(hf_modules[candidate], nn.Embedding):
            continue
        house_numel = sum(
            p.numel() for n, p in module.named_parameters() if f"{house_name}.{n}" not in unloaded
        )
        hf_numel = sum(p.numel() for _, p in hf_modules[candidate].named_parameters())
        if house_numel <= hf_numel:
            pairs.append((house_name, candidate))
    return pairs


def _first_tensor(value):
    if isinstance(value, torch.Tensor):
        return value
    if isinstance(value, (tuple, list)):
        for item in value:
            found = _first_tensor(item)
            if found is not None:
                return found
    if hasattr(value, "last_hidden_state"):
        return value.last_hidden_state
    if hasattr(value, "logits"):
        return value.logits
    return None


def _tensors(value) -> list:
    """Every tensor of a module output, in order (routers return logits, weights, indices)."""
    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, (tuple, list)):
        return [t for item in value for t in _tensors(item)]
    if hasattr(value, "last_hidden_state"):
        return [value.last_hidden_state]
    return []


class _Recorder:
    """Forward hooks recording each named module's first input and outputs, in call order;
    `inputs`: the other tensors the first call was given (a MoE's experts are given the
    router's indices and weights beside the tokens); `calls`: (first input, outputs) of every
    call; `sequence`: (module, call index) in call order (a norm the layer runs twice)."""

    def __init__(self, model: nn.Module, names: list[str]):
        self.records: dict[str, tuple] = {}
        self.order: list[str] = []
        self.inputs: dict[str, list] = {}
        self.calls: dict[str, list[tuple]] = {}
        self.sequence: list[tuple[str, int]] = []
        modules = dict(model.named_modules())
        self.handles = [
            modules[name].register_forward_hook(self._hook(name), with_kwargs=True)
            for name in dict.fromkeys(names)
            if name in modules
        ]

    def _hook(self, name):
        def record(module, args, kwargs, output):
            inputs = _first_tensor(args[:1] or [kwargs.get("hidden_states")])
            if inputs is None:
                inputs = _first_tensor(list(kwargs.values()))
            # copies: the caller may write into an output after the hook (gemma3n scales its
            # per-layer projection in place)
            outputs = [t.clone() for t in _tensors(output)]
            calls = self.calls.setdefault(name, [])
            self.sequence.append((name, len(calls)))
            calls.append((inputs, outputs))
            if name not in self.records:
                self.order.append(name)
                self.records[name] = (inputs, outputs)
                given = _tensors(list(args) + list(kwargs.values()))
                self.inputs[name] = [t for t in given if t is not inputs]

        return record

    def close(self):
        for handle in self.handles:
            handle.remove()


@dataclass
class Recording:
    """Module records as `_Recorder` keeps them, without its hooks: by module its first
    input and outputs (`records`), the modules in call order (`order`) and the other
    tensors each was given (`inputs`)."""

    records: dict
    order: list
    inputs: dict


def record_modules(model: nn.Module) -> _Recorder:
    """Hooks recording every named module of `model` on its next forward (`close()` after)."""
    return _Recorder(model, [name for name, _ in model.named_modules() if name])


def first_diverging_module(model, recorded, reference, tolerance: float):
    """(module, relative diff) where a run of the package (`recorded`, a sharded rank's)
    first parts from the same package's `reference` run, modules paired by name: the
    culprit as `find_divergence` names one (its output apart, all it is given alike; the
    deepest of the earliest layer); None when no module is."""
    same = {name: name for name in recorded.order}
    judge = _Judge(tolerance, 1.0, None)
    found = _culprit(recorded, reference, same, judge, _layers_name(model))
    return None if found is None else (found[0], found[2])


def _outputs_diff(house: list, hf: list) -> float | None:
    """Largest relative diff over alike outputs; None when the outputs are not comparable
    (a module that returns another shape on each side says nothing either way)."""
    if not house or not hf:
        return None
    if len(house) == len(hf) and all(a.shape == b.shape for a, b in zip(house, hf, strict=True)):
        return max(relative_diff(a, b) for a, b in zip(house, hf, strict=True))
    if house[0].shape == hf[0].shape:
        return relative_diff(house[0], hf[0])
    return None


def _rows_picked_apart(house: list, hf: list) -> tuple[int, int] | None:
    """(rows that differ, rows) of the first integer output both sides return alike (a
    router's expert indices), when one differs; else None."""
    for a, b in zip(house, hf, strict=False):
        if a.is_floating_point() or b.is_floating_point() or a.shape != b.shape or a.ndim == 0:
            continue
        if not torch.equal(a, b):
            rows = a.reshape(-1, a.shape[-1]) if a.ndim > 1 else a.reshape(-1, 1)
            other = b.reshape(rows.shape)
            return int((rows != other).any(dim=-1).sum()), rows.shape[0]
    return None


def relative_diff(a, b) -> float:
    """max |a - b| / max |b|; inf when the shapes differ."""
    if a is None or b is None or a.shape != b.shape:
        return float("inf")
    if a.numel() == 0:  # an empty tensor (a zero-size buffer) agrees with its twin
        return 0.0
    if not a.is_floating_point():
        return 0.0 if torch.equal(a, b) else float("inf")
    a, b = a.detach().double(), b.detach().double()
    return ((a - b).abs().max() / b.abs().max().clamp_min(1e-12)).item()


def _input_diff(a, b) -> float:
    """`relative_diff` of what two modules are given, also where the shapes differ only in
    the leading dims (HF's MoE norms the tokens flattened to (tokens, dim), the package's as
    (batch, seq, dim)): the same values either way."""
    if a is not None and b is not None and a.shape != b.shape and _same_layout(a, b):
        b = b.reshape(a.shape)
    return relative_diff(a, b)


def _same_layout(a, b) -> bool:
    """The same shape, or the same values with the leading dims merged or split otherwise."""
    if a.shape == b.shape:
        return True
    return a.ndim > 0 and b.ndim > 0 and a.shape[-1] == b.shape[-1] and a.numel() == b.numel()


def _inputs_diff(house_rest: list, hf_rest: list) -> float:
    """Largest relative diff over the tensors a module was given besides its first (a MoE's
    experts: the router's indices and weights), where both sides give alike ones (float or
    integer, of one layout) in the same order; 0.0 when they do not (another signature says
    nothing either way)."""
    if not house_rest or len(house_rest) != len(hf_rest):
        return 0.0
    if any(
        a.is_floating_point() != b.is_floating_point() or not _same_layout(a, b)
        for a, b in zip(house_rest, hf_rest, strict=True)
    ):
        return 0.0
    return max(_input_diff(a, b) for a, b in zip(house_rest, hf_rest, strict=True))


def _layers_name(model: nn.Module) -> str | None:
    """The ModuleList of decoder layers: the longest ModuleList of the model that is not
    inside another one (a hand-written MoE keeps more experts in a list than there are
    layers). Of lists as long, the first the model builds (two alike stacks run in cycles:
    the inner one, which first receives the embeddings, as HF's L stack)."""
    names = [n for n, m in model.named_modules() if isinstance(m, nn.ModuleList)]
    outer = [n for n in names if not any(n.startswith(o + ".") for o in names if o != n)]
    lists = [(len(model.get_submodule(n)), n) for n in outer]
    return max(lists, key=lambda item: item[0])[1] if lists else None


def _first_layers(model: nn.Module) -> list[str]:
    """The first layer of each longest outer ModuleList (`_layers_name`'s candidates)."""
    names = [n for n, m in model.named_modules() if isinstance(m, nn.ModuleList)]
    outer = [n for n in names if not any(n.startswith(o + ".") for o in names if o != n)]
    lists = [(len(model.get_submodule(n)), n) for n in outer]
    longest = max((count for count, _ in lists), default=0)
    return [f"{n}.0" for count, n in lists if count == longest and count]


def _head_name(model: nn.Module, vocab: int, hf: bool) -> str | None:
    if hf and hasattr(model, "get_output_embeddings"):
        head = model.get_output_embeddings()
        for name, module in model.named_modules():
            if module is head:
                return name
    heads = [
        name
        for name, module in model.named_modules()
        if isinstance(module, nn.Linear) and module.out_features == vocab
    ]
    return heads[-1] if heads else None


class _Judge:
    """Whether a house value departs from HF's: beyond a fixed relative tolerance, or, when
    HF also ran in the package's dtype, beyond a multiple of what that dtype alone costs HF
    at the same stage (bf16 rounding grows layer by layer; one fixed bound either hides a
    bug in the first layer or blames a healthy last one)."""

    def __init__(self, tolerance: float, multiple: float, noise: _Recorder | None):
        self.tolerance, self.multiple, self.noise = tolerance, multiple, noise

    def limit(self, hf_name: str | None, hf_value, pick) -> float:
        if self.noise is None or hf_name not in self.noise.records:
            return self.tolerance
        noisy = pick(self.noise.records[hf_name])
        return max(self.multiple * _diff_any(noisy, hf_value), self.tolerance * 1e-2)

    def other_inputs_differ(self, house, hf, house_name: str, hf_name: str) -> bool:
        """The tensors the module was given besides its first differ from HF's (experts
        given other indices or weights than HF's router picks)."""
        hf_rest = hf.inputs.get(hf_name, [])
        diff = _inputs_diff(house.inputs.get(house_name, []), hf_rest)
        limit = self.tolerance
        if self.noise is not None and hf_name in self.noise.inputs:
            noisy = _inputs_diff(self.noise.inputs[hf_name], hf_rest)
            limit = max(self.multiple * noisy, self.tolerance * 1e-2)
        return diff > limit


def _diff_any(a, b) -> float:
    if isinstance(a, list) or isinstance(b, list):
        return _outputs_diff(a, b) or 0.0
    return relative_diff(a, b)


def _forward(model, tokens, positions, hf: bool, extra=None, grad: bool = False):
    """`extra`: optional id arguments (`id_inputs.py`), passed by name to both models;
    `grad`: with autograd on (no tensor is kept past the call)."""
    extra = extra or {}
    with torch.set_grad_enabled(grad):
        if hf:
            return model(input_ids=tokens, position_ids=positions, **extra).logits
        if positions is None:
            return model(tokens, **extra)
        return model(tokens, positions=positions, **extra)


def find_divergence(
    house_model,
    hf_model,
    tokens,
    tolerance: float,
    positions=None,
    hf_noise_model=None,
    noise_multiple: float = 4.0,
    pairs: list[tuple[str, str]] | None = None,
    extra: dict | None = None,
) -> Divergence | None:
    """Run both models once with hooks; return the first culprit stage, if any.

    `hf_noise_model`: HF in the package's dtype when `hf_model` is the fp32 truth; each
    stage is then judged against the noise HF itself shows there. `pairs`: the module
    pairs, found while the package still held fp32 weights (rounded to bf16, its values
    are no longer HF's fp32 ones).
    """
    pairs = module_pairs(house_model, hf_model) if pairs is None else pairs
    vocab = getattr(hf_model.config, "vocab_size", int(tokens.max()) + 1)
    house_layers = _layers_name(house_model)
    house_head = _head_name(house_model, vocab, hf=False)
    hf_head = _head_name(hf_model, vocab, hf=True)
    house_firsts, hf_firsts = _first_layers(house_model), _first_layers(hf_model)
    house_names = [h for h, _ in pairs] + house_firsts + [n for n in (house_head,) if n]
    hf_names = [f for _, f in pairs] + hf_firsts + [n for n in (hf_head,) if n]
    hf_names += _holders(pairs, _layers_name(hf_model))
    house = _Recorder(house_model, house_names)
    hf = _Recorder(hf_model, hf_names)
    noise = _Recorder(hf_noise_model, hf_names) if hf_noise_model is not None else None
    try:
        house_out = _forward(house_model, tokens, positions, False, extra)
        hf_out = _forward(hf_model, tokens, positions, True, extra)
        noise_out = _forward(hf_noise_model, tokens, positions, True, extra) if noise else None
    finally:
        for recorder in (house, hf, noise):
            if recorder is not None:
                recorder.close()
    judge = _Judge(tolerance, noise_multiple, noise)
    # the first layer called (of alike stacks run in cycles, whichever runs first)
    house_first = next((n for n in house.order if n in house_firsts), None)
    hf_first = next((n for n in hf.order if n in hf_firsts), None)

    # 1. embedding: what the first layer receives
    if house_first in house.records and hf_first in hf.records:
        hf_in = hf.records[hf_first][0]
        diff = relative_diff(house.records[house_first][0], hf_in)
        if diff > judge.limit(hf_first, hf_in, lambda r: r[0]):
            house_embed = _embedding_name(house_model)
            return Divergence(f"{EMBEDDING_STAGE} ({house_embed})", _embedding_name(hf_model), diff)
    # 2. paired modules, in house execution order
    hf_of = dict(pairs)
    found = _culprit(house, hf, hf_of, judge, house_layers)
    if found is not None:
        house_name, hf_name, diff = found
        layer = _layer_prefix(house_name, house_layers)
        if house_name == layer and _all_parts_paired(house_model, layer, hf_of):
            keyed = _keyed_parts(house_model, layer)
            opened = _opened_parts(house_model, layer, hf_of)
            wired = _wiring(house, hf, hf_of, pairs, layer, judge, keyed, opened)
            if wired is not None:
                return wired
        picked = _rows_picked_apart(house.records[house_name][1], hf.records[hf_name][1])
        return Divergence(house_name, hf_name, diff, rows_picked_apart=picked)
    # 3. a layer run another number of times than its HF pair (stacks run in cycles: a
    # swapped stack or another cycle count), the first run of those
    stacks = {name.rsplit(".", 1)[0] for name in house_firsts}
    miscounted = [
        (house_name.count("."), position, house_name)
        for position, house_name in enumerate(house.order)
        if house_name.rsplit(".", 1)[0] in stacks
        and hf_of.get(house_name) in hf.calls
        and len(house.calls[house_name]) != len(hf.calls[hf_of[house_name]])
    ]
    if miscounted:
        _, _, house_name = min(miscounted)
        counts = (len(house.calls[house_name]), len(hf.calls[hf_of[house_name]]))
        return Divergence(house_name, hf_of[house_name], float("inf"), calls=counts)
    # 4. the head, then what follows it
    if house_head in house.records and hf_head in hf.records:
        hf_outs = hf.records[hf_head][1]
        head_diff = _outputs_diff(house.records[house_head][1], hf_outs)
        if head_diff is not None and head_diff > judge.limit(hf_head, hf_outs, lambda r: r[1]):
            return Divergence(f"{HEAD_STAGE} ({house_head})", hf_head, head_diff)
    final = relative_diff(house_out.float(), hf_out.float())
    limit = tolerance
    if noise_out is not None:
        limit = max(
            noise_multiple * relative_diff(noise_out.float(), hf_out.float()), tolerance * 1e-2
        )
    if final > limit:
        return Divergence(f"{POST_STAGE} (after {house_head})", f"after {hf_head}", final)
    if noise is not None:
        return _largest_growth(house, hf, noise, hf_of, pairs_order=house.order)
    return None


def _culprit(house, hf, hf_of: dict, judge: _Judge, layers: str | None):
    """(module, its pair, output diff) of the first culprit: a paired module whose output
    departs from its pair's while every tensor it is given agrees, of those in the earliest
    layer holding one the deepest (its parents' outputs depart with it); None when none
    does. `house` and `hf` are recordings (`records`, `order`, `inputs` as `_Recorder`'s)."""
    culprits = []
    for position, house_name in enumerate(house.order):
        hf_name = hf_of.get(house_name)
        if hf_name is None or hf_name not in hf.records:
            continue
        house_in, house_outs = house.records[house_name]
        hf_in, hf_outs = hf.records[hf_name]
        out_diff = _outputs_diff(house_outs, hf_outs)
        out_limit = judge.limit(hf_name, hf_outs, lambda r: r[1])
        if out_diff is None or out_diff <= out_limit:
            continue
        if _input_diff(house_in, hf_in) <= judge.limit(hf_name, hf_in, lambda r: r[0]):
            if judge.other_inputs_differ(house, hf, house_name, hf_name):
                continue
            if not _computed_elsewhere(house, house_name, hf_outs, out_limit):
                culprits.append((position, house_name, hf_name, out_diff))
    if not culprits:
        return None
    layer = _layer_prefix(culprits[0][1], layers)
    same_layer = [c for c in culprits if _layer_prefix(c[1], layers) == layer]
    _, house_name, hf_name, diff = max(same_layer, key=lambda c: (c[1].count("."), -c[0]))
    return house_name, hf_name, diff


def _computed_elsewhere(house, house_name: str, hf_outs: list, limit: float) -> bool:
    """HF's stage returns what another stage of the package returns (HF's BERT-style
    attention adds the residual and norms it: the package's post-attention norm returns
    that): the pair holds the same weights with another meaning, and HF's value is
    reproduced, so the pair is no culprit (a slip later in the layer would otherwise be
    blamed on the attention)."""
    for other, (_, outs) in house.records.items():
        if other != house_name and not house_name.startswith(other + "."):
            diff = _outputs_diff(outs, hf_outs)
            if diff is not None and diff <= limit:
                return True
    return False


def _wiring(
    house, hf, hf_of, pairs, layer: str, judge, keyed=frozenset(), opened=frozenset()
) -> Divergence | None:
    """Inside a layer named as the culprit with no culprit of its own inside it (its modules
    each compute what HF's do from what they are given): the layer's paired parts HF runs
    and the package never does (a dropped sublayer), else the first part, in the package's
    order, given another input than its HF pair (a branch fed from the wrong place) unless
    an HF module holding the part run before it returns that input (the sum is then the
    part's stage, below), else the first part given another input on a later call (a norm
    the layer runs before and after its adapters): the layer's own code after the part run
    before it (the sum it adds the adapters' output to) computes another value than HF's.
    `opened`: the parts of a part whose weights span HF's whole layer (a MoE whose router
    and experts HF keeps in the layer), each a part of the layer of its own."""
    inside = [h for h, _ in pairs if _sublayer_of(h, layer, keyed)]
    skipped = [h for h in inside if hf_of[h] in hf.records and h not in house.records]
    if skipped:
        return Divergence(
            ", ".join(skipped),
            ", ".join(hf_of[h] for h in skipped),
            float("inf"),
            wiring="never runs",
        )

    def part(house_name: str) -> bool:
        return house_name in opened or _sublayer_of(house_name, layer, keyed)

    before = None  # the last part run before, with an output
    for house_name in house.order:
        hf_name = hf_of.get(house_name)
        if not part(house_name) or hf_name not in hf.records:
            continue
        if hf_name == hf_of.get(layer):  # a part whose weights span HF's whole layer (BERT's
            continue  # FFN: intermediate.dense and output.dense) reads the layer's input there
        house_in, hf_in = house.records[house_name][0], hf.records[hf_name][0]
        diff = _input_diff(house_in, hf_in)
        if diff > judge.limit(hf_name, hf_in, lambda r: r[0]):
            if before is not None and _returned_by_holder(
                hf, hf_of[before], hf_of.get(layer), hf_in
            ):
                reader = (house_name, hf_name, 0)
                return Divergence(before, hf_of[before], diff, wiring="hands on", reader=reader)
            return Divergence(house_name, hf_name, diff, wiring="reads another input")
        if any(t.numel() for t in house.records[house_name][1]):
            before = house_name
    before = None
    for house_name, call in house.sequence:
        hf_name = hf_of.get(house_name)
        if not part(house_name) or hf_name not in hf.calls or hf_name == hf_of.get(layer):
            continue
        house_calls, hf_calls = house.calls[house_name], hf.calls[hf_name]
        if call > 0 and len(house_calls) == len(hf_calls):
            house_in, hf_in = house_calls[call][0], hf_calls[call][0]
            diff = _input_diff(house_in, hf_in)
            if diff > judge.limit(hf_name, hf_in, lambda r: r[0]):
                reader = (house_name, hf_name, call)
                if before is None:
                    return Divergence(house_name, hf_name, diff, wiring="reads another input")
                return Divergence(before, hf_of[before], diff, wiring="hands on", reader=reader)
        if any(t.numel() for t in house_calls[call][1]):
            before = house_name
    return None


def _holders(pairs, hf_layers: str | None) -> list[str]:
    """The HF modules inside a layer that hold a paired module without being paired
    themselves (X-MOD's `output`, holding the adapters and the norm, adds the adapters'
    residual in its own code): recorded so that a sum one returns is known as its stage."""
    if not hf_layers:
        return []
    paired = {f for _, f in pairs}
    holders = {
        ".".join(parts[:i])
        for f in paired
        if f.startswith(hf_layers + ".")
        for parts in [f.split(".")]
        for i in range(len(hf_layers.split(".")) + 2, len(parts))
    }
    return sorted(holders - paired)


def _returned_by_holder(hf, hf_part: str, hf_layer: str | None, value) -> bool:
    """An HF module inside the layer holding `hf_part` returns `value` (what a later part
    reads): HF's own module boundary puts the code between them in that part's stage (X-MOD's
    `output` adds the adapters' residual and returns the sum its norm reads)."""
    if not hf_layer:
        return False
    parts = hf_part.split(".")
    for i in range(len(parts) - 1, len(hf_layer.split(".")), -1):
        holder = ".".join(parts[:i])
        outs = hf.records.get(holder, (None, []))[1]
        if outs and outs[0].shape == value.shape and torch.equal(outs[0], value):
            return True
    return False


def _opened_parts(house_model, layer: str, hf_of: dict) -> frozenset[str]:
    """The parts of each of the layer's parts whose HF pair is HF's whole layer (the
    package's MoE holds the router and experts HF keeps in the layer itself), when every one
    is paired: the layer's parts in its place."""
    opened = set()
    for name, child in house_model.get_submodule(layer).named_children():
        part = f"{layer}.{name}"
        if part not in hf_of or hf_of[part] != hf_of.get(layer):
            continue
        inner = [
            f"{part}.{n}" for n, c in child.named_children() if any(True for _ in c.parameters())
        ]
        if inner and all(n in hf_of for n in inner):
            opened.update(inner)
    return frozenset(opened)


def _all_parts_paired(house_model, layer: str, hf_of: dict) -> bool:
    """Every part of the layer holding weights (a list's items one by one) has an HF pair:
    only then can a part's other input be blamed on the wiring. An unpaired part (a pair
    dropped as apart in fp32: HF's BERT attention adds the residual and norms it) may be
    what hands the next part its other input."""
    parts = []
    for name, child in house_model.get_submodule(layer).named_children():
        listed = isinstance(child, nn.ModuleList | nn.ModuleDict)
        items = child.named_children() if listed else [("", child)]
        for index, item in items:
            if any(True for _ in item.parameters()):
                parts.append(".".join(filter(None, (layer, name, index))))
    return all(part in hf_of for part in parts)


def _keyed_parts(house_model, layer: str) -> frozenset[str]:
    """The layer's ModuleDicts (`layers.0.adapters`): their items are parts of the layer."""
    return frozenset(
        f"{layer}.{name}"
        for name, child in house_model.get_submodule(layer).named_children()
        if isinstance(child, nn.ModuleDict)
    )


def _sublayer_of(name: str, layer: str, keyed: frozenset[str] = frozenset()) -> bool:
    """`name` is one of the layer's own parts (`layers.0.moe`, a list item `layers.0.attention.1`,
    a dict item `layers.0.adapters.en_XX` where `keyed` holds `layers.0.adapters`), not a
    module inside one (whose input a part may compute otherwise than HF, equally)."""
    if not name.startswith(layer + "."):
        return False
    rest = name[len(layer) + 1 :].split(".")
    if len(rest) == 2 and f"{layer}.{rest[0]}" in keyed:
        return True
    return len(rest) == 1 or (len(rest) == 2 and rest[1].isdigit())


def _largest_growth(house, hf, noise, hf_of, pairs_order) -> Divergence | None:
    """The paired stage whose output departs from HF by the most more HF's own noise than
    its input does (diff / noise at the output over the same at the input)."""
    best = None
    for house_name in pairs_order:
        hf_name = hf_of.get(house_name)
        if hf_name is None or hf_name not in hf.records or hf_name not in noise.records:
            continue
        (house_in, house_outs), (hf_in, hf_outs) = house.records[house_name], hf.records[hf_name]
        noise_in, noise_outs = noise.records[hf_name]
        out_diff = _outputs_diff(house_outs, hf_outs)
        if out_diff is None:
            continue
        out_excess = out_diff / max(_diff_any(noise_outs, hf_outs), 1e-12)
        in_excess = _input_diff(house_in, hf_in) / max(relative_diff(noise_in, hf_in), 1e-12)
        growth = out_excess / max(in_excess, 1.0)
        if out_excess > 1.0 and (best is None or growth > best[0]):
            best = (growth, house_name, hf_name, out_diff)
    if best is None:
        return None
    growth, house_name, hf_name, diff = best
    return Divergence(house_name, hf_name, diff, growth=growth)


def agreeing_pairs(
    house_model, hf_model, tokens, positions, pairs, tolerance: float, extra=None
) -> list:
    """The module pairs whose outputs agree within `tolerance` on this input, for models
    whose logits agree (fp32): a pair apart there holds the same weights but returns
    something else (HF's BERT-style attention adds the residual and norms it, codegen's
    fused qkv_proj orders its rows otherwise), and naming it would blame a healthy stage."""
    house = _Recorder(house_model, [h for h, _ in pairs])
    hf = _Recorder(hf_model, [f for _, f in pairs])
    try:
        _forward(house_model, tokens, positions, False, extra)
        _forward(hf_model, tokens, positions, True, extra)
    finally:
        house.close()
        hf.close()
    kept = []
    for house_name, hf_name in pairs:
        if house_name in house.records and hf_name in hf.records:
            diff = _outputs_diff(house.records[house_name][1], hf.records[hf_name][1])
            if diff is not None and diff > tolerance:
                continue
        kept.append((house_name, hf_name))
    return kept


def _narrower(house: torch.Tensor, hf: torch.Tensor) -> bool:
    """Whether the package's output is of a narrower float dtype than HF's and HF's values
    need the wider one. HF's values that the narrower dtype holds exactly were computed in
    it and only widened after (granite-moe's router: `F.linear(x, w).float()` in bf16):
    returning them unwidened rounds nothing."""
    if not (house.is_floating_point() and hf.is_floating_point()):
        return False
    if torch.finfo(house.dtype).bits >= torch.finfo(hf.dtype).bits:
        return False
    return not torch.equal(hf.to(house.dtype).to(hf.dtype), hf)


def narrowed_stage(
    house_model, hf_model, tokens, positions, pairs, extra=None
) -> Divergence | None:
    """The first paired module (house execution order) whose output the package returns in
    a narrower float dtype than HF's module returns, both models in the same dtype. Outputs
    are paired as `_outputs_diff` pairs them: all alike, else the first of each."""
    hf_of = dict(pairs)
    house = _Recorder(house_model, [h for h, _ in pairs])
    hf = _Recorder(hf_model, [f for _, f in pairs])
    try:
        _forward(house_model, tokens, positions, False, extra)
        _forward(hf_model, tokens, positions, True, extra)
    finally:
        house.close()
        hf.close()
    for house_name in house.order:
        hf_name = hf_of.get(house_name)
        if hf_name not in hf.records:
            continue
        house_outs, hf_outs = house.records[house_name][1], hf.records[hf_name][1]
        if not house_outs or not hf_outs:
            continue
        alike = len(house_outs) == len(hf_outs) and all(
            a.shape == b.shape for a, b in zip(house_outs, hf_outs, strict=True)
        )
        pairs_out = list(zip(house_outs, hf_outs, strict=True)) if alike else []
        if not alike and house_outs[0].shape == hf_outs[0].shape:
            pairs_out = [(house_outs[0], hf_outs[0])]
        for got, want in pairs_out:
            if _narrower(got, want):
                return Divergence(
                    house_name,
                    hf_name,
                    relative_diff(got, want),
                    dtypes=(
                        str(got.dtype).removeprefix("torch."),
                        str(want.dtype).removeprefix("torch."),
                    ),
                )
    return None


def embedding_stage(house_model, hf_model, tokens) -> Divergence | None:
    """Compare what the first layer receives, in the models' own dtype.

    The embedding stage does no reduction (a lookup and a scale), so a correct port matches
    HF there bit for bit in any dtype; a scale that skips HF's rounding to the hidden dtype
    (Gemma's sqrt(hidden)) shows here even when bf16 noise downstream would drown it.
    """
    house_firsts, hf_firsts = _first_layers(house_model), _first_layers(hf_model)
    if not house_firsts or not hf_firsts:
        return None
    house = _Recorder(house_model, house_firsts)
    hf = _Recorder(hf_model, hf_firsts)
    try:
        _forward(house_model, tokens, None, hf=False)
        _forward(hf_model, tokens, None, hf=True)
    finally:
        house.close()
        hf.close()
    # the first layer called (of alike stacks run in cycles, whichever runs first)
    house_first = house.records.get(house.order[0]) if house.order else None
    hf_first = hf.records.get(hf.order[0]) if hf.order else None
    if house_first is None or hf_first is None:  # a first layer the forward never called
        return None
    (house_in, _), (hf_in, _) = house_first, hf_first
    if house_in is None or hf_in is None or house_in.shape != hf_in.shape:
        return None
    if torch.equal(house_in, hf_in.to(house_in.dtype)):
        return None
    diff = relative_diff(house_in, hf_in)
    house_embed = _embedding_name(house_model)
    return Divergence(f"{EMBEDDING_STAGE} ({house_embed})", _embedding_name(hf_model), diff)


def _embedding_name(model: nn.Module) -> str:
    embeddings = [n for n, m in model.named_modules() if isinstance(m, nn.Embedding)]
    return embeddings[0] if embeddings else "?"


def _layer_prefix(name: str, layers: str | None) -> str:
    if layers and name.startswith(layers + "."):
        rest = name[len(layers) + 1 :].split(".")
        return f"{layers}.{rest[0]}"
    return name.split(".")[0]


def autograd_calls(house_model, hf_model, tokens, positions=None, extra=None) -> str | None:
    """The first layer (package order) whose calls carry autograd on other calls than its
    HF pair's (a stack run in cycles whose early runs HF cuts from the graph under
    `torch.no_grad()`), as "<layer> (HF <pair>) carries gradients on calls [..], HF's on
    [..]"; None where every layer's calls agree. Both models run with gradients on."""
    pairs = dict(module_pairs(house_model, hf_model))
    stacks = {name.rsplit(".", 1)[0] for name in _first_layers(house_model)}
    layers = [h for h in pairs if h.rsplit(".", 1)[0] in stacks]
    if not layers:
        return None
    found: dict[str, list[bool]] = {}
    handles = []

    def hook(key):
        def record(module, args, output):
            outputs = _tensors(output)
            found.setdefault(key, []).append(bool(outputs) and outputs[0].requires_grad)

        return record

    house_modules, hf_modules = dict(house_model.named_modules()), dict(hf_model.named_modules())
    for name in layers:
        handles.append(house_modules[name].register_forward_hook(hook(("house", name))))
        if pairs[name] in hf_modules:
            handles.append(hf_modules[pairs[name]].register_forward_hook(hook(("hf", pairs[name]))))
    try:
        _forward(house_model, tokens, positions, False, extra, grad=True)
        _forward(hf_model, tokens, positions, True, extra, grad=True)
    finally:
        for handle in handles:
            handle.remove()
    for name in layers:
        house, hf = found.get(("house", name), []), found.get(("hf", pairs[name]), [])
        if house and len(house) == len(hf) and house != hf:
            calls = [i + 1 for i, grad in enumerate(house) if grad]
            hf_calls = [i + 1 for i, grad in enumerate(hf) if grad]
            return (
                f"{name} (HF {pairs[name]}) carries gradients on calls {calls}, HF's on {hf_calls}"
            )
    return None
