"""Drop the checkpoint keys of modules whose output the logits never read (BigBird's pooler)."""

from __future__ import annotations

import json

from codegen.transforms.base import Transform
from codegen.transforms.edits import EditDict, EditError, run


class DropUnusedKeys(Transform):
    """The adapter maps each of `keys` (HF checkpoint keys) to None: the checkpoint carries
    them, the package builds no parameter for them, and loading neither fails on them nor
    keeps a tensor nothing reads."""

    name = "drop_unused_keys"

    def apply(self, package, features=None, *, keys: tuple[str, ...] | list[str] = ()) -> None:
        if not keys:
            raise EditError("drop_unused_keys needs the checkpoint keys to drop")
        rows = [(json.dumps(key), "None") for key in keys]
        run(package, "state_dict_adapter.py", EditDict("from_hf_map", None, rows))
