"""Coverage sweep: analyze, scaffold and verify every causal LM of the installed transformers.

For each model_type with a causal-LM class: analyze it under its toy config (static), plan
from the closest reference, and when every difference has a rule, scaffold it into a temp
models package (with ruff's folder removed from PATH), check it (`ruff check`,
`ruff format --check`, `codegen lint --dead-code`: row["checks"]) and verify it against
transformers (fp32 and bf16), then move its value fields one at a time (`--no-fields` skips
them: `codegen.verify.value_fields`, fp32), both in one worker process per model
(`codegen.verify.package_worker`): a model counts as verified only if every field
the analysis lists passes or is refused by the package in one line. Decoder-only models are
the scope; hybrids, encoders and multimodal models are listed with their category and skipped.

Writes coverage.json (a list of rows: model_type, category, reference, rules, unsupported,
verify = {passed, cosine, max_abs_diff, error, lifecycle, packed}, fields = [{field, was,
value, status, why, seconds}], parallel = {setting: pass or "fail: why"} for each verified
package's shard plan (`verify --parallel`, default tp=2), seconds) and coverage.md, and prints
one summary line:

    python scripts/coverage.py [--out DIR] [--only TYPE ...] [--no-verify] [--no-fields]
                               [--no-crosscheck] [--parallel SETTING ...] [--jobs N]
                               [--budget SECONDS]

With `--budget`, no model starts once the budget is spent (the models already running finish)
and the cross-check runs only if the time left looks enough for it: the rows not swept say so,
and the summary line says how many model types were swept, so a slow machine gives a partial
report instead of overrunning CI's time limit.

After verify it prints the dynamic cross-check of the analysis per field (own names and
renamed copies) and how many passing architectures pass as renamed remote-code folders
(`codegen.verify.crosscheck.sweep`; crosscheck.json).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from codegen.quality.style import path_without_ruff
from codegen.quality.style import summary as checks_summary


def causal_lm_types() -> list[str]:
    """Model types with a causal-LM class, read statically from transformers' auto mapping
    (the sweep process itself never imports torch; each verify runs in its own process)."""
    import ast

    from codegen.analyze.locate import transformers_dir

    path = Path(transformers_dir()) / "models" / "auto" / "modeling_auto.py"
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "MODEL_FOR_CAUSAL_LM_MAPPING_NAMES"
            for t in node.targets
        ):
            return sorted(key for key, _ in ast.literal_eval(node.value.args[0]))
    raise RuntimeError("MODEL_FOR_CAUSAL_LM_MAPPING_NAMES not found")


NOT_SWEPT = "not swept (time budget)"  # the category of a model the budget left out


def sweep_one(
    model_type: str,
    models_dir: Path,
    verify: bool,
    parallel=(),
    deadline: float | None = None,
    fields: bool = True,
) -> dict:
    from codegen.quality.style import package_checks
    from codegen.scaffold.pipeline import scaffold_into
    from codegen.scaffold.plan import make_plan
    from codegen.scaffold.target import load_target

    started = time.perf_counter()
    row = {
        "model_type": model_type,
        "category": None,
        "reference": None,
        "rules": [],
        "unsupported": [],
        "verify": None,
        "seconds": 0.0,
    }
    if deadline is not None and time.time() >= deadline:
        row["category"] = NOT_SWEPT
        return row
    try:
        target = load_target(model_type)
        features = target.features
        row["category"] = features.category
        if features.category != "decoder":
            return _done(row, started)
        plan = make_plan(target)
        row["reference"] = plan.reference
        row["rules"] = [step.rule for step in plan.steps if step.rule]
        row["unsupported"] = [str(gap) for gap in plan.gaps]
        if not plan.complete:
            return _done(row, started)
        scaffold_into(
            models_dir,
            plan.reference,
            plan.name,
            list(plan.model_types),
            list(plan.steps),
            features=features,
            target=target,
        )
        # ruff, ruff format, dead code, prose
        row["checks"] = package_checks(
            models_dir / plan.name, features.source.configuration or "", plan.model_types
        )
        if verify:
            # one worker: verify, then the value-field moves if it verified
            known = {model_type: sorted(target.config_fields)}
            row["verify"], moved = verify_isolated(models_dir, plan.name, fields, known)
            if moved is not None:
                row["fields"] = moved
                _fail_on_fields(row["verify"], row["fields"])
            if parallel:
                row["parallel"] = parallel_isolated(models_dir, plan.name, parallel)
    except Exception as err:  # one model's failure is a row of the report, not a crash
        row["verify"] = {"passed": False, "error": f"{type(err).__name__}: {err}"[:300]}
    return _done(row, started)


MEMORY_LIMIT = 6 << 30  # bytes of address space per verify: a runaway toy config fails alone
TIMEOUT = 300  # seconds per verify


def verify_isolated(
    models_dir: Path, name: str, fields: bool = True, config_fields: dict | None = None
) -> tuple[dict, list[dict] | None]:
    """Verify (fp32 and bf16) and, when the package verified and `fields`, its value-field
    moves, in ONE subprocess (`codegen.verify.package_worker`) with memory and time limits
    (`TIMEOUT` per stage): one model cannot take the sweep down, nothing leaks from one model
    to the next, and torch and transformers are imported once per model, not once per stage.
    `config_fields` ({model_type: fields}) spares the worker the static analysis this
    process already ran. Returns verify's verdict and the field rows (None: not moved)."""
    command = [sys.executable, "-m", "codegen.verify.package_worker", name]
    command += ["--models", str(models_dir)]
    if not fields:
        command.append("--no-fields")
    elif config_fields:
        command += ["--config-fields", json.dumps(config_fields)]
    stages, why = _run_stages(command)
    if "verify" not in stages:
        return {"passed": False, "error": why.replace(STAGE, "verify")}, None
    verdict = _verdict(stages["verify"]["results"])
    if not (fields and verdict.get("passed")):
        return verdict, None
    if "fields" in stages:
        return verdict, stages["fields"]["rows"]
    return verdict, [
        {"field": "-", "status": "error", "why": why.replace(STAGE, "the value-field moves")}
    ]


