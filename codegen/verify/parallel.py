"""`verify --parallel`: a package's shard plan proven against the same package on one device.

Forked CPU processes (gloo; 2 for one mesh dim, 4 for `tp=2,fsdp=2` or `fsdp=2,ep=2`) each
build the package, apply its `parallelize(model, mesh)` over a mesh with dims `dp_shard`,
`ep`, `tp`, load the same fp32 weights into the sharded model (`load_full_state_dict`, as
an engine loads after sharding), run the long verify input forward (with its random ids
for the optional id arguments, `id_inputs.py`) and the next-token loss backward. The
logits and every parameter's gradient, gathered to full tensors, are compared with the
single-device package in this process. Along `dp_shard` and `ep` each rank takes its own
rows of the batch (data parallel, gradients averaged by FSDP2; the experts' tokens travel
by all-to-all); along `tp` the ranks see the same rows.

A rank that fails (a plan that does not fit, a shape error in a sharded module) reports
one line naming the module it was in; the other ranks are stopped. Logits that differ are
followed back to where the forward first parts from the one-device one: under `tp` the
sharded Linear whose local activation differs; along `dp_shard` and `ep` the first module
verify's divergence search (`first_diverging_module`) names, each rank's modules compared
by name with the one device's on that rank's rows.
"""

from __future__ import annotations

import importlib
import json
import logging
import tempfile
import time
import traceback
import warnings
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import timedelta
from pathlib import Path

import torch

from codegen.errors import CodegenError
from codegen.verify.compare import GRADIENT_TOLERANCE
from codegen.verify.divergence import (
    Recording,
    first_diverging_module,
    record_modules,
    relative_diff,
)
from codegen.verify.id_inputs import package_id_rows, random_ids

# the command line's names for the mesh dims the plans use
DIM_NAMES = {"tp": "tp", "fsdp": "dp_shard", "dp_shard": "dp_shard", "ep": "ep"}
WORLD_SIZES = (2, 4)  # ranks this check runs: 2 for one dim, 4 for tp=2,fsdp=2 (2-D)
MESH_ORDER = ("dp_shard", "ep", "tp")  # outer to inner, as engines lay the mesh out
TOLERANCE = GRADIENT_TOLERANCE  # max |parallel - single| / max |single|, per tensor, fp32
# a tensor's own scale counts down to this fraction of the largest gradient in the model
GRADIENT_FLOOR = 1e-3
# a sharded gradient may be this many times the one-device fp32 run's own rounding error off
ROUNDING = 4.0
TIMEOUT = timedelta(seconds=60)


@dataclass
class ParallelResult:
    model: str
    setting: str  # "tp=2"
    case: str = ""  # the config's label ("qwen3", "llama+tie_word_embeddings=True")
    passed: bool = False
    logits_diff: float | None = None  # relative, as TOLERANCE
    worst_gradient: tuple[str, float] | None = None
    refused: str | None = None  # the package declines this switch setting (not a failure)
    skipped: str | None = None  # transformers itself cannot build it: verify skips it too
    reseeded: int = 0  # seeds passed over: their forward made a top-k choice by rounding
    error: str | None = None
    seconds: float = 0.0

    @property
    def status(self) -> str:
        if self.passed:
            return "pass"
        return "refused" if self.refused else "skipped" if self.skipped else "fail"

    def to_json(self) -> dict:
        return {**asdict(self), "status": self.status}

    def line(self) -> str:
        head = f"{self.status.upper():<7} {self.setting:<6} {self.case or self.model}"
        if self.passed:
            name, diff = self.worst_gradient or ("-", 0.0)
            reseeded = f", {self.reseeded} tied seed(s) passed over" if self.reseeded else ""
            return (
                f"{head}: logits {self.logits_diff:.1e}, worst gradient {diff:.1e} ({name})"
                f"{reseeded}  {self.seconds:.1f}s"
            )
        return f"{head}: {self.refused or self.skipped or self.error}  {self.seconds:.1f}s"


