"""Forward speed and peak memory of each reference vs the transformers model, as ratios.

Both models get the same config (4 layers, hidden 512, 8 heads, seq 512, batch 2, fp32 by
default), the same weights and the same tokens. Time is the CPU time of a forward on one
torch thread (--threads): CPU time counts the work, where wall time mostly counts who else
runs, and with one thread no thread spins, billing CPU time, while its sibling waits to be
scheduled on a busy machine. House and HF forwards run interleaved in one process after a
warm-up, in rounds whose order rotates (house, HF, HF again; then HF, HF again, house;
...), so drift in the machine's load reaches both sides alike; each side's time is the
fastest of its --repeat runs (load only ever adds CPU time, so the minimum is the least
disturbed run; while the house side comes out slower, all three slots get the next stage of
--confirm rounds, fixed in advance and the same for each side: `timed_rounds`), under a
glibc setting that keeps freed memory for reuse (`timing_allocator`: otherwise page faults
follow the order things ran in). The third slot
times the HF model against itself: that A/A ratio is the benchmark's own noise, printed
beside each ratio and summarised over the run as a band, so a reader can tell which ratios
are distinguishable from 1.0.

Peak memory is the growth of the process's RSS high-water mark during one forward, each
model in a child of a fork server that has imported torch and transformers and run nothing
(as fresh as a new process, without importing again), so the two peaks cannot mask each
other (with glibc's mmap threshold pinned, so freed tensors leave the resident set). Each
child builds and keeps both models, so the two differ only in the forward they run (what a
freed model leaves in the heap would otherwise count against the other). Nothing else
runs beside it, so it needs no noise band, though it moves by up to about 1.5% between runs
(the heap a build leaves is not always the same: gemma4_text's package peaked at 161-165
MiB). A ratio <= 1.0 means the house model is no worse.

Work is counted as well as timed (`forward_work`): the matmul and attention FLOPs of one
forward (torch's flop counter) and the bytes written by every op that makes or fills a tensor.
The counts are the same on every run, so where a time ratio sits inside the noise band they
say whether the package does more work than HF or the ratio is noise; `--work-only` counts
without timing (seconds per package).

Parity is checked at this size too (`logit_divergence`): the sequence is longer than any
toy's (past the sliding window, the chunk, the compression rate), so a package that matches
HF only on the toy it was verified with shows as diverging.

Any package works, not only the references: `--models DIR` benchmarks packages written by
`codegen scaffold --out DIR`; `--sweep COVERAGE_JSON` scaffolds every architecture the coverage
sweep verified (into a temporary folder, or --models DIR) and benchmarks each, then prints how
many were measured (each one that was not, with why: the exit status is then 1), how many stay
within 1.0 on both ratios, and, labelled apart, how many do once a time ratio inside the run's
noise band (90th percentile of |A/A - 1|) counts as indistinguishable from HF.

    python scripts/bench_forward.py [MODEL ...] [--models DIR] [--seq 512] [--batch 2]
                                    [--repeat 5] [--confirm 10 15] [--threads 1] [--work-only]
                                    [--json]
    python scripts/bench_forward.py --sweep /tmp/cov/coverage.json [--jobs 2]

`--jobs N` splits the models over N processes of this script (and scaffolds N at a time).
Time is CPU time on one thread and each model's house and HF forwards share one process and
its rotating rounds, so a second job on a second core leaves each ratio's two sides under the
same load (the run's A/A band shows what it adds); peak memory is per process either way.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REFERENCES = ["llama", "qwen2", "qwen3", "qwen3_moe", "deepseek_v3"]

# config attribute -> benchmark size (applied where the config has the attribute)
BENCH_SIZES = {
    "hidden_size": 512,
    "num_attention_heads": 8,
    "num_key_value_heads": 2,
    "head_dim": 64,
    "intermediate_size": 1536,
    "moe_intermediate_size": 256,
    "vocab_size": 32000,
    # a second token table (gemma4's per-layer inputs) reads the same token ids
    "vocab_size_per_layer_input": 32000,
    "num_hidden_layers": 4,
    "q_lora_rank": 192,
    "kv_lora_rank": 128,
    "qk_rope_head_dim": 32,
    "qk_nope_head_dim": 32,
    "v_head_dim": 64,
    "sliding_window": 128,
    # DeepSeek sparse attention: the indexer's head holds the rotated dims; it keeps a
    # quarter of the sequence's keys per query
    "index_n_heads": 8,
    "index_head_dim": 64,
    "index_topk": 128,
}

# positions the table holds beyond the benchmark sequence: learned tables that count from an
# offset (RoBERTa's start past the padding index) must still reach the last token
POSITION_MARGIN = 64


def build(name: str, seq: int):
    """(house model, HF model) with identical weights, eval mode, fp32."""
    import torch

    from codegen.models import load_spec
    from codegen.verify.hf_checkpoint import random_hf_model

    spec = load_spec(name, ARGS.models_dir)
    model_type = name if name in spec.supported_model_types else min(spec.supported_model_types)
    config = bench_config(model_type, seq)
    hf_model = random_hf_model(config)
    _, house_model, adapter = spec.build(config)
    house_model.load_state_dict(adapter.from_hf(_disk_state(hf_model)), strict=True)
    house_model.eval()
    torch.manual_seed(0)
    tokens = torch.randint(0, config.vocab_size, (ARGS.batch, seq))
    return house_model, hf_model, tokens


def bench_config(model_type: str, seq: int):
    """The HF config both models are built from: the toy's fields at benchmark size."""
    from codegen.verify.switch_settings import static_switches
    from codegen.verify.tiny_config import hf_config_class, tiny_config

    toy = tiny_config(model_type).to_dict()
    # a field the toy keeps equal to another (OPT's word_embed_proj_dim == hidden_size: no
    # projections between them) follows that field to its benchmark size
    follows = [
        (switch.field, value.operand)
        for switch in static_switches(model_type)
        for value in switch.values
        if value.test == "same"
        and switch.field in toy
        and toy[switch.field] == toy.get(value.operand)
    ]
    config_class = hf_config_class(model_type)
    toy = bench_values(config_class, toy)
    toy.update({field: toy[other] for field, other in follows})
    positions = stored_name(config_class, "max_position_embeddings")
    toy[positions] = max(seq + POSITION_MARGIN, toy.get(positions) or 0)
    if "qk_rope_head_dim" in toy and "kv_lora_rank" in toy:
        # MLA: the key's shared rotary part is its head_dim (DeepSeek-V4, without a latent
        # key, derives qk_rope_head_dim from head_dim instead)
        toy["head_dim"] = toy["qk_rope_head_dim"]
    pattern = toy.pop("layer_types", None)
    for key in ("transformers_version", "model_type", "qk_head_dim"):
        toy.pop(key, None)
    config = config_class(**toy)
    if pattern and hasattr(config, "layer_types") and config.layer_types is None:
        # the class derives no layer pattern of its own (LFM2-MoE): the toy's, repeated
        layers = toy.get(stored_name(config_class, "num_hidden_layers"), len(pattern))
        config = config_class(**toy, layer_types=(pattern * layers)[:layers])
    return config


