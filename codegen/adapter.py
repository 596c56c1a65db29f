"""Table-driven HF <-> house state-dict conversion.

A model package's adapter is a table, `from_hf_map`, of HF checkpoint keys to house keys
with `{}` placeholders (torchtitan style). `None` drops a key. A template with one more
placeholder on the HF side than on the house side is an expert-stacked weight: the HF
checkpoint stores one tensor per expert (`...experts.{}.gate_proj.weight`, as on disk), the
house model one 3-D tensor (`...experts.w1`) stacked along dim 0 in expert order. `{*}` is
a ModuleDict key (a word, e.g. a language code) carried over as is, on both sides and in the
same order among the placeholders: `...layer.{}.output.adapter_modules.{*}.dense1.weight` <->
`layers.{}.adapters.{*}.w1.weight`. A layer index the checkpoint stores shifted (per-layer
tensors kept in a list of their own that starts at the second layer) is `{-1}` on the HF side:
`...attn_queries.{-1}` <-> `layers.{}.attention_input.query` reads stored entry i as layer
i + 1.

Checkpoint tensors stored in another layout than the house's are named in tables beside the
key table: `transposed`, `row_blocks`, `flat_experts`, `chunked`, and `interleaved` (a
tensor whose two halves alternate along a dim, transformers' `Interleave` conversion:
Inkling-2's experts' gate and up rows), each undone on load and redone on save.

Anything the table does not cover is reported, never silently skipped: a dropped weight is
the most common onboarding bug.

FP8 block-scaled checkpoints (fp8 releases of large MoE models): a `float8_e4m3fn` weight comes with
an fp32 scale per `weight_block_size` block (`weight_scale_inv`; some releases say
`weight_scale` or `.scale`), the last block of a row or column ragged when the block size
does not divide the shape. Given the checkpoint's `quantization_config`, `from_hf` applies
each tensor's scales before experts are stacked and returns the package's dtype, or with
`keep_fp8=True` keeps the fp8 weights and their scales (house key + `_scale_inv`, stacked
like their experts) for an engine that runs fp8; `to_hf` then writes them back bit for bit
under the names they were loaded with. A fp8 weight without its scale, a scale without its
weight or a scale grid that does not fit is one line naming the tensor: raw fp8 values are
never used as weights. Layers past `args.n_layers` (multi-token-prediction layers) are
skipped and listed in `ignored`, as are the scales of weights the table drops.
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass
from typing import Any, ClassVar


class UnmappedKeysError(KeyError):
    """Checkpoint keys that no row of the key table matches."""

    def __init__(self, keys: list[str]):
        self.keys = keys
        super().__init__(f"{len(keys)} checkpoint keys have no mapping: {', '.join(keys[:5])}")

    def __str__(self) -> str:  # the message as it is, not quoted as KeyError quotes a key
        return str(self.args[0])


@dataclass(frozen=True)
class _Row:
    hf: str
    house: str | None
    hf_pattern: re.Pattern
    house_pattern: re.Pattern | None
    shift: int = 0  # the checkpoint's layer index minus the house's (`{-1}`: -1)

    @property
    def stacked(self) -> bool:
        return self.house is not None and self.hf.count("{}") == self.house.count("{}") + 1


class Fp8CheckpointError(ValueError):
    """An FP8 checkpoint tensor the adapter cannot dequantize faithfully (one line, naming it)."""


# how real releases name the block scale of `<module>.weight`: (suffix replaced, its scale)
SCALE_NAMES = (("weight", "weight_scale_inv"), ("weight", "weight_scale"), ("weight", "scale"))
# the block scale of a tensor stored without a `weight` suffix (a flat expert stack such as
# `experts.mlp.w1`, a fused `experts.gate_up_proj`): the name + `_scale_inv`, as
# transformers' fp8 quantizer writes it and its fp8 experts keep it, or a `.weight_scale_inv`
# beside it
FLAT_SCALE_SUFFIXES = ("_scale_inv", ".weight_scale_inv")
HOUSE_SCALE_SUFFIX = "_scale_inv"  # house key of a kept scale: the weight's key + this
HOUSE_LAYER = "layers.{}."  # the house key of a decoder layer's tensors starts so


def is_fp8(tensor: Any) -> bool:
    return str(getattr(tensor, "dtype", "")).removeprefix("torch.").startswith("float8_")


def scale_keys(weight_key: str) -> list[str]:
    """The keys a weight's block scale may have in a checkpoint, most common first."""
    if not weight_key.endswith("weight"):
        return [weight_key + suffix for suffix in FLAT_SCALE_SUFFIXES]
    return [weight_key[: -len(suffix)] + scale for suffix, scale in SCALE_NAMES]


