"""Fix the MLA rope layout the reference reads from `rope_interleave` to the target's own."""

from __future__ import annotations

from pathlib import Path

from codegen.transforms.base import Transform
from codegen.transforms.edits import (
    ReplaceStatements,
    assigns,
    run,
)

SWITCH = "rope_interleave"
ROTATE = assigns("self.rotate")
FIXED = {
    True: "self.rotate = apply_rotary_interleaved  # rope dims are interleaved pairs, always",
    False: "self.rotate = apply_rotary  # rope dims are two halves, always",
}


class FixRopeLayout(Transform):
    """Where the target's config class has no `rope_interleave` switch (DeepSeek-V2 rotates
    interleaved pairs unconditionally, by complex multiplication), the Attention's rotation
    becomes the analysed layout (`interleaved`) instead of a read of that missing field;
    `from_hf_config` then stops reading it (tidy drops the unused field).

    `switch`: whether the target config has the field (`auto`: read from its configuration
    source); with the switch, nothing changes.
    """

    name = "fix_rope_layout"

    def apply(self, package, features=None, *, interleaved: bool, switch: bool | str = "auto"):
        if switch == "auto":
            switch = _config_has_switch(features)
        if switch:
            return
        if interleaved not in FIXED:
            raise ValueError(f"interleaved {interleaved!r}: True or False")
        edit = ReplaceStatements("Attention", "__init__", ROTATE, FIXED[interleaved])
        run(package, "model.py", edit)


def _config_has_switch(features) -> bool:
    if features is None or not getattr(features.source, "configuration", None):
        raise ValueError("switch='auto' needs the target's Features (its configuration source)")
    return SWITCH in Path(features.source.configuration).read_text()
