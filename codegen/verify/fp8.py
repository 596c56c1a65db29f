"""`codegen verify NAME --fp8`: FP8 block-scaled checkpoints through the package's adapter.

The random HF model of a toy config is quantized the way DeepSeek-V3/R1 and Qwen3-FP8 are
released: every projection inside the decoder layers (routers, embeddings, norms and the
head stay high precision, stored bf16) as `float8_e4m3fn` with one fp32 `weight_scale_inv`
per block, per expert for MoE, sharded safetensors with an index, `quantization_config`
in config.json, and a multi-token-prediction layer past `num_hidden_layers`. An expert
stack the checkpoint stores whole (DBRX's flat 2-D `experts.mlp.w1`, a 3-D
`experts.gate_up_proj`; the key table row that loads a 3-D house tensor says which) is a
projection too: blocks over its 2-D matrix, or per expert when 3-D.

Scales go under every name the adapter accepts, one run writing transformers' own
(`weight_scale_inv` for a `.weight`, `<key>_scale_inv` for a stack stored whole), the other
the rest (`weight_scale` and `.scale` in turn over the weights, `<key>.weight_scale_inv`):
an adapter that stops reading one of them fails, naming the weight. The names are this
module's table, not read from the adapter under test (a test holds the two tables equal).
Transformers reads its own names only, so it always loads a copy under those.

The release must hold the model's routed experts and a projection of each layer's sublayers
in fp8, counted off the HF model (`fp8_coverage.py`), not off the table that chose what to
quantize: one that hides an expert stack left it bf16 and passed every check below. Then:

1. the adapter dequantizes it (`from_hf`), and each house tensor must equal, bit for bit,
   the adapter's plain load of the same checkpoint dequantized by the reference below (one
   block at a time, independent of the adapter's code): the first tensor that differs is
   named;
2. the package's logits (verify's inputs: the long one with random ids for the optional id
   arguments, `id_inputs.py`) must match transformers loading the same fp8 checkpoint (its
   FineGrainedFP8 quantizer dequantizes on CPU), within HF's own fp32 noise, and have
   cosine >= 0.99 against the unquantized model (ATOM's bound);
3. `keep_fp8=True` keeps fp8 weights and scales, `to_hf` writes them back bit for bit,
   and dequantizing the kept state gives step 1's tensors; where a flat stack's blocks span
   two experts it must refuse instead, naming the stack.

Two block sizes per config: the largest power of two that divides every quantized shape
(transformers' oracle), and twice that, where some last blocks are ragged as in real
releases (DeepSeek-V3's 576-row kv_a_proj_with_mqa over 128-blocks). Transformers 5.23
cannot dequantize ragged blocks (it derives the block from the grid: it raises, or
silently uses a smaller block when the grid count divides the shape), so there the oracle
is transformers running the reference-dequantized weights; what transformers did is
recorded in `transformers`. The same where transformers loads without error but its weights
are not its load of the reference dequant: 5.23 dequantizes `.weight` keys only and loads
the raw fp8 values of expert stacks stored whole.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import math
import re
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from codegen.adapter import is_fp8, key_pattern, layer_prefixes
from codegen.spec import ModelSpec
from codegen.verify.compare import bound, compare
from codegen.verify.fp8_coverage import Experts, coverage
from codegen.verify.fp8_coverage import natural as _natural
from codegen.verify.hf_checkpoint import load_checkpoint, random_hf_model, save_checkpoint
from codegen.verify.id_inputs import id_input_rows
from codegen.verify.run import Case, _hf_logits, _house_logits, _one_line, make_inputs, vocab_rows

FP8 = torch.float8_e4m3fn
FP8_MAX = 448.0  # largest finite float8_e4m3fn
COSINE_BOUND = 0.99  # ATOM's bound against the unquantized model
REAL_BLOCK = 128  # DeepSeek-V3 / Qwen3-FP8 weight_block_size
# the house key of an MoE layer's router, which real releases keep high precision
HOUSE_ROUTER = re.compile(r"\.moe\.gate\.weight$")
SHARDS = 2
# How releases name a quantized key's block scale, transformers' own first: what replaces the
# `weight` a key ends with, and what is appended to a key without it (a stack stored whole)
WEIGHT_SCALE_NAMES = ("weight_scale_inv", "weight_scale", "scale")
FLAT_SCALE_NAMES = ("_scale_inv", ".weight_scale_inv")
ALL_SCALE_NAMES = (*WEIGHT_SCALE_NAMES, *("<stack>" + name for name in FLAT_SCALE_NAMES))
# The matrices keep HF's initialisation scale (initializer_range), the scale of real weights:
# the main protocol's extra noise (sized to reach softcaps) makes a toy chaotic, so that
# fp8 rounding alone moves deepseek_v3's toy logits to cosine 0.944 (0.9993 without it).
WEIGHT_NOISE = 0.0


@dataclass
class Fp8Result:
    model: str
    case: str
    block: int
    ragged: list[str] = field(default_factory=list)  # quantized tensors with ragged blocks
    # flat expert stacks with blocks holding two experts' rows: keep_fp8 must refuse them
    straddling: list[str] = field(default_factory=list)
    passed: bool = False
    error: str | None = None
    first_mismatch: str | None = None  # first house tensor unlike the reference dequant
    cosine_vs_transformers: float | None = None
    relative_diff: float | None = None
    bound: float | None = None
    cosine_vs_unquantized: float | None = None
    transformers: str = ""  # how transformers loaded the fp8 checkpoint
    ignored: list[str] = field(default_factory=list)
    missing_keys: list[str] = field(default_factory=list)
    unexpected_keys: list[str] = field(default_factory=list)
    roundtrip_exact: bool | None = None
    keep_matches: bool | None = None
    keep_refused: str | None = None  # why keep_fp8 refused the checkpoint (straddling only)
    # the scale names the release the adapter read uses (`<stack>`: a stack stored whole)
    scale_names: list[str] = field(default_factory=list)
    # what the release holds in fp8 in the decoder layers (`fp8_coverage.py`): weights (a
    # stack stored whole once), of them expert weights, the experts with weights in fp8 and
    # the routed experts the HF model has, summed over the layers
    quantized: int | None = None
    quantized_experts: int | None = None
    experts_quantized: int | None = None
    model_experts: int | None = None
    seconds: float = 0.0

    @property
    def status(self) -> str:
        return "pass" if self.passed else "fail"

    def to_json(self) -> dict:
        return {**asdict(self), "status": self.status}

    def quantized_text(self) -> str | None:
        if self.quantized is None:
            return None
        text = f"{self.quantized} weights"
        if self.model_experts or self.quantized_experts:
            text += (
                f", {self.quantized_experts} of them expert weights ({self.experts_quantized}"
                f" of the model's {self.model_experts} routed experts)"
            )
        return text


# --- the release layout -------------------------------------------------------------------


@dataclass(frozen=True)
class Layout:
    """Where the checkpoint keeps its decoder layers and embedding, read off the package's
    key table (`from_hf_map`), never assumed from one architecture's names."""

    layers: tuple[str, ...]  # the decoder-layer key prefixes, up to the layer index
    embedding: str  # the HF key of the token embedding
    routers: tuple[re.Pattern, ...] = ()  # the checkpoint keys of the MoE routers
    # the checkpoint keys of whole expert stacks stored as one tensor (DBRX's flat 2-D
    # `experts.mlp.w1`, a fused 3-D `experts.gate_up_proj`), each with its expert count
    experts: tuple[tuple[re.Pattern, int], ...] = ()

    @classmethod
    def of(cls, adapter, state: dict[str, torch.Tensor], house: dict | None = None) -> Layout:
        """`house`: the package model's state dict (shapes), which says which rows of the
        key table load a whole expert stack (a 3-D house tensor) from one checkpoint key."""
        layers = tuple(layer_prefixes(adapter.from_hf_map))
        if not layers:
            raise Fp8LayoutError(
                f"{type(adapter).__name__}.from_hf_map maps no decoder layer "
                "(no row to a `layers.{}.` key): no projection to quantize"
            )
        probe = torch.empty(0)
        keys = [k for k, _ in adapter.convert_single_to_hf(adapter.embedding_key, probe)]
        if not keys or keys[0] not in state:
            raise Fp8LayoutError(
                f"{type(adapter).__name__}.from_hf_map gives no checkpoint key of the token "
                f"embedding `{adapter.embedding_key}` that the HF model saves "
                f"({keys[0] if keys else 'no row'})"
            )
        routers = tuple(
            key_pattern(hf)
            for hf, house in adapter.from_hf_map.items()
            if house is not None and HOUSE_ROUTER.search(house)
        )
        layout = cls(layers, keys[0], routers, _expert_stacks(adapter, house or {}))
        if not any(quantized(key, tensor, layout) for key, tensor in state.items()):
            raise Fp8LayoutError(
                f"no 2-D weight of the checkpoint lies under the decoder-layer prefixes "
                f"{type(adapter).__name__}.from_hf_map gives ({', '.join(layers)}): "
                "nothing to quantize"
            )
        return layout

    def in_layer(self, key: str, index: int | None = None) -> bool:
        """`key` is inside a decoder layer (layer `index` when given)."""
        for prefix in self.layers:
            rest = key[len(prefix) :] if key.startswith(prefix) else ""
            number = rest.split(".", 1)[0]
            if number.isdigit() and "." in rest and index in (None, int(number)):
                return True
        return False

    def expert_count(self, key: str) -> int | None:
        """The experts `key` holds when it is a whole expert stack in one tensor."""
        return next((count for pattern, count in self.experts if pattern.match(key)), None)


