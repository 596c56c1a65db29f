"""The HF side of `codegen verify FOLDER --trust-remote-code`: the folder's own code.

A remote-code checkpoint folder (config.json with `auto_map`, its configuration and modeling
files, local helper modules) is loaded with transformers' dynamic-module loading from the
local path; nothing is downloaded (HF_HUB_OFFLINE is set in-process). The folder's config
class and causal-LM class are registered with AutoConfig / AutoModelForCausalLM under the
folder's model_type, so the protocol in `run.py` (`AutoModelForCausalLM.from_config`, then
`from_pretrained` of the saved safetensors) builds the folder's model unchanged, with the
same perturbed random weights as for an installed architecture.

Running the folder's code is the user's explicit choice (`trust_remote_code`). When the code
cannot be built by the installed transformers (written for another version), the import or
call that failed is named in one line (`CodegenError`), with its file and line in the folder.

Remote code often still uses legacy config names (`n_embd`, `seq_length`, `rotary_dim`,
`rope_scaling`...): `LEGACY_NAMES` maps them to the standard names the toy shrink rules use.
"""

from __future__ import annotations

import json
import os
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from codegen.analyze.config import LEGACY_NAMES as STANDARD_TO_LEGACY
from codegen.errors import CodegenError

TRUST_MESSAGE = (
    "{folder}: verifying a checkpoint folder runs its own Python code; "
    "that is your explicit choice: add --trust-remote-code"
)

# legacy config name -> the standard name the shrink rules (tiny_config.SHRINK_RULES) use:
# the analyzer's table (one source for both), plus ChatGLM's group count, which the shrink
# may treat as a key/value head count (the analyzer reads it only with multi_query_attention)
LEGACY_NAMES: dict[str, str] = {
    old: standard for standard, olds in STANDARD_TO_LEGACY.items() for old in olds
} | {"multi_query_group_num": "num_key_value_heads"}


@dataclass(frozen=True)
class RemoteModel:
    """A folder's config and causal-LM classes, registered under its model_type."""

    folder: Path
    model_type: str
    config_class: type
    model_class: type


def read_folder_config(folder: Path) -> dict[str, Any]:
    path = Path(folder) / "config.json"
    if not path.is_file():
        raise CodegenError("checkpoint folder has no config.json", path=str(folder))
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise CodegenError(f"cannot read config.json: {err}", path=str(path)) from None
    if not isinstance(raw, dict) or not isinstance(raw.get("model_type"), str):
        raise CodegenError("config.json has no model_type; add one", path=str(path))
    return raw


def folder_model_type(folder: Path) -> str:
    return read_folder_config(folder)["model_type"]


def require_trust(folder: Path, trust_remote_code: bool) -> None:
    if not trust_remote_code:
        raise CodegenError(TRUST_MESSAGE.format(folder=folder))


def load_remote(folder: Path, trust_remote_code: bool) -> RemoteModel:
    """Import the folder's config and causal-LM classes and register them in-process."""
    require_trust(folder, trust_remote_code)
    folder = Path(folder).resolve()
    raw = read_folder_config(folder)
    auto_map = raw.get("auto_map") or {}
    if not isinstance(auto_map, dict) or "AutoModelForCausalLM" not in auto_map:
        raise CodegenError(
            "config.json has no auto_map['AutoModelForCausalLM']: not a remote-code causal LM",
            path=str(folder / "config.json"),
        )
    _offline()
    from transformers import CONFIG_MAPPING, AutoConfig, AutoModelForCausalLM
    from transformers.dynamic_module_utils import get_class_from_dynamic_module
    from transformers.utils import logging

    logging.set_verbosity_error()
    model_type = raw["model_type"]
    with _building(folder):
        if "AutoConfig" in auto_map:
            config_class = get_class_from_dynamic_module(
                _local(auto_map["AutoConfig"]), str(folder), local_files_only=True
            )
        elif model_type in CONFIG_MAPPING:
            config_class = CONFIG_MAPPING[model_type]
        else:
            raise CodegenError(
                f"config.json has no auto_map['AutoConfig'] and transformers has no "
                f"model_type {model_type!r}",
                path=str(folder / "config.json"),
            )
        model_class = get_class_from_dynamic_module(
            _local(auto_map["AutoModelForCausalLM"]), str(folder), local_files_only=True
        )
        if getattr(config_class, "model_type", model_type) != model_type:
            raise CodegenError(
                f"config class {config_class.__name__} has model_type "
                f"{config_class.model_type!r}, config.json {model_type!r}",
                path=str(folder),
            )
        AutoConfig.register(model_type, config_class, exist_ok=True)
        AutoModelForCausalLM.register(config_class, model_class, exist_ok=True)
    return RemoteModel(folder, model_type, config_class, model_class)


