"""Index tables in a random checkpoint: filled with valid, distinct indices per row.

Some models keep a table of indices as a persistent integer buffer that the checkpoint fills
(DeepSeek-V4's hash-routed layers: `tid2eid`, token id -> the experts it is routed to) and
that the class initialises to one value (zeros). Left at that value every token looks up
the same index k times: the experts' weights are 1/k whatever they score, the router's
gradient is exactly zero, and a package that reads the table wrongly (another index, the
table transposed) computes the same model.

Which buffers are such tables is told by the data flow of one forward of the model on random
token ids, never by a name: a persistent integer buffer holding one value, looked up with
the token ids (or a tensor carrying their values unchanged, `_KEEPS`), whose looked-up
values are read as indices of another tensor (`_READS`: a gather, an index select, a
one-hot, an embedding, a subscript). Their range is the smallest size they index there (the
experts' count beside a one-hot with a skip class). Each row is then filled with distinct
indices drawn from that range (a row wider than the range, or a table of more than two
dimensions, keeps its value): a buffer whose range cannot be told this way is left as is.
"""

from __future__ import annotations

import torch
from torch.overrides import TorchFunctionMode
from torch.utils._pytree import tree_flatten

# ops whose integer output holds values of their tensor argument (reshaped, cast, selected)
_KEEPS = frozenset(
    {
        "reshape",
        "view",
        "flatten",
        "long",
        "int",
        "to",
        "type",
        "contiguous",
        "clone",
        "detach",
        "squeeze",
        "unsqueeze",
        "expand",
        "permute",
        "transpose",
        "t",
        "__getitem__",
    }
)

# ops reading an argument as indices: op -> (its positional parameters, the indexed
# tensor's, the dimension's (or the dimension itself), the indices'); the range is the
# indexed tensor's size along the dimension; one_hot's indexed "tensor" is its class count
_READS = {
    "gather": (("input", "dim", "index"), "input", "dim", "index"),
    "index_select": (("input", "dim", "index"), "input", "dim", "index"),
    "index_add": (("input", "dim", "index"), "input", "dim", "index"),
    "index_add_": (("input", "dim", "index"), "input", "dim", "index"),
    "index_copy": (("input", "dim", "index"), "input", "dim", "index"),
    "index_copy_": (("input", "dim", "index"), "input", "dim", "index"),
    "scatter": (("input", "dim", "index"), "input", "dim", "index"),
    "scatter_": (("input", "dim", "index"), "input", "dim", "index"),
    "scatter_add": (("input", "dim", "index"), "input", "dim", "index"),
    "scatter_add_": (("input", "dim", "index"), "input", "dim", "index"),
    "embedding": (("input", "weight"), "weight", 0, "input"),
    "one_hot": (("input", "num_classes"), "num_classes", None, "input"),
}

SEQ_LEN = 8  # the traced input's tokens


def _integer(value) -> bool:
    return isinstance(value, torch.Tensor) and not (
        value.is_floating_point() or value.is_complex() or value.dtype == torch.bool
    )


def _candidates(model) -> dict[int, tuple[str, torch.Tensor]]:
    """Persistent integer buffers of one or two dimensions holding a single value."""
    persistent = set(model.state_dict())
    found = {}
    for name, buf in model.named_buffers():
        if name not in persistent or not _integer(buf) or buf.dim() not in (1, 2):
            continue
        if buf.numel() and bool((buf == buf.reshape(-1)[0]).all()):
            found[id(buf)] = (name, buf)
    return found


class _Trace(TorchFunctionMode):
    """Follows the token ids to the candidate tables they look up, and those lookups to the
    sizes they index."""

    def __init__(self, ids: torch.Tensor, tables: dict[int, tuple[str, torch.Tensor]]):
        super().__init__()
        self.tables = tables
        self.ids = {id(ids): ids}  # tensors holding token ids (kept alive: ids stay unique)
        self.picks: dict[int, tuple[str, torch.Tensor]] = {}  # looked-up values -> table
        self.ranges: dict[str, int] = {}

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        name = getattr(func, "__name__", "")
        self._read(name, args, kwargs)
        if name == "__getitem__" and id(args[0]) in self.tables and self._has(args[1], self.ids):
            self.picks[id(out)] = (self.tables[id(args[0])][0], out)
        elif name in _KEEPS and _integer(out) and args and isinstance(args[0], torch.Tensor):
            if id(args[0]) in self.ids:
                self.ids[id(out)] = out
            if id(args[0]) in self.picks:
                self.picks[id(out)] = (self.picks[id(args[0])][0], out)
        return out

    def _has(self, value, tracked: dict) -> bool:
        return any(isinstance(x, torch.Tensor) and id(x) in tracked for x in tree_flatten(value)[0])

    def _read(self, name: str, args, kwargs) -> None:
        if name == "__getitem__":
            self._subscript(args[0], args[1])
            return
        if name not in _READS:
            return
        params, indexed, dim, index = _READS[name]
        bound = dict(zip(params, args, strict=False)) | kwargs
        bound.setdefault("input", kwargs.get("self"))
        picks = bound.get(index)
        if not isinstance(picks, torch.Tensor) or id(picks) not in self.picks:
            return
        target = bound.get(indexed)
        if dim is None:
            size = target if isinstance(target, int) and target > 0 else None
        else:
            axis = bound.get(dim, 0) if isinstance(dim, str) else dim
            size = target.shape[axis] if isinstance(target, torch.Tensor) else None
        if size is not None:
            self._note(self.picks[id(picks)][0], size)

    def _subscript(self, base, key) -> None:
        """`base[..., picks, ...]`: the picks index the dimension of their position (after
        slices, integers and single tensors only)."""
        keys = key if isinstance(key, tuple) else (key,)
        if not isinstance(base, torch.Tensor):
            return
        for axis, part in enumerate(keys):
            if isinstance(part, torch.Tensor) and id(part) in self.picks:
                if axis < base.dim():
                    self._note(self.picks[id(part)][0], base.shape[axis])
                return
            if not isinstance(part, slice | int | torch.Tensor) or isinstance(part, bool):
                return

    def _note(self, table: str, size: int) -> None:
        self.ranges[table] = min(size, self.ranges.get(table, size))


def fill_index_tables(model, generator: torch.Generator) -> dict[str, int]:
    """Fill `model`'s index tables (see the module docstring) with distinct random indices
    per row; returns each filled table's name and range."""
    tables = _candidates(model)
    if not tables:
        return {}
    try:
        vocab = model.get_input_embeddings().num_embeddings
    except Exception:
        return {}
    ids = torch.randint(0, vocab, (1, SEQ_LEN), generator=generator)
    trace = _Trace(ids, tables)
    try:
        with torch.no_grad(), trace:
            model(input_ids=ids)
    except Exception:  # the model cannot run here: verify reports that itself
        return {}
    filled = {}
    for name, buf in tables.values():
        size = trace.ranges.get(name)
        width = buf.shape[-1] if buf.dim() == 2 else 1
        if size is None or size < width:
            continue
        rows = buf.shape[0]
        picks = torch.rand(rows, size, generator=generator).argsort(dim=-1)[:, :width]
        with torch.no_grad():
            buf.copy_(picks.reshape(buf.shape).to(buf.dtype))
        filled[name] = size
    return filled
