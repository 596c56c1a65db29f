"""Turning a TARGET (model_type, modeling file, checkpoint folder) into files to read.

The model_type -> folder map is read statically from transformers'
`models/auto/auto_mappings.py` (CONFIG_MAPPING_NAMES, SPECIAL_MODEL_TYPE_TO_MODULE_NAME) and the
`.update({...})` additions in `configuration_auto.py`.
"""

from __future__ import annotations

import ast
import glob
import os
from dataclasses import dataclass
from functools import lru_cache

from codegen.analyze.config import find_config_class_file, load_json
from codegen.analyze.source import transformers_dir
from codegen.errors import CodegenError


@dataclass
class Target:
    """Everything `analyze` reads for one TARGET."""

    label: str
    modeling_path: str
    configuration_path: str | None
    config_values: dict | None  # config.json (or --config) contents
    config_json_path: str | None
    model_type: str | None
    config_class_name: str | None
    installed: bool  # the modeling file is the installed transformers one
    weight_keys: list[str] | None = None  # from model.safetensors.index.json, when present


def _string_pairs(node: ast.expr) -> dict[str, str]:
    """Pairs from `OrderedDict([("a", "b"), ...])` or a dict literal of strings."""
    if isinstance(node, ast.Call):
        out: dict[str, str] = {}
        for kw in node.keywords:  # OrderedDict(**{"gpt-sw3": "GPT2Config"}, **OTHER)
            if kw.arg is None and isinstance(kw.value, ast.Dict):
                out.update(_string_pairs(kw.value))
        if node.args:
            out.update(_string_pairs(node.args[0]))
        return out
    try:
        value = ast.literal_eval(node)
    except ValueError:
        return {}
    pairs = list(value.items()) if isinstance(value, dict) else value
    out = {}
    for item in pairs if isinstance(pairs, list | tuple) else ():
        if isinstance(item, tuple) and len(item) == 2 and all(isinstance(x, str) for x in item):
            out[item[0]] = item[1]
    return out


def _top_level_blocks(text: str, names: tuple[str, ...]) -> list[str]:
    """Source of the top-level statements that start with one of `names` (cheap pre-slice so
    only those statements are parsed; they end at the first column-0 closing bracket)."""
    blocks: list[str] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.startswith(names):
            block = [line]
            if not line.rstrip().endswith(("(", "[", "{")):
                blocks.append(line)
                i += 1
                continue
            i += 1
            while i < len(lines):
                block.append(lines[i])
                if lines[i][:1] in (")", "]", "}"):
                    break
                i += 1
            blocks.append("\n".join(block))
        i += 1
    return blocks


@lru_cache(maxsize=1)
def auto_mappings() -> tuple[dict[str, str], dict[str, str]]:
    """(model_type -> config class name, model_type -> module folder), read statically."""
    tdir = transformers_dir()
    configs: dict[str, str] = {}
    special: dict[str, str] = {}
    if tdir is None:
        return configs, special
    auto = os.path.join(tdir, "models", "auto")
    names = ("CONFIG_MAPPING_NAMES", "SPECIAL_MODEL_TYPE_TO_MODULE_NAME")
    for name in ("auto_mappings.py", "configuration_auto.py"):
        path = os.path.join(auto, name)
        if not os.path.isfile(path):
            continue
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
        for block in _top_level_blocks(text, names):
            # Plain literals in a generated file: the stdlib parser reads them ~30x faster than
            # a concrete syntax tree and, like libcst, never executes anything.
            try:
                tree = ast.parse(block)
            except SyntaxError:
                continue
            for stmt in tree.body:
                if isinstance(stmt, ast.Assign) and len(stmt.targets) == 1:
                    target = stmt.targets[0]
                    if isinstance(target, ast.Name) and target.id in names:
                        table = configs if target.id == names[0] else special
                        table.update(_string_pairs(stmt.value))
                elif isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Call):
                    func = stmt.value.func
                    if (
                        isinstance(func, ast.Attribute)
                        and func.attr == "update"
                        and isinstance(func.value, ast.Name)
                        and func.value.id in names
                        and stmt.value.args
                    ):
                        table = configs if func.value.id == names[0] else special
                        table.update(_string_pairs(stmt.value.args[0]))
    return configs, special


