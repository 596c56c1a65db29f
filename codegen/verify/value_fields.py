"""Value-field moves: does a package follow every config value HF's modeling code reads?

Why: verify's switch sweep puts every field the HF code *branches* on in each of its value
classes, but a field whose value flows into arithmetic (a renormalisation floor, a per-layer
RoPE base, an activation looked up by name) is never moved off the toy's value, so a package
that ignores it passes verify and is a silently different model for a real checkpoint that
sets it. This moves one such field at a time and verifies the package against transformers
on that config (fp32): it must give HF's logits or refuse the value in one line.

The fields are those the static analysis lists for the target (`load_target(..).config_fields`)
that the toy config holds, perturbed by their type alone (no field is known by name):
- a float: below 1e-3 (an epsilon, a floor) 0.5, large enough to reach the values it bounds;
  in (0, 1] halved; above 1 times 1.5; 0 -> 0.25;
- a list of floats: every other entry moved as a float is (a per-layer value made
  non-uniform, each entry kept in its range: a per-layer sparsity stays below 1);
- a string that names an activation in transformers' ACT2FN: "relu" (or "gelu" for relu).
Integers and booleans are left to the switch sweep and the toy's sizes.

Used by `scripts/field_sweep.py` (one line per field, or `python -m codegen.verify.value_fields
MODEL --models DIR --json`) and by `scripts/coverage.py`, whose per-model worker
(`codegen.verify.package_worker`) runs the moves after verify in the same process: a list of
rows (field, was, value, status: pass, refused, skipped when transformers rejects the value,
fail with the first diverging module; error when the sweep itself broke).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

EPSILON = 1e-3
FAILING = ("fail", "error")  # the statuses that make a package not follow its config


def perturbed(value):
    """The value moved off the toy's, by its type alone; None where the type is not swept."""
    from transformers.activations import ACT2FN

    if isinstance(value, bool) or isinstance(value, int):
        return None
    if isinstance(value, float):
        if value == 0:
            return 0.25
        if abs(value) < EPSILON:
            return 0.5
        return value / 2 if 0 < value <= 1 else value * 1.5
    if isinstance(value, str):
        if value in ACT2FN:
            return "gelu" if value == "relu" else "relu"
        return None
    if (
        isinstance(value, list)
        and value
        and all(isinstance(v, float) for v in value)
        and len(value) > 1
    ):
        return [perturbed(v) if index % 2 else v for index, v in enumerate(value)]
    return None


def packages_dir(models: Path, name: str) -> Path:
    """`models` itself when it registers `name`, else the per-model folder `models/name`."""
    per_model = models / name
    if (per_model / "__init__.py").exists() and not (models / name.replace("-", "_")).is_dir():
        return per_model
    return per_model if (per_model / name.replace("-", "_")).is_dir() else models


def sweep_model(
    name: str,
    models: Path,
    only: set[str] | None = None,
    *,
    spec=None,
    bases: dict | None = None,
    config_fields: dict | None = None,
) -> list[dict]:
    """One row per perturbed field of `name`'s package (`only`: these fields alone).

    A caller that has already built them (the coverage worker, after verify) passes the
    loaded `spec`, `bases` (model_type -> `base_config`'s toy and fixes) and `config_fields`
    (model_type -> the static analysis' `config_fields`); each is built here otherwise."""
    from codegen.models import load_spec
    from codegen.scaffold.target import load_target
    from codegen.verify.cases import base_config
    from codegen.verify.run import Case, _one_line, verify_case
    from codegen.verify.tiny_config import tiny_config

    spec = spec or load_spec(name, packages_dir(models, name))
    model_type = name if name in spec.supported_model_types else min(spec.supported_model_types)
    toy, fixed = (bases or {}).get(model_type) or base_config(model_type)
    values = toy.to_dict()
    rows = []
    listed = (config_fields or {}).get(model_type)
    if listed is None:
        listed = load_target(model_type).config_fields
    fields = listed & values.keys()
    for field in sorted(fields if only is None else fields & only):
        new = perturbed(values[field])
        if new is None:
            continue
        label = f"{model_type}+{field}={new!r}"
        try:
            config = tiny_config(model_type, **fixed, **{field: new})
        except Exception as err:  # the config class's own validation
            rows.append({"field": field, "value": new, "status": "skipped", "why": _one_line(err)})
            continue
        if getattr(config, field, None) != new:
            continue  # the class recomputes it from other fields: not a value of its own
        started = time.perf_counter()
        result = verify_case(spec, Case(label, config, may_refuse=True), ["fp32"])[0]
        why = result.refused or result.skipped or result.first_divergence or result.error
        rows.append(
            {
                "field": field,
                "was": values[field],
                "value": new,
                "status": result.status,
                "why": why,
                "seconds": round(time.perf_counter() - started, 1),
            }
        )
    return rows


def sweep_rows(name: str, models: Path, only: set[str] | None = None, **built) -> list[dict]:
    """`sweep_model`, its own breakage a row of status error instead of a traceback."""
    try:
        return sweep_model(name, models, only, **built)
    except Exception as err:
        return [{"field": "-", "status": "error", "why": f"{type(err).__name__}: {err}"}]


def main(argv: list[str] | None = None, default_out: Path | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="+", metavar="MODEL")
    parser.add_argument("--models", type=Path, required=True)
    parser.add_argument(
        "--out", type=Path, default=default_out, help="write the rows per model to this JSON file"
    )
    parser.add_argument("--fields", nargs="+", help="perturb only these config fields")
    parser.add_argument(
        "--json", action="store_true", help="print the rows per model as JSON, no lines"
    )
    args = parser.parse_args(argv)
    only = set(args.fields) if args.fields else None
    report, counts = {}, {}
    for name in args.names:
        rows = report[name] = sweep_rows(name, args.models, only)
        for row in rows:
            counts[row["status"]] = counts.get(row["status"], 0) + 1
            if not args.json:
                why = f"  {row['why']}" if row["status"] != "pass" and row.get("why") else ""
                print(f"{name:<16} {row['field']:<32} {row['status']:<8}{why}"[:240], flush=True)
    if args.out:
        args.out.write_text(json.dumps(report, indent=1, default=str))
    if args.json:
        print(json.dumps(report, default=str))
    else:
        summary = ", ".join(f"{count} {status}" for status, count in sorted(counts.items()))
        print(f"{len(args.names)} models, {sum(counts.values())} perturbed fields: {summary}")
    return 1 if any(counts.get(status) for status in FAILING) else 0


if __name__ == "__main__":
    sys.exit(main())
