"""A remote-code folder with a prefix LM, sliding layers and soft-capped attention, built at
test time: the prefix-window copy (`prefix_window_fixture.py`: hrm_text renamed, every other
layer sliding, both masks given the token types' block ids) whose config gains
`attn_logit_softcapping` and whose eager attention caps its scores with tanh before the mask,
as gemma2's does (SDPA cannot: the copy runs eager only). No installed architecture has a
token-type block, a window pattern and written-out attention together; the cap makes the
package's attention written out, so the block must join the keys each mask hides."""

from __future__ import annotations

import json
from pathlib import Path

from prefix_window_fixture import _edit, prefix_window_folder

CAP = 4.0  # small enough that the tanh bends the toy model's scores

CONFIGURATION = (
    (  # documented, or transformers' docstring check prints an error with the JSON verify prints
        "    prefix_lm (`bool`, *optional*, defaults to `True`):\n",
        "    attn_logit_softcapping (`float`, *optional*):\n"
        "        The attention scores pass through `cap * tanh(scores / cap)`; None: uncapped.\n"
        "    prefix_lm (`bool`, *optional*, defaults to `True`):\n",
    ),
    (
        "    layer_types: list[str] | None = None\n",
        "    layer_types: list[str] | None = None\n"
        f"    attn_logit_softcapping: float | None = {CAP}\n",
    ),
)

MODELING = (
    (
        "    scaling: float,\n    dropout: float = 0.0,\n",
        "    scaling: float,\n    dropout: float = 0.0,\n    softcap: float | None = None,\n",
    ),
    (
        "    attn_weights = torch.matmul(query, key_states.transpose(2, 3)) * scaling\n",
        "    attn_weights = torch.matmul(query, key_states.transpose(2, 3)) * scaling\n"
        "    if softcap is not None:\n"
        "        attn_weights = torch.tanh(attn_weights / softcap) * softcap\n",
    ),
    (
        "            sliding_window=self.sliding_window,\n",
        "            sliding_window=self.sliding_window,\n"
        "            softcap=self.config.attn_logit_softcapping,\n",
    ),
    ("    _supports_sdpa = True\n", "    _supports_sdpa = False  # SDPA cannot cap the scores\n"),
    ("    _supports_flex_attn = True\n", "    _supports_flex_attn = False\n"),
)


def prefix_window_softcap_folder(dest: Path) -> Path:
    folder = prefix_window_folder(dest)
    (configuration,) = folder.glob("configuration_*.py")
    (modeling,) = folder.glob("modeling_*.py")
    _edit(configuration, CONFIGURATION)
    _edit(modeling, MODELING)
    config = folder / "config.json"
    values = json.loads(config.read_text())
    config.write_text(json.dumps({**values, "attn_logit_softcapping": CAP}, indent=2) + "\n")
    return folder