def is_installed(path: str) -> bool:
    tdir = transformers_dir()
    if tdir is None:
        return False
    return os.path.abspath(path).startswith(os.path.join(os.path.abspath(tdir), "models") + os.sep)


def model_type_files(model_type: str) -> tuple[str, str | None, str | None]:
    """(modeling path, configuration path, config class name) of an installed model_type."""
    configs, special = auto_mappings()
    tdir = transformers_dir()
    if tdir is None:
        raise CodegenError("transformers is not installed; give a modeling file path instead")
    if model_type not in configs:
        raise CodegenError(f"unknown model_type '{model_type}' (not in the installed transformers)")
    folder = special.get(model_type, model_type.replace("-", "_"))
    folder_path = os.path.join(tdir, "models", *folder.split("."))
    modeling = os.path.join(folder_path, f"modeling_{folder}.py")
    if not os.path.isfile(modeling):
        found = sorted(glob.glob(os.path.join(folder_path, "modeling_*.py")))
        found = [
            f
            for f in found
            if not os.path.basename(f).startswith(("modeling_tf_", "modeling_flax_"))
        ]
        if found:  # data2vec: the one of several files that defines the causal-LM class
            wanted = causal_lm_classes().get(model_type, "")
            modeling = _file_defining(wanted, folder_path, *found) or found[0]
        else:  # internlm3 -> LlamaForCausalLM: the modeling file that defines the class
            modeling = _modeling_of_mapped_class(model_type)
    configuration = _file_defining(configs[model_type], folder_path) or find_config_class_file(
        modeling
    )
    return modeling, configuration, configs[model_type]


def _modeling_of_mapped_class(model_type: str) -> str:
    """A model_type with no modeling file of its own runs the class transformers' auto mapping
    names for it (`gpt-sw3` -> GPT2LMHeadModel); the modeling file that defines that class."""
    tdir = transformers_dir() or ""
    classes = causal_lm_classes()
    wanted = classes.get(model_type)
    if wanted is not None:
        for other, name in classes.items():
            if name != wanted or other == model_type:
                continue
            folder = auto_mappings()[1].get(other, other.replace("-", "_"))
            candidate = os.path.join(tdir, "models", *folder.split("."), f"modeling_{folder}.py")
            if _file_defining(wanted, os.path.dirname(candidate), candidate):
                return candidate
    raise CodegenError(f"model_type '{model_type}' has no PyTorch modeling file")


def _file_defining(class_name: str, folder: str, *paths: str) -> str | None:
    """The file among `paths` (default: the folder's configuration files) with a top-level
    `class <class_name>` statement."""
    if not paths:
        paths = tuple(sorted(glob.glob(os.path.join(folder, "configuration_*.py"))))
    opening = f"class {class_name}("
    for path in paths:
        if os.path.isfile(path):
            with open(path, encoding="utf-8") as fh:
                if any(line.startswith(opening) for line in fh):
                    return path
    return None


@lru_cache(maxsize=1)
def causal_lm_classes() -> dict[str, str]:
    """model_type -> causal-LM class name, read statically from transformers' auto mapping."""
    tdir = transformers_dir()
    path = os.path.join(tdir or "", "models", "auto", "modeling_auto.py")
    if tdir is None or not os.path.isfile(path):
        return {}
    with open(path, encoding="utf-8") as fh:
        text = fh.read()
    for block in _top_level_blocks(text, ("MODEL_FOR_CAUSAL_LM_MAPPING_NAMES",)):
        try:
            tree = ast.parse(block)
        except SyntaxError:
            continue
        for stmt in tree.body:
            if isinstance(stmt, ast.Assign):
                return _string_pairs(stmt.value)
    return {}