STAGE = "{stage}"  # where a timeout's reason names the stage that overran


def _run_stages(command: list[str]) -> tuple[dict[str, dict], str]:
    """Run a worker that prints one JSON line per stage as it ends: {stage name: line}, and
    why a stage may be missing (`STAGE` stands for its name). Each stage gets `TIMEOUT`
    seconds from the end of the one before; an overrun kills the worker."""
    import queue
    import threading

    stages: dict[str, dict] = {}
    other: list[str] = []  # stdout that is no stage line: the reason when stderr has none
    lines: queue.Queue = queue.Queue()
    with tempfile.TemporaryFile("w+") as stderr:
        process = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=stderr, text=True, preexec_fn=_limit_memory
        )

        def read() -> None:
            for line in process.stdout:
                lines.put(line)
            lines.put(None)

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        try:
            while (line := lines.get(timeout=TIMEOUT)) is not None:
                try:
                    stage = json.loads(line)
                except json.JSONDecodeError:
                    stage = None
                if isinstance(stage, dict) and "stage" in stage:
                    stages[stage["stage"]] = stage
                else:
                    other.append(line)
            process.wait(timeout=TIMEOUT)
        except (queue.Empty, subprocess.TimeoutExpired):
            return stages, f"{STAGE} took over {TIMEOUT} s"
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
            reader.join(timeout=10)
            process.stdout.close()
        if process.returncode == 0:
            return stages, f"{STAGE} gave no result"
        stderr.seek(0)
        said = (stderr.read() or "".join(other)).strip().splitlines()
        return stages, said[-1][:300] if said else f"exit {process.returncode}"


def _fail_on_fields(verdict: dict, fields: list[dict]) -> None:
    """A field the package neither follows nor refuses fails the model: the first such field,
    its moved value and the first diverging module (or the error) become the row's error."""
    from codegen.verify.value_fields import FAILING

    failed = [f for f in fields if f["status"] in FAILING]
    if failed:
        first = failed[0]
        moved = f"{first['field']}={first['value']!r}" if "value" in first else first["field"]
        verdict["passed"] = False
        verdict["error"] = f"value field {moved}: {first['status']}: {first.get('why')}"[:300]


def _fields(row: dict) -> dict[str, list[str]]:
    """The row's moved value fields by status (error counts as fail)."""
    by_status: dict[str, list[str]] = {"pass": [], "refused": [], "skipped": [], "fail": []}
    for field in row.get("fields") or []:
        status = "fail" if field["status"] == "error" else field["status"]
        by_status.setdefault(status, []).append(field["field"])
    return by_status


