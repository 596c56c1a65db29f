"""A remote-code folder whose router width, the number of routed experts, is a config field
that is an int or a per-layer list, built at test time from the per-layer top-k copy
(`layer_top_k_fixture`): the expert count renamed (`EXPERTS`), its config field typed
`int | list[int]`, the router's attribute renamed (`WIDTH`), and the experts module taking its
layer's entry as the router does. The installed hunyuan_v1_moe types the field int and sizes
its experts by the whole field (`config.num_local_experts`), so it cannot build a per-layer
count at all; this copy is the reference that can."""

from __future__ import annotations

import re
from pathlib import Path

from layer_top_k_fixture import FIELD, NAME, layer_top_k_folder

EXPERTS = "expert_slots"  # the copy's name for the int-or-per-layer-list expert count
WIDTH = "self.slots"  # ... and for the router's attribute holding its layer's entry
TOP_K = FIELD

_EXPERTS_INIT = re.compile(
    r"(class \w+Experts\(nn\.Module\):\n(?:.*\n)*?\s+def __init__\(self, config: \w+)\)"
)
_DOCUMENTED = f"""    {EXPERTS} (`int | list`, *optional*, defaults to 1):
        Routed experts, or each layer's.
    \"\"\"
"""
_EXPERTS_CALL = re.compile(r"(\w+Experts)\(config\)")


def layer_experts_folder(dest: Path) -> Path:
    """The copy at `dest/NAME` described above."""
    folder = layer_top_k_folder(dest)
    for path in folder.glob("configuration_*.py"):
        text = re.sub(r"\bnum_experts\b", EXPERTS, path.read_text())
        text = text.replace(f"{EXPERTS}: int = 1", f"{EXPERTS}: int | list[int] = 1")
        path.write_text(text.replace('    """\n', _DOCUMENTED, 1))  # the docstring's end
    for path in folder.glob("modeling_*.py"):
        text = path.read_text().replace("config.num_experts", f"config.{EXPERTS}")
        text = text.replace(
            f"self.num_experts = config.{EXPERTS} if",
            f"{WIDTH} = config.{EXPERTS} if",
        )
        text = text.replace(
            "nn.Linear(config.hidden_size, self.num_experts,",
            f"nn.Linear(config.hidden_size, {WIDTH},",
        )
        text = _EXPERTS_INIT.sub(r"\1, layer_idx: int | None = None)", text, count=1)
        text = text.replace(
            "self.num_experts = config.num_local_experts",
            f"self.num_experts = config.{EXPERTS} if isinstance(config.{EXPERTS}, int) "
            f"else config.{EXPERTS}[layer_idx]",
        )
        text = _EXPERTS_CALL.sub(r"\1(config, layer_idx)", text)
        path.write_text(text)
    config = folder / "config.json"
    config.write_text(config.read_text().replace('"num_experts"', f'"{EXPERTS}"'))
    return folder


__all__ = ["EXPERTS", "NAME", "TOP_K", "layer_experts_folder"]
