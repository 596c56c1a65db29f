"""End to end: transformers' gemma4 text model with `enable_moe_block` (the real 26B-A4B
checkpoint's setting: each layer runs a routed GeGLU MoE beside the dense MLP, each branch
with norms of its own), planned from its analysis, scaffolded and verified in both settings
of the switch. Seeded defects, each one slip in the new maths, fail verify naming the module
that holds it."""

from __future__ import annotations

import pytest

from codegen.models import load_spec
from codegen.scaffold.plan import make_plan
from codegen.scaffold.target import load_target
from codegen.scaffold.testing import write_planned
from codegen.verify.run import Case, verify_case
from codegen.verify.tiny_config import tiny_config

TARGET = "gemma4_text"


@pytest.fixture(scope="module")
def planned():
    target = load_target(TARGET)
    plan = make_plan(target)
    assert plan.complete, plan.gaps
    assert "parallel_moe" in {step.rule for step in plan.steps}
    return target, plan


@pytest.fixture(scope="module")
def case():
    config = tiny_config(TARGET, enable_moe_block=True)
    return Case(f"{TARGET}+enable_moe_block=True", config)


@pytest.fixture(scope="module")
def package(tmp_path_factory, planned):
    return _package(tmp_path_factory.mktemp("parallel_moe"), planned)


def _package(tmp_path, planned, without: str | None = None):
    return write_planned(tmp_path / "models", planned, without)


def _verify(models, name, case, dtypes=("fp32",)):
    return verify_case(load_spec(name, models), case, list(dtypes))


def _seeded(tmp_path, package, old: str, new: str):
    """A copy of the package with `old` (once in model.py) replaced by `new`."""
    import shutil

    models, name = package
    copy = tmp_path / "seeded"
    shutil.copytree(models, copy)
    path = copy / name / "model.py"
    source = path.read_text()
    assert source.count(old) == 1, old
    path.write_text(source.replace(old, new))
    return copy, name


def _fails_at(tmp_path, package, case, old, new, module):
    models, name = _seeded(tmp_path, package, old, new)
    (result,) = _verify(models, name, case)
    assert not result.passed
    assert result.first_divergence is not None, result.error
    assert result.first_divergence.startswith(module), result.first_divergence
    return result


def test_package_verifies_with_the_moe(package, case):
    models, name = package
    results = _verify(models, name, case, ("fp32", "bf16"))
    assert all(r.passed for r in results), [r.error or r.first_divergence for r in results]
    spec = load_spec(name, models)
    args = spec.args.from_hf_config(case.config)
    assert args.enable_moe_block and args.num_experts == case.config.num_experts
    assert args.top_k == case.config.top_k_experts
    model = spec.model(args)
    assert all(layer.moe is not None for layer in model.layers)


def test_package_verifies_with_the_moe_off(package):
    models, name = package
    config = tiny_config(TARGET)
    assert not config.enable_moe_block
    results = _verify(models, name, Case(TARGET, config), ("fp32", "bf16"))
    assert all(r.passed for r in results), [r.error or r.first_divergence for r in results]


def test_package_without_the_rule_refuses_the_setting(tmp_path, planned, case):
    models, name = _package(tmp_path, planned, without="parallel_moe")
    spec = load_spec(name, models)
    with pytest.raises(NotImplementedError, match="enable_moe_block"):
        spec.args.from_hf_config(case.config)


def test_router_scale_dropped_fails_at_the_router(tmp_path, package, case):
    _fails_at(
        tmp_path,
        package,
        case,
        "x = self.norm(x) * self.scale * self.root_dim",
        "x = self.norm(x) * self.scale",
        "layers.0.moe.router",
    )


def test_per_expert_scale_dropped_fails_at_the_router(tmp_path, package, case):
    _fails_at(
        tmp_path,
        package,
        case,
        "return probs, weights * self.expert_scale[indices], indices",
        "return probs, weights, indices",
        "layers.0.moe.router",
    )


def test_dense_branch_dropped_fails_at_the_first_layer(tmp_path, package, case):
    # the dense MLP's normed output never joins the sum: the layer is wired otherwise
    _fails_at(
        tmp_path,
        package,
        case,
        "ffn = self.post_dense_norm(ffn) + self.post_moe_norm(",
        "ffn = self.post_moe_norm(",
        "layers.0.post_dense_norm",
    )


def test_moe_branch_dropped_fails_at_the_first_layer(tmp_path, package, case):
    # the MoE and its norms are never run where HF runs them
    _fails_at(
        tmp_path,
        package,
        case,
        "ffn = self.post_dense_norm(ffn) + self.post_moe_norm(self.moe(h, self.moe_norm(h)))",
        "ffn = self.post_dense_norm(ffn)",
        "layers.0.moe",
    )


def test_norms_swapped_fail_at_the_first_layer(tmp_path, package, case):
    # each branch normed with the other's post-norm
    _fails_at(
        tmp_path,
        package,
        case,
        "ffn = self.post_dense_norm(ffn) + self.post_moe_norm(self.moe(h, self.moe_norm(h)))",
        "ffn = self.post_moe_norm(ffn) + self.post_dense_norm(self.moe(h, self.moe_norm(h)))",
        "layers.0.post_moe_norm",
    )


def test_router_on_the_normed_input_is_named_at_the_router(tmp_path, package, case):
    # the experts are given other indices and weights than HF's, so they are no culprit; the
    # layer is, and of its parts (the MoE's own, HF keeping router and experts in the layer)
    # the router is the first given another input than HF's
    _fails_at(
        tmp_path,
        package,
        case,
        "_, weights, indices = self.router(x.view(-1, dim))",
        "_, weights, indices = self.router(normed.view(-1, dim))",
        "layers.0.moe.router (HF model.layers.0.router) reads another input",
    )