def bench_values(config_class, toy: dict) -> dict:
    """The toy at the benchmark's sizes (`bench_sizes`). A field the class derives from the
    layer count is left to it (hrm_text's num_layers_per_stack, from which it recomputes
    num_hidden_layers as the cache's slot count): the toy's value would contradict the
    benchmark's layer count (4 layers per stack, 4 cache slots for 32 attention calls)."""
    from codegen.verify.tiny_config import layer_count_derived

    values = {**toy, **bench_sizes(config_class, toy)}
    if stored_name(config_class, "num_hidden_layers") in values:
        for key in layer_count_derived(config_class):
            values.pop(key, None)
    return values


def stored_name(config_class, field: str) -> str:
    """The name the config class stores a standard field under (gptj: n_embd, DBRX: d_model)."""
    return (getattr(config_class, "attribute_map", None) or {}).get(field, field)


def bench_sizes(config_class, toy: dict) -> dict:
    """BENCH_SIZES for the fields the toy config sets, under the names the class stores.

    A field the class derives from another one is left to the class (DBRX's top-level
    num_key_value_heads mirrors attn_config.kv_n_heads, the one its attention reads): setting
    it would size the package and the HF model apart. A field counts as derived when the
    class, built without it, gives the toy's value all the same. Key/value heads as many as
    the query heads stay so.
    """
    from codegen.verify.tiny_config import resize_overrides

    sizes = {}
    for field, size in BENCH_SIZES.items():
        name = stored_name(config_class, field)
        if name in toy and not _derived(config_class, toy, name):
            sizes[name] = size
    for name, value in toy.items():
        # a per-layer list of a resized field (laguna's num_attention_heads_per_layer, every
        # entry the toy's count) follows it
        field = next((f for f in sizes if name.startswith(f) and name != f), None)
        if field and isinstance(value, list) and value and set(value) == {toy[field]}:
            sizes[name] = [sizes[field]] * len(value)
    layers = stored_name(config_class, "num_hidden_layers")
    for name, value in toy.items():
        # a list with an entry per layer (beam's mlp_layer_types) keeps the toy's first ones
        if (
            name not in sizes
            and name != "layer_types"  # build() repeats the toy's pattern where needed
            and layers in sizes
            and isinstance(value, list)
            and len(value) == toy.get(layers)
        ):
            sizes[name] = (value * sizes[layers])[: sizes[layers]]
    for name, value in toy.items():
        # a count of some of the layers (gemma3n's num_kv_shared_layers: 5 of the toy's 10)
        # that would exceed the shorter stack keeps its share of the layers
        if (
            name not in sizes
            and "layers" in name
            and layers in sizes
            and type(value) is int
            and sizes[layers] < value < toy.get(layers, 0)
        ):
            sizes[name] = max(1, round(value * sizes[layers] / toy[layers]))
    heads, kv_heads = (
        stored_name(config_class, field) for field in ("num_attention_heads", "num_key_value_heads")
    )
    if kv_heads in toy and heads in sizes and toy[kv_heads] == toy.get(heads):
        # a toy with a key/value head per query head (MLA expands its latent to every head)
        # keeps that at the benchmark size
        sizes[kv_heads] = sizes.get(heads, toy[heads])
    for name, value in toy.items():
        # a table keyed by layer index (per_layer_config) keeps the layers that remain, their
        # overrides resized in the ratio of the fields they override (dots3's sliding layers
        # keep their whole q/k head)
        if name not in sizes and layers in sizes and _by_layer(value):
            sized = {**toy, **sizes}
            sizes[name] = {
                k: resize_overrides(v, toy, sized)
                for k, v in value.items()
                if int(k) < sizes[layers]
            }
    return sizes