def parallel_isolated(models_dir: Path, name: str, settings) -> dict:
    """`codegen verify NAME --parallel S... --json` in a subprocess: per setting, pass or
    the first failing case's line (every verify case of the package, 2 gloo ranks)."""
    command = [sys.executable, "-m", "codegen.cli", "verify", name, "--models", str(models_dir)]
    for setting in settings:
        command += ["--parallel", setting]
    try:
        done = subprocess.run(
            command + ["--json"],
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
            preexec_fn=_limit_memory,
        )
        results = json.loads(done.stdout)
    except subprocess.TimeoutExpired:
        return dict.fromkeys(settings, f"fail: took over {TIMEOUT} s")
    except json.JSONDecodeError:
        lines = (done.stderr or done.stdout).strip().splitlines()
        return dict.fromkeys(settings, "fail: " + (lines[-1][:200] if lines else "no output"))
    verdict = {}
    for setting in settings:
        failed = [r for r in results if r["setting"] == setting and r["status"] == "fail"]
        verdict[setting] = (
            f"fail: {failed[0]['case']}: {failed[0]['error']}"[:300] if failed else "pass"
        )
    return verdict


def _limit_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))


STATUSES = ("pass", "skipped", "refused", "fail")  # a switch setting's worst status wins


def _verdict(results: list[dict]) -> dict:
    """Pass when no case fails; a switch setting the package refuses in one line is a gap
    counted apart, not a failure."""
    failed = [r for r in results if r["status"] == "fail"]
    cosines = [r["cosine"] for r in results if r["cosine"] is not None]
    diffs = [r["max_abs_diff"] for r in results if r["max_abs_diff"] is not None]
    settings: dict[str, str] = {}  # switch-setting case -> its worst status over dtypes
    for r in results:
        if "+" in r["case"]:
            worst = settings.get(r["case"], "pass")
            settings[r["case"]] = max(worst, r["status"], key=STATUSES.index)
    verdict = {
        "passed": bool(results) and not failed,
        "cosine": min(cosines) if cosines else None,
        "max_abs_diff": max(diffs) if diffs else None,
        "switch_settings": {
            status: sorted(case for case, s in settings.items() if s == status)
            for status in STATUSES
        },
    }
    compared = [r for r in results if r["status"] in ("pass", "fail")]
    if compared:  # engine readiness: meta-device lifecycle and packed sequences, every case
        verdict["lifecycle"] = all(r.get("lifecycle_ok") for r in compared)
        verdict["packed"] = all(r.get("packed_ok") for r in compared)
    if failed:
        first = failed[0]
        verdict["error"] = first["error"] or _why(first)
    return verdict


def _why(result: dict) -> str:
    where = f"{result['case']}: "
    if result["missing_keys"] or result["unexpected_keys"]:
        missing, unexpected = result["missing_keys"][:3], result["unexpected_keys"][:3]
        return where + f"keys: missing {missing}, unexpected {unexpected}"
    if result["first_gradient_divergence"]:
        return where + f"gradients differ first at {result['first_gradient_divergence']}"
    if result["export_matches"] is False:
        return where + "export through to_hf does not reproduce HF"
    if result.get("lifecycle_failure"):
        return where + f"meta-device lifecycle: {result['lifecycle_failure']}"
    if result.get("packed_failure"):
        return where + f"packed sequences: {result['packed_failure']}"
    return where + f"logits differ; first divergence: {result['first_divergence']}"


def _done(row: dict, started: float) -> dict:
    row["seconds"] = round(time.perf_counter() - started, 2)
    return row