def _weight_keys(folder: str) -> list[str] | None:
    index = os.path.join(folder, "model.safetensors.index.json")
    if os.path.isfile(index):
        data = load_json(index)
        weight_map = data.get("weight_map")
        if isinstance(weight_map, dict):
            return sorted(weight_map)
    return None


def _remote_modeling(folder: str, values: dict) -> str | None:
    auto_map = values.get("auto_map")
    if isinstance(auto_map, dict):
        for key in ("AutoModelForCausalLM", "AutoModel", "AutoModelForSeq2SeqLM"):
            ref = auto_map.get(key)
            if isinstance(ref, str) and "." in ref and "--" not in ref:
                candidate = os.path.join(folder, ref.split(".")[0] + ".py")
                if os.path.isfile(candidate):
                    return candidate
    found = sorted(glob.glob(os.path.join(folder, "modeling_*.py")))
    return found[0] if found else None


def _remote_configuration(folder: str, values: dict) -> str | None:
    """The configuration file `auto_map["AutoConfig"]` names, when the folder has it."""
    auto_map = values.get("auto_map")
    ref = auto_map.get("AutoConfig") if isinstance(auto_map, dict) else None
    if isinstance(ref, str) and "." in ref and "--" not in ref:
        candidate = os.path.join(folder, ref.split(".")[0] + ".py")
        if os.path.isfile(candidate):
            return candidate
    return None


def resolve(target: str, config_override: str | None = None) -> Target:
    """Classify TARGET and find its files; CodegenError (one line) when it cannot."""
    override = load_json(config_override) if config_override else None
    looks_like_path = (
        os.sep in target
        or target.endswith(".py")
        or target.startswith(".")
        or os.path.exists(target)
    )
    bare_name = os.sep not in target and not target.startswith(".")
    if (
        bare_name
        and os.path.isdir(target)
        and not os.path.isfile(os.path.join(target, "config.json"))
        and target in auto_mappings()[0]
    ):
        looks_like_path = False  # `codegen` the model_type, not a local `codegen/` folder
    elif os.path.isdir(target):
        config_json = os.path.join(target, "config.json")
        if not os.path.isfile(config_json) and override is None:
            raise CodegenError("checkpoint folder has no config.json", path=target)
        values = override if override is not None else load_json(config_json)
        json_path = config_override or config_json
        modeling = _remote_modeling(target, values)
        if modeling is not None:
            configuration = _remote_configuration(target, values) or find_config_class_file(
                modeling
            )
            return Target(
                label=target,
                modeling_path=modeling,
                configuration_path=configuration,
                config_values=values,
                config_json_path=json_path,
                model_type=values.get("model_type"),
                config_class_name=None,
                installed=False,
                weight_keys=_weight_keys(target),
            )
        model_type = values.get("model_type")
        if not isinstance(model_type, str):
            raise CodegenError(
                "config.json has no model_type and the folder no modeling file", path=target
            )
        modeling, configuration, class_name = model_type_files(model_type)
        return Target(
            label=target,
            modeling_path=modeling,
            configuration_path=configuration,
            config_values=values,
            config_json_path=json_path,
            model_type=model_type,
            config_class_name=class_name,
            installed=True,
            weight_keys=_weight_keys(target),
        )
    if looks_like_path:
        if not os.path.isfile(target):
            raise CodegenError("no such file or directory", path=target)
        configuration = find_config_class_file(target)
        return Target(
            label=target,
            modeling_path=target,
            configuration_path=configuration,
            config_values=override,
            config_json_path=config_override,
            model_type=override.get("model_type") if override else None,
            config_class_name=None,
            installed=is_installed(target),
        )
    modeling, configuration, class_name = model_type_files(target)
    return Target(
        label=target,
        modeling_path=modeling,
        configuration_path=configuration,
        config_values=override,
        config_json_path=config_override,
        model_type=target,
        config_class_name=class_name,
        installed=True,
    )