class Fp8LayoutError(ValueError):
    """The package's key table does not say where the layers or the embedding are."""


def _expert_stacks(adapter, house: dict) -> tuple[tuple[re.Pattern, int], ...]:
    """Rows mapping one checkpoint key (no expert index of its own) to a 3-D house tensor."""
    stacks = []
    for hf, name in adapter.from_hf_map.items():
        if name is None or hf.count("{}") != name.count("{}"):
            continue
        pattern = key_pattern(name)
        shapes = [tuple(t.shape) for key, t in house.items() if pattern.match(key)]
        if shapes and len(shapes[0]) == 3:
            stacks.append((key_pattern(hf), shapes[0][0]))
    return tuple(stacks)


def quantized(key: str, tensor: torch.Tensor, layout: Layout) -> bool:
    """A projection inside a decoder layer: what FP8 releases store in fp8. A 2-D `.weight`,
    or an expert stack stored whole (2-D flat or 3-D, whatever its key ends with)."""
    if not tensor.is_floating_point() or not layout.in_layer(key):
        return False
    if any(router.match(key) for router in layout.routers):
        return False
    if tensor.dim() == 2 and key.endswith(".weight"):
        return True
    return tensor.dim() in (2, 3) and layout.expert_count(key) is not None


def straddling(key: str, tensor: torch.Tensor, layout: Layout, block: int) -> bool:
    """A flat 2-D expert stack some of whose row blocks hold two experts' rows."""
    count = layout.expert_count(key)
    return count is not None and tensor.dim() == 2 and (tensor.shape[0] // count) % block != 0


def quantize_blocks(weight: torch.Tensor, block: int) -> tuple[torch.Tensor, torch.Tensor]:
    """fp8 values and the fp32 scale per block (amax / 448) of each matrix (the last two
    dims; an expert stack's leading dim keeps a grid per expert), the last blocks ragged."""
    *lead, rows, cols = weight.shape
    grid = (math.ceil(rows / block), math.ceil(cols / block))
    padded = torch.zeros(*lead, grid[0] * block, grid[1] * block)
    padded[..., :rows, :cols] = weight.float()
    blocks = padded.reshape(*lead, grid[0], block, grid[1], block)
    scale = blocks.abs().amax(dim=(-3, -1)).clamp(min=1e-12) / FP8_MAX
    values = (blocks / scale[..., :, None, :, None]).reshape_as(padded)[..., :rows, :cols]
    return values.to(FP8), scale


def reference_dequantize(values: torch.Tensor, scale: torch.Tensor, block: int) -> torch.Tensor:
    """One block at a time: the oracle the adapter's vectorised dequantize is held to."""
    if values.dim() == 3:  # an expert stack: each expert's matrix by its own grid
        return torch.stack(
            [reference_dequantize(v, g, block) for v, g in zip(values, scale, strict=True)]
        )
    out = values.to(torch.float32)
    for i in range(scale.shape[0]):
        for j in range(scale.shape[1]):
            out[i * block : (i + 1) * block, j * block : (j + 1) * block] *= scale[i, j]
    return out


def block_sizes(state: dict[str, torch.Tensor], layout: Layout) -> tuple[int, int]:
    """(the largest power of two <= 128 dividing every quantized dim and each expert's rows
    of a flat expert stack, as in real releases; twice that, where blocks may be ragged and
    span two experts)."""
    dims = {d for key, t in state.items() if quantized(key, t, layout) for d in t.shape[-2:]}
    dims |= {
        t.shape[0] // layout.expert_count(key)
        for key, t in state.items()
        if quantized(key, t, layout) and t.dim() == 2 and layout.expert_count(key)
    }
    block = REAL_BLOCK
    while any(d % block for d in dims):
        block //= 2
    return block, block * 2


def mtp_layer(
    state: dict[str, torch.Tensor], layers: int, layout: Layout
) -> dict[str, torch.Tensor]:
    """A multi-token-prediction layer at index `layers`, laid out as DeepSeek-V3 ships it:
    a copy of the last decoder layer plus its own norms and projection."""
    hidden = state[layout.embedding].shape[1]
    generator = torch.Generator().manual_seed(7)
    extra = {}
    for stack in layout.layers:
        last, prefix = f"{stack}{layers - 1}.", f"{stack}{layers}."
        extra.update(
            {
                prefix + key[len(last) :]: tensor.clone()
                for key, tensor in state.items()
                if key.startswith(last)
            }
        )
        extra[prefix + "enorm.weight"] = torch.ones(hidden)
        extra[prefix + "hnorm.weight"] = torch.ones(hidden)
        extra[prefix + "eh_proj.weight"] = torch.randn(hidden, 2 * hidden, generator=generator)
        extra[prefix + "eh_proj.weight"] /= 20
        extra[prefix + "shared_head.norm.weight"] = torch.ones(hidden)
    return extra


def scale_names(key: str) -> tuple[str, ...]:
    """The names of `key`'s block scale (`scale_key`), transformers' first."""
    return WEIGHT_SCALE_NAMES if key.endswith("weight") else FLAT_SCALE_NAMES


def scale_key(key: str, name: str | None = None) -> str:
    """The checkpoint key of `key`'s block scale under `name` (transformers' when None)."""
    name = name or scale_names(key)[0]
    return key[: -len("weight")] + name if key.endswith("weight") else key + name


def renamed_scales(release: dict[str, torch.Tensor]) -> dict[str, str]:
    """transformers' key of each fp8 weight's scale -> its key under the other names, each
    kind's names taken in turn over its weights (a name whose key the release already holds
    is passed over), so that a run writes every one."""
    renames, turns = {}, {}
    for key in sorted(release, key=_natural):
        if not is_fp8(release[key]) or scale_key(key) not in release:
            continue
        others = scale_names(key)[1:]
        turn = turns[others] = turns.get(others, -1) + 1
        for name in others[turn % len(others) :] + others[: turn % len(others)]:
            if scale_key(key, name) not in release:
                renames[scale_key(key)] = scale_key(key, name)
                break
    return renames


def name_label(weight: str, scale: str) -> str:
    """How `scale` names `weight`'s scale: the name replacing `weight`, or `<stack>` + the
    suffix of a key without it."""
    if weight.endswith("weight"):
        return scale[len(weight) - len("weight") :]
    return "<stack>" + scale[len(weight) :]


def fp8_state(
    state: dict[str, torch.Tensor], block: int, layout: Layout, fp32: tuple[str, ...] = ()
) -> dict[str, torch.Tensor]:
    """The release's tensors: fp8 + its scale under transformers' name (`scale_key`) for
    projections, bf16 for the rest but the modules HF keeps in fp32 (DeepSeek-V3's router
    correction bias ships fp32)."""
    out: dict[str, torch.Tensor] = {}
    for key, tensor in state.items():
        if quantized(key, tensor, layout):
            out[key], out[scale_key(key)] = quantize_blocks(tensor, block)
        elif tensor.is_floating_point() and not any(name in key for name in fp32):
            out[key] = tensor.to(torch.bfloat16)
        else:
            out[key] = tensor
    return out


def fp32_modules(hf_model) -> tuple[str, ...]:
    names = [
        *(getattr(hf_model, "_keep_in_fp32_modules", None) or ()),
        *(getattr(hf_model, "_keep_in_fp32_modules_strict", None) or ()),
    ]
    return tuple(names)


def write_release(state: dict[str, torch.Tensor], config: dict, block: int, folder: Path) -> None:
    """Sharded safetensors + index + config.json with the release's quantization_config."""
    from safetensors.torch import save_file

    folder.mkdir(parents=True)
    keys = sorted(state, key=_natural)
    per_shard = math.ceil(len(keys) / SHARDS)
    weight_map = {}
    for index in range(SHARDS):
        name = f"model-{index + 1:05d}-of-{SHARDS:05d}.safetensors"
        part = keys[index * per_shard : (index + 1) * per_shard]
        save_file({k: state[k].contiguous() for k in part}, folder / name, {"format": "pt"})
        weight_map.update(dict.fromkeys(part, name))
    index_file = {"metadata": {}, "weight_map": weight_map}
    (folder / "model.safetensors.index.json").write_text(json.dumps(index_file, indent=1))
    config = {**config, "quantization_config": quantization_config(block)}
    (folder / "config.json").write_text(json.dumps(config, indent=1))


def quantization_config(block: int) -> dict:
    return {
        "quant_method": "fp8",
        "fmt": "e4m3",
        "activation_scheme": "dynamic",
        "weight_block_size": [block, block],
    }


def plain_dequantized(checkpoint: dict[str, torch.Tensor], block: int) -> dict:
    """The fp8 checkpoint with every weight dequantized by the reference, scales dropped
    (found under the names of this module's table, not the adapter's)."""
    scale_of = {
        key: [scale_key(key, n) for n in scale_names(key) if scale_key(key, n) in checkpoint]
        for key, tensor in checkpoint.items()
        if is_fp8(tensor)
    }
    scales = {found[0] for found in scale_of.values() if found}
    out = {}
    for key, tensor in checkpoint.items():
        if key in scales:
            continue
        if is_fp8(tensor):
            if not scale_of[key]:
                raise ValueError(f"{key}: fp8 weight with no scale in the release")
            tensor = reference_dequantize(tensor, checkpoint[scale_of[key][0]], block)
        out[key] = tensor.float()
    return out


# --- transformers' side -------------------------------------------------------------------


@contextlib.contextmanager
def _fp8_on_cpu():
    """transformers' FineGrainedFP8 quantizer asks for accelerate before dequantizing even
    though its CPU dequantize path does not use it; without accelerate installed the check
    alone is lifted, for this call only."""
    import transformers.quantizers.quantizer_finegrained_fp8 as quantizer

    if importlib.util.find_spec("accelerate") is not None:
        yield
        return
    saved = quantizer.is_accelerate_available
    quantizer.is_accelerate_available = lambda: True
    try:
        yield
    finally:
        quantizer.is_accelerate_available = saved


def _load_hf(folder: Path, attention: str | None = None):
    from transformers import AutoModelForCausalLM

    kwargs = {"dtype": torch.float32}
    if attention:
        kwargs["attn_implementation"] = attention
    with _fp8_on_cpu():
        model = AutoModelForCausalLM.from_pretrained(folder, **kwargs)
    # the quantizer leaves the tensors it does not dequantize in their stored bf16
    return model.to(torch.float32).eval()


def _quiet() -> None:
    from transformers.utils import logging

    logging.set_verbosity_error()
    logging.disable_progress_bar()


# --- the protocol -------------------------------------------------------------------------


def verify_fp8_case(
    spec: ModelSpec,
    case: Case,
    block: int | None = None,
    seed: int = 0,
    mutate: Callable[[dict[str, torch.Tensor]], None] | None = None,
) -> list[Fp8Result]:
    """One result per block size (both of `block_sizes`, or just `block`): the first block
    size's release names scales as transformers does, another's by the other names.
    `mutate` edits the fp8 checkpoint (transformers' names) before it is written (seeded
    checkpoint defects)."""
    _quiet()
    config = case.config
    hf_model = random_hf_model(config, seed, weight_noise=WEIGHT_NOISE)
    # the long input's random ids for the optional id arguments, as verify's (`id_inputs.py`)
    vocab = vocab_rows(config, lambda: hf_model.get_input_embeddings().num_embeddings)
    tokens = make_inputs(vocab, seed)[0].tokens
    house = spec.model(spec.args.from_hf_config(config))
    id_rows = id_input_rows(hf_model, house, tokens)
    inputs = make_inputs(vocab, seed, None, id_rows)
    unquantized = _hf_logits(hf_model, inputs)
    fp32 = fp32_modules(hf_model)
    experts = Experts.of(config.num_hidden_layers, hf_model, house)
    with tempfile.TemporaryDirectory() as directory:
        directory = Path(directory)
        save_checkpoint(hf_model, directory / "hf")
        state = load_checkpoint(directory / "hf")
        config_dict = json.loads((directory / "hf" / "config.json").read_text())
        try:
            adapter = spec.adapter(spec.args.from_hf_config(config))
            layout = Layout.of(adapter, state, house.state_dict())
        except Fp8LayoutError as err:  # a package the check cannot lay a release out for
            return [Fp8Result(spec.name, case.label, block or 0, error=_one_line(err))]
        blocks = [block] if block else list(block_sizes(state, layout))
        results = []
        for size in blocks:
            result = Fp8Result(spec.name, case.label, size)
            started = time.perf_counter()
            try:
                _run(spec, config, state, config_dict, size, directory / f"b{size}", result,
                     inputs, unquantized, mutate, fp32, layout, experts)  # fmt: skip
            except Exception as err:  # a broken package: a FAIL line, not a traceback
                result.error = result.error or _one_line(err)
            result.passed = result.passed and not result.error
            result.seconds = time.perf_counter() - started
            results.append(result)
    return results


def _run(
    spec, config, state, config_dict, block, folder, result, inputs, unquantized, mutate, fp32,
    layout, experts,
):  # fmt: skip
    args = spec.args.from_hf_config(config)
    layers = config.num_hidden_layers
    release = fp8_state({**state, **mtp_layer(state, layers, layout)}, block, layout, fp32)
    kept_layers = [
        (key, tensor)
        for key, tensor in release.items()
        if is_fp8(tensor) and not layout.in_layer(key, layers)
    ]
    result.ragged = sorted(
        key
        for key, tensor in kept_layers
        if any(d > block and d % block for d in tensor.shape[-2:])
    )
    result.straddling = sorted(
        key for key, tensor in kept_layers if straddling(key, tensor, layout, block)
    )
    if mutate:
        mutate(release)
    # the release must hold the model's experts and each layer's projections in fp8, counted
    # off the HF model, not the table that chose what to quantize
    covered = coverage(
        release,
        layers,
        experts,
        hidden=state[layout.embedding].shape[1],
        is_router=lambda key: any(router.match(key) for router in layout.routers),
        scales=frozenset(scale_key(key) for key, tensor in release.items() if is_fp8(tensor)),
    )
    result.quantized, result.quantized_experts = covered.weights, covered.expert_weights
    result.experts_quantized, result.model_experts = covered.experts, covered.model_experts
    if covered.problems:
        result.error = "; ".join(covered.problems)
        return
    renames = renamed_scales(release) if block != block_sizes(state, layout)[0] else {}
    renamed = {renames.get(key, key): tensor for key, tensor in release.items()}
    write_release(renamed, config_dict, block, folder / "fp8")
    if renames:  # transformers reads its own names only
        write_release(release, config_dict, block, folder / "fp8-hf")
    checkpoint = load_checkpoint(folder / "fp8")
    written = {
        name_label(key, renames.get(scale_key(key), scale_key(key)))
        for key, _ in kept_layers
        if scale_key(key) in release
    }
    result.scale_names = [name for name in ALL_SCALE_NAMES if name in written]
    qconfig = quantization_config(block)

    # 1. the adapter's dequantize against the reference, tensor by tensor
    adapter = spec.adapter(args, quantization_config=qconfig, dtype=torch.float32)
    house_state = adapter.from_hf(checkpoint)
    result.ignored = list(adapter.ignored)
    beyond = sorted(k for k in checkpoint if layout.in_layer(k, layers))
    if result.ignored != beyond:
        result.error = (
            f"ignored {len(result.ignored)} keys, expected the {len(beyond)} of layer {layers}"
        )
    plain = {k: v for k, v in plain_dequantized(checkpoint, block).items() if k not in beyond}
    expected = spec.adapter(args).from_hf(plain)
    house = spec.model(args)
    order = list(house.state_dict())
    result.first_mismatch = _first_mismatch(adapter, house_state, expected, order)

    # 2. logits: the package against transformers on the same checkpoint, and unquantized
    missing, unexpected = house.load_state_dict(house_state, strict=False)
    result.missing_keys, result.unexpected_keys = sorted(missing), sorted(unexpected)
    house.eval()
    with torch.no_grad():
        logits = [_house_logits(house, item).float() for item in inputs]
    oracle = _transformers_oracle(folder, plain, config_dict, result, inputs)
    reference = _hf_logits(oracle, inputs)
    try:
        eager = _hf_logits(_reload(oracle, folder, result), inputs)
    except Exception:  # one attention kernel only
        eager = reference
    verdicts = []
    for got, want, other in zip(logits, reference, eager, strict=True):
        comparison, limit = compare(got, want), bound("fp32", compare(other, want))
        verdicts.append((limit.admits(comparison), comparison, limit))
    worst = max(verdicts, key=lambda v: (not v[0], v[1].relative / max(v[2].relative, 1e-30)))
    result.cosine_vs_transformers = min(v[1].cosine for v in verdicts)
    result.relative_diff, result.bound = worst[1].relative, worst[2].relative
    result.cosine_vs_unquantized = min(
        compare(got, want).cosine for got, want in zip(logits, unquantized, strict=True)
    )

    # 3. fp8 kept with its scales: written back bit for bit, and the same weights; a flat
    # expert stack whose blocks span two experts cannot be split by expert: refused
    keeper = spec.adapter(args, quantization_config=qconfig, keep_fp8=True, dtype=torch.float32)
    try:
        kept = keeper.from_hf(checkpoint)
    except ValueError as err:  # the package's own Fp8CheckpointError (a ValueError)
        if not result.straddling:
            raise
        result.keep_refused = _one_line(err)
        result.passed = keep_passed = _passed(result, verdicts, missing, unexpected)
        if not any(name in result.keep_refused for name in result.straddling):
            result.error = f"keep_fp8 refused, naming none of {result.straddling}"
        return keep_passed
    if result.straddling:
        result.error = f"keep_fp8 kept {result.straddling[0]}, whose blocks span two experts"
    back = keeper.to_hf(kept)
    wanted = {k: v for k, v in checkpoint.items() if k not in keeper.ignored}
    result.roundtrip_exact = set(back) == set(wanted) and all(
        _bits_equal(back[k], wanted[k]) for k in wanted
    )
    dequantized = keeper.dequantize_state(kept)
    result.keep_matches = set(dequantized) == set(house_state) and all(
        _bits_equal(dequantized[k], house_state[k]) for k in house_state
    )
    result.passed = (
        _passed(result, verdicts, missing, unexpected)
        and result.roundtrip_exact
        and result.keep_matches
    )


def _passed(result: Fp8Result, verdicts, missing, unexpected) -> bool:
    """Steps 1 and 2 held."""
    return (
        all(v[0] for v in verdicts)
        and result.first_mismatch is None
        and not missing
        and not unexpected
        and result.cosine_vs_unquantized >= COSINE_BOUND
    )


def _transformers_oracle(folder: Path, plain: dict, config_dict: dict, result, inputs):
    """transformers' own fp8 load where it loads every weight as the reference dequantizes
    it, else transformers running the reference-dequantized weights. Its load can be silently
    wrong: 5.23 dequantizes `.weight` keys only and loads a flat expert stack's raw fp8
    values, its `_scale_inv` reported unexpected."""
    try:
        model, outcome = _load_hf(_hf_release(folder)), None
    except Exception as err:
        model, outcome = None, f"cannot load it: {_transformers_error(folder, result, err)}"
    from safetensors.torch import save_file

    target = folder / "dequant"
    target.mkdir()
    save_file({k: v.contiguous() for k, v in plain.items()}, target / "model.safetensors")
    (target / "config.json").write_text(json.dumps(config_dict))
    oracle = _load_hf(target)
    if model is not None and not result.ragged:
        unlike = _unlike_reference(model, oracle, load_checkpoint(_hf_release(folder)))
        if unlike is None:
            result.transformers = "dequantized the fp8 checkpoint on CPU (the oracle)"
            return model
        outcome = f"loads it, but {unlike}"
    elif model is not None:
        cosine = min(
            compare(a, b).cosine
            for a, b in zip(_hf_logits(model, inputs), _hf_logits(oracle, inputs), strict=True)
        )
        outcome = f"loads it, cosine {cosine:.6f} against the reference dequant"
    result.transformers = f"{outcome}; oracle: transformers on the reference dequant"
    return oracle


def _unlike_reference(model, oracle, checkpoint: dict) -> str | None:
    """How transformers' fp8 load differs from it loading the reference dequant: the
    tensors unlike it, the first named, and whether it took raw fp8 values for weights."""
    want = oracle.state_dict()
    unlike = [
        name
        for name, tensor in model.state_dict().items()
        if name in want and not torch.equal(tensor.float(), want[name].float())
    ]
    if not unlike:
        return None
    first = unlike[0]
    got, raw = model.state_dict()[first].float(), checkpoint.get(first)
    diff = (got - want[first].float()).abs().max().item()
    how = (
        "its raw fp8 values, no scale applied"
        if is_fp8(raw) and torch.equal(got, raw.float())
        else f"max diff {diff:.3g} from the reference dequant"
    )
    return f"{len(unlike)} tensors are not the reference dequant: {first} ({how})"


def _transformers_error(folder: Path, result: Fp8Result, err: Exception) -> str:
    """Why transformers' load failed: its loading report keeps the dequantize error in a
    log, so the ragged tensors go through its dequantize op again: the first that raises,
    and how many it dequantizes silently with a block other than the release's."""
    from transformers.integrations.finegrained_fp8 import Fp8Dequantize

    checkpoint = load_checkpoint(_hf_release(folder))
    block = result.block
    raised, wrong = None, 0
    for key in result.ragged:
        values, scale = checkpoint[key], checkpoint[scale_key(key)]
        try:
            got = Fp8Dequantize(None)._dequantize_one(values, scale, output_dtype=torch.float32)
        except Exception as inner:
            raised = raised or f"{key}: {_one_line(inner)}"
            continue
        wrong += not torch.equal(got, reference_dequantize(values, scale, block))
    if raised is None:
        return _one_line(err)
    return raised + (f" ({wrong} other ragged tensors dequantized wrongly)" if wrong else "")


def _hf_release(folder: Path) -> Path:
    """The release under transformers' scale names, the only ones its loader reads."""
    renamed = folder / "fp8-hf"
    return renamed if renamed.exists() else folder / "fp8"


def _reload(model, folder: Path, result: Fp8Result):
    dequantized = result.transformers.startswith("dequantized")
    return _load_hf(_hf_release(folder) if dequantized else folder / "dequant", "eager")


def _first_mismatch(adapter, got: dict, want: dict, order: list[str]) -> str | None:
    """The first house tensor (in the model's order) unlike the reference, with its HF key."""
    names = set(got) | set(want)
    for name in [n for n in order if n in names] + sorted(names - set(order), key=_natural):
        if name not in got or name not in want:
            return f"{name}: {'missing from' if name not in got else 'extra in'} the fp8 load"
        a, b = got[name], want[name]
        if a.shape != b.shape or not torch.equal(a.float(), b.float()):
            return _name_mismatch(adapter, name, a, b)
    return None


def _name_mismatch(adapter, name: str, got: torch.Tensor, want: torch.Tensor) -> str:
    if got.shape != want.shape:
        return f"{name}: shape {tuple(got.shape)} against {tuple(want.shape)}"
    hf_key = ""
    try:
        pairs = adapter.convert_single_to_hf(name, got)
        wants = dict(adapter.convert_single_to_hf(name, want))
        bad = [key for key, tensor in pairs if not torch.equal(tensor.float(), wants[key].float())]
        hf_key = f" ({bad[0]})" if bad else ""
    except Exception:  # an adapter that converts only whole state dicts
        pass
    diff = (got.float() - want.float()).abs().max().item()
    return f"{name}{hf_key}: max diff {diff:.3g} from the reference dequantize"


def _bits_equal(a: torch.Tensor, b: torch.Tensor) -> bool:
    if a.dtype != b.dtype or a.shape != b.shape:
        return False
    if is_fp8(a):
        return torch.equal(a.view(torch.uint8), b.view(torch.uint8))
    return torch.equal(a, b)
