"""Refuse per-layer RoPE bases that differ: the package builds one table from one base.

The HF backbone reads each layer's rotary base from a config list (`rope.layer_bases`); the
package rotates every layer with the tables of the single base it reads. A list whose every
entry is that base (the usual default) is the same model; any other list is refused by
`from_hf_config` in one line instead of loading a silently different model.
"""

from __future__ import annotations

import json

from codegen.transforms.base import Transform
from codegen.transforms.edits import EditDict, run


class UniformLayerBases(Transform):
    """FIXED_SETTINGS gains `<field>: {"each_same_as": <base>}`: every entry of the config
    list of per-layer bases must equal the one base the package reads."""

    name = "uniform_layer_bases"

    def apply(self, package, features=None, *, bases: dict) -> None:
        pin = json.dumps({"each_same_as": bases["base"]})
        run(
            package,
            "args.py",
            EditDict("FIXED_SETTINGS", None, [(json.dumps(bases["field"]), pin)]),
        )