def run_parallel(specs, settings, config=None, echo=None, cases=None) -> list[ParallelResult]:
    """Every package under every setting (all parsed first: a bad one fails before any run),
    with `config`, or `cases` (a remote-code folder's: its toy and switch settings), or else
    the package's verify cases (its toy config and one per config switch setting); `echo`
    gets a line per result."""
    from codegen.verify.cases import default_cases
    from codegen.verify.run import Case

    for setting in settings:
        parse_setting(setting)
    results = []
    given = cases
    for spec in specs:
        if given is not None:
            cases = given
        else:
            cases = [Case(config.model_type, config)] if config else default_cases(spec)
        for case in cases:
            for setting in settings:
                if case.rejected is not None:  # no config to build: skipped, as verify does
                    result = ParallelResult(spec.name, setting)
                    result.skipped = f"the config class rejects this setting: {case.rejected}"
                elif case.may_refuse and (unbuildable := _hf_cannot_build(case.config)):
                    result = ParallelResult(spec.name, setting, skipped=unbuildable)
                else:
                    result = verify_parallel(spec, case.config, setting, may_refuse=case.may_refuse)
                result.case = case.label
                results.append(result)
                if echo:
                    echo(result.line())
    return results


def _hf_cannot_build(config) -> str | None:
    """Why transformers cannot build a switch setting's model (verify skips such a setting:
    there is no HF model to be right against), or None."""
    from codegen.verify.hf_checkpoint import random_hf_model
    from codegen.verify.run import DEGENERATE, _no_width

    try:
        hf_model = random_hf_model(config)
    except Exception as err:  # noqa: BLE001 - any failure of transformers' own build
        return f"transformers cannot build this config: {_one_line(err)}"
    return DEGENERATE if _no_width(hf_model) else None


def parse_setting(text: str) -> dict[str, int]:
    """ "tp=2" -> {"tp": 2}; the sizes multiply to the 2 ranks this check runs on."""
    dims: dict[str, int] = {}
    for part in filter(None, text.split(",")):
        key, _, value = part.partition("=")
        if key.strip() not in DIM_NAMES or not value.strip().isdigit():
            known = ", ".join(sorted(DIM_NAMES))
            raise CodegenError(f"--parallel {text!r}: expected DIM=SIZE with DIM one of {known}")
        dims[DIM_NAMES[key.strip()]] = int(value)
    size = 1
    for value in dims.values():
        size *= value
    if size not in WORLD_SIZES:
        raise CodegenError(f"--parallel {text!r}: the sizes must multiply to 2 (or 4, 2-D)")
    return {name: dims[name] for name in MESH_ORDER if dims.get(name, 1) > 1}


def plan_module(spec):
    """The package's parallelize module (its PLAN table and parallelize function)."""
    package = spec.model.__module__.rpartition(".")[0]
    try:
        return importlib.import_module(f"{package}.parallelize")
    except ModuleNotFoundError as err:
        if err.name != f"{package}.parallelize":
            raise
        raise CodegenError(f"{spec.name} has no parallelize.py: no shard plan to verify") from None


def verify_parallel(
    spec, config, setting: str, plan: dict | None = None, seed: int = 0, may_refuse=False
) -> ParallelResult:
    """Run the check for one package, config and setting; `plan` replaces the package's.
    `may_refuse`: a config switch setting the package may decline in `from_hf_config`."""
    started = time.perf_counter()
    dims = parse_setting(setting)
    result = ParallelResult(spec.name, setting)
    parallelize = plan_module(spec).parallelize
    try:
        rows = dims.get("dp_shard", 1) * dims.get("ep", 1)
        id_rows = _id_rows(spec, config, seed)
        drawn = _untied_weights_and_inputs(spec, config, seed, rows, result, id_rows)
        state, tokens, positions, extra = drawn
    except NotImplementedError as err:
        if not may_refuse:
            raise CodegenError(f"{spec.name} refuses its own default config: {err}") from None
        result.refused = str(err).splitlines()[0] if str(err) else type(err).__name__
        result.seconds = time.perf_counter() - started
        return result
    # data parallel: each rank's modules are compared with the one device's on its own rows
    reference = _single_device(spec, config, state, tokens, positions, extra, rows > 1)
    args = (spec, config, state, tokens, positions, extra, dims, parallelize, plan, reference)
    for attempt in range(2):  # a second launch only when the first lost its transport
        error, ranks_out = _launch(args, _world(dims))
        if error is None or not _transport_lost(error) or attempt:
            break
    if error is not None:
        result.error = error
    elif "refused" in ranks_out:
        result.refused = ranks_out["refused"]
    else:
        _compare(result, reference, ranks_out)
    result.seconds = time.perf_counter() - started
    return result


