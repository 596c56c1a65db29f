"""Which HF configs a model package is verified against.

By default: for each HF model_type the spec supports, the toy config of that type, then one
toy per setting of every config switch the HF modeling source branches on (read statically
by `codegen.analyze.switches`, turned into config overrides by `switch_settings`): the
class default exercises one side of each branch, and real checkpoints ship the others
(tied heads, Qwen3-MoE's `norm_topk_prob`, DeepSeek without q-LoRA, QK-norm or QKV bias
switched on by a flag). A package may refuse a switch setting in `from_hf_config` in one
line (a reported gap); it may not compute something else. `--config` replaces the cases
with exactly one file; `--shrink-config` with the toy of a real config.json.
"""

from __future__ import annotations

from pathlib import Path

from codegen.spec import ModelSpec
from codegen.verify.run import Case
from codegen.verify.tiny_config import (
    config_from_file,
    config_value,
    tiny_config,
    tiny_config_from_file,
)


def default_cases(spec: ModelSpec, switches: bool = True, bases: dict | None = None) -> list[Case]:
    """`bases`: the `base_config` of a model_type the caller already built (the coverage
    worker builds each once for verify and the value-field moves)."""
    cases = []
    for model_type in sorted(spec.supported_model_types):
        base, fixed = (bases or {}).get(model_type) or base_config(model_type)
        cases.append(Case(model_type, base))
        if switches:
            cases += switch_cases(model_type, base, fixed)
    return cases


def base_config(model_type: str):
    """The toy config, and the overrides it needed to be one transformers can run.

    The toy's head_dim differs from hidden / heads on purpose. A few HF classes declare
    `head_dim` but size a projection from hidden (helium's o_proj): they cannot run such a
    config, so neither can any real checkpoint of theirs; for them the toy keeps
    head_dim = hidden / heads.
    """
    toy = tiny_config(model_type)
    derived = toy.hidden_size // config_value(toy, "num_attention_heads")
    if config_value(toy, "head_dim") in (None, derived) or _hf_runs(toy):
        return toy, {}
    fixed = {"head_dim": derived}
    return tiny_config(model_type, **fixed), fixed


def _hf_runs(config) -> bool:
    import torch
    from transformers import AutoModelForCausalLM

    try:
        with torch.no_grad():
            model = AutoModelForCausalLM.from_config(config)
            model(input_ids=torch.zeros(1, 4, dtype=torch.long))
    except Exception:  # any failure of HF's own code on this config
        return False
    return True


def switch_cases(model_type: str, base, fixed: dict | None = None) -> list[Case]:
    """One case per config switch setting the base toy does not already exercise."""
    from codegen.verify.switch_settings import switch_settings

    cases = []
    for setting in switch_settings(model_type, base.to_dict()):
        overrides = {**(fixed or {}), **setting.overrides}
        cases.append(
            _setting_case(f"{model_type}+{setting.label}", tiny_config, model_type, overrides)
        )
    return cases


def _setting_case(label: str, build, source, overrides: dict) -> Case:
    """The case of one switch setting; a setting the config class itself rejects (its
    validation raises) is a skipped case, not an abort of the whole run."""
    try:
        config = build(source, **overrides)
    except Exception as err:  # the config class's own validation, whatever it raises
        from codegen.verify.run import _one_line

        return Case(label, None, may_refuse=True, rejected=_one_line(err))
    return Case(label, config, may_refuse=True)


def file_cases(path: Path, shrink: bool) -> list[Case]:
    config = tiny_config_from_file(path) if shrink else config_from_file(path)
    return [Case(f"{config.model_type}:{Path(path).name}", config)]


def folder_cases(folder: Path, trust_remote_code: bool) -> list[Case]:
    """The toy of a remote-code checkpoint folder's config, built by the folder's own code.

    As for an installed architecture, one more case per setting of each config switch the
    folder's modeling source branches on (read statically from the folder). The folder's
    model is built once up front, so code the installed transformers cannot run is one line
    naming the failing import or call.
    """
    from codegen.analyze.locate import resolve
    from codegen.analyze.model import load_model
    from codegen.analyze.switches import switches_of_model
    from codegen.verify.remote import check_builds, load_remote, remote_toy_config
    from codegen.verify.switch_settings import switch_settings

    remote = load_remote(Path(folder), trust_remote_code)
    base, fixed = _buildable_toy(remote, remote_toy_config, check_builds)
    label = f"{remote.model_type}:{Path(folder).name}"
    cases = [Case(label, base)]
    switches = switches_of_model(load_model(resolve(str(folder))))
    toy = {k: v for k, v in base.to_dict().items() if k not in ("model_type", "auto_map")}
    for setting in switch_settings(switches, toy, config_class=remote.config_class):
        overrides = {**fixed, **setting.overrides}
        cases.append(
            _setting_case(f"{label}+{setting.label}", remote_toy_config, remote, overrides)
        )
    return cases


def _buildable_toy(remote, toy_config, check_builds):
    """The folder's toy and the overrides it needed: as for an installed class (see
    `base_config`), code that sizes a projection from hidden cannot run a head_dim other
    than hidden / heads, so neither can any checkpoint of it; the toy keeps it symmetric."""
    from codegen.errors import CodegenError

    base = toy_config(remote)
    try:
        check_builds(remote, base)
        return base, {}
    except CodegenError:
        heads = getattr(base, "num_attention_heads", None)
        head_dim = getattr(base, "head_dim", None)
        if not heads or head_dim in (None, base.hidden_size // heads):
            raise
    fixed = {"head_dim": base.hidden_size // heads}
    symmetric = toy_config(remote, **fixed)
    check_builds(remote, symmetric)  # still failing: that one-line error stands
    return symmetric, fixed