def _by_layer(value) -> bool:
    return isinstance(value, dict) and bool(value) and all(str(k).isdigit() for k in value)


def _derived(config_class, toy: dict, name: str) -> bool:
    without = {key: value for key, value in toy.items() if key not in (name, "model_type")}
    without.pop("transformers_version", None)
    try:
        return getattr(config_class(**without), name, None) == toy[name]
    except Exception:  # noqa: BLE001 - a class that requires the field does not derive it
        return False


def _disk_state(hf_model):
    """The checkpoint as it lies on disk (per-expert keys), via a save/load round trip."""
    import tempfile
    from pathlib import Path

    from codegen.verify.hf_checkpoint import load_checkpoint, save_checkpoint

    with tempfile.TemporaryDirectory() as directory:
        save_checkpoint(hf_model, Path(directory))
        return load_checkpoint(Path(directory))


def run_house(model, tokens):
    return model(tokens)


def run_hf(model, tokens):
    return model(input_ids=tokens).logits


def count_work(name: str) -> dict:
    """The work counts of one forward of each model (`forward_work`), without timing."""
    import torch

    house_model, hf_model, tokens = build(name, ARGS.seq)
    with torch.no_grad():
        drift, apart = logit_divergence(run_house(house_model, tokens), run_hf(hf_model, tokens))
        return {
            "house": forward_work(run_house, house_model, tokens),
            "hf": forward_work(run_hf, hf_model, tokens),
            "logit_diff": drift,
            "tokens_apart": apart,
        }


def time_pair(name: str) -> tuple[float, float, float]:
    """Fastest CPU seconds of one forward: house, HF, and HF timed a second time (A/A).

    The process's CPU time (every torch thread counted) measures the work a forward does; on
    a shared machine wall time mostly measures who else was running. The three slots run in
    rotating order, round after round, with the garbage collector held off while timing.
    """
    import gc

    import torch

    torch.set_num_threads(ARGS.threads)
    house_model, hf_model, tokens = build(name, ARGS.seq)
    slots = [
        ("house", house_model, run_house),
        ("hf", hf_model, run_hf),
        ("hf_again", hf_model, run_hf),
    ]
    timings = {label: [] for label, _, _ in slots}
    with torch.no_grad():
        # warm-up, and the logits compared at this size (the toy verify runs is smaller)
        drift, apart = logit_divergence(run_house(house_model, tokens), run_hf(hf_model, tokens))
        gc.collect()
        gc.disable()
        try:
            timed_rounds(slots, tokens, timings)
        finally:
            gc.enable()
        work = {
            "house": forward_work(run_house, house_model, tokens),
            "hf": forward_work(run_hf, hf_model, tokens),
            "logit_diff": drift,
            "tokens_apart": apart,
            "rounds": len(timings["house"]),
        }
    return min(timings["house"]), min(timings["hf"]), min(timings["hf_again"]), work