def _id_rows(spec, config, seed) -> dict[str, int]:
    """The optional id arguments the long input gives and their tables' rows, as verify
    finds them (`id_inputs.py`)."""
    from codegen.verify.run import make_inputs, vocab_rows

    args, model, _ = spec.build(config)
    tokens = make_inputs(vocab_rows(config, lambda: args.vocab_size), seed)[0].tokens
    return package_id_rows(config, model, tokens, seed)


def _launch(args: tuple, world: int) -> tuple[str | None, object]:
    """Run the ranks once: (the first failing rank's line, None), (None, {"refused": line})
    when the package's plan declined the model on this mesh (`NotImplementedError`), or
    (None, rank 0's output, with every rank's first diverging module as `divergences`).
    The ranks meet
    through a file store in a private folder (no port to race another process for)."""
    with tempfile.TemporaryDirectory() as directory, _quiet("torch.multiprocessing.spawn"):
        out = Path(directory)
        try:
            torch.multiprocessing.start_processes(
                _worker,
                args=(*args, out),
                nprocs=world,
                start_method="fork",
            )
        except Exception:  # a rank failed: its own line is in its error file
            pass
        # the first rank to fail wrote first (the others then lost their peer); a rank
        # stopped while writing its line leaves an empty file
        files = sorted(out.glob("error-*.txt"), key=lambda path: path.stat().st_mtime_ns)
        errors = [text for path in files if (text := path.read_text())]
        if files:
            return (errors[0] if errors else "a rank failed without a message"), None
        refusals = sorted(path.read_text() for path in out.glob("refused-*.txt"))
        if refusals:  # every rank declines the same setting before any shard is made
            return None, {"refused": refusals[0]}
        if not (out / "rank0.pt").is_file():
            return "a rank exited without a result", None
        output = torch.load(out / "rank0.pt")
        output["divergences"] = [
            json.loads(path.read_text()) for path in sorted(out.glob("divergence-*.json"))
        ]
        return None, output


# what a rank reports when the loopback transport between ranks failed (a machine under
# load resetting a connection), not the package: the check is run once more
TRANSPORT_LOST = ("Connection reset by peer", "Connection refused", "Broken pipe")


def _transport_lost(error: str) -> bool:
    return any(text in error for text in TRANSPORT_LOST)


def _weights_and_inputs(spec, config, seed, rows: int = 1, id_rows=None):
    """Seeded fp32 weights for every parameter (1-D ones around 1) and the long input (its
    tokens, positions and optional ids, `id_rows` as `make_inputs` takes them), with at least
    `rows` rows (one per data shard; more drawn alike when verify's batch is short)."""
    from codegen.verify.run import make_inputs, pad_token, vocab_rows

    torch.manual_seed(seed)
    args, model, _ = spec.build(config)
    vocab = vocab_rows(config, lambda: args.vocab_size)
    with torch.no_grad():
        for param in model.parameters():
            param.copy_(torch.randn_like(param) * (0.1 if param.dim() == 1 else 0.05))
            if param.dim() == 1:
                param.add_(1.0)
    item = make_inputs(vocab, seed, pad_token(config, vocab), id_rows)[-1]
    tokens, positions, extra = item.tokens, item.positions, item.extra
    if tokens.shape[0] % rows:
        generator = torch.Generator().manual_seed(seed)
        tokens = torch.randint(0, vocab, (rows, tokens.shape[1]), generator=generator)
        positions = None if positions is None else positions[:1].expand(rows, -1)
        extra = random_ids(id_rows or {}, tokens.shape, generator)
    return model.float().state_dict(), tokens, positions, extra


# a top-k choice whose k-th and next values are closer than this (relative to the largest
# value) is decided by rounding: a sharded run sums in another order and may pick the other
# expert, which no plan can avoid (laguna's layer 2 had a gap of 6e-8)
TIE_MARGIN = 1e-5
RESEEDS = 3  # weights and inputs drawn again at most this many times to leave such a tie


def _untied_weights_and_inputs(spec, config, seed, rows, result, id_rows=None):
    """`_weights_and_inputs` for the first of a few seeds whose one-device forward makes no
    top-k choice by rounding (`result.reseeded` counts the seeds passed over); the last one
    tried when every seed ties. A sharding mistake shows under any seed; a tie only under
    its own."""
    for attempt in range(RESEEDS + 1):
        drawn = _weights_and_inputs(spec, config, seed + attempt, rows, id_rows)
        if attempt == RESEEDS or _top_k_margin(spec, config, *drawn) >= TIE_MARGIN:
            result.reseeded = attempt
            return drawn
    raise AssertionError("unreachable")


