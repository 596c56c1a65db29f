"""End to end: doge (qwen3 + a dynamic mask: a per-key score bias exp(A * softplus(dt_proj(v)))
per kv head, causally masked, top-k kept past keep_window_size; the residual stream times
learned per-channel vectors before each add), planned from its analysis, scaffolded and
verified against the installed transformers model (fp32). Seeded defects in the generated
source fail verify and name the module that carries them."""

from __future__ import annotations

import shutil

import pytest

from codegen.models import load_spec
from codegen.scaffold.pipeline import scaffold_into
from codegen.scaffold.plan import make_plan
from codegen.scaffold.target import load_target
from codegen.verify.parallel import plan_module, verify_parallel
from codegen.verify.run import Case, verify_case
from codegen.verify.tiny_config import tiny_config


@pytest.fixture(scope="module")
def planned():
    target = load_target("doge")
    plan = make_plan(target)
    assert plan.complete, plan.gaps
    assert {"dynamic_mask", "residual_scale"} <= {s.rule for s in plan.steps}
    return target, plan


@pytest.fixture(scope="module")
def package(planned, tmp_path_factory):
    target, plan = planned
    models = tmp_path_factory.mktemp("doge") / "models"
    scaffold_into(
        models,
        plan.reference,
        plan.name,
        list(plan.model_types),
        plan.steps,
        features=target.features,
        target=target,
    )
    return models / plan.name, plan.name


def _verify(models, name, **overrides):
    case = Case("doge+test", tiny_config("doge", **overrides))
    (result,) = verify_case(load_spec(name, models), case, ["fp32"], gradients=False)
    return result


def _seeded(package, tmp_path, old: str, new: str):
    """The generated package with one piece of its model.py changed."""
    folder, name = package
    models = tmp_path / "models"
    shutil.copytree(folder.parent, models)
    model = models / name / "model.py"
    text = model.read_text()
    assert text.count(old) == 1, old
    model.write_text(text.replace(old, new))
    return models, name


def test_the_package_verifies(package):
    folder, name = package
    result = _verify(folder.parent, name)
    assert result.passed, result.error or result.first_divergence


def test_an_unweighted_residual_stream_fails_in_the_first_block(package, tmp_path):
    """The attention's add takes the stream as it is, not times its learned vector."""
    models, name = _seeded(package, tmp_path, "self.attention_residual * x + ", "x + ")
    result = _verify(models, name)
    assert not result.passed
    # the first part of layer 0 handed the wrong sum: the FFN's norm
    assert result.first_divergence.startswith(
        "layers.0.ffn_norm (HF model.layers.0.post_attention_layernorm) reads another input"
    ), result.first_divergence


def test_a_dropped_dynamic_bias_fails_in_the_first_attention(package, tmp_path):
    """Plain causal attention: the values' bias (and its top-k window) left out."""
    models, name = _seeded(
        package, tmp_path, "attn_mask=self.dynamic_bias(v, mask),", "is_causal=mask is None,"
    )
    result = _verify(models, name, sliding_window=None)
    assert not result.passed
    assert result.first_divergence.startswith("layers.0.attention "), result.first_divergence


def test_a_bias_without_softplus_fails_in_the_first_attention(package, tmp_path):
    models, name = _seeded(
        package,
        tmp_path,
        "dt = F.softplus(self.bias_proj(v.transpose(1, 2).flatten(2)))",
        "dt = self.bias_proj(v.transpose(1, 2).flatten(2))",
    )
    result = _verify(models, name)
    assert not result.passed
    assert result.first_divergence.startswith("layers.0.attention "), result.first_divergence


def test_a_missing_top_k_window_fails_in_the_first_attention(package, tmp_path):
    """Every causal key kept: the window's top-k skipped (the long input has more keys)."""
    models, name = _seeded(
        package, tmp_path, "if seq > self.keep_window:", "if seq > 10 * self.keep_window:"
    )
    result = _verify(models, name, sliding_window=None)
    assert not result.passed
    assert result.first_divergence.startswith("layers.0.attention "), result.first_divergence


def test_the_product_key_experts_verify(package):
    folder, name = package
    result = _verify(folder.parent, name, is_moe=True)
    assert result.passed, result.error or result.first_divergence


def test_swapped_expert_tables_fail_in_the_first_feed_forward(package, tmp_path):
    """The up table's rows taken as the down projections (the tables' roles swapped)."""
    models, name = _seeded(
        package,
        tmp_path,
        "torch.matmul(self.down_embed(experts), x.view(tokens, dim, 1))",
        "torch.matmul(self.up_embed(experts), x.view(tokens, dim, 1))",
    )
    result = _verify(models, name, is_moe=True)
    assert not result.passed
    assert result.first_divergence.startswith("layers.0.feed_forward "), result.first_divergence


def test_unweighted_experts_fail_in_the_first_feed_forward(package, tmp_path):
    """The experts' outputs summed without their softmax weights."""
    models, name = _seeded(
        package, tmp_path, "inner = F.silu(inner) * weights", "inner = F.silu(inner)"
    )
    result = _verify(models, name, is_moe=True)
    assert not result.passed
    assert result.first_divergence.startswith("layers.0.feed_forward "), result.first_divergence


def _tensor_parallel(package, **plan_changes):
    folder, name = package
    spec = load_spec(name, folder.parent)
    plan = {**plan_module(spec).PLAN, **plan_changes}
    return verify_parallel(spec, tiny_config("doge", is_moe=True), "tp=2", plan=plan)


def test_the_shard_plan_matches_one_device(package):
    result = _tensor_parallel(package)
    assert result.passed, result.line()


@pytest.mark.parametrize(
    ("slip", "named"),
    [
        # the bias's per-head scale left whole: each rank scales its heads with head 0's
        ({"layers.*.attention.bias_scale": "replicate"}, "layers.0.attention"),
        # the summed bias not cut to the rank's heads: every head's bias on every rank
        ({"layers.*.attention.bias_proj": "rowwise"}, "layers.0.attention"),
    ],
)
def test_a_dynamic_bias_sharded_wrong_fails_naming_its_attention(package, slip, named):
    result = _tensor_parallel(package, **slip)
    assert not result.passed
    assert named in result.error, result.error


def test_a_head_sliced_bias_whose_gradient_is_not_summed_fails_naming_it(package, tmp_path):
    """Each rank uses its own heads' slice of the summed bias: without the gradient summed
    over the ranks, bias_proj learns from the rank's heads only."""
    folder, name = package
    models = tmp_path / "models"
    shutil.copytree(folder.parent, models)
    parallel = models / name / "parallel.py"
    text = parallel.read_text()
    old = "return _sum_grads(out, mesh)[..., rank * step : (rank + 1) * step]"
    assert text.count(old) == 1
    parallel.write_text(text.replace(old, "return out[..., rank * step : (rank + 1) * step]"))
    result = _tensor_parallel((models / name, name))
    assert not result.passed
    assert result.error.startswith("first differing gradient: "), result.error
    assert "attention.bias_proj.weight" in result.error.splitlines()[0], result.error
