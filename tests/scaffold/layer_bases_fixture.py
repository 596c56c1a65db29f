"""A remote-code folder whose backbone reads each layer's RoPE base from a config list,
built at test time: the renamed copy of the installed granite_swa (`remote_fixture`), its
list field renamed too (`FIELD`), so nothing can lean on either name."""

from __future__ import annotations

from pathlib import Path

from codegen.verify.remote_fixture import neutral_name, remote_folder

SOURCE = "granite_swa"
NAME = neutral_name(SOURCE)
FIELD = "block_bases"  # the copy's name for the per-layer list of RoPE bases


def layer_bases_folder(dest: Path) -> Path:
    """The renamed copy at `dest/NAME`, the source's list field renamed to FIELD in its code
    and config.json (the field named once, in the copy's configuration)."""
    folder = remote_folder(SOURCE, dest, name=NAME)
    (config_file,) = [p for p in folder.glob("configuration_*.py")]
    original = _list_field(config_file.read_text())
    for path in [*folder.glob("*.py"), folder / "config.json"]:
        path.write_text(path.read_text().replace(original, FIELD))
    return folder


def _list_field(text: str) -> str:
    """The config's annotated `list[float | int] | None` field: the per-layer bases."""
    (line,) = [line for line in text.splitlines() if ": list[float | int] | None" in line]
    return line.split(":")[0].strip()
