"""Which HF configs a model package is verified against.

By default: for each HF model_type the spec supports, the toy config of that type, and the
same toy with the output head's tying flipped (tied heads are a classic silent bug, and
the class default exercises only one side). `--config` replaces them with exactly one file;
`--shrink-config` with the toy of a real config.json.
"""

from __future__ import annotations

from pathlib import Path

from codegen.spec import ModelSpec
from codegen.verify.run import Case
from codegen.verify.tiny_config import config_from_file, tiny_config, tiny_config_from_file


def default_cases(spec: ModelSpec) -> list[Case]:
    cases = []
    for model_type in sorted(spec.supported_model_types):
        base = tiny_config(model_type)
        cases.append(Case(model_type, base))
        if hasattr(base, "tie_word_embeddings"):
            flipped = not base.tie_word_embeddings
            label = f"{model_type}+{'tied' if flipped else 'untied'}"
            cases.append(Case(label, tiny_config(model_type, tie_word_embeddings=flipped)))
    return cases


def file_cases(path: Path, shrink: bool) -> list[Case]:
    config = tiny_config_from_file(path) if shrink else config_from_file(path)
    return [Case(f"{config.model_type}:{Path(path).name}", config)]
