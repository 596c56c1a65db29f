"""A remote-code folder whose router takes its top-k from a config field that is an int or
a per-layer list, built at test time: the renamed copy of the installed hunyuan_v1_moe
(`remote_fixture`), the field and the router's attribute renamed too (`FIELD`, `ATTRIBUTE`),
so nothing can lean on either name."""

from __future__ import annotations

from pathlib import Path

from codegen.verify.remote_fixture import neutral_name, remote_folder

SOURCE = "hunyuan_v1_moe"
NAME = neutral_name(SOURCE)
FIELD = "picks_per_token"  # the copy's name for the int-or-per-layer-list top-k
ATTRIBUTE = "self.picks"  # ... and for the router's attribute holding its layer's entry


def layer_top_k_folder(dest: Path) -> Path:
    """The renamed copy at `dest/NAME`, the source's top-k field renamed to FIELD in its code
    and config.json, the router's attribute to ATTRIBUTE."""
    folder = remote_folder(SOURCE, dest, name=NAME)
    for path in [*folder.glob("*.py"), folder / "config.json"]:
        text = path.read_text().replace("moe_topk", FIELD)
        if path.name.startswith("modeling_"):
            text = text.replace("self.top_k", ATTRIBUTE)
        path.write_text(text)
    return folder
