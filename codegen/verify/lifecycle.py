"""Verify the meta-device lifecycle engines use, and that `init_weights` starts like HF.

1. Built on `meta`, `to_empty`, `init_buffers`, then the checkpoint loaded: every buffer and
   parameter equals the normally built model's, and so do the logits, bit for bit (a RoPE
   table computed in `__init__` that `init_buffers` does not rebuild is named here).
2. `init_weights` on a meta-built model: per parameter group (layer indices folded, names in
   checkpoint layout through the adapter), the mean and std match HF's own `_init_weights`
   on the same config within sampling tolerance (a `1 + w` norm started at one is named),
   and every row HF starts at exactly zero inside a random tensor (an embedding's padding
   row) starts at zero too: a single row is too small for the statistics to see.

For a remote-code folder the reference is the folder's `_init_weights` applied to every module,
as transformers applies its own models' (`_as_installed_code`). Transformers' guard for custom
code (`PreTrainedModel._initialize_weights` with `is_custom_code()`) skips a module whose own
tensors are all marked loaded; that is vacuously true for a module without tensors of its own,
so a branch keyed on a container (GPT-2's attention/MLP re-drawing `c_proj` at
`initializer_range / sqrt(2 * n_layer)`) never runs when the same file is remote code. That is a
loading-path side effect, not the folder's initialisation: nothing is loaded in `from_config`,
and the package, generated from the code alone, starts as the code says, by name or renamed.
"""

from __future__ import annotations

import math
import re
import tempfile
from contextlib import contextmanager
from pathlib import Path

import torch

from codegen.verify.hf_checkpoint import load_checkpoint, save_checkpoint

# |std ours / std HF - 1| allowed beyond sampling error; sampling error in std units
STD_SLACK = 0.05
SIGMAS = 5.0


def check(spec, config, house_model, house_state, adapter, inputs, seed: int = 0) -> str | None:
    """None when both checks hold, else one line naming the first tensor that differs."""
    return meta_parity(spec, config, house_model, house_state, inputs) or init_statistics(
        spec, config, adapter, seed
    )


def _meta_built(spec, config):
    args = spec.args.from_hf_config(config)
    with torch.device("meta"):
        model = spec.model(args)
    model.to_empty(device="cpu")
    with torch.no_grad():  # uninitialised memory, made loud: whatever is not rebuilt shows
        for tensor in [*model.parameters(), *model.buffers()]:
            if tensor.is_floating_point():
                tensor.fill_(float("nan"))
    return model


def meta_parity(spec, config, house_model, house_state, inputs) -> str | None:
    """meta -> to_empty -> init_buffers -> load gives the normally built model, exactly."""
    model = _meta_built(spec, config)
    model.init_buffers("cpu")
    model.load_state_dict(house_state, strict=False)
    model.eval()
    built = dict(house_model.named_buffers())
    rebuilt = dict(model.named_buffers())
    for name, buffer in built.items():
        if name not in rebuilt or not torch.equal(rebuilt[name], buffer):
            return f"buffer {name} differs after to_empty + init_buffers"
    params = dict(model.named_parameters())
    for name, param in house_model.named_parameters():
        if name not in params or not torch.equal(params[name], param):
            return f"parameter {name} differs after to_empty + load (not in the checkpoint?)"
    with torch.no_grad():
        for item in inputs:
            kwargs = {} if item.positions is None else {"positions": item.positions}
            kwargs.update(item.extra)
            got, want = model(item.tokens, **kwargs), house_model(item.tokens, **kwargs)
            if not torch.equal(got, want):
                diff = (got - want).abs().max().item()
                return f"logits after meta build differ on the {item.label} input ({diff:.2e})"
    return None


def _group(key: str) -> str:
    return re.sub(r"\.\d+(?=\.|$)", ".*", key)


