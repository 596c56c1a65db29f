"""Which HF configs a model package is verified against.

By default: for each HF model_type the spec supports, the toy config of that type, and one
more toy per boolean switch in `FLIPPED_SWITCHES` that the config has, with that switch
flipped: the class default exercises only one side, and both sides ship in real
checkpoints (tied heads are a classic silent bug; Qwen3-MoE defaults `norm_topk_prob` off
while its checkpoints turn it on). `--config` replaces them with exactly one file;
`--shrink-config` with the toy of a real config.json.
"""

from __future__ import annotations

from pathlib import Path

from codegen.spec import ModelSpec
from codegen.verify.run import Case
from codegen.verify.tiny_config import config_from_file, tiny_config, tiny_config_from_file

# config switch -> case label suffix when the flipped value is (True, False)
FLIPPED_SWITCHES = {
    "tie_word_embeddings": ("tied", "untied"),
    "norm_topk_prob": ("norm_topk", "no_norm_topk"),
}


def default_cases(spec: ModelSpec) -> list[Case]:
    cases = []
    for model_type in sorted(spec.supported_model_types):
        base = tiny_config(model_type)
        cases.append(Case(model_type, base))
        for switch, (on_label, off_label) in FLIPPED_SWITCHES.items():
            if isinstance(getattr(base, switch, None), bool):
                flipped = not getattr(base, switch)
                label = f"{model_type}+{on_label if flipped else off_label}"
                cases.append(Case(label, tiny_config(model_type, **{switch: flipped})))
    return cases


def file_cases(path: Path, shrink: bool) -> list[Case]:
    config = tiny_config_from_file(path) if shrink else config_from_file(path)
    return [Case(f"{config.model_type}:{Path(path).name}", config)]


def folder_cases(folder: Path, trust_remote_code: bool) -> list[Case]:
    """The toy of a remote-code checkpoint folder's config, built by the folder's own code.

    As for an installed architecture, one more case per boolean switch in
    `FLIPPED_SWITCHES` the config has. The folder's model is built once up front, so code the
    installed transformers cannot run is one line naming the failing import or call.
    """
    from codegen.verify.remote import check_builds, load_remote, remote_toy_config

    remote = load_remote(Path(folder), trust_remote_code)
    base = remote_toy_config(remote)
    check_builds(remote, base)
    label = f"{remote.model_type}:{Path(folder).name}"
    cases = [Case(label, base)]
    for switch, (on_label, off_label) in FLIPPED_SWITCHES.items():
        if isinstance(getattr(base, switch, None), bool):
            flipped = not getattr(base, switch)
            suffix = on_label if flipped else off_label
            cases.append(Case(f"{label}+{suffix}", remote_toy_config(remote, **{switch: flipped})))
    return cases
