#!/usr/bin/env python
"""Static analysis cost against libcst parse cost, over the installed modeling files.

    python scripts/bench_analyze.py              # every 5th modeling file
    python scripts/bench_analyze.py --every 1    # the whole corpus
    python scripts/bench_analyze.py FILE...      # these files

For each file, in one process: the time of `libcst.parse_module` on its text, then the time
of `analyze(file)` from cold caches (it parses the file again, plus its configuration and any
model file it imports). Prints the totals and their ratio (the target is at most 2x), and the
files with the highest ratios. Static only: never imports torch or transformers.

Both timings start from the same state: the analyzer's caches emptied and a full garbage
collection done (untimed) just before each. Otherwise the parse runs while the previous
analysis's trees are still alive, and the collector's passes over them are charged to the
parse: on a sample that made the baseline 1.7x slower and the ratio look far better than
what a user analysing one file gets.
"""

from __future__ import annotations

import argparse
import gc
import glob
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def corpus(every: int) -> list[str]:
    from codegen.analyze.source import transformers_dir

    files = sorted(glob.glob(os.path.join(transformers_dir(), "models", "*", "modeling_*.py")))
    files = [
        f for f in files if not os.path.basename(f).startswith(("modeling_tf_", "modeling_flax_"))
    ]
    return files[::every]


def clean() -> None:
    """The state a fresh `codegen analyze` starts from: no parsed tree kept, no garbage."""
    from codegen.analyze import conversion, locate, source, switches

    source._PARSED.clear()
    source._literal_eval.cache_clear()
    switches._ASSIGNS.clear()
    conversion._mapping.cache_clear()
    locate.auto_mappings.cache_clear()
    gc.collect()


def measure(path: str) -> tuple[float, float]:
    """(parse seconds, analyze seconds) of one file, each from a clean state."""
    import libcst as cst

    from codegen.analyze.analysis import analyze
    from codegen.errors import CodegenError

    with open(path, encoding="utf-8") as fh:
        text = fh.read()
    clean()
    start = time.process_time()
    cst.parse_module(text)
    parse = time.process_time() - start
    clean()
    start = time.process_time()
    try:
        analyze(path)
    except CodegenError:
        pass  # a helper file with no model: its cost still counts
    return parse, time.process_time() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="*")
    parser.add_argument("--every", type=int, default=5, help="take every Nth corpus file")
    parser.add_argument("--profile", metavar="FILE", help="write cProfile stats of the analyses")
    args = parser.parse_args(argv)
    files = args.files or corpus(args.every)
    measure(files[0])  # warm imports so the first file is not charged for them
    profiler = None
    if args.profile:
        import cProfile

        profiler = cProfile.Profile()
        profiler.enable()
    rows = [(path, *measure(path)) for path in files]
    if profiler is not None:
        profiler.disable()
        profiler.dump_stats(args.profile)
    parse = sum(r[1] for r in rows)
    total = sum(r[2] for r in rows)
    print(f"files:    {len(rows)}")
    print(f"parse:    {parse:.1f}s CPU (libcst.parse_module of each modeling file)")
    print(f"analyze:  {total:.1f}s CPU (analyze(file), cold caches, parse included)")
    print(f"ratio:    {total / parse:.2f}x parse time (target: at most 2x)")
    worst = sorted(rows, key=lambda r: -r[2] / max(r[1], 1e-9))[:5]
    print("highest:  " + ", ".join(f"{os.path.basename(p)} {a / s:.1f}x" for p, s, a in worst))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