def _grouped(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    groups: dict[str, list[torch.Tensor]] = {}
    for key, tensor in state.items():
        if tensor.is_floating_point():
            groups.setdefault(_group(key), []).append(tensor.detach().double().flatten())
    return {name: torch.cat(parts) for name, parts in groups.items()}


def _stats(values: torch.Tensor) -> tuple[float, float]:
    return values.mean().item(), values.std(unbiased=False).item()


def differs(ours: torch.Tensor, theirs: torch.Tensor) -> bool:
    """Two samples of one initialisation? Constants must agree; normals within sampling error."""
    if theirs.numel() == 0 or ours.numel() == 0:  # an empty weight (a zero-width layer)
        return theirs.numel() != ours.numel()
    (mean, std), (want_mean, want_std) = _stats(ours), _stats(theirs)
    if not math.isfinite(mean + std):  # a tensor init_weights left uninitialised
        return True
    if want_std == 0:
        return std > 1e-12 or abs(mean - want_mean) > 1e-6
    n = min(ours.numel(), theirs.numel())
    mean_error = SIGMAS * want_std * math.sqrt(2 / n)
    std_error = STD_SLACK + SIGMAS / math.sqrt(n)
    return abs(mean - want_mean) > mean_error or abs(std / want_std - 1) > std_error


def nonzero_where_hf_zeroes(ours: torch.Tensor, theirs: torch.Tensor) -> bool:
    """Does a random HF tensor hold a row of zeros (a normal draw never does: HF zeroed it)
    that ours fills? A padding row drawn like the rest passes the statistics. Rows, not
    entries: one draw in a few million is an exact zero by chance."""
    if not theirs.is_floating_point() or ours.shape != theirs.shape or theirs.dim() < 2:
        return False
    if theirs.shape[-1] < 2 or theirs.double().std() == 0:
        return False
    zero_rows = (theirs == 0).all(dim=-1)
    if not zero_rows.any() or zero_rows.all():
        return False
    return bool((ours[zero_rows] != 0).any())


def init_statistics(spec, config, adapter, seed: int = 0) -> str | None:
    """`init_weights` on a meta-built model against HF's initialisation of the same config."""
    torch.manual_seed(seed)
    model = _meta_built(spec, config)
    model.init_weights()
    ours_state = adapter.to_hf({k: v.detach() for k, v in model.state_dict().items()})
    hf_model = hf_initialised(config, seed)
    with tempfile.TemporaryDirectory() as directory:  # the checkpoint layout the adapter speaks
        save_checkpoint(hf_model, Path(directory))
        theirs_state = load_checkpoint(Path(directory))
    for key in sorted(set(ours_state) & set(theirs_state)):
        if nonzero_where_hf_zeroes(ours_state[key], theirs_state[key]):
            return f"init_weights: {key} is random where HF's init starts it at zero"
    ours, theirs = _grouped(ours_state), _grouped(theirs_state)
    for name in sorted(set(ours) & set(theirs)):
        if differs(ours[name], theirs[name]):
            (mean, std), (want_mean, want_std) = _stats(ours[name]), _stats(theirs[name])
            return (
                f"init_weights: {name} starts at mean {mean:.4g} std {std:.4g}, "
                f"HF at mean {want_mean:.4g} std {want_std:.4g}"
            )
    return None


def hf_initialised(config, seed: int = 0):
    """HF's model for `config` as its `_init_weights` starts it, a folder's code included."""
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    with _as_installed_code():
        return AutoModelForCausalLM.from_config(config, dtype=torch.float32)


@contextmanager
def _as_installed_code():
    """Dispatch `_init_weights` to every module, also for a folder's (custom) code: see the
    module docstring for why transformers' custom-code guard is not the folder's init."""
    from transformers import PreTrainedModel

    saved = PreTrainedModel.__dict__["is_custom_code"]
    PreTrainedModel.is_custom_code = classmethod(lambda cls: False)
    try:
        yield
    finally:
        PreTrainedModel.is_custom_code = saved
