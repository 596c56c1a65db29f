"""Rename the HF side of the adapter table to the target checkpoint's module names."""

from __future__ import annotations

import json

from codegen.transforms.base import Transform
from codegen.transforms.edits import EditDict, run


class RenameHfKeys(Transform):
    """Replace HF key fragments (`{"mlp.gate_proj": "mlp.c_fc"}`), longest fragment first.

    Fragments match whole dotted components, so `q_proj` never rewrites `kq_proj`.
    """

    name = "rename_hf_keys"

    def apply(self, package, features=None, *, mapping: dict[str, str]) -> None:
        ordered = sorted(mapping.items(), key=lambda item: -len(item[0]))

        def rewrite(key: str, value: str):
            hf_key = json.loads(key)
            return [(json.dumps(rename_key(hf_key, ordered)), value)]

        run(package, "state_dict_adapter.py", EditDict("from_hf_map", rewrite))


def rename_key(key: str, ordered: list[tuple[str, str]]) -> str:
    padded = f".{key}."
    for old, new in ordered:
        padded = padded.replace(f".{old}.", f".{new}.")
    return padded[1:-1]