def _offline() -> None:
    """A local folder needs nothing from the hub: no request leaves this process. The
    variable is read when huggingface_hub is imported, so its constant is set as well."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    from huggingface_hub import constants

    constants.HF_HUB_OFFLINE = True


def _local(reference: str) -> str:
    """`repo--module.Class` points at another hub repository: not available offline."""
    if "--" in reference:
        raise CodegenError(
            f"auto_map entry {reference!r} points at another hub repository; "
            "copy that code into the folder"
        )
    return reference


def remote_toy_config(remote: RemoteModel, **overrides):
    """The toy of the folder's config.json (its own config class), with every feature on;
    `overrides` are applied as if written in config.json (like `tiny_config`'s)."""
    from codegen.verify.tiny_config import (
        _RECOMPUTED,
        build_toy,
        config_values,
        layer_count_derived,
    )

    raw = read_folder_config(remote.folder)
    values = {key: value for key, value in raw.items() if key not in _RECOMPUTED}
    with _building(remote.folder):
        full = config_values(remote.config_class(**values))
        toy = shrink_legacy(full, getattr(remote.config_class, "attribute_map", None) or {})
        toy.pop("model_type", None)
        for key in layer_count_derived(remote.config_class):  # as tiny_config does
            toy.pop(key, None)
        if overrides and "layer_types" not in overrides and "layer_types" in toy:
            # a flipped switch is another checkpoint: where it changes the pattern the
            # config class derives, the class derives it again (as `tiny_config` does by
            # name), the folder's pattern is for its own setting (a window pattern kept with
            # the window switched off is invalid); a switch the derivation does not read
            # (tied embeddings, DeepSeek-V4's MLP layer kinds) keeps the folder's pattern
            if _derived_pattern(remote, toy, overrides) != _derived_pattern(remote, toy, {}):
                toy.pop("layer_types")
        toy.update(overrides)
        return build_toy(remote.config_class, toy, full, overrides)


def _derived_pattern(remote: RemoteModel, toy: dict, overrides: dict):
    """The `layer_types` the config class derives for `toy` (its own pattern left out) with
    `overrides`; a marker of its own where the class rejects them, so no two rejections
    compare equal."""
    values = {k: v for k, v in toy.items() if k != "layer_types"}
    try:
        return getattr(remote.config_class(**{**values, **overrides}), "layer_types", None)
    except Exception:  # the class's own validation, whatever it raises
        return object()


def shrink_legacy(values: dict[str, Any], attribute_map: dict[str, str]) -> dict[str, Any]:
    """`tiny_config.shrink` of a config that may use legacy field names.

    Legacy names are shrunk as their standard names (through shrink's `attribute_map`);
    the legacy fields no standard rule covers (`rotary_dim`, a `rope_scaling` dict with an
    original context) get their toy values here.
    """
    from codegen.verify.tiny_config import ORIGINAL_CONTEXT, shrink

    names = dict(attribute_map)
    for legacy, standard in LEGACY_NAMES.items():
        if legacy in values and standard not in values and standard not in names:
            names[standard] = legacy
    toy = shrink(values, keep_pattern=True, attribute_map=names)
    hidden = toy.get(names.get("hidden_size", "hidden_size"))
    heads = toy.get(names.get("num_attention_heads", "num_attention_heads"))
    head_dim = toy.get(names.get("head_dim", "head_dim"))
    if not isinstance(head_dim, int) and isinstance(hidden, int) and isinstance(heads, int):
        head_dim = hidden // heads
    if isinstance(values.get("rotary_dim"), int) and isinstance(head_dim, int):
        full = _original_head_dim(values, names)
        # a rotary part as wide as the head stays full; a partial one stays partial
        toy["rotary_dim"] = head_dim if values["rotary_dim"] == full else head_dim // 2
    scaling = values.get("rope_scaling")
    if isinstance(scaling, dict):
        scaling = dict(scaling)
        if "original_max_position_embeddings" in scaling:
            scaling["original_max_position_embeddings"] = ORIGINAL_CONTEXT
        toy["rope_scaling"] = scaling
    return toy


def _original_head_dim(values: dict[str, Any], names: dict[str, str]) -> int | None:
    head_dim = values.get(names.get("head_dim", "head_dim"))
    if isinstance(head_dim, int):
        return head_dim
    hidden = values.get(names.get("hidden_size", "hidden_size"))
    heads = values.get(names.get("num_attention_heads", "num_attention_heads"))
    if isinstance(hidden, int) and isinstance(heads, int) and heads:
        return hidden // heads
    return None


def check_builds(remote: RemoteModel, config) -> None:
    """Build the folder's model for `config` and run one forward: an import or call the
    installed transformers cannot satisfy is one line, not a FAIL per dtype."""
    import torch

    from codegen.verify.hf_checkpoint import random_hf_model

    with _building(remote.folder):
        model = random_hf_model(config)
        with torch.no_grad():
            model(input_ids=torch.zeros((1, 4), dtype=torch.long))


class _building:
    """Turns an exception raised while running the folder's code into one CodegenError line
    naming the failing import or call and where in the folder it happened."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind, err, tb) -> bool:
        if err is None or isinstance(err, CodegenError) or not isinstance(err, Exception):
            return False
        what = "import" if isinstance(err, ImportError) else "call"
        message = str(err).strip().splitlines()[0] if str(err).strip() else ""
        where = _folder_frame(tb, self.folder)
        location = f"{where}: " if where else f"{self.folder}: "
        doing = "importing" if what == "import" else "building or running the toy model of"
        raise CodegenError(
            f"{location}{doing} the folder's code with the installed {_version()}: "
            f"{what} failed: {type(err).__name__}: {message}"
        ) from None


def _folder_frame(tb, folder: Path) -> str | None:
    """`file.py:line` of the deepest frame running one of the folder's modules."""
    names = {path.name for path in folder.glob("*.py")}
    found = None
    for frame in traceback.extract_tb(tb):
        if Path(frame.filename).name in names and "transformers_modules" in frame.filename:
            found = f"{folder / Path(frame.filename).name}:{frame.lineno}"
    return found


def _version() -> str:
    try:
        import transformers

        return f"transformers {transformers.__version__}"
    except ImportError:  # pragma: no cover - transformers is a runtime dependency
        return "transformers"
