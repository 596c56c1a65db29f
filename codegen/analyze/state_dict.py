"""The HF state-dict key pattern, from the statically instantiated module tree.

Keys are derived from attribute names in `__init__`s (`self.q_proj = nn.Linear(...)` ->
`q_proj.weight`, plus `bias` when the Linear has one), parameters and persistent buffers.
Layer indices and expert indices become `{}`. On-disk keys apply transformers' checkpoint
conversion for installed model types (see `conversion`), or are read from the checkpoint's
`model.safetensors.index.json` when a checkpoint folder is analysed.
"""

from __future__ import annotations

import re

from codegen.analyze import conversion
from codegen.analyze.context import Ctx
from codegen.analyze.evaluate import ActRec, ModuleListRec, ModuleRec, ParamRec
from codegen.analyze.features import StateDict, layer_ranges
from codegen.analyze.model import param_leaves
from codegen.analyze.roles import RoleBook

# transformers activations (ACT2CLS) that hold tensors: parameters and persistent buffers
ACTIVATION_TENSORS = {"xielu": ("alpha_p", "alpha_n", "beta", "eps")}


def module_keys(rec, prefix: str = "", stack: tuple = ()) -> list[str]:
    """Keys under `rec` (ModuleList indices as `{}`), without cross-branch memo."""
    if id(rec) in stack or len(stack) > 40:
        return []
    stack = stack + (id(rec),)
    out: list[str] = []
    if isinstance(rec, ModuleRec):
        for name, _ in param_leaves(rec):
            out.append(f"{prefix}{name}")
        for name, value in rec.attrs.items():
            if isinstance(value, ActRec) and isinstance(value.name, str):
                out += [f"{prefix}{name}.{t}" for t in ACTIVATION_TENSORS.get(value.name, ())]
        for name, child in rec.children():
            if isinstance(child, ParamRec):
                continue
            out.extend(module_keys(child, f"{prefix}{name}.", stack))
    elif isinstance(rec, ModuleListRec):
        seen: set[int] = set()
        # a pipeline of different modules (nn.Sequential(Linear, ReLU, Linear), CTRL's FFN)
        # keeps its indices: item 0 and item 2 are different weights, not one per repeat
        pipeline = len({_item_kind(item) for item in rec.items}) > 1
        for i, item in enumerate(rec.items):
            # one record built once per repeat: a list keys it `{}` once; a ModuleDict's
            # items each have their own key (X-MOD's adapter per language)
            if id(item) in seen and rec.keys is None:
                continue
            seen.add(id(item))
            key = rec.keys[i] if rec.keys is not None else str(i) if pipeline else "{}"
            out.extend(module_keys(item, f"{prefix}{key}.", stack))
    return _dedupe(out)


def _item_kind(item) -> str:
    return item.kind if isinstance(item, ModuleRec) else type(item).__name__


def _dedupe(keys: list[str]) -> list[str]:
    seen: set = set()
    return [k for k in keys if not (k in seen or seen.add(k))]


def layer_key_table(layers: list) -> list[tuple[str, list[int]]]:
    """(relative key, layers having it) in first-seen order."""
    table: dict[str, list[int]] = {}
    cache: dict[int, list[str]] = {}
    for i, layer in enumerate(layers):
        keys = cache.get(id(layer))
        if keys is None:
            keys = module_keys(layer)
            cache[id(layer)] = keys
        for k in keys:
            table.setdefault(k, []).append(i)
    return list(table.items())


def _render(table: list[tuple[str, list[int]]], n: int) -> tuple[str, ...]:
    out = []
    for key, idx in table:
        out.append(key if len(idx) == n else f"{key} [layers {layer_ranges(idx)}]")
    return tuple(out)


def _template(key: str) -> str:
    return re.sub(r"(?<=\.)\d+(?=\.)", "{}", key)


