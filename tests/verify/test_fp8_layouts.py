"""`verify --fp8` reads where a checkpoint keeps its decoder layers and embedding from the
package's own key table: a BERT-style package (roc_bert: `roc_bert.encoder.layer.{}`, its
embedding under `roc_bert.embeddings`) gets its projections quantized, its multi-token-
prediction layer ignored, and passes at both block sizes."""

from __future__ import annotations

import pytest

from codegen.models import load_spec
from codegen.scaffold.plan import make_plan
from codegen.scaffold.target import load_target
from codegen.scaffold.testing import write_planned
from codegen.verify.cases import base_config
from codegen.verify.fp8 import verify_fp8_case
from codegen.verify.run import Case

TARGET = "roc_bert"


@pytest.fixture(scope="module")
def spec(tmp_path_factory):
    target = load_target(TARGET)
    plan = make_plan(target)
    assert plan.complete, plan.gaps
    models, name = write_planned(tmp_path_factory.mktemp("fp8") / "models", (target, plan))
    return load_spec(name, models)


def test_a_package_laid_out_unlike_llama_passes_at_both_block_sizes(spec):
    config, _ = base_config(TARGET)
    results = verify_fp8_case(spec, Case(TARGET, config))
    assert [r.passed for r in results] == [True, True], [r.to_json() for r in results]
    assert results[1].ragged and all(
        k.startswith("roc_bert.encoder.layer.") for k in results[1].ragged
    )
    layers = config.num_hidden_layers
    assert all(
        r.ignored and all(k.startswith(f"roc_bert.encoder.layer.{layers}.") for k in r.ignored)
        for r in results
    )