def scaled_keys(scale_key: str) -> list[str]:
    """The weight keys whose block scale `scale_key` may be (`scale_keys` inverted)."""
    named = [scale_key[: -len(scale)] + suffix for suffix, scale in SCALE_NAMES]
    flat = [scale_key[: -len(suffix)] for suffix in FLAT_SCALE_SUFFIXES]
    candidates = dict.fromkeys([*named, *flat])
    return [key for key in candidates if key != scale_key and scale_key in scale_keys(key)]


def check_scale_grid(key: str, weight: Any, scale: Any, block: tuple[int, int] | None) -> None:
    """The scale grid a block-quantized weight needs: ceil(rows / block) x ceil(cols / block)
    per matrix (the last block ragged), or one per-tensor scale."""
    if not scale.is_floating_point():
        raise Fp8CheckpointError(f"{key}: scale dtype {scale.dtype} is not a float scale")
    if scale.numel() == 1 and scale.dim() <= 1:
        return
    if block is None:
        raise Fp8CheckpointError(
            f"{key}: block scales {tuple(scale.shape)} but the quantization_config has no "
            "weight_block_size"
        )
    *lead, rows, cols = weight.shape
    want = (*lead, -(-rows // block[0]), -(-cols // block[1]))
    if tuple(scale.shape) != want:
        raise Fp8CheckpointError(
            f"{key}: scale grid {tuple(scale.shape)} does not fit weight {tuple(weight.shape)} "
            f"with weight_block_size {list(block)} (expected {want})"
        )


def dequantize_fp8(weight: Any, scale: Any, block: tuple[int, int] | None, dtype: Any = None):
    """weight * its block's scale, in fp32, then `dtype` (torch's default when None)."""
    import torch

    dtype = dtype or torch.get_default_dtype()
    scale = scale.to(torch.float32)
    if scale.numel() == 1 and scale.dim() <= 1:
        return (_float32(weight) * scale.reshape(())).to(dtype)
    *lead, rows, cols = weight.shape
    grid_rows, grid_cols = scale.shape[-2:]
    padded = (grid_rows * block[0], grid_cols * block[1])
    if (rows, cols) == padded:
        values = _float32(weight)
    else:  # ragged last blocks: pad to whole blocks, then crop
        values = torch.zeros((*lead, *padded), dtype=torch.float32, device=weight.device)
        values[..., :rows, :cols] = _float32(weight)
    blocks = values.reshape(*lead, grid_rows, block[0], grid_cols, block[1])
    blocks = blocks * scale[..., :, None, :, None]
    return blocks.reshape(*lead, *padded)[..., :rows, :cols].to(dtype)


def _float32(weight: Any):
    """fp8 -> fp32 on CPU through a table of torch's own conversion of the 256 codes: the
    same values, ~15x faster than `.to(float32)`, which converts one element at a time."""
    import torch

    if not is_fp8(weight) or weight.device.type != "cpu":
        return weight.to(torch.float32)
    table = torch.arange(256, dtype=torch.uint8).view(weight.dtype).to(torch.float32)
    codes = weight.contiguous().view(torch.uint8).reshape(-1).int()
    return table.index_select(0, codes).view(weight.shape)


def layer_prefixes(from_hf_map: dict[str, str | None]) -> list[str]:
    """The checkpoint's decoder-layer key prefixes, read off a key table: the HF side of
    each row whose house key is a layer's (`layers.{}.`), up to the layer index
    (`model.layers.`, `transformer.h.`, `roc_bert.encoder.layer.`)."""
    return sorted(
        {
            hf.split("{}", 1)[0]
            for hf, house in from_hf_map.items()
            if house is not None and house.startswith(HOUSE_LAYER) and not _shift(hf)
        }
    )


def _block_size(quantization_config: Any) -> tuple[int, int] | None:
    if quantization_config is None:
        return None
    if not isinstance(quantization_config, dict):
        to_dict = getattr(quantization_config, "to_dict", None)
        quantization_config = to_dict() if to_dict else vars(quantization_config)
    block = quantization_config.get("weight_block_size")
    return None if block is None else (int(block[0]), int(block[1]))


# a layer index stored shifted: `{-1}` (the checkpoint's index is the layer's minus one)
_SHIFTED = re.compile(r"\{([+-]\d+)\}")


def key_pattern(template: str) -> re.Pattern:
    """The keys a table template names: `{}` (or a shifted `{-1}`) a layer or expert index,
    `{*}` any key part."""
    escaped = re.escape(_SHIFTED.sub("{}", template)).replace(r"\{\*\}", r"([^.]+)")
    return re.compile("^" + escaped.replace(r"\{\}", r"(\d+)") + "$")


def _shift(template: str) -> int:
    """The shift of the template's layer index (`{-1}`: -1), 0 where it has none; only the
    first placeholder, the layer's, may be shifted."""
    found = _SHIFTED.search(template)
    if found is None:
        return 0
    if "{" in template[: found.start()]:
        raise ValueError(f"{template!r}: only the first (layer) placeholder may be shifted")
    return int(found.group(1))


def _fill(template: str, *values) -> str:
    """`template` with its placeholders (`{}` indices, `{*}` keys) filled in order; a shifted
    layer index (`{-1}`) gets the first value shifted."""
    shift = _shift(template)
    if shift:
        values = (int(values[0]) + shift, *values[1:])
    return _SHIFTED.sub("{}", template).replace("{*}", "{}").format(*values)


def _unshifted(groups: tuple[str, ...], shift: int) -> tuple[str, ...]:
    """A checkpoint key's placeholder values with the layer index the house's."""
    return (str(int(groups[0]) - shift), *groups[1:]) if shift else groups


class StateDictAdapter:
    """Converts state dicts with the subclass's `from_hf_map` table.

    Subclasses set `from_hf_map`; `args` is the model's ModelArgs (tying is read from
    `args.tie_word_embeddings`).
    """

    from_hf_map: ClassVar[dict[str, str | None]] = {}
    # checkpoint key templates whose tensor is stored transposed ([in, out]: the Conv1D of
    # GPT-2-style checkpoints) against the house nn.Linear ([out, in])
    transposed: ClassVar[frozenset[str]] = frozenset()
    # house key template -> (blocks, order) of a fused q/k/v tensor the checkpoint stores as
    # `blocks` blocks of rows each holding q, k and v (equal widths) in `order` ("qvk"); the
    # house wqkv holds [q | k | v], so rows are regrouped on load and back on save
    row_blocks: ClassVar[dict[str, tuple[int, str]]] = {}
    # checkpoint key template -> whether each expert's block is stored transposed, for expert
    # projections the checkpoint holds as one 2-D matrix with the experts' rows stacked
    # ([num_experts * out, in]; [num_experts * in, out] when transposed) against the house's
    # 3-D [num_experts, out, in]: split on load, flattened back on save
    flat_experts: ClassVar[dict[str, bool]] = {}
    # on-disk key tail -> the key tails of the tensors it holds as equal row blocks, in order
    # (transformers' `Chunk(dim=0)` conversion: a fused `attn.gqkv_proj.weight` holds gate, q,
    # k and v): split before the table is read, joined again on save
    chunked: ClassVar[dict[str, tuple[str, ...]]] = {}
    # on-disk key tail -> the dim along which the checkpoint interleaves the two halves of
    # the tensor (transformers' `Interleave(dim)` conversion: Inkling-2's
    # `mlp.experts.w13_weight` holds gate and up rows alternating): de-interleaved to
    # [first half | second half] before the table is read, interleaved again on save
    interleaved: ClassVar[dict[str, int]] = {}
    embedding_key: ClassVar[str] = "tok_embeddings.weight"
    output_key: ClassVar[str] = "output.weight"

    def __init__(
        self,
        args: Any,
        quantization_config: Any = None,
        keep_fp8: bool = False,
        dtype: Any = None,
    ):
        self.args = args
        # FP8 checkpoints: the checkpoint's quantization_config (dict or HF config object),
        # whether fp8 weights stay fp8 with their scales, the dtype dequantized weights get
        self.quantization_config = quantization_config
        self.block_size = _block_size(quantization_config)
        self.keep_fp8 = keep_fp8
        self.dtype = dtype
        self.ignored: list[str] = []  # checkpoint keys the last from_hf skipped, sorted
        self._scale_key: dict[str, str] = {}  # HF weight key -> its scale's key as loaded
        self._rows = [
            _Row(
                hf,
                house,
                key_pattern(hf),
                None if house is None else key_pattern(house),
                _shift(hf),
            )
            for hf, house in self.from_hf_map.items()
        ]

    @property
    def tied(self) -> bool:
        return bool(getattr(self.args, "tie_word_embeddings", False))

    def _match_hf(self, key: str) -> tuple[_Row, tuple[str, ...]] | None:
        for row in self._rows:
            found = row.hf_pattern.match(key)
            if found:
                return row, found.groups()
        return None

    def _chunk_of(self, key: str) -> tuple[str, tuple[str, ...]] | None:
        """(the key's head, its parts' tails) where `key` is a fused tensor of `chunked`."""
        for fused, parts in self.chunked.items():
            if key == fused or key.endswith("." + fused):
                return key[: len(key) - len(fused)], parts
        return None

    def _unchunked(self, hf_keys) -> list[str]:
        """The keys with every fused one replaced by the keys of its parts."""
        out = []
        for key in hf_keys:
            found = self._chunk_of(key)
            out += [key] if found is None else [found[0] + part for part in found[1]]
        return out

    def split_chunks(self, hf_state_dict: dict[str, Any]) -> dict[str, Any]:
        """Each fused tensor of `chunked` split into its parts' keys (equal row blocks)."""
        out: dict[str, Any] = {}
        for key, tensor in hf_state_dict.items():
            found = self._chunk_of(key)
            if found is None:
                out[key] = tensor
                continue
            head, parts = found
            blocks = tensor.chunk(len(parts), dim=0)
            if len(blocks) != len(parts) or tensor.shape[0] % len(parts):
                raise ValueError(f"{key}: {tensor.shape[0]} rows do not split into {parts}")
            out.update(
                (head + part, block.contiguous()) for part, block in zip(parts, blocks, strict=True)
            )
        return out

    def join_chunks(self, hf_state_dict: dict[str, Any]) -> dict[str, Any]:
        """The parts of each fused tensor of `chunked` concatenated back under its key."""
        import torch

        out = dict(hf_state_dict)
        for fused, parts in self.chunked.items():
            for key in [k for k in out if k == parts[0] or k.endswith("." + parts[0])]:
                head = key[: len(key) - len(parts[0])]
                names = [head + part for part in parts]
                if all(name in out for name in names):
                    out[head + fused] = torch.cat([out.pop(name) for name in names])
        return out

    def _interleave_dim(self, key: str) -> int | None:
        """The dim `key`'s tensor is stored interleaved along (`interleaved`), else None."""
        for tail, dim in self.interleaved.items():
            if key == tail or key.endswith("." + tail):
                return dim
        return None

    def deinterleave(self, hf_state_dict: dict[str, Any], load: bool = True) -> dict[str, Any]:
        """Each tensor of `interleaved` with its two halves' entries regrouped along its
        dim: a0, b0, a1, b1... -> a0, a1..., b0, b1... (`load`), or back."""
        out = dict(hf_state_dict)
        for key, tensor in hf_state_dict.items():
            dim = self._interleave_dim(key)
            if dim is not None:
                out[key] = _interleave(key, tensor, dim, load)
        return out

    def unmapped_keys(self, hf_keys) -> list[str]:
        """HF keys that no table row matches (would be silently dropped otherwise). Layers
        past `args.n_layers` and the block scales of mapped weights are not unmapped."""
        keys = set(self._unchunked(hf_keys))
        skipped = set(self.ignored_keys(keys))
        return sorted(
            key
            for key in keys - skipped
            if self._match_hf(key) is None and not self._is_scale_of_mapped(key, keys)
        )

    def dropped_keys(self, hf_keys) -> list[str]:
        """HF keys a row maps to None: in the checkpoint, read by nothing the model runs."""
        return sorted(
            key
            for key in set(self._unchunked(hf_keys))
            if (found := self._match_hf(key)) is not None and found[0].house is None
        )

    def ignored_keys(self, hf_keys) -> list[str]:
        """Keys of layers past `args.n_layers`: the multi-token-prediction layers real
        releases ship (`model.layers.{n_layers}` and up), which the model does not run."""
        layers = getattr(self.args, "n_layers", None)
        prefixes = layer_prefixes(self.from_hf_map)
        if not isinstance(layers, int) or not prefixes:
            return []
        index = re.compile("^(?:" + "|".join(map(re.escape, prefixes)) + r")(\d+)\.")
        found = ((key, index.match(key)) for key in hf_keys)
        return sorted(key for key, at in found if at and int(at.group(1)) >= layers)

    def _is_scale_of_mapped(self, key: str, keys: set[str]) -> bool:
        return any(
            weight in keys and self._match_hf(weight) is not None for weight in scaled_keys(key)
        )

    def _split_scales(self, hf_state_dict: dict[str, Any]) -> dict[str, Any]:
        """Pop every fp8 weight's scale out of `hf_state_dict` (in place): weight key ->
        scale. A fp8 weight without exactly one scale, or a leftover scale, raises."""
        scales: dict[str, Any] = {}
        for key, tensor in list(hf_state_dict.items()):
            if not is_fp8(tensor):
                continue
            found = [name for name in scale_keys(key) if name in hf_state_dict]
            if len(found) != 1:
                looked = ", ".join(scale_keys(key)) or "a key ending in weight"
                problem = "no block scale" if not found else f"{len(found)} scales"
                raise Fp8CheckpointError(
                    f"{key}: {tensor.dtype} weight with {problem} (looked for {looked}); "
                    "raw fp8 values are never loaded as weights"
                )
            scale = hf_state_dict.pop(found[0])
            check_scale_grid(found[0], tensor, scale, self.block_size)
            scales[key] = scale
            self._scale_key[key] = found[0]
        for key in hf_state_dict:
            # a bare `.scale` may be a real parameter; `_scale_inv` and `weight_scale` never are
            if key.endswith(("_scale_inv", "weight_scale")) and self._match_hf(key) is None:
                weights = scaled_keys(key)
                present = [weight for weight in weights if weight in hf_state_dict]
                absent = f"{weights[0]} is not in the checkpoint"
                problem = f"{present[0]} is not fp8" if present else absent
                raise Fp8CheckpointError(f"{key}: a block scale whose weight {problem}")
        return scales

    def from_hf(self, hf_state_dict: dict[str, Any]) -> dict[str, Any]:
        """HF checkpoint (as on disk) -> house state dict. Raises on unmapped keys."""
        hf_state_dict = dict(hf_state_dict)
        self.ignored = self.ignored_keys(hf_state_dict)
        for key in self.ignored:
            del hf_state_dict[key]
        scales = self._split_scales(hf_state_dict)
        if not self.keep_fp8:
            for key, scale in scales.items():
                hf_state_dict[key] = self.dequantize(key, hf_state_dict[key], scale)
        if self.interleaved:
            kept = [key for key in scales if self._interleave_dim(key) is not None]
            if self.keep_fp8 and kept:
                raise Fp8CheckpointError(
                    f"{kept[0]}: keep_fp8 cannot regroup an interleaved weight's rows across "
                    "its scale blocks; load it dequantized"
                )
            hf_state_dict = self.deinterleave(hf_state_dict)
        if self.chunked:
            hf_state_dict = self.split_chunks(hf_state_dict)
        unmapped = self.unmapped_keys(hf_state_dict)
        if unmapped:
            raise UnmappedKeysError(unmapped)
        state_dict: dict[str, Any] = {}
        experts: dict[str, dict[int, Any]] = defaultdict(dict)
        for key, tensor in hf_state_dict.items():
            row, groups = self._match_hf(key)
            if row.house is None:
                if key in scales:  # the scale of a weight the table drops
                    self.ignored.append(self._scale_key[key])
                continue
            kept = {"": tensor}
            if self.keep_fp8 and key in scales:
                kept[HOUSE_SCALE_SUFFIX] = scales[key]
            for suffix, value in kept.items():
                if row.stacked:
                    *outer, expert = groups
                    experts[_fill(row.house, *outer) + suffix][int(expert)] = value
                else:
                    if suffix:
                        self._check_keepable(key, row, tensor, value, groups)
                    if row.hf in self.transposed:  # a kept scale grid transposes with it
                        value = value.t().contiguous()
                    if row.house in self.row_blocks and not suffix:
                        value = _regroup(value, *self.row_blocks[row.house], load=True)
                    house_groups = _unshifted(groups, row.shift)
                    if row.hf in self.flat_experts:  # a kept scale grid splits with it
                        layer = int(house_groups[0]) if house_groups else 0
                        value = self._split_experts(value, self.flat_experts[row.hf], layer)
                    house = _fill(row.house, *house_groups)
                    state_dict[house + suffix] = value
        self.ignored.sort()
        for key, by_index in experts.items():
            state_dict[key] = _stack_experts(key, by_index)
        if self.tied and self.output_key not in state_dict and self.embedding_key in state_dict:
            state_dict[self.output_key] = state_dict[self.embedding_key]
        return state_dict

    def convert_single_to_hf(self, name: str, tensor: Any) -> list[tuple[str, Any]]:
        """One house tensor -> its HF (key, tensor) pairs (several for stacked experts)."""
        if self.tied and name == self.output_key:
            return []
        if name.endswith(HOUSE_SCALE_SUFFIX) and not self._house_key_maps(name):
            weight = name[: -len(HOUSE_SCALE_SUFFIX)]
            return [
                (self._scale_key.get(key, key + HOUSE_SCALE_SUFFIX), scale)
                for key, scale in self.convert_single_to_hf(weight, tensor)
            ]
        for row in self._rows:
            if row.house_pattern is None:
                continue
            found = row.house_pattern.match(name)
            if not found:
                continue
            groups = found.groups()
            if row.stacked:
                return [
                    (_fill(row.hf, *groups, index), expert)
                    for index, expert in enumerate(tensor.unbind(0))
                ]
            if row.house in self.row_blocks:
                tensor = _regroup(tensor, *self.row_blocks[row.house], load=False)
            if row.hf in self.transposed:
                tensor = tensor.t().contiguous()
            if row.hf in self.flat_experts:
                blocks = tensor.transpose(1, 2) if self.flat_experts[row.hf] else tensor
                tensor = blocks.flatten(0, 1).contiguous()
            return [(_fill(row.hf, *groups), tensor)]
        raise KeyError(f"house key {name!r} has no HF mapping")

    def _check_keepable(self, key: str, row: _Row, weight: Any, scale: Any, groups) -> None:
        """A kept fp8 weight is laid out as the house's with its scale grid: a transpose
        with square blocks, flat experts whose every block holds one expert's rows; fused
        rows regrouped across blocks cannot be."""
        square = self.block_size is None or self.block_size[0] == self.block_size[1]
        transposes = row.hf in self.transposed or self.flat_experts.get(row.hf, False)
        if transposes and not square:
            raise Fp8CheckpointError(
                f"{key}: keep_fp8 cannot transpose a weight with weight_block_size "
                f"{list(self.block_size)} (its blocks are not square); load it dequantized"
            )
        if row.house in self.row_blocks:
            raise Fp8CheckpointError(
                f"{key}: keep_fp8 cannot regroup a fused weight's rows across its scale "
                "blocks; load it dequantized"
            )
        if row.hf in self.flat_experts:
            layer = _unshifted(groups, row.shift)
            rows = weight.shape[0] // self._experts_in(int(layer[0]) if layer else 0)
            if scale.dim() != 2 or self.block_size is None or rows % self.block_size[0]:
                raise Fp8CheckpointError(
                    f"{key}: keep_fp8 cannot split the scale blocks of flat experts by "
                    f"expert ({rows} rows each, weight_block_size "
                    f"{list(self.block_size or [])}: a block spans two experts or the scale "
                    "is per tensor); load it dequantized"
                )

    def _experts_in(self, layer: int) -> int:
        """The routed experts of house layer `layer` (the count may be given per layer)."""
        count = self.args.num_experts
        return count if isinstance(count, int) else count[layer]

    def _split_experts(self, tensor: Any, transposed: bool, layer: int):
        """[num_experts * rows, cols] -> the house's [num_experts, out, in], num_experts the
        house layer `layer`'s own where the count is given per layer."""
        blocks = tensor.unflatten(0, (self._experts_in(layer), -1))
        return (blocks.transpose(1, 2) if transposed else blocks).contiguous()

    def dequantize(self, key: str, weight: Any, scale: Any):
        """One checkpoint weight times its block scales, in the adapter's dtype."""
        return dequantize_fp8(weight, scale, self.block_size, self.dtype)

    def _house_key_maps(self, name: str) -> bool:
        return any(r.house_pattern and r.house_pattern.match(name) for r in self._rows)

    def dequantize_state(self, state_dict: dict[str, Any]) -> dict[str, Any]:
        """A `keep_fp8` house state dict with every fp8 weight dequantized by its kept
        scales (stacked experts scale each expert by its own grid)."""
        out: dict[str, Any] = {}
        for name, tensor in state_dict.items():
            if name.endswith(HOUSE_SCALE_SUFFIX) and name[: -len(HOUSE_SCALE_SUFFIX)] in state_dict:
                continue
            scale = state_dict.get(name + HOUSE_SCALE_SUFFIX)
            if is_fp8(tensor):
                if scale is None:
                    raise Fp8CheckpointError(f"{name}: {tensor.dtype} weight with no scale")
                tensor = self.dequantize(name, tensor, scale)
            out[name] = tensor
        return out

    def to_hf(self, state_dict: dict[str, Any]) -> dict[str, Any]:
        """House state dict -> HF checkpoint layout (per-expert keys, tied head omitted)."""
        hf_state_dict: dict[str, Any] = {}
        for name, tensor in state_dict.items():
            hf_state_dict.update(self.convert_single_to_hf(name, tensor))
        if self.chunked:
            hf_state_dict = self.join_chunks(hf_state_dict)
        return self.deinterleave(hf_state_dict, load=False) if self.interleaved else hf_state_dict


def _regroup(tensor: Any, blocks: int, order: str, load: bool):
    """Rows in `blocks` blocks of q, k, v in `order` -> [q | k | v] (`load`), or back."""
    if load:
        parts = tensor.unflatten(0, (blocks, 3, -1))
        picked = parts[:, [order.index(p) for p in "qkv"]]
        return picked.transpose(0, 1).flatten(0, 2).contiguous()
    parts = tensor.unflatten(0, (3, blocks, -1)).transpose(0, 1)
    return parts[:, ["qkv".index(p) for p in order]].flatten(0, 2).contiguous()


def _interleave(key: str, tensor: Any, dim: int, load: bool):
    """`tensor`'s entries along `dim` from alternating (a0, b0, a1, b1...) to halves
    (a0, a1..., b0, b1...) on `load`, from halves back to alternating otherwise."""
    size = tensor.shape[dim]
    if size % 2:
        raise ValueError(f"{key}: {size} entries along dim {dim} do not interleave two halves")
    pairs = (size // 2, 2) if load else (2, size // 2)
    return tensor.unflatten(dim, pairs).transpose(dim, dim + 1).flatten(dim, dim + 1).contiguous()


def _stack_experts(key: str, by_index: dict[int, Any]):
    import torch

    count = len(by_index)
    if sorted(by_index) != list(range(count)):
        raise KeyError(f"{key}: expert indices {sorted(by_index)} are not 0..{count - 1}")
    return torch.stack([by_index[index] for index in range(count)])
