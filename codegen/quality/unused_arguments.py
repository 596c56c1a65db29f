"""Parameters a generated package takes and never reads (ruff's ARG rules), less the ones
its callers pass by contract.

A hand-written package takes no parameter it does not use, except where a caller fixes the
signature: torch's hooks, a table of rules called alike, the engine's forward. Those are
`INTERFACE_ARGUMENTS`, one row per (file, parameter) with the contract that makes it
stay; any other unused parameter is a finding.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

from codegen.scaffold.tidy import ruff_binary

# (file, parameter) -> the caller that passes it, though this callee need not read it
INTERFACE_ARGUMENTS: dict[tuple[str, str], str] = {
    ("model.py", "max_seqlen"): (
        "the model's forward takes the varlen pair (cu_seqlens, max_seqlen) engines pass; "
        "SDPA reads cu_seqlens alone"
    ),
    ("model.py", "std"): (
        "lifecycle calls every module's `init_parameters(std)`; one that starts at fixed "
        "values (a router at zero) ignores it"
    ),
    ("lifecycle.py", "std"): (
        "the torch-module rules are called alike, `rule(module, std)`; the norm's starts at "
        "ones and zeros"
    ),
    ("lifecycle.py", "cutoff"): (
        "with truncated normal init the rules are called `rule(module, std, cutoff)`; the "
        "norm's draws nothing"
    ),
    ("parallel.py", "module"): (
        "torch's signatures: forward hooks `(module, args, out)`, distribute_module's "
        "`(name, module, mesh)` / `(module, args, mesh)` / `(module, out, mesh)`"
    ),
    ("parallel.py", "args"): "torch's forward hook `(module, args, out)` and input_fn",
    ("parallel.py", "mesh"): "distribute_module's `output_fn(module, out, mesh)`",
    ("parallel.py", "name"): "distribute_module's `partition_fn(name, module, mesh)`",
    ("rope.py", "seq_len"): (
        "the rope types' frequency rules share `(rope, dim, seq_len)`; dynamic scaling "
        "reads seq_len"
    ),
    ("shared_rope.py", "seq_len"): "as in rope.py: one signature for every rope type's rule",
    ("adapter_base.py", "key"): (
        "the adapter's `dequantize(key, weight, scale)` hook: a subclass whose scales "
        "depend on the tensor reads the key"
    ),
}

_IDENTIFIER = re.compile(r"\w+")


def unused_arguments(directory: Path) -> list[str]:
    """`package/file.py:line: CODE message` for each unused parameter of the package in
    `directory` that no `INTERFACE_ARGUMENTS` row allows."""
    done = subprocess.run(
        [ruff_binary(), "check", "--isolated", "--select", "ARG", "--output-format", "json"]
        + ["--exit-zero", "--quiet", str(directory)],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        return [f"{directory.name}: ruff failed: {done.stderr.strip() or done.returncode}"]
    found = []
    for finding in json.loads(done.stdout or "[]"):
        path = Path(finding["filename"])
        row, column = finding["location"]["row"], finding["location"]["column"]
        name = _identifier_at(path, row, column)
        if (path.name, name) in INTERFACE_ARGUMENTS:
            continue
        where = os.path.relpath(path, directory.parent)
        found.append(f"{where}:{row}: {finding['code']} {finding['message']}")
    return found


def _identifier_at(path: Path, row: int, column: int) -> str:
    """The parameter name ruff points at (1-based row and column)."""
    line = path.read_text().splitlines()[row - 1]
    match = _IDENTIFIER.match(line, column - 1)
    return match.group() if match else ""
