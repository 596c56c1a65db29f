"""What a built tiny model shows about itself, without reading its source.

Everything here is read off the live `nn.Module` (state-dict keys and shapes, module
structure, shared storage) or measured by running small pieces of it (a norm on a constant
input, a forward pass with hooks). Each observation is a value in the analyzer's vocabulary
(`codegen.analyze.features`), or absent when the probe cannot tell; absent fields are not
counted by the cross-check. Attribute names (`self_attn`, `mlp`...) are used only to find
the scope a key belongs to, never as the observed fact: renamed remote-code copies keep
them, so the observation is the same for both.
"""

from __future__ import annotations

import math
import re
from typing import Any

import torch

from codegen.analyze.latent_extras import LATENT_NORM_EPS

_ATTN = re.compile(r"attn|attention|mixer")
_MLP = re.compile(r"mlp|feed_forward|ffn|moe")


def observe(model, config, checkpoint_keys: set[str] | None = None) -> dict[str, Any]:
    """Observed field values (dotted analyzer names) of a built causal LM."""
    out: dict[str, Any] = {}
    config = _LayerZero(config)
    state = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    layers_name, layers = _layers(model, config)
    if layers_name is None:
        return out
    pipelines = _pipelines(model)
    out.update(_keys(state, layers_name, "state_dict", pipelines))
    if checkpoint_keys is not None:
        disk = {k: () for k in checkpoint_keys}
        disk_layers = _disk_prefix(checkpoint_keys, len(layers), layers_name)
        out.update(_keys(disk, disk_layers, "state_dict.checkpoint", pipelines))
        # a disk key also in the module tree has its shape (no conversion renamed it)
        shapes = {k: state.get(k) for k in checkpoint_keys}
        out.update(_expert_layout(shapes, "moe.expert_layout", flat=True))
    out.update(_expert_layout(state, "moe.module_layout"))
    hidden = _hidden_size(model)
    layer_state = _layer_state(state, layers_name, pipelines)
    attention_norms = _weightless_norms(layers[0])
    probes = _forward_probes(model, config, layers[0], attention_norms)
    out.update(_attention(layer_state, config, hidden, probes.pop("_norm_widths", None)))
    if getattr(config, "kv_lora_rank", None):
        out.update(_latent_norms(layers[0], config))
    out.update(_ffn(layer_state, hidden))
    out.update(_moe(layer_state, hidden))
    out.update(_norm(layers[0], hidden))
    out.update(_rope(model, config))
    out.update(_tied(model))
    out.update(probes)
    if out.get("attention.sinks") is False and _token_sinks(model, layers[0], hidden):
        out["attention.sinks"] = "per_token"
    return out


class _LayerZero:
    """The config, read as the first layer sees it: an attribute that is per layer (reading it
    on the global config raises: gemma4's head_dim, a per-layer MLA rank) answers layer 0's
    value, which is the layer whose shapes the key probes read first."""

    def __init__(self, config):
        self._config = config

    def __getattr__(self, name):
        try:
            return getattr(self._config, name)
        except AttributeError:
            raise
        except Exception:  # noqa: BLE001 - transformers' per-layer attribute error
            layers = getattr(self._config, "per_layer_config", None)
            if not layers:
                raise AttributeError(name) from None
            return getattr(layers[0], name)


def _layers(model, config):
    """The decoder stack: the list of `num_hidden_layers` blocks; where the config counts
    something else (LongCat-Flash counts each block's two attention sublayers), the one list
    of blocks of one class not inside another such list (its blocks hold lists of their
    own). Two such lists side by side (HRM's H and L modules) are no single stack: none."""
    count = getattr(config, "num_hidden_layers", None)
    stacks = []
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.ModuleList) and len(module):
            if all(len(list(child.children())) for child in module):
                if len(module) == count:
                    return name, module
                if len({type(child) for child in module}) == 1:
                    stacks.append((name, module))
    outer = [s for s in stacks if not any(s[0].startswith(o[0] + ".") for o in stacks)]
    return outer[0] if len(outer) == 1 else (None, None)