def timed_rounds(slots, tokens, timings: dict[str, list[float]]) -> None:
    """Time each slot --repeat times in rotating order; while the house side's fastest run
    is slower than HF's, add the next stage of --confirm rounds for all three slots.

    Each stage's length is fixed in advance, every slot gets it, and the minimum is taken
    over all rounds so far (pooled, never a fresh draw), so the stages sharpen each side's
    minimum rather than retrying until the house side wins: a package truly slower than HF
    stays over 1.0 after them. On this kind of machine (a VM whose speed drifts), the fastest of
    15 rounds still left 9 of 130 difference-free pairs over 1.0 in one sweep, by up to
    3.6%, with HF against itself (A/A) off by as much; a second stage tells those from a real
    cost. At exact parity the stages do tilt the outcome toward 1.0 or under, which is why
    each row prints its round count and its A/A ratio over the same rounds.
    """

    def run(count: int, start: int) -> None:
        for round_index in range(start, start + count):
            shift = round_index % len(slots)
            for label, model, fn in slots[shift:] + slots[:shift]:
                started = time.process_time()
                fn(model, tokens)
                timings[label].append(time.process_time() - started)

    run(ARGS.repeat, 0)
    for stage in ARGS.confirm:
        if min(timings["house"]) <= min(timings["hf"]):
            break
        run(stage, len(timings["house"]))


# the largest logit difference, as a fraction of HF's largest logit, still counted as HF's
# logits: fp32 summation-order noise at the benchmark size is below 1e-5
LOGIT_BOUND = 1e-4


# a package diverges where more than this share of the tokens is apart: a defect moves a
# range of positions (past the window, every token); a top-k pick (DeepSeek's indexer) whose
# k-th and next scores tie within float noise moves the isolated token that picks it
APART_SHARE = 0.01


def logit_divergence(house_logits, hf_logits) -> tuple[float, float]:
    """(max |house - HF| / max |HF| over the logits of one forward, the share of tokens
    whose logits are further apart than LOGIT_BOUND): at the benchmark size the sequence is
    longer than any toy's (past the sliding window, the chunk, the compression rate), so a
    package that matches HF only on the toy shows here."""
    diff = (house_logits.float() - hf_logits.float()).abs().amax(-1)
    diff = diff / hf_logits.float().abs().max().clamp_min(1e-30)
    return float(diff.max()), float((diff > LOGIT_BOUND).float().mean())


def forward_work(fn, model, tokens) -> dict:
    """What one forward does, counted, not timed: matmul and attention FLOPs (torch's flop
    counter, with the CPU attention kernel counted as attention) and the bytes written by
    every op that makes or fills a tensor (views write none). Counts are the same on every
    run, so where a time ratio sits inside the noise band they tell extra work from noise: a
    package that multiplies and writes no more than HF does no more work than HF."""
    import torch
    from torch.utils._python_dispatch import TorchDispatchMode
    from torch.utils._pytree import tree_leaves
    from torch.utils.flop_counter import FlopCounterMode

    aten = torch.ops.aten
    allocates_only = {aten.empty, aten.empty_like, aten.new_empty, aten.empty_strided}

    class BytesWritten(TorchDispatchMode):
        def __init__(self):
            super().__init__()
            self.bytes = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            if func.overloadpacket in allocates_only:
                return out
            in_place = any(r.alias_info and r.alias_info.is_write for r in func._schema.returns)
            read = {_storage(t) for t in tree_leaves((args, kwargs)) if isinstance(t, torch.Tensor)}
            for tensor in tree_leaves(out):
                # a view (declared, or `_unsafe_view`'s undeclared one) writes nothing
                if isinstance(tensor, torch.Tensor) and (in_place or _storage(tensor) not in read):
                    self.bytes += tensor.numel() * tensor.element_size()
            return out

    # torch's counter has no formula for the CPU flash kernel (counted as attention) nor for
    # grouped matmuls (the experts of a package, and of HF where it dispatches to them)
    missing_formulas = {
        aten._scaled_dot_product_flash_attention_for_cpu: _attention_flop,
        aten._grouped_mm: _grouped_mm_flop,
    }
    counter = FlopCounterMode(display=False, custom_mapping=missing_formulas)
    # The counter's module tracker hooks the autograd graph of every tensor a submodule is
    # handed; a parameter passed as an argument (DBRX's experts get their weight slices) has
    # none under no_grad and fails it. Counting needs no gradients: parameters are frozen
    # while counting and restored after.
    params = model.parameters() if isinstance(model, torch.nn.Module) else ()
    trainable = [param for param in params if param.requires_grad]
    for param in trainable:
        param.requires_grad_(False)
    try:
        with counter as flops, BytesWritten() as written:
            fn(model, tokens)
    finally:
        for param in trainable:
            param.requires_grad_(True)
    return {"flop": flops.get_total_flops(), "bytes_written": written.bytes}


