#!/usr/bin/env python
"""Analyse every `modeling_*.py` of the installed transformers; report counts and timing.

    python scripts/analyze_sweep.py                 # summary
    python scripts/analyze_sweep.py --json out.json # plus one record per file
    python scripts/analyze_sweep.py --jobs 1        # serial (default: all CPUs)

Exit status 1 when any file crashes the analysis (an exception other than a one-line
CodegenError for a file that is not a model, which is reported and counted separately).
Runs in CI; static only, so it never imports torch or transformers.
"""

from __future__ import annotations

import argparse
import collections
import glob
import json
import os
import sys
import time
import traceback
from concurrent.futures import ProcessPoolExecutor

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _one(path: str) -> dict:
    from codegen.analyze.analysis import analyze
    from codegen.errors import CodegenError

    start = time.perf_counter()
    cpu = time.process_time()
    record: dict = {"file": path}
    try:
        features = analyze(path)
        record.update(
            status="ok",
            category=features.category,
            model_type=features.model_type,
            closest=features.reference.closest,
            unknown=sum(1 for k, v in _flatten(features.to_dict()) if v == "unknown"),
        )
    except CodegenError as err:
        record.update(status="error", error=str(err))
    except Exception as err:  # noqa: BLE001 - a crash is what the sweep exists to find
        record.update(
            status="crash",
            error=f"{type(err).__name__}: {err}",
            where=traceback.format_exc().strip().splitlines()[-3:],
        )
    record["seconds"] = round(time.perf_counter() - start, 4)
    record["cpu"] = round(time.process_time() - cpu, 4)
    return record


def _flatten(value, prefix=""):
    if isinstance(value, dict):
        for k, v in value.items():
            if k in ("evidence", "state_dict", "source", "notes", "unsupported"):
                continue
            yield from _flatten(v, f"{prefix}{k}.")
    else:
        yield prefix.rstrip("."), value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", metavar="FILE", help="write one record per file to FILE")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--limit", type=int, default=0, help="only the first N files")
    args = parser.parse_args(argv)

    from codegen.analyze.source import transformers_dir

    tdir = transformers_dir()
    if tdir is None:
        print("transformers is not installed", file=sys.stderr)
        return 2
    files = sorted(glob.glob(os.path.join(tdir, "models", "*", "modeling_*.py")))
    files = [
        f for f in files if not os.path.basename(f).startswith(("modeling_tf_", "modeling_flax_"))
    ]
    if args.limit:
        files = files[: args.limit]
    start = time.perf_counter()
    if args.jobs > 1:
        with ProcessPoolExecutor(max_workers=args.jobs) as pool:
            records = list(pool.map(_one, files, chunksize=4))
    else:
        records = [_one(f) for f in files]
    wall = time.perf_counter() - start

    status = collections.Counter(r["status"] for r in records)
    categories = collections.Counter(r.get("category") for r in records if r["status"] == "ok")
    closest = collections.Counter(r.get("closest") for r in records if r["status"] == "ok")
    cpu = sorted(r["cpu"] for r in records)
    print(f"modeling files: {len(files)}")
    print(f"analysed:       {status['ok']}")
    print(f"not a model:    {status['error']}  (one-line CodegenError)")
    print(f"crashed:        {status['crash']}")
    print("categories:     " + ", ".join(f"{k}={v}" for k, v in sorted(categories.items())))
    print("closest ref:    " + ", ".join(f"{k}={v}" for k, v in sorted(closest.items())))
    if cpu:
        mean = sum(cpu) / len(cpu)
        print(
            f"time per file:  {mean:.3f}s mean CPU, {cpu[len(cpu) // 2]:.3f}s median, "
            f"{cpu[-1]:.3f}s max"
        )
        print(f"wall:           {wall:.1f}s with {args.jobs} job(s)")
    slowest = sorted(records, key=lambda r: -r["cpu"])[:5]
    names = ", ".join(f"{os.path.basename(r['file'])} {r['cpu']:.2f}s" for r in slowest)
    print(f"slowest:        {names}")
    for r in records:
        if r["status"] != "ok":
            print(f"  {r['status']}: {os.path.relpath(r['file'], tdir)}: {r['error']}")
            for line in r.get("where", []):
                print(f"      {line}")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump(records, fh, indent=1)
    return 1 if status["crash"] else 0


if __name__ == "__main__":
    sys.exit(main())