def _hidden_size(model) -> int:
    return model.get_input_embeddings().weight.shape[-1]


def _pipelines(model) -> frozenset[str]:
    """Paths of the numbered containers whose items are different modules (nn.Sequential of
    Linear, ReLU, Linear): their indices name different weights, where a list of repeats
    (layers, experts, per-layer projections) has one key pattern with `{}`."""
    return frozenset(
        name
        for name, module in model.named_modules()
        if isinstance(module, torch.nn.ModuleList | torch.nn.Sequential)
        and len({type(child) for child in module}) > 1
    )


def _template(key: str, pipelines: frozenset[str]) -> str:
    """`key` with the index of every repeat-list item as `{}` (a pipeline's kept; a last
    part is an item of a list of tensors)."""
    parts = key.split(".")
    return ".".join(
        "{}" if p.isdigit() and i and ".".join(parts[:i]) not in pipelines else p
        for i, p in enumerate(parts)
    )


def _disk_prefix(keys: set[str], count: int, module_prefix: str) -> str:
    """The layers' prefix in the checkpoint: the one path numbered 0 .. count-1 (the module
    tree's, unless a conversion stores the layers elsewhere: inkling2's `model.llm.layers`)."""
    numbered: dict[str, set[int]] = {}
    for key in keys:
        parts = key.split(".")
        for i, part in enumerate(parts[1:-1], 1):
            if part.isdigit():
                numbered.setdefault(".".join(parts[:i]), set()).add(int(part))
    whole = [p for p, seen in numbered.items() if seen == set(range(count))]
    if module_prefix in whole or len(whole) != 1:
        return module_prefix
    return whole[0]


def _keys(
    state: dict, prefix: str, field: str, pipelines: frozenset[str] = frozenset()
) -> dict[str, Any]:
    layer_keys, other_keys = set(), set()
    for key in state:
        if key.startswith(prefix + "."):
            layer_keys.add(_template(key, pipelines)[len(prefix) + 1 :].split(".", 1)[1])
        else:
            other_keys.add(_template(key, pipelines))
    return {
        f"{field}.layer_keys": frozenset(layer_keys),
        f"{field}.other_keys": frozenset(other_keys),
    }


def _layer_state(state: dict, prefix: str, pipelines: frozenset[str] = frozenset()) -> dict:
    """Keys of every layer (index dropped), with their shapes: MoE and dense layers mix. A
    block's sublayers held in a list of repeats (LongCat-Flash's two attentions and two
    MLPs per block) are read as the first of them: their index is dropped too."""
    out: dict[str, tuple] = {}
    for key, shape in state.items():
        if key.startswith(prefix + "."):
            index, _, rest = key[len(prefix) + 1 :].partition(".")
            parts = rest.split(".")
            container = f"{prefix}.{index}.{parts[0]}"
            if len(parts) > 2 and parts[1].isdigit() and container not in pipelines:
                parts.pop(1)
            out.setdefault(".".join(parts), shape)
    return out


def _expert_layout(shapes: dict, field: str, flat: bool = False) -> dict[str, Any]:
    """per_expert (numbered modules), fused (one tensor with an expert axis) or, on disk,
    flat: every expert tensor two-dimensional, the experts' rows stacked in one matrix."""
    expert_keys = [k for k in shapes if ".experts." in k]
    if not expert_keys:
        return {}
    if any(re.search(r"\.experts\.\d+\.", k) for k in expert_keys):
        return {field: "per_expert"}
    known = [shapes[k] for k in expert_keys if shapes[k] is not None]
    if flat and known and all(len(s) <= 2 for s in known) and any(len(s) == 2 for s in known):
        return {field: "flat"}
    return {field: "fused"}


def _scope(layer_state: dict, pattern: re.Pattern) -> dict[str, tuple]:
    """Keys under the layer's children whose name matches (norms around them excluded)."""
    return {
        k: s
        for k, s in layer_state.items()
        if pattern.search(k.split(".", 1)[0]) and "norm" not in k.split(".", 1)[0]
    }