def peak_memory_child(args: argparse.Namespace, name: str, which: str, conn) -> None:
    """Send how far one forward of one model raises this process's resident memory (MiB).

    Runs in a child of the fork server (a process that imported torch and transformers and
    ran nothing), so it starts as a fresh process would, without paying the imports again.
    Linux lets a process reset its RSS high-water mark (/proc/self/clear_refs, "5"), so the
    peak is measured from just before the forward, after freed heap is returned to the OS.

    Both children build both models and keep both alive, so their heaps are the same up to the
    forward, which alone differs. Freeing the unmeasured model would leave its small objects'
    chunks as holes in the heap, and the forward's small allocations land in them, touching
    pages the allocator then keeps: measured on gemma4_text, freeing the HF model left 12 MiB
    of free heap chunks behind the package's forward, freeing the package 4-7 MiB behind HF's,
    and the same HF forward peaked 4 MiB higher with an extra HF model freed before it. The
    peak followed which model had been freed, not the forward measured.
    """
    import ctypes
    import gc

    import torch
    from transformers.utils import logging

    global ARGS
    ARGS = args
    logging.set_verbosity_error()
    logging.disable_progress_bar()
    try:
        house_model, hf_model, tokens = build(name, ARGS.seq)
        model, fn = (house_model, run_house) if which == "house" else (hf_model, run_hf)
        gc.collect()
        ctypes.CDLL("libc.so.6").malloc_trim(0)
        with open("/proc/self/clear_refs", "w") as clear:
            clear.write("5")
        before = _status_kib("VmRSS")
        with torch.no_grad():
            fn(model, tokens)
        conn.send(("peak_mib", (_status_kib("VmHWM") - before) / 1024))
    except Exception as err:  # noqa: BLE001 - the parent reports it as the row's error
        conn.send(("error", f"{type(err).__name__}: {err}"))


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


_FORK_SERVER = []


def _fork_server():
    """The multiprocessing context whose fork server has torch and transformers imported.

    glibc's mmap threshold grows with what a process has freed, so freed tensors may stay in
    the heap and count as resident; the server is started with it pinned (its children, both
    models alike, inherit it), so the RSS peak tracks the tensors alive at once, not the
    allocator's history.
    """
    if not _FORK_SERVER:
        import multiprocessing
        from multiprocessing import forkserver

        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload(["torch", "transformers", "codegen.verify.hf_checkpoint"])
        saved = {key: os.environ.get(key) for key in TIMING_MALLOC}
        os.environ["MALLOC_MMAP_THRESHOLD_"] = str(128 * 1024)
        os.environ.pop("MALLOC_TRIM_THRESHOLD_", None)  # the heap returned to the system
        try:
            forkserver.ensure_running()
        finally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value
        _FORK_SERVER.append(context)
    return _FORK_SERVER[0]


def peak_memory(name: str, which: str) -> float:
    """Peak MiB of one forward of one model, in its own child so two peaks cannot mask."""
    context = _fork_server()
    receiver, sender = context.Pipe(duplex=False)
    child = context.Process(target=peak_memory_child, args=(ARGS, name, which, sender))
    child.start()
    sender.close()
    try:
        kind, value = receiver.recv()
    except EOFError:
        kind, value = "error", "the peak-memory child died"
    finally:
        child.join()
    if kind == "error":
        raise RuntimeError(f"peak-memory child: {value}")
    return value


def main() -> int:
    names = ARGS.models or REFERENCES
    if ARGS.sweep is not None:
        names = verified_names(ARGS.sweep)
        if names is None:
            return 2
    from transformers.utils import logging

    logging.set_verbosity_error()
    logging.disable_progress_bar()
    if ARGS.sweep is not None:
        with tempfile.TemporaryDirectory() as directory:
            # --models DIR keeps the scaffolded packages there (to re-run a row alone)
            ARGS.models_dir = ARGS.models_dir or Path(directory) / "models"
            written, missed = scaffold(names, ARGS.models_dir)
            rows, not_measured = measure_in_jobs(written)
    else:
        rows, missed = measure_in_jobs(names)
        not_measured = {}
    missed.update(not_measured)
    report(rows, missed, len(names))
    return 1 if missed else 0