def _top_k_margin(spec, config, state, tokens, positions, extra) -> float:
    """The smallest gap between the k-th chosen and the best unchosen value over every
    `topk` the package's forward calls (torch.topk or Tensor.topk), relative to the largest
    value compared; inf when it calls none."""
    margins = [float("inf")]
    original, method = torch.topk, torch.Tensor.topk

    def recorded(values, k, *args, **kwargs):
        out = original(values, k, *args, **kwargs)
        dim = kwargs.get("dim", args[0] if args else -1)
        largest = kwargs.get("largest", args[1] if len(args) > 1 else True)
        if values.is_floating_point() and 0 < k < values.shape[dim]:
            ranked = original(values.detach().float(), k + 1, dim=dim, largest=largest).values
            gap = (ranked.select(dim, k - 1) - ranked.select(dim, k)).abs().min()
            scale = float(values.detach().abs().max())
            margins.append(float(gap) / scale if scale > 0 else float("inf"))
        return out

    model = _build(spec, config, state)
    torch.topk, torch.Tensor.topk = recorded, recorded
    try:
        with torch.no_grad():
            model(tokens, positions, **extra)
    finally:
        torch.topk, torch.Tensor.topk = original, method
    return min(margins)


def _build(spec, config, state):
    _, model, _ = spec.build(config)
    model.float().load_state_dict(state)
    return model


def _loss(logits, tokens):
    # ids past logits cut short of the vocabulary (a padded head) wrap into them
    return torch.nn.functional.cross_entropy(
        logits[:, :-1].flatten(0, 1).float(), tokens[:, 1:].flatten() % logits.shape[-1]
    )


def _single_device(spec, config, state, tokens, positions, extra, modules: bool = False):
    """Logits, gradients, each Linear's first activations and the gradients' rounding of
    the package on one device; `modules`: every module's records too (`record_modules`),
    to name where a data-parallel rank's forward parts from it."""
    model = _build(spec, config, state)
    seen: dict[str, dict] = {}

    def keep(module, args, out, name):  # the first call of each Linear
        if name not in seen:
            seen[name] = {"input": args[0].detach(), "output": out.detach()}

    for name, module in model.named_modules():
        if isinstance(module, torch.nn.Linear):
            module.register_forward_hook(lambda m, args, out, name=name: keep(m, args, out, name))
    recorder = record_modules(model) if modules else None
    logits = model(tokens, positions, **extra)
    if recorder is not None:
        recorder.close()
    _loss(logits, tokens).backward()
    grads = {name: p.grad for name, p in model.named_parameters() if p.grad is not None}
    return {
        "modules": recorder,
        "logits": logits.detach(),
        "grads": grads,
        "activations": seen,
        "noise": _rounding(spec, config, state, tokens, positions, extra, grads, logits),
    }


LOGITS = "(logits)"  # the rounding entry of the logits, beside the gradients' names


def _rounding(spec, config, state, tokens, positions, extra, grads, logits) -> dict:
    """Per gradient, and for the logits (`LOGITS`), how far the one-device fp32 run is from
    the same maths in fp64: a sharded run sums in another order, so it may differ from fp32
    by as much (a gradient that is a cancellation, as a NoPE query's against a key bias, is
    all rounding; a deep stack of wide activations rounds its logits past TOLERANCE)."""
    try:
        model = _build(spec, config, state).double()
        with _grouped_mm_in_fp64():
            exact_logits = model(tokens, positions, **extra)
            _loss(exact_logits, tokens).backward()
    except Exception:  # a package that cannot run fp64: no allowance beyond TOLERANCE
        return {}
    exact = {name: p.grad for name, p in model.named_parameters() if p.grad is not None}
    noise = {
        name: float((grad.double() - exact[name]).abs().max())
        for name, grad in grads.items()
        if name in exact and grad.shape == exact[name].shape and grad.numel()
    }
    if exact_logits.shape == logits.shape:
        noise[LOGITS] = float((logits.detach().double() - exact_logits.detach()).abs().max())
    return noise


