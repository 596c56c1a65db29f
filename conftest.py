"""Test-session settings shared by every test directory.

`pytest -n auto` (the README's command runs it through pyproject's addopts) runs test files
in parallel workers. Remote-code tests load folders through transformers, which copies each
folder's code into its modules cache under the folder's own name; two workers loading
same-named folders at once would overwrite each other's copy, so each worker gets a cache
of its own (set before transformers is imported, and inherited by the CLI subprocesses)."""

import os
import tempfile

_worker = os.environ.get("PYTEST_XDIST_WORKER")
if _worker and "HF_MODULES_CACHE" not in os.environ:
    os.environ["HF_MODULES_CACHE"] = tempfile.mkdtemp(prefix=f"hf-modules-{_worker}-")