def summary(rows: list[dict]) -> str:
    decoders = [r for r in rows if r["category"] == "decoder"]
    planned = [r for r in decoders if r["reference"] and not r["unsupported"]]
    passed = [r for r in decoders if r["verify"] and r["verify"].get("passed")]
    counts = Counter()
    for row in decoders:
        for status, cases in _settings(row).items():
            counts[status] += len(cases)
    settings = dict.fromkeys(s for row in passed for s in row.get("parallel") or {})
    shards = "".join(
        f"; parallel {setting}: "
        f"{sum((r.get('parallel') or {}).get(setting) == 'pass' for r in passed)}"
        f"/{len(passed)} verified"
        for setting in settings
    )
    verified = [r["verify"] for r in decoders if r["verify"] and "lifecycle" in r["verify"]]
    engine = (
        f"; meta lifecycle {sum(v['lifecycle'] for v in verified)}/{len(verified)}, "
        f"packed sequences {sum(v['packed'] for v in verified)}/{len(verified)}"
    )
    moved = Counter()
    for row in decoders:
        for status, names in _fields(row).items():
            moved[status] += len(names)
    rejected = f", {moved['skipped']} rejected by transformers" if moved["skipped"] else ""
    fields = (
        f"; value fields: {sum(moved.values())} moved, {moved['pass']} pass, "
        f"{moved['refused']} refused, {moved['fail']} fail{rejected}"
        if any(row.get("fields") is not None for row in decoders)
        else ""
    )
    what = ", every value field moved" if fields else ""
    skipped = sum(r["category"] == NOT_SWEPT for r in rows)
    swept = len(rows) - skipped
    partial = f" (partial: the time budget ran out, {skipped} not swept)" if skipped else ""
    return (
        f"coverage{partial}: {len(passed)}/{len(decoders)} decoder-only causal LMs "
        "scaffold + verify "
        f"(fp32 and bf16, every config switch setting{what}); {len(planned)} fully planned; "
        f"{swept} causal-LM model types swept; switch settings: {counts['pass']} pass, "
        f"{counts['refused']} refused, {counts['fail']} fail{fields}{shards}{engine}"
    )


def _settings(row: dict) -> dict[str, list[str]]:
    return (row.get("verify") or {}).get("switch_settings") or {}


def markdown(rows: list[dict]) -> str:
    categories = Counter(r["category"] for r in rows)
    lines = [
        "# codegen coverage",
        "",
        summary(rows),
        "",
        checks_summary(rows),
        "",
        "Categories: " + ", ".join(f"{k}: {v}" for k, v in sorted(categories.items(), key=str)),
        "",
        "| model_type | reference | rules | verify | switch settings pass/refused/fail "
        "| value fields pass/refused/fail | parallel | why not |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for row in rows:
        if row["category"] != "decoder":
            continue
        verify = row["verify"] or {}
        status = "PASS" if verify.get("passed") else ("FAIL" if verify else "-")
        why = "; ".join(row["unsupported"]) or verify.get("error", "")
        why = why.replace("|", "\\|").replace("\n", " ")[:160]
        rules = ", ".join(row["rules"]) or "-"
        settings = _settings(row)
        counts = "/".join(str(len(settings.get(s, []))) for s in ("pass", "refused", "fail"))
        shards = ", ".join(
            f"{setting} {result.split(':')[0]}"
            for setting, result in (row.get("parallel") or {}).items()
        )
        moved = _fields(row)
        fields = "-"
        if row.get("fields") is not None:
            fields = "/".join(str(len(moved[s])) for s in ("pass", "refused", "fail"))
            if moved["refused"]:
                fields += f" (refused: {', '.join(moved['refused'])})"
        lines.append(
            f"| {row['model_type']} | {row['reference']} | {rules} | {status} | {counts} "
            f"| {fields} | {shards or '-'} | {why} |"
        )
    others = sorted(
        (r["category"] or "error", r["model_type"])
        for r in rows
        if r["category"] not in ("decoder", NOT_SWEPT)
    )
    lines += ["", "Not decoder-only (out of scope): " + ", ".join(f"{t} ({c})" for c, t in others)]
    if skipped := [r["model_type"] for r in rows if r["category"] == NOT_SWEPT]:
        lines += ["", "Not swept (time budget): " + ", ".join(skipped)]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("coverage-report"))
    parser.add_argument("--only", nargs="*", help="Sweep only these model types.")
    parser.add_argument(
        "--no-verify", action="store_true", help="Analyze, plan, scaffold and check; no verify."
    )
    parser.add_argument(
        "--parallel",
        nargs="*",
        default=["tp=2"],
        help="Shard-plan settings verified per package (verify --parallel; default tp=2; "
        "`--parallel` alone or `--parallel none`: skip).",
    )
    parser.add_argument(
        "--jobs",
        type=int,
        default=os.cpu_count() or 1,
        help="Models swept at once, each in its own process (default: one per core).",
    )
    parser.add_argument(
        "--no-fields",
        action="store_true",
        help="Skip the value-field moves after each verify (a model then counts as verified "
        "on verify alone).",
    )
    parser.add_argument(
        "--no-crosscheck",
        action="store_true",
        help="Skip the dynamic cross-check and the renamed remote-code folders.",
    )
    parser.add_argument(
        "--budget",
        type=float,
        help="Wall seconds for the whole sweep: no model starts after them, and the "
        "cross-check is skipped when the time left is short (the report says what was not run).",
    )
    args = parser.parse_args()
    started = time.time()
    deadline = started + args.budget if args.budget else None
    args.parallel = [s for s in args.parallel if s != "none"]
    types = args.only or causal_lm_types()
    # scaffold must format without ruff on PATH (codegen finds the binary the package ships)
    os.environ["PATH"] = path_without_ruff(os.environ.get("PATH", ""))
    with tempfile.TemporaryDirectory() as directory:
        rows = sweep_all(
            types,
            Path(directory),
            not args.no_verify,
            args.parallel,
            args.jobs,
            deadline,
            fields=not args.no_fields,
        )
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "coverage.json").write_text(json.dumps(rows, indent=2, default=str))
    (args.out / "coverage.md").write_text(markdown(rows))
    print(summary(rows))
    print(checks_summary(rows))
    if not (args.no_verify or args.no_crosscheck):
        from codegen.verify.crosscheck.sweep import sweep_extras

        if short := _short_of_time(rows, deadline, args.jobs):
            print(short, flush=True)
            return

        print("\n".join(sweep_extras(rows, args.out, jobs=args.jobs)), flush=True)