@contextmanager
def _grouped_mm_in_fp64():
    """`F.grouped_mm` has no fp64 kernel: in the fp64 run, fp64 operands are multiplied one
    group at a time (rows `offs[i - 1]:offs[i]` by `b[i]`), so routed experts get their
    rounding allowance like every other weight."""
    functional = torch.nn.functional
    original = functional.grouped_mm

    def grouped_mm(a, b, *args, offs=None, **kwargs):
        if a.dtype != torch.float64 or offs is None or a.dim() != 2 or b.dim() != 3 or args:
            return original(a, b, *args, offs=offs, **kwargs)
        ends = offs.tolist()
        starts = [0, *ends[:-1]]
        return torch.cat([a[s:e] @ b[i] for i, (s, e) in enumerate(zip(starts, ends, strict=True))])

    functional.grouped_mm = grouped_mm
    try:
        yield
    finally:
        functional.grouped_mm = original


def _record_sharded(model, record: list) -> None:
    """Append (name, side, local tensor, features) at each sharded Linear's first call:
    the local input of a row-wise one, the local output of a column-wise one."""
    for name, module in model.named_modules():
        marked = getattr(module, "shard_features", None)
        if marked is None:
            continue

        def hook(m, args, out, name=name, side=marked[0], index=marked[1]):
            if not any(entry[0] == name for entry in record):
                tensor = args[0] if side == "input" else out
                if hasattr(tensor, "to_local"):  # a row-wise Linear's input as a DTensor
                    tensor = tensor.to_local()
                record.append((name, side, tensor.detach().clone(), index))

        module.register_forward_hook(hook)


def _first_activation(reference: dict, record: list) -> str | None:
    """Where the sharded forward first leaves the one-device one, in forward order: the
    sharded Linear whose local activation differs, and the last one before it that agreed
    (what runs between them reads the shards differently than the plan splits them)."""
    agreed = None
    for name, side, local, index in record:
        full = reference.get(name, {}).get(side)
        if full is None:
            continue
        expected = full[..., index]
        if expected.shape != local.shape or relative_diff(local, expected) > TOLERANCE:
            after = f" after {agreed}'s output agreed" if agreed else ""
            return f"the forward first differs at the {side} of {name}{after}"
        if side == "output":
            agreed = name
    return None


def _compare(result: ParallelResult, reference: dict, parallel: dict) -> None:
    """Logits, then every gradient in backward order (nearest the loss first, as verify
    does): the first one that differs is where the sharded backward went wrong."""
    result.logits_diff = relative_diff(parallel["logits"], reference["logits"])
    problems = []
    rounding = reference.get("noise", {}).get(LOGITS, 0.0)
    allowed = TOLERANCE + ROUNDING * rounding / _scale(reference["logits"], 0.0)
    if result.logits_diff > allowed:
        problems.append(f"logits differ by {result.logits_diff:.2e} of max|logit|")
        where = _first_activation(reference["activations"], parallel.get("activations", []))
        if parallel.get("divergences"):  # data parallel: the earliest of the ranks' modules
            _, name, diff, rank = min(parallel["divergences"])
            where = (
                f"the forward first differs at {name} ({diff:.2e} of its max, rank {rank}'s rows)"
            )
        if where:
            problems.append(where)
    worst = ("-", 0.0)
    first = None
    # a tensor whose gradient is itself at rounding level (a key bias: softmax ignores a
    # shift shared by every key) is measured against the model's gradient scale, not its own
    floor = GRADIENT_FLOOR * max(
        (float(g.abs().max()) for g in reference["grads"].values() if g.numel()), default=0.0
    )
    for name, expected in reversed(reference["grads"].items()):
        got = parallel["grads"].get(name)
        diff = _gradient_diff(got, expected, floor)
        if got is not None and diff > worst[1]:
            worst = (name, diff)
        noise = reference.get("noise", {}).get(name, 0.0)
        if diff > TOLERANCE + ROUNDING * noise / _scale(expected, floor) and first is None:
            first = f"{name} (no gradient)" if got is None else f"{name} ({diff:.2e} of its max)"
    if first:
        problems.append(f"first differing gradient: {first}")
    result.worst_gradient = worst
    result.error = "; ".join(problems) or None
    result.passed = not problems


def _scale(expected, floor: float) -> float:
    """What a gradient's difference is measured against (never 0)."""
    return max(float(expected.abs().max()) if expected.numel() else 0.0, floor) or 1.0


