"""`python -m codegen.verify.crosscheck.run [MODEL_TYPE...] [--renamed]`: per-field agreement
of the static analysis with the built tiny models, over the sweep's decoder architectures.

Each architecture is checked in a worker process (its own imports, its own registrations);
a model the probe cannot build is listed, not counted. Prints one line per disagreement,
the agreement per field, and the overall figure.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import sys
import tempfile
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor, TimeoutError
from pathlib import Path

TIMEOUT = 120  # seconds per architecture


def check_one(model_type: str, renamed: bool = False) -> dict:
    """{"model_type", "fields": {field: [agrees, detail]}, "error"}; `category` from the
    static analysis (only decoders are observed)."""
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    row: dict = {"model_type": model_type, "renamed": renamed, "fields": {}, "error": None}
    try:
        with tempfile.TemporaryDirectory() as directory:
            features, model, config = _build(model_type, Path(directory), renamed)
            row["category"] = features.category
            if model is None:
                return row
            from codegen.verify.crosscheck.compare import compare, expected
            from codegen.verify.crosscheck.observe import observe

            keys = _checkpoint_keys(model, Path(directory) / "checkpoint")
            results = compare(expected(features, config), observe(model, config, keys))
            row["fields"] = {name: list(value) for name, value in results.items()}
    except Exception as err:  # noqa: BLE001 - one architecture's failure is a row
        row["error"] = f"{type(err).__name__}: {' '.join(str(err).split())}"[:200]
    return row


def _build(model_type: str, directory: Path, renamed: bool):
    import torch

    from codegen.scaffold.target import load_target

    torch.set_num_threads(1)
    if renamed:
        from codegen.verify.remote import _building, load_remote, read_folder_config
        from codegen.verify.remote_fixture import neutral_name, remote_folder
        from codegen.verify.tiny_config import _RECOMPUTED

        folder = remote_folder(model_type, directory / "folders", name=neutral_name(model_type))
        features = load_target(str(folder)).features
        if features.category != "decoder":
            return features, None, None
        remote = load_remote(folder, trust_remote_code=True)
        raw = read_folder_config(folder)
        with _building(folder):
            config = remote.config_class(**{k: v for k, v in raw.items() if k not in _RECOMPUTED})
    else:
        from codegen.verify.tiny_config import tiny_config

        features = load_target(model_type).features
        if features.category != "decoder":
            return features, None, None
        config = tiny_config(model_type)
    from transformers import AutoModelForCausalLM
    from transformers.utils import logging

    logging.set_verbosity_error()
    logging.disable_progress_bar()
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32).eval()
    return features, model, config


def _checkpoint_keys(model, directory: Path) -> set[str] | None:
    """The keys `save_pretrained` writes (after transformers' reverse conversion)."""
    from safetensors import safe_open

    try:
        model.save_pretrained(directory)
    except Exception:  # noqa: BLE001 - a model that cannot be saved: no disk observation
        return None
    keys: set[str] = set()
    for path in directory.glob("*.safetensors"):
        with safe_open(str(path), "pt") as handle:
            keys.update(handle.keys())
    return keys


def crosscheck(
    model_types: list[str], renamed: bool = False, jobs: int = 2, progress: bool = False
) -> list[dict]:
    rows = []
    # forked workers: the parent has not imported torch, each worker imports it once
    context = multiprocessing.get_context("fork")
    with ProcessPoolExecutor(max_workers=jobs, mp_context=context) as pool:
        futures = {mt: pool.submit(check_one, mt, renamed) for mt in model_types}
        for model_type, future in futures.items():
            try:
                rows.append(future.result(timeout=TIMEOUT))
                if progress:
                    print(f"cross-check: {model_type}", file=sys.stderr, flush=True)
            except TimeoutError:
                rows.append({"model_type": model_type, "fields": {}, "error": "timed out"})
            except Exception as err:  # noqa: BLE001 - a worker that died
                rows.append({"model_type": model_type, "fields": {}, "error": repr(err)[:200]})
    return rows


def agreement(rows: list[dict]) -> tuple[dict[str, tuple[int, int]], int, int]:
    """field -> (agreeing, observed), and the totals."""
    agree, seen = Counter(), Counter()
    for row in rows:
        for name, (ok, _) in row["fields"].items():
            seen[name] += 1
            agree[name] += bool(ok)
    per_field = {name: (agree[name], seen[name]) for name in sorted(seen)}
    return per_field, sum(agree.values()), sum(seen.values())


def report(rows: list[dict], label: str, verbose: bool = True) -> list[str]:
    lines = []
    if verbose:
        for row in rows:
            if row.get("error"):
                lines.append(f"  {row['model_type']}: not observed ({row['error']})")
            for name, (ok, detail) in row["fields"].items():
                if not ok:
                    lines.append(f"  {row['model_type']}: {name}: {detail}")
    per_field, agree, seen = agreement(rows)
    for name, (a, n) in per_field.items():
        lines.append(f"  {name:<36} {a}/{n}")
    observed = sum(1 for row in rows if row["fields"])
    pct = 100 * agree / seen if seen else 0.0
    lines.append(
        f"cross-check ({label}): {agree}/{seen} observable fields agree ({pct:.1f}%) "
        f"over {observed} decoder architectures"
    )
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model_types", nargs="*", help="default: the sweep's causal LMs")
    parser.add_argument("--renamed", action="store_true", help="also renamed remote-code copies")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--progress", action="store_true", help="a line per architecture")
    args = parser.parse_args(argv)
    types = args.model_types or _causal_lm_types()
    started = time.perf_counter()
    rows = [
        r
        for r in crosscheck(types, False, args.jobs, args.progress)
        if r["fields"] or r.get("error")
    ]
    print("\n".join(report(rows, "own names")))
    if args.renamed:
        decoders = [r["model_type"] for r in rows if r["fields"]]
        renamed = crosscheck(decoders, True, args.jobs, args.progress)
        print("\n".join(report(renamed, "renamed copies")))
    print(f"cross-check took {time.perf_counter() - started:.0f}s")
    return 0


def _causal_lm_types() -> list[str]:
    import ast

    from codegen.analyze.locate import transformers_dir

    path = Path(transformers_dir()) / "models" / "auto" / "modeling_auto.py"
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Assign) and any(
            getattr(t, "id", None) == "MODEL_FOR_CAUSAL_LM_MAPPING_NAMES" for t in node.targets
        ):
            return sorted(key for key, _ in ast.literal_eval(node.value.args[0]))
    raise RuntimeError("MODEL_FOR_CAUSAL_LM_MAPPING_NAMES not found")


if __name__ == "__main__":
    raise SystemExit(main())