def verified_names(coverage_json: Path) -> list[str] | None:
    """Every architecture coverage.json marks verified, or None (said in one line) if the
    file is not a coverage sweep's."""
    try:
        rows = json.loads(coverage_json.read_text())
        return [row["model_type"] for row in rows if (row.get("verify") or {}).get("passed")]
    except (OSError, ValueError, TypeError, KeyError, AttributeError) as err:
        print(f"bench_forward: {coverage_json}: not a coverage.json ({err})", file=sys.stderr)
        return None


def scaffold(names: list[str], models_dir: Path) -> tuple[list[str], dict[str, str]]:
    """Scaffold each architecture into models_dir, --jobs at a time (the writers lock the
    folder's registry): (names written, {name: why not})."""

    def run(name: str) -> subprocess.CompletedProcess:
        command = [sys.executable, "-m", "codegen.cli", "scaffold", name, "--force"]
        return subprocess.run(command + ["--out", str(models_dir)], capture_output=True, text=True)

    written, missed = [], {}
    with ThreadPoolExecutor(max_workers=ARGS.jobs) as pool:
        for name, done in zip(names, pool.map(run, names), strict=True):
            if done.returncode == 0:
                written.append(name)
                continue
            lines = done.stderr.strip().splitlines()
            missed[name] = "scaffold failed: " + (lines[-1] if lines else f"exit {done.returncode}")
            print(f"{name}: not measured: {missed[name]}"[:300], file=sys.stderr, flush=True)
    return written, missed


def measure_in_jobs(names: list[str]) -> tuple[list[dict], dict[str, str]]:
    """`measure` in this process, or with --jobs N in N children of this script, each given
    every Nth model and reporting its rows as JSON (their row lines go to stderr as they come)."""
    if ARGS.jobs <= 1 or len(names) <= 1:
        return measure(names)
    options = ["--seq", str(ARGS.seq), "--batch", str(ARGS.batch), "--repeat", str(ARGS.repeat)]
    options += ["--confirm", *map(str, ARGS.confirm), "--threads", str(ARGS.threads)]
    options += ["--work-only"] * ARGS.work_only
    options += ["--models", str(ARGS.models_dir)] if ARGS.models_dir else []
    children = [
        subprocess.Popen(
            [sys.executable, __file__, *names[job :: ARGS.jobs], *options, "--json", "--child"],
            stdout=subprocess.PIPE,
            text=True,
        )
        for job in range(min(ARGS.jobs, len(names)))
    ]
    found: dict[str, dict] = {}
    missed: dict[str, str] = {}
    for child in children:
        output, _ = child.communicate()
        try:
            result = json.loads(output)
        except ValueError:
            result = {"rows": [], "not_measured": {}}
        found.update((row["model"], row) for row in result["rows"])
        missed.update(result["not_measured"])
    for name in names:  # a child that died reports nothing: each of its models says so
        if name not in found and name not in missed:
            missed[name] = "its benchmark process ended without a result"
    rows = [found[name] for name in names if name in found]
    return rows, {name: missed[name] for name in names if name in missed}


def measure(names: list[str]) -> tuple[list[dict], dict[str, str]]:
    """One row per model measured, and {name: why not} for each that could not be."""
    rows, missed = [], {}
    for name in names:
        if ARGS.work_only:
            try:
                work = count_work(name)
            except Exception as err:  # noqa: BLE001 - one model's failure is a row, not a crash
                missed[name] = f"{type(err).__name__}: {err}"[:300]
                print(f"{name}: not counted: {missed[name]}", file=sys.stderr, flush=True)
                continue
            rows.append({"model": name, **_work_ratios(work)})
            if not ARGS.json or ARGS.child:
                print(
                    f"{name:<12} {_work_text(rows[-1])}",
                    file=sys.stderr if ARGS.child else sys.stdout,
                    flush=True,
                )
            continue
        try:
            house_s, hf_s, hf_again_s, work = time_pair(name)
            house_mib, hf_mib = peak_memory(name, "house"), peak_memory(name, "hf")
        except Exception as err:  # noqa: BLE001 - one model's failure is a row, not a crash
            missed[name] = f"{type(err).__name__}: {err}"[:300]
            print(f"{name}: not measured: {missed[name]}", file=sys.stderr, flush=True)
            continue
        rows.append(
            {
                "model": name,
                "house_ms": house_s * 1e3,
                "hf_ms": hf_s * 1e3,
                "time_ratio": house_s / hf_s,
                "aa_time_ratio": hf_again_s / hf_s,
                "rounds": work.pop("rounds", ARGS.repeat),
                "house_peak_mib": house_mib,
                "hf_peak_mib": hf_mib,
                "memory_ratio": house_mib / hf_mib if hf_mib > 0 else float("nan"),
                **_work_ratios(work),
            }
        )
        row = rows[-1]
        if not ARGS.json or ARGS.child:
            print(
                f"{name:<12} cpu {row['house_ms']:7.1f} ms vs HF {row['hf_ms']:7.1f} ms "
                f"ratio {row['time_ratio']:.3f} (A/A {row['aa_time_ratio']:.3f}, "
                f"{row['rounds']} rounds)   "
                f"peak {house_mib:6.1f} MiB vs HF {hf_mib:6.1f} MiB "
                f"ratio {row['memory_ratio']:.3f}   {_work_text(row)}",
                file=sys.stderr if ARGS.child else sys.stdout,
                flush=True,
            )
    return rows, missed


