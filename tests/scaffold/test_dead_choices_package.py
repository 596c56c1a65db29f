"""Scaffolded packages carry no choice their HF code never makes: a Mixtral-like target
(every layer MoE) has no dense feed-forward branch, an MHA target (GPT-2) no kv head count
that can only equal n_heads, and a package that pins no setting no empty FIXED_SETTINGS. A
target whose HF code does mix dense and MoE layers (qwen2_moe's mlp_only_layers) keeps the
choice."""

from __future__ import annotations

import ast

import pytest

from codegen.scaffold.build import build_package
from codegen.scaffold.plan import make_plan
from codegen.scaffold.target import load_target
from codegen.scaffold.testing import verify_toy, write_planned


def _planned(model_type: str):
    target = load_target(model_type)
    return target, make_plan(target)


def _files(model_type: str) -> dict[str, str]:
    target, plan = _planned(model_type)
    return build_package(
        plan.reference,
        plan.name,
        list(plan.model_types),
        list(plan.steps),
        features=target.features,
        target=target,
    )


def _names(source: str) -> set[str]:
    """Every identifier and attribute name of `source`."""
    tree = ast.parse(source)
    names = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}
    names |= {n.attr for n in ast.walk(tree) if isinstance(n, ast.Attribute)}
    names |= {n.name for n in ast.walk(tree) if isinstance(n, ast.ClassDef | ast.FunctionDef)}
    names |= {n.arg for n in ast.walk(tree) if isinstance(n, ast.keyword) and n.arg}
    return names


def _strings(source: str) -> set[str]:
    tree = ast.parse(source)
    return {
        n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str)
    }


@pytest.fixture(scope="module")
def mixtral():
    return _files("mixtral")


def test_an_all_moe_target_has_the_moe_path_alone(mixtral):
    model = _names(mixtral["model.py"])
    assert "is_moe" not in model and "FeedForward" not in model and "feed_forward" not in model
    assert "is_moe_layer" not in _names(mixtral["args.py"])
    assert "hidden_dim" not in _names(mixtral["args.py"])  # the dense width went with it
    plan = _strings(mixtral["parallelize.py"])
    assert not any(".feed_forward." in key for key in plan)
    assert "layers.*.moe.experts" in plan
    assert not any(".feed_forward." in key for key in _strings(mixtral["state_dict_adapter.py"]))


def test_a_target_mixing_dense_and_moe_layers_keeps_the_choice():
    files = _files("qwen2_moe")
    model = _names(files["model.py"])
    assert {"is_moe", "FeedForward", "feed_forward"} <= model
    assert {"is_moe_layer", "mlp_only_layers", "decoder_sparse_step"} <= _names(files["args.py"])


def test_a_package_pinning_nothing_has_no_settings_table(mixtral):
    args = _names(mixtral["args.py"])
    assert "FIXED_SETTINGS" not in args and "require_settings" not in args


@pytest.fixture(scope="module")
def gpt2():
    return _files("gpt2")


def test_an_mha_target_has_no_kv_head_count(gpt2):
    for name in ("args.py", "model.py", "state_dict_adapter.py", "parallelize.py"):
        assert "n_kv_heads" not in _names(gpt2[name]) | _strings(gpt2[name]), name
    assert "__post_init__" not in _names(gpt2["args.py"])  # nothing left to refuse
    assert "FIXED_SETTINGS" in _names(gpt2["args.py"])  # a table that pins something stays


def test_the_packages_verify(tmp_path_factory):
    for model_type in ("mixtral", "gpt2"):
        models, name = write_planned(
            tmp_path_factory.mktemp(model_type) / "models", _planned(model_type)
        )
        (result,) = verify_toy(models, name)
        assert result.passed, (model_type, result.error or result.first_divergence)


def test_an_mha_package_splits_over_tensor_parallel_ranks(tmp_path):
    """parallel.py reads an attention without a kv count as one kv head per query head."""
    from codegen.models import load_spec
    from codegen.verify.cases import base_config
    from codegen.verify.parallel import verify_parallel

    models, name = write_planned(tmp_path / "models", _planned("gpt2"))
    result = verify_parallel(load_spec(name, models), base_config("gpt2")[0], "tp=2")
    assert result.passed, result.line()
