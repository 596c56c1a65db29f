"""Test-session settings shared by every test directory.

`pytest -n auto` (the README's command runs it through pyproject's addopts) runs test files
in parallel workers, one per core. Two settings keep the workers from hurting each other
(both set before torch or transformers is imported, and inherited by the CLI subprocesses
the tests start):

* one torch thread per worker: with a thread pool per worker on the same cores, OpenMP's
  waiting threads spin on cores the other worker needs (measured on 2 cores: four scaffold
  test files took 167 s with the default pools, 61 s with one thread, 105 s without xdist);
* a transformers modules cache per worker: remote-code folders are copied there under their
  own name, and two workers loading same-named folders at once would overwrite each other's
  copy.
"""

import os
import tempfile

_worker = os.environ.get("PYTEST_XDIST_WORKER")
if _worker:
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    if "HF_MODULES_CACHE" not in os.environ:
        os.environ["HF_MODULES_CACHE"] = tempfile.mkdtemp(prefix=f"hf-modules-{_worker}-")