def _attention_flop(query_shape, key_shape, value_shape, *_, out_shape=None, **__) -> int:
    from torch.utils.flop_counter import sdpa_flop_count

    return sdpa_flop_count(query_shape, key_shape, value_shape)


def _grouped_mm_flop(a, b, offs=None, *_, out_val=None, **kwargs) -> int:
    """Each row of `a` meets one group's (K, N) matrix: 2 * rows * K * N in all. The kernel
    stops at the last offset (rows past it are skipped, left unset: a package's identity
    experts sort there), so with offsets only the rows (or, both 2-D, the shared K) up to
    `offs[-1]` count. Both 2-D (groups split the shared K, the output stacks one (M, N) block
    per group) is the one layout whose output overcounts K, so it is read from the operands."""
    offs = kwargs.get("offs", offs)
    used = None if offs is None else int(offs[-1])
    if a.dim() == 2 and b.dim() == 2:
        return 2 * a.shape[0] * (a.shape[1] if used is None else used) * b.shape[1]
    if a.dim() == 2 and used is not None:
        return 2 * used * a.shape[1] * b.shape[-1]
    return 2 * math.prod(out_val.shape) * a.shape[-1]


# the formula reads the offsets' values, not only shapes
_grouped_mm_flop._get_raw = True


def _storage(tensor) -> int:
    return tensor.untyped_storage().data_ptr()


def _work_ratios(work: dict) -> dict:
    house, hf = work["house"], work["hf"]
    return {
        "flop_ratio": house["flop"] / hf["flop"] if hf["flop"] else float("nan"),
        "written_ratio": house["bytes_written"] / hf["bytes_written"],
        "logit_diff": work.get("logit_diff", float("nan")),
        "tokens_apart": work.get("tokens_apart", float("nan")),
    }


def _work_text(row: dict) -> str:
    text = f"work: flop {row['flop_ratio']:.3f} written {row['written_ratio']:.3f}"
    text += f" logits {row['logit_diff']:.1e}"
    if row["tokens_apart"] > 0:
        text += f" ({row['tokens_apart']:.2%} of tokens apart)"
    return text


def _diverges(row: dict) -> bool:
    return row["tokens_apart"] > APART_SHARE  # NaN (not compared) is not a divergence


def noise_band(rows: list[dict]) -> float:
    """How far from 1.0 a time ratio strays with no real difference: the 90th percentile of
    |A/A - 1| over the run. House/HF and HF-again/HF share HF's time as denominator, so with
    no real difference the two ratios spread alike; a time ratio past the band is one a
    difference-free model reaches about one run in twenty (only the upper side counts)."""
    offsets = sorted(abs(row["aa_time_ratio"] - 1.0) for row in rows)
    if len(offsets) < 2:
        return offsets[0] if offsets else 0.0
    return statistics.quantiles(offsets, n=10, method="inclusive")[-1]


