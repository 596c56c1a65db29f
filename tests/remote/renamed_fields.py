"""A remote-code folder whose config names its fields otherwise (`mlp_width` for
`intermediate_size`): every whole-word use of a field in the folder's code and config.json
renamed, as a new architecture's own config class would name them."""

from __future__ import annotations

import json
import re
from pathlib import Path


def rename_fields(folder: Path, renames: dict[str, str]) -> Path:
    """Rename the config fields `renames` names (old -> new) throughout `folder`'s Python
    files and config.json; returns the folder."""
    for path in folder.glob("*.py"):
        text = path.read_text()
        for old, new in renames.items():
            text = re.sub(rf"\b{old}\b", new, text)
        path.write_text(text)
    config_path = folder / "config.json"
    config = json.loads(config_path.read_text())
    renamed = {renames.get(key, key): value for key, value in config.items()}
    config_path.write_text(json.dumps(renamed, indent=2))
    return folder