def _gradient_diff(got, expected, floor: float) -> float:
    """max |got - expected| over max(max |expected|, floor); inf when a gradient is missing."""
    if got is None:
        return float("inf")
    if got.shape != expected.shape:
        return float("inf")
    if not expected.numel():  # an empty weight (a zero-width layer) has nothing to differ
        return 0.0
    scale = max(float(expected.abs().max()), floor)
    if scale == 0.0:
        return 0.0 if float(got.abs().max()) == 0.0 else float("inf")
    return float((got.float() - expected.float()).abs().max()) / scale


@contextmanager
def _quiet(name: str):
    """The spawn helper logs a warning for each rank it stops after another failed."""
    logger = logging.getLogger(name)
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def _world(dims: dict[str, int]) -> int:
    size = 1
    for value in dims.values():
        size *= value
    return size


def _worker(
    rank, spec, config, state, tokens, positions, extra, dims, parallelize, plan, reference, out
):
    import torch.distributed as dist
    from torch.distributed.device_mesh import init_device_mesh

    from codegen.layers.parallel import full_rows, load_full_state_dict

    torch.set_num_threads(1)
    # a failing op is reported in one line below, not by torch's own traceback logging
    logging.getLogger("torch._subclasses.fake_tensor").setLevel(logging.CRITICAL)
    # gathering 2-D (tp x dp_shard) gradients for the comparison takes two all-gathers;
    # the logits are read, never edited in place, so FSDP2's view warning does not apply
    logging.getLogger("torch.distributed.tensor._redistribute").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", message="FSDP2-wrapped module")
    dist.init_process_group(
        "gloo",
        init_method=(out / "store").as_uri(),
        rank=rank,
        world_size=_world(dims),
        timeout=TIMEOUT,
    )
    where = {"module": None}
    try:
        names = tuple(dims)
        mesh = init_device_mesh("cpu", tuple(dims.values()), mesh_dim_names=names)
        # as an engine: built (its own random weights), sharded, then the weights loaded
        _, model, _ = spec.build(config)
        model = model.float()
        _track_modules(model, where)
        try:
            parallelize(model, mesh, plan)
        except NotImplementedError as err:  # the package declines this model on this mesh
            line = str(err).strip().splitlines()
            (out / f"refused-{rank}.txt").write_text(line[0] if line else type(err).__name__)
            raise SystemExit(1) from None
        except Exception as err:
            raise _Failure(f"the plan does not apply: {_one_line(err)}") from None
        try:
            load_full_state_dict(model, state)
        except Exception as err:
            raise _Failure(f"the weights do not load after sharding: {_one_line(err)}") from None
        shards, index = _data_shard(mesh, dims)
        record: list = []
        recorder = None
        if shards == 1:  # every rank sees the whole batch: its activations compare directly
            _record_sharded(model, record)
        else:  # data parallel (dp_shard and ep): this rank's rows of the batch
            rows = tokens.shape[0] // shards
            tokens = tokens[index * rows : (index + 1) * rows]
            positions = None if positions is None else positions[index * rows : (index + 1) * rows]
            extra = {name: ids[index * rows : (index + 1) * rows] for name, ids in extra.items()}
            recorder = record_modules(model)
        logits = model(tokens, positions, **extra)
        if recorder is not None:
            recorder.close()
            _name_divergence(model, recorder, reference, logits, shards, index, rank, out)
        _loss(logits, tokens).backward()
        where["module"] = None
        if shards > 1:  # every rank's rows, in data-shard order (tp ranks hold copies)
            parts = [torch.empty_like(logits) for _ in range(_world(dims))]
            dist.all_gather(parts, logits.detach().contiguous())
            indices = [torch.empty(1, dtype=torch.long) for _ in parts]
            dist.all_gather(indices, torch.tensor([index]))
            first = {int(i): part for i, part in reversed(list(zip(indices, parts, strict=True)))}
            logits = torch.cat([first[i] for i in range(shards)])
        grads = {}
        for name, param in model.named_parameters():
            grad = param.grad
            if grad is not None and hasattr(grad, "full_tensor"):
                grad = grad.full_tensor()  # collective: every rank takes part
                # a Linear sharded by held rows ([q_r | k_r | v_r] per rank) in its own order
                grad = full_rows(model.get_submodule(name.rpartition(".")[0]), grad)
            grads[name] = grad
        if rank == 0:
            saved = {"logits": logits.detach(), "grads": grads, "activations": record}
            torch.save(saved, out / "rank0.pt")
    except Exception as err:
        line = err.line if isinstance(err, _Failure) else _one_line(err)
        if where["module"] and not isinstance(err, _Failure):
            line = f"in {where['module']}: {line}"
        (out / f"error-{rank}.txt").write_text(f"rank {rank}: {line}")
        raise SystemExit(1) from None
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