def report(rows: list[dict], missed: dict[str, str], asked: int) -> None:
    if ARGS.json:
        print(json.dumps({"rows": rows, "not_measured": missed}, indent=2))
        return
    no_more_work = [r for r in rows if r["flop_ratio"] <= 1.0 and r["written_ratio"] <= 1.0]
    work_line = (
        f"{len(no_more_work)}/{len(rows)} packages do no more work than HF "
        "(matmul FLOPs and bytes written, counted: no noise)"
    )
    diverging = [r for r in rows if _diverges(r)]
    isolated = [r for r in rows if 0 < r["tokens_apart"] <= APART_SHARE]
    parity_line = (
        f"{len(rows) - len(diverging)}/{len(rows)} packages give HF's logits at the benchmark "
        f"size (max |diff| <= {LOGIT_BOUND:g} of max |logit| on all but at most "
        f"{APART_SHARE:.0%} of tokens; {len(isolated)} with isolated tokens apart: "
        + (", ".join(r["model"] for r in isolated) or "none")
        + ")"
    )
    if ARGS.work_only:
        print(f"{len(rows)}/{asked} packages counted")
        for name, why in missed.items():
            print(f"  not counted: {name}: {why}")
        print(work_line)
        print(parity_line)
        for row in rows:
            if row not in no_more_work or row in diverging or row in isolated:
                print(f"  over: {row['model']} {_work_text(row)}")
        return
    band = noise_band(rows)
    within = [r for r in rows if r["time_ratio"] <= 1.0 and r["memory_ratio"] <= 1.0]
    indistinct = [r for r in rows if r["time_ratio"] <= 1.0 + band and r["memory_ratio"] <= 1.0]
    if rows:
        offsets = [abs(row["aa_time_ratio"] - 1.0) for row in rows]
        print(
            "noise (HF timed against itself, A/A): |A/A - 1| median "
            f"{statistics.median(offsets):.3f}, max {max(offsets):.3f}; "
            f"band (90th percentile) {band:.3f}"
        )
    print(f"{len(rows)}/{asked} packages measured")
    for name, why in missed.items():
        print(f"  not measured: {name}: {why}")
    print(f"{len(within)}/{len(rows)} packages within 1.0 of HF on both time and peak memory")
    print(
        f"{len(indistinct)}/{len(rows)} packages within 1.0 on peak memory and within "
        f"1.0 + noise band ({1.0 + band:.3f}) on time"
    )
    print(work_line)
    print(parity_line)
    for row in rows:
        if row not in within or row not in no_more_work or row in diverging or row in isolated:
            verdict = "within noise" if row in indistinct else "beyond noise"
            print(
                f"  over: {row['model']} time {row['time_ratio']:.3f}"
                f" (A/A {row['aa_time_ratio']:.3f}) memory {row['memory_ratio']:.3f}"
                f" [{verdict}]; {_work_text(row)}"
            )


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="*")
    parser.add_argument("--models", dest="models_dir", type=Path, help="a models package")
    parser.add_argument("--sweep", type=Path, help="coverage.json of a coverage sweep")
    parser.add_argument("--seq", type=int, default=512)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument(
        "--confirm",
        type=int,
        nargs="*",
        default=[10, 15],
        help="stages of rounds added, for all three slots, while the house side's fastest run "
        "so far is slower than HF's (none: --confirm with no value)",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads while timing (default 1: a thread that waits for a descheduled "
        "sibling spins and bills CPU time, so on a shared machine more threads time the "
        "load, not the work)",
    )
    parser.add_argument(
        "--work-only",
        action="store_true",
        help="count each forward's matmul FLOPs and bytes written (house vs HF) without "
        "timing or memory: deterministic and fast",
    )
    parser.add_argument(
        "--jobs",
        type=int,
        default=1,
        help="processes measuring at once, each given every Nth model (default 1)",
    )
    parser.add_argument("--json", action="store_true")
    # a --jobs child: rows as JSON on stdout, each row's line on stderr as it is measured
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    return parser.parse_args()


# glibc malloc settings timing runs under (`timing_allocator`): freed memory is kept for reuse
TIMING_MALLOC = {"MALLOC_MMAP_THRESHOLD_": str(32 * 2**20), "MALLOC_TRIM_THRESHOLD_": str(2**40)}


def timing_allocator() -> None:
    """Run this script again (once) with glibc's heap kept for reuse while timing.

    glibc moves its mmap threshold with what the process has freed before, so whether a
    tensor of a few MiB comes from the heap or from fresh pages (a page fault per 4 KiB,
    billed as CPU time) depends on the allocations of whatever ran earlier: measured on MPT,
    the same forward took 80,000 page faults after one order of runs and 50,000 after
    another, a 3-5% time difference that followed the order, not the model. With the
    threshold fixed and the heap not trimmed both models reuse freed memory, and only the
    logits (larger than any threshold) fault in, equally on both sides. Peak memory is
    measured in fork-server children with their own setting (`_fork_server`).
    """
    if all(os.environ.get(key) == value for key, value in TIMING_MALLOC.items()):
        return
    os.execve(sys.executable, [sys.executable, *sys.argv], {**os.environ, **TIMING_MALLOC})


if __name__ == "__main__":
    timing_allocator()
    ARGS = parse_args()
    sys.exit(main())