def detect(ctx: Ctx, roles: RoleBook) -> tuple[StateDict, dict]:
    model = ctx.model
    info: dict = {}
    if not model.layers or model.stack_path is None:
        return StateDict(), info
    prefix = model.stack_path
    table = layer_key_table(model.layers)
    layer_keys = _render(table, len(model.layers))
    # outside the stack: the backbone's own tensors and the entry's direct heads
    other: list[str] = []
    owner = model.stack_owner
    owner_prefix = f"{model.stack_owner_path}." if model.stack_owner_path else ""
    stack_name = prefix[len(owner_prefix) :] if prefix.startswith(owner_prefix) else prefix
    # modules between the entry and the stack's owner keep tensors beside it (BERT's
    # bert.embeddings next to bert.encoder)
    parts = model.stack_owner_path.split(".") if model.stack_owner_path else []
    node = model.entry
    for depth, part in enumerate(parts[:-1]):
        node = node.attrs.get(part) if isinstance(node, ModuleRec) else None
        if not isinstance(node, ModuleRec):
            break
        base = ".".join(parts[: depth + 1]) + "."
        other.extend(base + name for name, _ in param_leaves(node))
        for name, child in node.children():
            if name == parts[depth + 1] or isinstance(child, ParamRec):
                continue
            if isinstance(child, ModuleRec) and child.cls is not None and _is_tower(roles, child):
                continue
            other.extend(base + k for k in module_keys(child, f"{name}."))
    if owner is not None:
        for name, _ in param_leaves(owner):
            other.append(owner_prefix + name)
        for name, child in owner.children():
            if name == stack_name or isinstance(child, ParamRec):
                continue
            if isinstance(child, ModuleRec) and child.cls is not None and _is_tower(roles, child):
                continue
            other.extend(owner_prefix + k for k in module_keys(child, f"{name}."))
    root = model.stack_owner_path.split(".")[0] if model.stack_owner_path else None
    for name, child in model.entry.children():
        if name == root or isinstance(child, ParamRec):
            continue
        if isinstance(child, ModuleRec) and child.cls is not None and _is_tower(roles, child):
            continue
        other.extend(module_keys(child, f"{name}."))
    tied: list[str] = []
    if ctx.evidence.get("embedding.tied") and getattr(ctx, "_tied", False):
        pass
    info["table"] = table
    # -- on disk ---------------------------------------------------------------------------------
    n = len(model.layers)
    full_layer = [f"{prefix}.{{}}.{k}" for k, _ in table]
    ckpt_layer = list(layer_keys)
    ckpt_other = list(other)
    target = model.target
    source = None
    if target.weight_keys:
        templ = _dedupe([_template(k) for k in target.weight_keys])
        ckpt_layer = [k[len(prefix) + 4 :] for k in templ if k.startswith(prefix + ".{}.")]
        ckpt_other = [k for k in templ if not k.startswith(prefix + ".{}.")]
        source = "model.safetensors.index.json"
    else:
        names = [c.name for c in model.project.mro(model.entry_cls)]
        if model.stack_owner is not None and model.stack_owner.cls is not None:
            names.append(model.stack_owner.cls.name)
        names.append(model.model_type or "")
        # transformers converts its own models' checkpoints, and remote code's only where
        # the code registers a conversion itself
        own = None if target.installed else target.modeling_path
        found, transforms = (
            conversion.conversions_for(names) if own is None else conversion.registered(own, names)
        )
        info["conversions"] = transforms
        if transforms:
            notes: list[str] = []
            converted: list[tuple[str, list[int]]] = []
            prefixes, outside, moved = set(), [], []
            for full, (_, idx) in zip(full_layer, table, strict=True):
                keys, more = conversion.to_checkpoint([full], transforms)
                notes += more
                for k in keys:
                    head, sep, rest = k.partition(".{}.")
                    if sep:
                        prefixes.add(head)
                        converted.append((rest, idx))
                    elif "{" in k:  # a layer's tensor kept in a list outside the layers
                        moved.append(k)  # (its index perhaps shifted: `{-1}`)
                    else:
                        outside.append(f"{full} as {k}")
            if len(prefixes) == 1 and prefixes != {prefix}:
                info["checkpoint_prefix"] = prefixes.pop()  # the layers' prefix on disk
            ckpt_layer = list(_render(converted, n))
            source = f"{conversion.cite(found, own)} ({found!r})"
            refused = conversion.unreversed(full_layer + other, transforms)
            if outside or refused or len(prefixes) > 1:
                ctx.unsupported(
                    "state_dict.conversion",
                    "the checkpoint's keys are renamed (or tensors reordered) on load in a way"
                    " the adapter table cannot undo: "
                    + "; ".join(
                        [f"layer tensors stored under no layer index ({', '.join(outside)})"]
                        * bool(outside)
                        + [f"not reversed: {', '.join(refused)}"] * bool(refused)
                        + [f"layers under several prefixes {sorted(prefixes)}"]
                        * (len(prefixes) > 1)
                    ),
                    source,
                )
            if conversion.interleaves(full_layer + other, transforms):
                ctx.cite("state_dict.interleaved", source)
            ckpt_other, notes2 = conversion.to_checkpoint(ckpt_other, transforms)
            ckpt_other += moved
            for note in notes + notes2:
                if note not in ctx.notes:
                    ctx.notes.append(note)
    info["checkpoint_source"] = source
    if source is not None:
        ctx.cite("state_dict.checkpoint", source)
    return (
        StateDict(
            prefix=prefix,
            layer_keys=layer_keys,
            other_keys=tuple(_dedupe(other)),
            checkpoint_layer_keys=tuple(_dedupe(ckpt_layer)),
            checkpoint_other_keys=tuple(_dedupe(ckpt_other)),
            tied_keys=tuple(tied),
            chunked=conversion.chunk_splits(info.get("conversions") or []),
            interleaved=conversion.interleaves(full_layer + other, info.get("conversions") or []),
            checkpoint_prefix=info.get("checkpoint_prefix", ""),
        ),
        info,
    )


def on_disk_module(sd: StateDict, info: dict, name: str) -> str:
    """A layer module's name in the checkpoint: transformers' load-time renames reversed
    (kolibri1 stores `post_self_attn_layernorm` as `post_attn_norm`)."""
    transforms = info.get("conversions")
    if not transforms:
        return name
    key = f"{sd.prefix}.{{}}.{name}.weight"
    keys, _ = conversion.to_checkpoint([key], transforms)
    head, tail = f"{sd.prefix}.{{}}.", ".weight"
    if len(keys) == 1 and keys[0].startswith(head) and keys[0].endswith(tail):
        return keys[0][len(head) : -len(tail)]
    return name


def _is_tower(roles: RoleBook, rec: ModuleRec) -> bool:
    """A vision/audio encoder or projector hanging off a multimodal model."""
    from codegen.analyze.model import walk_tree

    for _, value in walk_tree(rec):
        if isinstance(value, ModuleRec) and value.kind in ("Conv2d", "Conv3d", "Conv1d"):
            return True
    return False