# the cross-check's seconds per decoder and job: 4.4 measured on this project's 2-core machine
# (581 s for 131 decoders, 2 jobs), doubled for a CI machine twice as slow (stop 30's was)
CROSSCHECK_SECONDS = 9.0


def _short_of_time(rows: list[dict], deadline: float | None, jobs: int) -> str:
    """The line saying why the cross-check is skipped, or "" when there is time for it."""
    if deadline is None:
        return ""
    decoders = sum(r["category"] == "decoder" for r in rows)
    needed = CROSSCHECK_SECONDS * decoders * 2 / max(jobs, 1)
    left = deadline - time.time()
    if left >= needed and not any(r["category"] == NOT_SWEPT for r in rows):
        return ""
    return (
        f"cross-check and renamed remote-code folders skipped: {max(left, 0):.0f} s of the "
        f"budget left, about {needed:.0f} s needed"
    )


def sweep_all(
    types: list[str],
    directory: Path,
    verify: bool,
    parallel,
    jobs: int,
    deadline: float | None = None,
    fields: bool = True,
) -> list[dict]:
    """Rows in `types` order. Models are independent (each package in its own folder, each
    verify in its own process), so `jobs` of them run at once: the sweep is mostly single-
    threaded Python, and one model per core nearly divides its wall time by the cores."""

    def folder(model_type: str) -> Path:
        return directory / model_type / "generated"

    if jobs <= 1:
        return [
            sweep_one(t, folder(t), verify, parallel, deadline, fields) for t in _progress(types)
        ]
    from concurrent.futures import ProcessPoolExecutor, as_completed

    # one torch thread per verify process: pools of several threads per job spin on the
    # cores the other jobs need (the verifies, the tp ranks and the cross-check inherit it)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    rows: dict[str, dict] = {}
    with ProcessPoolExecutor(max_workers=jobs) as pool:
        futures = {
            pool.submit(sweep_one, t, folder(t), verify, parallel, deadline, fields): t
            for t in types
        }
        for future in _progress(as_completed(futures), total=len(types)):
            rows[futures[future]] = future.result()
    return [rows[t] for t in types]


def _progress(items, total: int | None = None):
    try:
        from tqdm import tqdm
    except ImportError:
        return items
    import sys

    # redraw often on a terminal, a line every ~20 s in a CI log
    return tqdm(
        items,
        total=total,
        desc="coverage",
        unit="model",
        mininterval=0.1 if sys.stderr.isatty() else 20,
    )


if __name__ == "__main__":
    main()
