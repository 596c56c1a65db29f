"""No generated package takes a parameter it never reads, but for the interface table: one
target per way a dead parameter was left (the every-layer-MoE block's `layer_id`, the
weightless norm's `dim`, the truncated-init rule table's `cutoff`)."""

import pytest

from codegen.quality.unused_arguments import unused_arguments
from codegen.scaffold.testing import write_planned

TARGETS = ("mixtral", "nanochat", "modernbert-decoder")


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    from codegen.scaffold.plan import make_plan
    from codegen.scaffold.target import load_target

    root = tmp_path_factory.mktemp("models")
    names = {}
    for model_type in TARGETS:
        target = load_target(model_type)
        _, names[model_type] = write_planned(root, (target, make_plan(target)))
    return root, names


@pytest.mark.parametrize("model_type", TARGETS)
def test_the_package_reads_every_parameter_no_caller_fixes(models, model_type):
    root, names = models
    assert unused_arguments(root / names[model_type]) == []


def test_the_models_own_constructors_take_only_what_they_read(models):
    root, names = models
    mixtral = (root / names["mixtral"] / "model.py").read_text()
    assert "TransformerBlock(args) for _ in range(args.n_layers)" in mixtral
    nanochat = (root / names["nanochat"] / "model.py").read_text()
    assert "PlainRMSNorm(args.norm_eps)" in nanochat and "(self, dim: int, eps" not in nanochat
