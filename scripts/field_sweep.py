"""Value-field sweep: does each package follow every config value HF's modeling code reads?

Moves each float, float-list and activation field the static analysis lists for the target,
one at a time, and verifies the package against transformers on that config (fp32); each
must pass or be refused in one line. The moves and their rules live in
`codegen.verify.value_fields` (the coverage sweep runs them after each verify).

    python scripts/field_sweep.py --models DIR MODEL [MODEL ...] [--fields F ...] [--out FILE]

`--models DIR` holds the packages (`codegen scaffold NAME --out DIR`, or the folder per model
`DIR/NAME/` that a sweep of parallel scaffolds writes). Prints one line per perturbed field
(pass, refused, skipped: transformers rejects the value, or fail with the first diverging
module) and a summary; exit status 1 when any field fails.
"""

from __future__ import annotations

import sys
from pathlib import Path

from codegen.verify.value_fields import main, packages_dir, perturbed, sweep_model

__all__ = ["packages_dir", "perturbed", "sweep_model"]


if __name__ == "__main__":
    sys.exit(main(default_out=Path("field_sweep.json")))
