"""Name the first module where the package and the HF model part ways.

Module pairs come from the adapter's key table (the HF module that owns a checkpoint key
and the house module that receives it), plus every ancestor pair down to the layer.
Forward hooks record each pair's input and output; the culprit is the module whose input
still agrees but whose output does not. Among culprits the deepest one of the earliest
layer (in house execution order) is reported, e.g. "layers.1.attention".
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Divergence:
    house_module: str
    hf_module: str
    relative_diff: float

    def __str__(self) -> str:
        return f"{self.house_module} (HF {self.hf_module}), relative diff {self.relative_diff:.2e}"


def module_pairs(adapter, house_model, hf_model) -> list[tuple[str, str]]:
    """(house module, HF module) pairs that both models have, from the adapter table."""
    house_names = dict(house_model.named_modules())
    hf_names = dict(hf_model.named_modules())
    layers = range(len(getattr(house_model, "layers", [])))
    pairs: dict[str, str] = {}
    for hf_template, house_template in type(adapter).from_hf_map.items():
        if house_template is None:
            continue
        hf_parts = hf_template.split(".")[:-1]
        house_parts = house_template.split(".")[:-1]
        if hf_template.count("{}") > house_template.count("{}"):
            hf_parts = hf_parts[: hf_parts.index("{}", hf_parts.index("{}") + 1)]
            house_parts = house_template.split(".")[:-1]
        for layer in layers:
            hf_path = [layer if part == "{}" else part for part in hf_parts]
            house_path = [layer if part == "{}" else part for part in house_parts]
            while hf_path and house_path:
                hf_name = ".".join(map(str, hf_path))
                house_name = ".".join(map(str, house_path))
                if hf_name in hf_names and house_name in house_names:
                    pairs.setdefault(house_name, hf_name)
                hf_path, house_path = hf_path[:-1], house_path[:-1]
            if "{}" not in hf_parts:
                break
    return sorted(pairs.items())


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
    return None


class _Recorder:
    def __init__(self, model, names):
        self.records: dict[str, tuple] = {}
        self.order: list[str] = []
        self.handles = []
        modules = dict(model.named_modules())
        for name in names:
            self.handles.append(
                modules[name].register_forward_hook(self._hook(name), with_kwargs=True)
            )

    def _hook(self, name):
        def record(module, args, kwargs, output):
            inputs = _first_tensor(args[:1] or [kwargs.get("hidden_states")])
            if inputs is None:
                inputs = _first_tensor(list(kwargs.values()))
            if name not in self.records:
                self.order.append(name)
                self.records[name] = (inputs, _tensors(output))

        return record

    def close(self):
        for handle in self.handles:
            handle.remove()


def _tensors(value) -> list:
    """Every tensor of a module output, in order (routers return logits, weights, indices)."""
    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, (tuple, list)):
        return [t for item in value for t in _tensors(item)]
    if hasattr(value, "last_hidden_state"):
        return [value.last_hidden_state]
    return []


def _outputs_diff(house: list, hf: list) -> float:
    """Compare every output when both sides return alike tensors, else the first only."""
    if not house or not hf:
        return float("inf")
    if len(house) == len(hf) and all(a.shape == b.shape for a, b in zip(house, hf, strict=True)):
        return max(_relative_diff(a, b) for a, b in zip(house, hf, strict=True))
    return _relative_diff(house[0], hf[0])


def _relative_diff(a, b) -> float:
    if a is None or b is None or a.shape != b.shape:
        return float("inf")
    if not a.is_floating_point():
        return 0.0 if torch.equal(a, b) else float("inf")
    a, b = a.detach().double(), b.detach().double()
    return ((a - b).abs().max() / b.abs().max().clamp_min(1e-12)).item()


def find_divergence(adapter, house_model, hf_model, tokens, tolerance: float) -> Divergence | None:
    """Run both models once with hooks; return the first culprit module, if any."""
    pairs = module_pairs(adapter, house_model, hf_model)
    house = _Recorder(house_model, [house for house, _ in pairs])
    hf = _Recorder(hf_model, [hf for _, hf in pairs])
    try:
        with torch.no_grad():
            house_model(tokens)
            hf_model(input_ids=tokens)
    finally:
        house.close()
        hf.close()
    hf_of = dict(pairs)
    culprits = []
    for position, house_name in enumerate(house.order):
        hf_name = hf_of[house_name]
        if hf_name not in hf.records:
            continue
        house_in, house_out = house.records[house_name]
        hf_in, hf_out = hf.records[hf_name]
        out_diff = _outputs_diff(house_out, hf_out)
        if out_diff > tolerance and _relative_diff(house_in, hf_in) <= tolerance:
            culprits.append((position, house_name, hf_name, out_diff))
    if not culprits:
        return None
    # hooks fire when a module finishes, so a block fires after its children: the earliest
    # culprit's layer is found first, then the deepest culprit inside that layer wins.
    _, first_name, _, _ = culprits[0]
    layer = _layer_prefix(first_name)
    same_layer = [c for c in culprits if _layer_prefix(c[1]) == layer]
    _, house_name, hf_name, diff = max(same_layer, key=lambda c: (c[1].count("."), -c[0]))
    return Divergence(house_name, hf_name, diff)


def _layer_prefix(name: str) -> str:
    parts = name.split(".")
    if len(parts) >= 2 and parts[0] == "layers":
        return ".".join(parts[:2])
    return parts[0]