def _attention(
    layer_state: dict, config, hidden: int, norm_widths: list[int] | None = None
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    attn = _scope(layer_state, _ATTN)
    if not attn:
        return out
    if getattr(config, "kv_lora_rank", None):
        return _latent_attention(attn, config, hidden)
    heads = getattr(config, "num_attention_heads", None)
    kv = getattr(config, "num_key_value_heads", None) or heads
    head_dim = getattr(config, "head_dim", None) or (hidden // heads if heads else None)
    if not heads or not head_dim:
        return out
    q, k_, total = heads * head_dim, kv * head_dim, (heads + 2 * kv) * head_dim
    # registration order: the input projections come before the output projection
    inputs = [(k, s) for k, s in attn.items() if k.endswith(".weight") and len(s) == 2]
    from_hidden = [(k, s) for k, s in inputs if s[1] == hidden]
    projections: list[str] = []
    if from_hidden and from_hidden[0][1][0] == total:
        out["attention.fused_qkv"], projections = True, [from_hidden[0][0]]
    else:
        first = [k for k, s in from_hidden if s[0] in (q, k_)][:3]
        if len(first) == 3:
            out["attention.fused_qkv"], projections = False, first
    if projections:
        out["attention.qkv_bias"] = all(_bias(k) in attn for k in projections)
    outputs = [k for k, s in inputs if s == (hidden, q) and k not in projections]
    if outputs:
        out["attention.o_bias"] = _bias(outputs[-1]) in attn
    # q/k norms come in pairs: one norm alone (a sub-norm before the output) is not one
    norms = [s for k, s in attn.items() if k.endswith("norm.weight") and len(s) == 1]
    if not norms and norm_widths:
        # norms without weights, seen by the widths they were called on (llama4's one L2
        # norm called on q and on k; nanochat's weightless RMSNorms)
        if len(norm_widths) >= 2 and set(norm_widths) == {head_dim}:
            out["attention.qk_norm"] = "per_head"
        elif len(norm_widths) == 2 and sorted(norm_widths) == sorted([q, k_]):
            out["attention.qk_norm"] = "full"
    elif not norms:
        out["attention.qk_norm"] = "none"
    elif len(norms) >= 2 and all(s == (head_dim,) for s in norms):
        out["attention.qk_norm"] = "per_head"
    elif len(norms) == 2 and sorted(s[0] for s in norms) == sorted([q, k_]):
        out["attention.qk_norm"] = "full"
    out.update(_sinks(attn))
    return out


def _latent_attention(attn: dict, config, hidden: int) -> dict[str, Any]:
    """Latent attention (MLA) read by its projections' sizes: the query's first projection
    from the hidden states (to `q_lora_rank`, or straight to the heads' q/k size without a
    query latent), the keys' and values' (to `kv_lora_rank` plus the shared rope key), or
    one projection to both (fused); the output projection from the heads' values. Its q/k
    norms are not read: the latents' norms are other fields."""
    out: dict[str, Any] = {}
    heads = getattr(config, "num_attention_heads", None)
    rope = getattr(config, "qk_rope_head_dim", None)
    nope = getattr(config, "qk_nope_head_dim", None)
    value = getattr(config, "v_head_dim", None)
    if not heads or rope is None or nope is None or not value:
        return out
    q = getattr(config, "q_lora_rank", None) or heads * (nope + rope)
    kv = config.kv_lora_rank + rope
    inputs = [(k, s) for k, s in attn.items() if k.endswith(".weight") and len(s) == 2]
    from_hidden = [(k, s[0]) for k, s in inputs if s[1] == hidden]
    fused = [k for k, rows in from_hidden if rows == q + kv]
    first = [next((k for k, rows in from_hidden if rows == n), None) for n in (q, kv)]
    projections: list[str] = []
    if fused:
        out["attention.fused_qkv"], projections = True, fused[:1]
    elif None not in first and first[0] != first[1]:
        out["attention.fused_qkv"], projections = False, first
    if projections:
        out["attention.qkv_bias"] = all(_bias(k) in attn for k in projections)
    outputs = [k for k, s in inputs if s == (hidden, heads * value)]
    if outputs:
        out["attention.o_bias"] = _bias(outputs[-1]) in attn
    out.update(_sinks(attn))
    return out


def _latent_norms(layer, config) -> dict[str, Any]:
    """`attention.latent_norms` and `attention.latent_norm_eps` of latent attention (MLA):
    the norms on its latents (modules of the attention, or of a list of them, named a norm,
    with a weight over `q_lora_rank` or `kv_lora_rank`): which latents they are on (q_kv,
    kv, q, none), and their epsilon (a `variance_epsilon` or `eps` each) in the analysis's
    terms: 1e-6 (the reference's) or the config's `rms_norm_eps` as the number (the static
    "default" and "norm_eps"), "other" for another or unequal ones; none where no latent is
    normed."""
    q, kv = getattr(config, "q_lora_rank", None), getattr(config, "kv_lora_rank", None)
    found: dict[int, list] = {}  # width -> the epsilons of the norms over it
    for name, child in layer.named_children():
        if not _ATTN.search(name):
            continue
        for path, module in child.named_modules():
            weight = getattr(module, "weight", None)
            if (
                "norm" in path.rsplit(".", 1)[-1].lower()
                and isinstance(weight, torch.Tensor)
                and weight.dim() == 1
                and weight.shape[0] in (q, kv)
            ):
                eps = getattr(module, "variance_epsilon", getattr(module, "eps", None))
                found.setdefault(weight.shape[0], []).append(eps)
    sides = {(True, True): "q_kv", (False, True): "kv", (True, False): "q"}
    out: dict[str, Any] = {
        "attention.latent_norms": sides.get((bool(q) and q in found, kv in found), "none")
    }
    epsilons = {eps for values in found.values() for eps in values}
    if not epsilons:
        return out
    known = {LATENT_NORM_EPS, getattr(config, "rms_norm_eps", None)}
    (eps,) = epsilons if len(epsilons) == 1 else ("other",)
    out["attention.latent_norm_eps"] = float(eps) if eps in known else "other"
    return out


def _sinks(attn: dict) -> dict[str, Any]:
    return {"attention.sinks": any(k.rsplit(".", 1)[-1] == "sinks" for k in attn)}


def _bias(weight_key: str) -> str:
    return weight_key[: -len("weight")] + "bias"


def _ffn(layer_state: dict, hidden: int) -> dict[str, Any]:
    """The dense MLP of the layers (MoE layers' experts are `_moe`'s)."""
    mlp = {k: s for k, s in _scope(layer_state, _MLP).items() if ".experts" not in k}
    mlp = {k: s for k, s in mlp.items() if not re.search(r"shared|gate\.weight$|router", k)}
    weights = {k: s for k, s in mlp.items() if k.endswith(".weight") and len(s) == 2}
    ups = {k: s for k, s in weights.items() if s[1] == hidden}
    downs = {k: s for k, s in weights.items() if s[0] == hidden and s[1] != hidden}
    if not ups or len(downs) != 1:
        return {}
    inner = next(iter(downs.values()))[1]
    out: dict[str, Any] = {}
    sizes = sorted(s[0] for s in ups.values())
    if sizes == [inner, inner]:
        out["ffn.gated"], out["ffn.fused_gate_up"] = True, False
    elif sizes == [2 * inner]:
        out["ffn.gated"], out["ffn.fused_gate_up"] = True, True
    elif sizes == [inner]:
        out["ffn.gated"] = False
    else:
        return {}
    out["ffn.bias"] = all(_bias(k) in mlp for k in list(ups) + list(downs))
    return out


def _moe(layer_state: dict, hidden: int) -> dict[str, Any]:
    experts = {k: s for k, s in layer_state.items() if ".experts." in k}
    if not experts:
        return {}
    out: dict[str, Any] = {}
    counts = {int(m.group(1)) for k in experts if (m := re.search(r"\.experts\.(\d+)\.", k))}
    if counts:
        out["moe.num_experts"] = max(counts) + 1
    elif any(len(s) >= 3 for s in experts.values()):
        firsts = {s[0] for s in experts.values() if len(s) >= 3}
        if len(firsts) > 1:  # rows some experts do not read (identity experts): the router's
            firsts &= _router_widths(layer_state, experts, hidden)
        if len(firsts) == 1:
            out["moe.num_experts"] = firsts.pop()
    elif (count := _flat_count(layer_state, experts, hidden)) is not None:
        out["moe.num_experts"] = count
    out["moe.router_bias"] = _selection_bias(layer_state, out.get("moe.num_experts"))
    shared = {k for k in layer_state if ".experts" not in k and re.search(r"shared", k)}
    out["moe.shared_experts"] = bool(shared - {k for k in shared if "gate" in k.split(".")[-2]})
    out["moe.shared_expert_gate"] = any(
        re.search(r"shared_expert_gate\.weight$", k) for k in layer_state
    )
    return out


def _router_widths(layer_state: dict, experts: dict, hidden: int) -> set[int]:
    """The output widths of the projections from the hidden size beside the experts (under
    the module that holds them): the router's, which scores every expert."""
    parents = {k.split(".experts.", 1)[0] for k in experts}
    return {
        s[0]
        for k, s in layer_state.items()
        if ".experts." not in k and len(s) == 2 and s[1] == hidden
        if any(k.startswith(p + ".") for p in parents)
    }


def _flat_count(layer_state: dict, experts: dict, hidden: int) -> int | None:
    """Experts stored flat (every expert's rows in one two-dimensional matrix, DBRX): their
    count is the width of the router beside them, the projection from the hidden size whose
    output divides the stacked rows."""
    parents = {k.split(".experts.", 1)[0] for k in experts}
    rows = {s[0] for s in experts.values() if len(s) == 2}
    found = {
        s[0]
        for k, s in layer_state.items()
        if ".experts." not in k
        and len(s) == 2
        and s[1] == hidden
        and any(k.startswith(p + ".") for p in parents)
        and all(r % s[0] == 0 and r > s[0] for r in rows)
    }
    return found.pop() if len(rows) >= 1 and len(found) == 1 else None


def _selection_bias(layer_state: dict, experts: int | None) -> bool:
    """A vector with one entry per expert outside the experts that is neither a Linear's
    bias (the router projection's) nor a norm weight: a correction added for selection.
    A router scoring one more class than there are experts (zaya's skip expert) has one
    entry per class."""
    widths = {experts} if experts else set()
    if experts:
        widths |= {
            s[0]
            for k, s in layer_state.items()
            if ".experts." not in k and len(s) == 2 and s[0] == experts + 1
        }
    for key, shape in layer_state.items():
        if not shape or shape[-1] not in widths or math.prod(shape) != shape[-1]:
            continue
        if ".experts." in key or "norm" in key:
            continue
        if key.endswith(".bias") and len(layer_state.get(key[:-4] + "weight", ())) == 2:
            continue
        return True
    return False


def _norm(layer, hidden: int) -> dict[str, Any]:
    """Kind, bias and `1 + w` offset of the layer's first hidden-size norm, measured."""
    for module in layer.modules():
        weight = getattr(module, "weight", None)
        if list(module.children()) or not isinstance(weight, torch.Tensor):
            continue
        if (
            weight.dim() != 1
            or weight.shape[0] != hidden
            or "norm" not in type(module).__name__.lower()
        ):
            continue
        bias = getattr(module, "bias", None)
        out: dict[str, Any] = {"norm.bias": isinstance(bias, torch.Tensor)}
        try:
            with torch.no_grad():
                saved = weight.detach().clone()
                saved_bias = bias.detach().clone() if isinstance(bias, torch.Tensor) else None
                if saved_bias is not None:
                    bias.zero_()
                weight.zero_()
                x = torch.randn(1, 3, hidden)
                offset = _norm_out(module, x).abs().max().item() > 1e-3
                weight.fill_(0.0 if offset else 1.0)
                constant = _norm_out(module, torch.full((1, 3, hidden), 2.0))
                centred = constant.abs().max().item() < 1e-3
                weight.copy_(saved)
                if saved_bias is not None:
                    bias.copy_(saved_bias)
        except Exception:  # noqa: BLE001 - a norm with another call signature: no probe
            return out
        kind = "layernorm" if centred else "rmsnorm"
        out["norm.kind"] = f"{kind}_offset" if offset else kind
        return out
    return {}


def _norm_out(module, x):
    y = module(x)
    return y[0] if isinstance(y, tuple) else y


def _rope(model, config) -> dict[str, Any]:
    """The first layer's partial rotary: its rotary table's frequencies (`inv_freq`, one per
    two rotated dims) against its q/k head (under latent attention, MLA, the head's part
    without and with rotation, `qk_nope_head_dim + qk_rope_head_dim`). One table, or one per
    layer type named after it (`<type>_inv_freq`, the first layer's type read from
    `config.layer_types`); the `original_inv_freq` copy a dynamic rope keeps beside each is
    no table of its own. A table of n frequencies rotates 2n dims, or 2n - 1 where the
    config's factor of the head gives that odd width (the table cannot tell them apart)."""
    tables = {
        name.rsplit(".", 1)[-1]: buffer
        for name, buffer in model.named_buffers()
        if name.endswith("inv_freq") and not name.endswith("original_inv_freq")
    }
    types = getattr(config, "layer_types", None) or ()
    if len(tables) > 1 and types:
        tables = {n: b for n, b in tables.items() if n == f"{types[0]}_inv_freq"}
    if len(tables) != 1:
        return {}
    if getattr(config, "kv_lora_rank", None):
        parts = (getattr(config, "qk_nope_head_dim", None), getattr(config, "qk_rope_head_dim", 0))
        head = sum(parts) if None not in parts else None
    else:
        heads = getattr(config, "num_attention_heads", None)
        hidden = _hidden_size(model)
        head = getattr(config, "head_dim", None) or (hidden // heads if heads else None)
    if not head:
        return {}
    rotated = 2 * next(iter(tables.values())).numel()
    factor = _rotary_factor(config, types[0] if types else None)
    if factor is not None and int(head * factor) == rotated - 1:
        rotated -= 1
    return {"rope.partial_rotary": round(rotated / head, 4)}


def _rotary_factor(config, layer_type: str | None) -> float | None:
    """The config's partial rotary factor for `layer_type` (its rope parameters' group), else
    the config's own; None where it gives none."""
    parameters = getattr(config, "rope_parameters", None)
    group = parameters.get(layer_type) if isinstance(parameters, dict) and layer_type else None
    for holder in (group, parameters):
        if isinstance(holder, dict) and isinstance(holder.get("partial_rotary_factor"), float):
            return holder["partial_rotary_factor"]
    factor = getattr(config, "partial_rotary_factor", None)
    return factor if isinstance(factor, float) else None


def _tied(model) -> dict[str, Any]:
    head = model.get_output_embeddings()
    if head is None or not isinstance(getattr(head, "weight", None), torch.Tensor):
        return {}
    embed = model.get_input_embeddings().weight
    return {"embedding.tied": head.weight.data_ptr() == embed.data_ptr()}


def _weightless_norms(layer) -> list:
    """Norm modules without tensors inside the layer's attention (its child whose name says
    attention): a q/k norm without weights leaves no key, only its calls."""
    out = []
    for name, child in layer.named_children():
        if not _ATTN.search(name) or "norm" in name:
            continue
        for module in child.modules():
            if "norm" in type(module).__name__.lower() and not any(
                True for _ in module.parameters(recurse=True)
            ):
                out.append(module)
    return out


def _forward_probes(model, config, first_layer, attention_norms=()) -> dict[str, Any]:
    """Embedding scale (embedding output vs the first layer's input) and what happens after
    the head (logits vs the head's own output: a constant ratio is a logit scale, a bounded
    non-linear one a softcap); the widths the attention's weightless norms are called on.

    Scales a tiny model holds at their start value are invisible as a ratio of one, so they
    are moved for the probe: the parameters outside the layers holding one constant (a
    learned scale's ones, a shift's zeros; the embedding and head tables aside) get random
    values, and the model's own float attributes at 1.0 (a configured logit scale left at
    its default) become 1.5; both are restored after."""
    seen: dict[str, torch.Tensor] = {}
    widths: list[int] = []
    head = model.get_output_embeddings()
    embed = model.get_input_embeddings()
    hooks = [
        first_layer.register_forward_pre_hook(_first_input(seen), with_kwargs=True),
        head.register_forward_hook(lambda m, a, o: seen.setdefault("head", o)),
        head.register_forward_pre_hook(lambda m, a: seen.setdefault("head_in", a[0])),
        model.base_model.register_forward_hook(_base_output(seen)),
    ]
    hooks += [
        norm.register_forward_pre_hook(
            lambda m, a, kw: widths.append(_width(a[0] if a else kw.get("hidden_states"))),
            with_kwargs=True,
        )
        for norm in attention_norms
    ]
    vocab = embed.weight.shape[0]
    ids = torch.randint(0, vocab, (1, 8), generator=torch.Generator().manual_seed(0))
    moved = _move_start_values(model, first_layer, embed, head)
    try:
        with torch.no_grad():
            logits = model(input_ids=ids, use_cache=False).logits
    except Exception:  # noqa: BLE001 - a model that needs other inputs: no probe
        return {}
    finally:
        for hook in hooks:
            hook.remove()
        _restore(model, moved)
    out: dict[str, Any] = {}
    if widths and all(widths):
        out["_norm_widths"] = widths
    rows = embed.weight[ids]  # the table's rows, before any scale the module applies
    if "layer" in seen and rows.shape == seen["layer"].shape:
        ratio = _ratio(seen["layer"], rows)
        if ratio is not None:
            out["embedding.scale"] = abs(ratio - 1) > 1e-4
        elif _per_channel_affine(seen["layer"], rows):
            out["embedding.scale"] = "learned_affine"
    before = None  # hidden states scaled on their way into the head
    if "base" in seen and "head_in" in seen and seen["base"].shape == seen["head_in"].shape:
        before = _ratio(seen["head_in"], seen["base"])
    if "head" in seen and seen["head"].shape == logits.shape and before is not None:
        ratio = _ratio(logits, seen["head"])
        if ratio is not None:
            scaled = abs(ratio - 1) > 1e-4 or abs(before - 1) > 1e-4
            out["head.logit_scale"], out["head.logit_softcap"] = scaled, False
        else:
            out["head.logit_softcap"] = bool(logits.abs().max() < seen["head"].abs().max())
    return out


def _token_sinks(model, layer, hidden: int) -> bool:
    """Per-token sinks: a projection in the attention from the hidden size to one value per
    head that, forced high, drains the attention (its output stops varying over the tokens:
    the sink logit takes the softmax's mass and brings no value), where a per-head gate
    forced high leaves it as it was."""
    for name, attention in layer.named_children():
        if _ATTN.search(name) and "norm" not in name and _drained(model, attention, hidden):
            return True
    return False


def _drained(model, attention, hidden: int) -> bool:
    # projections of the hidden state; the one per head is the narrowest, its width dividing
    # every other's (heads x head dim); the config's head count can be another layer's
    projections = [
        m
        for m in attention.modules()
        if isinstance(getattr(m, "weight", None), torch.Tensor)
        and m.weight.dim() == 2
        and m.weight.shape[1] == hidden
        and not list(m.children())
    ]
    rows = sorted(m.weight.shape[0] for m in projections)
    if len(rows) < 3 or rows[0] == rows[1] or any(r % rows[0] for r in rows):
        return False
    candidates = [m for m in projections if m.weight.shape[0] == rows[0]]
    ids = torch.arange(8).unsqueeze(0) % model.get_input_embeddings().weight.shape[0]

    def spread(force: torch.nn.Module | None) -> float | None:
        seen: list[torch.Tensor] = []
        hooks = [attention.register_forward_hook(lambda m, a, o: seen.append(_first(o)))]
        if force is not None:
            hooks.append(force.register_forward_hook(lambda m, a, o: torch.full_like(o, 30.0)))
        try:
            with torch.no_grad():
                model(input_ids=ids, use_cache=False)
        except Exception:  # noqa: BLE001 - a model that needs other inputs: no probe
            return None
        finally:
            for hook in hooks:
                hook.remove()
        if not seen or not isinstance(seen[0], torch.Tensor):
            return None
        return float(seen[0].double().std(dim=-2).abs().max())

    plain = spread(None)
    if not plain:
        return False
    for candidate in candidates:
        forced = spread(candidate)
        if forced is not None and forced < 1e-3 * plain:
            return True
    return False


def _first(output):
    return output[0] if isinstance(output, tuple) else output


def _width(value) -> int:
    return value.shape[-1] if isinstance(value, torch.Tensor) else 0


def _move_start_values(model, first_layer, embed, head) -> dict:
    """Parameters outside the layers at one constant and float attributes of the model at
    1.0, moved (see `_forward_probes`); returns what to restore."""
    layers = {id(p) for p in first_layer.parameters()}
    stacks = [m for m in model.modules() if first_layer in list(m.children())]
    for stack in stacks:
        layers |= {id(p) for p in stack.parameters()}
    tables = {id(getattr(m, "weight", None)) for m in (embed, head)}
    generator = torch.Generator().manual_seed(1)
    params = {}
    for name, param in model.named_parameters():
        if id(param) in layers or id(param) in tables or param.numel() < 2:
            continue
        flat = param.detach().flatten()
        if not bool((flat == flat[0]).all()):
            continue
        params[name] = param.detach().clone()
        with torch.no_grad():
            noise = torch.rand(param.shape, generator=generator, dtype=torch.float32)
            param.copy_((0.5 + noise).to(param.dtype))
    floats = {
        name: value
        for name, value in vars(model).items()
        if type(value) is float and value == 1.0 and not name.startswith("_")
    }
    for name in floats:
        setattr(model, name, 1.5)
    return {"params": params, "floats": floats}


def _restore(model, moved: dict) -> None:
    named = dict(model.named_parameters())
    with torch.no_grad():
        for name, value in moved["params"].items():
            named[name].copy_(value)
    for name, value in moved["floats"].items():
        setattr(model, name, value)


def _per_channel_affine(a: torch.Tensor, b: torch.Tensor) -> bool:
    """a == b * s + t with a scale and shift per channel (last axis) that are not one and
    zero: a learned affine map of the embeddings."""
    a = a.detach().double().reshape(-1, a.shape[-1])
    b = b.detach().double().reshape(-1, b.shape[-1])
    if a.shape[0] < 3:
        return False
    b_mean, a_mean = b.mean(0), a.mean(0)
    scale = ((a - a_mean) * (b - b_mean)).sum(0) / ((b - b_mean) ** 2).sum(0).clamp_min(1e-30)
    shift = a_mean - scale * b_mean
    fitted = b * scale + shift
    exact = torch.allclose(a, fitted, rtol=1e-4, atol=1e-5 * float(a.abs().max()))
    return exact and not torch.allclose(scale, torch.ones_like(scale), atol=1e-4)


def _base_output(seen):
    def hook(module, args, output):
        value = getattr(output, "last_hidden_state", None)
        if value is None and isinstance(output, tuple) and output:
            value = output[0]
        if isinstance(value, torch.Tensor):
            seen.setdefault("base", value)

    return hook


def _first_input(seen):
    def hook(module, args, kwargs):
        value = args[0] if args else kwargs.get("hidden_states")
        if isinstance(value, torch.Tensor):
            seen.setdefault("layer", value)

    return hook


def _ratio(a: torch.Tensor, b: torch.Tensor) -> float | None:
    """The constant c with a == c * b, or None when the two are not proportional."""
    a, b = a.detach().double().flatten(), b.detach().double().flatten()
    scale = (a @ b) / (b @ b).clamp_min(1e-30)
    if torch.allclose(a, scale * b, rtol=1e-4, atol=1e-5 * float(b.abs().max())):
        return float(scale)
    return None
