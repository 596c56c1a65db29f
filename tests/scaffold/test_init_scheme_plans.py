"""End to end: ModernBERT-decoder's init (truncated normals, scaled outputs and head).

HF's `_init_weights` draws every matrix with `trunc_normal_` at +-`initializer_cutoff_factor`
stds (2: the std lands 12% below the nominal one) and starts the attention and MLP outputs,
the prediction head's dense layer and an untied vocabulary projection at
std / sqrt(2 * layers). The planned package starts like HF (tied and untied); without
`truncated_init` or `scaled_residual_init` verify's lifecycle check fails, naming the weight.
The analysis reads both from a renamed copy too.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from codegen.analyze.analysis import analyze
from codegen.models import load_spec
from codegen.scaffold.pipeline import scaffold_into
from codegen.scaffold.plan import make_plan
from codegen.scaffold.target import load_target
from codegen.verify import lifecycle
from codegen.verify.cases import base_config

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "analyze"))
from analyze_helpers import rename_model  # noqa: E402

TYPE = "modernbert-decoder"
CUTOFF = (
    "(hf_config.initializer_cutoff_factor if hf_config.initializer_cutoff_factor is not None"
    " else 3)"
)


def _init_failure(tmp_path, without: str | None = None, **overrides) -> str | None:
    target = load_target(TYPE)
    plan = make_plan(target)
    assert plan.complete, plan.gaps
    assert without is None or without in [s.rule for s in plan.steps]
    steps = [s for s in plan.steps if s.rule != without]
    models = tmp_path / "models"
    scaffold_into(models, plan.reference, "gen_init", [TYPE], steps, features=target.features)
    spec = load_spec("gen_init", models)
    config, _ = base_config(TYPE)
    for key, value in overrides.items():
        setattr(config, key, value)
    return lifecycle.init_statistics(spec, config, spec.adapter(spec.args.from_hf_config(config)))


def test_the_analysis_reads_the_cutoff_and_the_scaled_projections(tmp_path):
    for source in (TYPE, rename_model(TYPE, "quoll", str(tmp_path))[0]):
        block = analyze(source).block
        assert block.init_cutoff == CUTOFF
        assert block.scaled_residual_projections == ("attention", "ffn", "head_transform", "head")


@pytest.mark.parametrize("tied", [True, False])
def test_the_planned_package_starts_like_hf(tmp_path, tied):
    assert _init_failure(tmp_path, tie_word_embeddings=tied) is None


def test_without_truncation_init_fails(tmp_path):
    failure = _init_failure(tmp_path, without="truncated_init")
    assert failure is not None and failure.startswith("init_weights: lm_head.dense.weight")


def test_without_the_scaled_head_init_fails(tmp_path):
    failure = _init_failure(tmp_path, without="scaled_residual_init", tie_word_embeddings=False)
    assert failure is not None and failure.startswith("init_weights: decoder.weight")