def _name_divergence(model, recorder, reference, logits, shards, index, rank, out) -> None:
    """Where this rank's logits part from the one device's on its rows: the first diverging
    module, as verify names it (`first_diverging_module`), written to `divergence-RANK.json`
    as [call position, module, relative diff, rank]."""
    if relative_diff(logits, _own_rows(logits, reference["logits"], shards, index)) <= TOLERANCE:
        return
    mine, theirs = _rows_recorded(recorder, reference["modules"], shards, index)
    found = first_diverging_module(model, mine, theirs, TOLERANCE)
    if found is not None:
        line = [recorder.order.index(found[0]), found[0], found[1], rank]
        (out / f"divergence-{rank}.json").write_text(json.dumps(line))


def _own_rows(local, full, shards: int, index: int):
    """The one device's `full` cut to this data shard's rows when `local` is this rank's
    part of it (a leading dim `shards` times shorter: batch rows, or tokens flattened in
    batch order); else None (a table alike on every rank, a statistic of the rank's tokens)."""
    if local is None or full is None or hasattr(local, "to_local"):  # a DTensor: tp's check
        return None
    if local.ndim == 0 or local.ndim != full.ndim:
        return None
    if local.shape[1:] != full.shape[1:] or local.shape[0] * shards != full.shape[0]:
        return None
    size = local.shape[0]
    return full[index * size : (index + 1) * size]


def _rows_recorded(recorder, reference, shards: int, index: int) -> tuple:
    """(this rank's, the one device's) module records holding only the tensors that carry
    the batch's rows, the one device's cut to this rank's (`_own_rows`); a first input that
    carries none is None on both sides (compared as apart: such a module is never named)."""

    def pair(local, full):
        cut = _own_rows(local, full, shards, index)
        return (None, None) if cut is None else (local, cut)

    def pairs(locals_, fulls):
        kept = [pair(a, b) for a, b in zip(locals_, fulls, strict=False)]
        kept = [(a, b) for a, b in kept if a is not None]
        return [a for a, _ in kept], [b for _, b in kept]

    mine, theirs = Recording({}, [], {}), Recording({}, [], {})
    for name in recorder.order:
        if name not in reference.records:
            continue
        (local_in, local_outs), (full_in, full_outs) = (
            recorder.records[name],
            reference.records[name],
        )
        first = pair(local_in, full_in)
        outs = pairs(local_outs, full_outs)
        given = pairs(recorder.inputs.get(name, []), reference.inputs.get(name, []))
        for side, recording in enumerate((mine, theirs)):
            recording.order.append(name)
            recording.records[name] = (first[side], outs[side])
            recording.inputs[name] = given[side]
    return mine, theirs


def _data_shard(mesh, dims: dict[str, int]) -> tuple[int, int]:
    """(how many data shards, this rank's): the ranks split the batch over `dp_shard` and
    `ep` (each ep rank runs its own tokens), outer to inner as the mesh lays them out."""
    shards, index = 1, 0
    for name in ("dp_shard", "ep"):
        if name in dims:
            shards, index = shards * dims[name], index * dims[name] + mesh[name].get_local_rank()
    return shards, index


class _Failure(Exception):
    def __init__(self, line: str):
        super().__init__(line)
        self.line = line


def _track_modules(model, where: dict) -> None:
    """Keep `where["module"]` the innermost module running (a stack: pushed before each
    forward, popped after it), to name it when a rank fails."""
    stack: list[str] = []

    def enter(name):
        stack.append(name)
        where["module"] = name

    def leave(name):
        if stack and stack[-1] == name:
            stack.pop()
        where["module"] = stack[-1] if stack else None

    for name, module in model.named_modules():
        if name:
            module.register_forward_pre_hook(lambda *_, name=name: enter(name))
            module.register_forward_hook(lambda *_, name=name: leave(name))


def _one_line(err: Exception) -> str:
    text = str(err).strip().splitlines()
    if not text:
        frame = traceback.extract_tb(err.__traceback__)[-1]
        return f"{type(err).__name__} at {Path(frame.filename).name}:{frame.lineno}"
    return f"{type(err).__name__}: {text[0][:300]}"
