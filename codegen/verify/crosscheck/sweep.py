"""The sweep's two checks beyond its own rows (`scripts/coverage.py` calls `sweep_extras`):

* the dynamic cross-check (`run.crosscheck`) over every decoder the sweep found, by its own
  name and as a renamed remote-code copy, with the agreement per field;
* every architecture that passes by its own name, scaffolded and verified again as a renamed
  remote-code folder (`remote_fixture.check_remote`), with the count.

Both write JSON beside the sweep's report and return the lines it prints.
"""

from __future__ import annotations

import json
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from codegen.verify.crosscheck.run import crosscheck, report
from codegen.verify.remote_fixture import check_remote


def sweep_extras(rows: list[dict], out: Path, jobs: int = 2) -> list[str]:
    decoders = [r["model_type"] for r in rows if r["category"] == "decoder"]
    passed = [r["model_type"] for r in rows if (r.get("verify") or {}).get("passed")]
    lines: list[str] = []
    own = crosscheck(decoders, renamed=False, jobs=jobs)
    renamed = crosscheck([r["model_type"] for r in own if r["fields"]], renamed=True, jobs=jobs)
    lines += report(own, "own names")
    lines += report(renamed, "renamed copies")
    remote = renamed_folders(passed, jobs)
    for model_type, outcome in remote.items():
        if outcome != "pass":
            lines.append(f"  {model_type}: {outcome}")
    count = sum(outcome == "pass" for outcome in remote.values())
    lines.append(
        f"renamed remote-code folders: {count}/{len(remote)} of the architectures that pass "
        "by their own name pass as renamed copies (scaffold FOLDER + verify FOLDER "
        "--trust-remote-code, fp32)"
    )
    (Path(out) / "crosscheck.json").write_text(
        json.dumps({"own": own, "renamed": renamed, "remote_folders": remote}, indent=1)
    )
    return lines


def renamed_folders(model_types: list[str], jobs: int = 2) -> dict[str, str]:
    """model_type -> "pass" or the failing step's line; each check runs its own processes."""
    import transformers

    transformers.CONFIG_MAPPING  # noqa: B018 - resolve the lazy module once, not in two threads
    with tempfile.TemporaryDirectory() as directory:
        with ThreadPoolExecutor(max_workers=jobs) as pool:
            outcomes = pool.map(lambda mt: check_remote(mt, Path(directory) / mt), model_types)
            return dict(zip(model_types, outcomes, strict=True))
