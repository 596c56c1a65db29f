"""One package's verify, then (only if it verified) its value-field moves, in one process.

Why: the coverage sweep isolates each model in a subprocess with memory and time limits. A
second subprocess for the value-field moves paid torch's and transformers' imports again and
rebuilt what verify had just built (the toy config, the static list of config fields): seconds
per model, in a sweep CI bounds by wall time. This runs both stages in the process
that verified the package; what each stage verifies is unchanged (`codegen verify NAME
--dtype fp32 --dtype bf16`, then `codegen.verify.value_fields`).

    python -m codegen.verify.package_worker NAME --models DIR [--no-fields]
                                            [--config-fields JSON]

prints one JSON line per stage as it ends, so the caller can bound each stage's time:
`{"stage": "verify", "results": [...]}` (verify's `--json` rows), then, when every case
passed or was refused/skipped and fields were asked for, `{"stage": "fields", "rows": [...]}`
(value_fields' rows). `--config-fields` ({model_type: [field, ...]}) gives the fields the
caller's static analysis already listed for a model_type, so it is not run a second time.
A bad package name is one line on stderr (`codegen: error: ...`) and exit 2, as verify's.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
from pathlib import Path

from codegen.errors import CodegenError

DTYPES = ["fp32", "bf16"]


def run(name: str, models: Path, fields: bool, config_fields: dict | None, emit) -> None:
    """Verify `name`'s package (every default case, fp32 and bf16), `emit` its rows; then,
    if nothing failed and `fields`, move its value fields and `emit` those rows."""
    from codegen.models import load_spec
    from codegen.verify.cases import base_config, default_cases
    from codegen.verify.run import verify_case
    from codegen.verify.value_fields import packages_dir, sweep_rows

    spec = load_spec(name, models)
    bases = {model_type: base_config(model_type) for model_type in spec.supported_model_types}
    # the field moves read the toy as built, before verify's HF models could touch it
    untouched = {t: (copy.deepcopy(toy), dict(fixed)) for t, (toy, fixed) in bases.items()}
    results = []
    for case in default_cases(spec, bases=bases):
        results += [result.to_json() for result in verify_case(spec, case, DTYPES)]
    emit({"stage": "verify", "results": results})
    if not fields or not results or any(r["status"] == "fail" for r in results):
        return
    known = {t: frozenset(names) for t, names in (config_fields or {}).items()}
    rows = sweep_rows(
        name,
        models,
        spec=spec if packages_dir(models, name) == models else None,
        bases=untouched,
        config_fields=known,
    )
    emit({"stage": "fields", "rows": rows})


def _emit(line: dict) -> None:
    print(json.dumps(line, default=str), flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("name", metavar="MODEL")
    parser.add_argument("--models", type=Path, required=True)
    parser.add_argument("--no-fields", action="store_true", help="verify alone")
    parser.add_argument(
        "--config-fields",
        type=json.loads,
        help='{"model_type": [field, ...]}: the static config fields already listed',
    )
    args = parser.parse_args(argv)
    try:
        run(args.name, args.models, not args.no_fields, args.config_fields, _emit)
    except CodegenError as err:
        print(f"codegen: error: {err}", file=sys.stderr)
        return err.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())
