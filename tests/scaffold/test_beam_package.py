"""End to end: beam (depth-scaled residual sum, NoPE full-attention layers whose queries the
stack scales by (1 + (pos + 1) / 2048) ** 0.1), planned from its analysis, scaffolded and
verified against the installed transformers model (fp32). Seeded defects in the generated
source fail verify and name the module that carries them."""

from __future__ import annotations

import pytest

from codegen.models import load_spec
from codegen.scaffold.pipeline import scaffold_into
from codegen.scaffold.plan import make_plan
from codegen.scaffold.target import load_target
from codegen.verify.run import Case, verify_case
from codegen.verify.tiny_config import tiny_config


@pytest.fixture(scope="module")
def planned():
    target = load_target("beam")
    plan = make_plan(target)
    assert plan.complete, plan.gaps
    assert {"residual_scale", "nope_layers", "logn_attention"} <= {s.rule for s in plan.steps}
    return target, plan


@pytest.fixture(scope="module")
def package(planned, tmp_path_factory):
    target, plan = planned
    models = tmp_path_factory.mktemp("beam") / "models"
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


def _verify(models, name):
    (result,) = verify_case(
        load_spec(name, models), Case("beam+test", tiny_config("beam")), ["fp32"]
    )
    return result


def _seeded(package, tmp_path, old: str, new: str):
    """The generated package with one line of its model.py changed."""
    import shutil

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


def test_an_unscaled_residual_stream_fails_in_the_first_block(package, tmp_path):
    """The depth-scaled sum replaced by a plain one in the attention's add."""
    models, name = _seeded(
        package,
        tmp_path,
        "self.attention_scale, self.attention_stream_scale = 1 / sqrt(k), sqrt((k - 1) / k)",
        "self.attention_scale, self.attention_stream_scale = 1.0, 1.0",
    )
    result = _verify(models, name)
    assert not result.passed
    # the first part of layer 0 handed the wrong sum: the FFN's norm
    assert result.first_divergence.startswith(
        "layers.0.ffn_norm (HF model.layers.0.pre_feedforward_layernorm) reads another input"
    ), result.first_divergence


def test_a_wrong_query_scale_fails_in_the_nope_layer_s_attention(package, tmp_path):
    """The exponent of the NoPE layers' query scale 0.2 instead of 0.1."""
    models, name = _seeded(package, tmp_path, "torch.exp(0.1 *", "torch.exp(0.2 *")
    result = _verify(models, name)
    nope = tiny_config("beam").layer_types.index("full_attention")
    assert not result.passed
    assert result.first_divergence.startswith(f"layers.{nope}.attention "), result.first_divergence


def test_a_gated_product_rounded_twice_fails_in_bf16_in_the_first_mlp(package, tmp_path):
    """The MLP's product taken as the reference takes it (the activation rounded to bf16,
    then the product) instead of in fp32 as beam's HF MLP: the same values in fp32, but in
    bf16 the logits leave HF's (0.31 of max|logit| on the attention-bias setting, where
    the roundings flip experts); the first MLP is named, its input still HF's."""
    models, name = _seeded(
        package,
        tmp_path,
        "self.w2((self.act(self.w1(x).float()) * self.w3(x).float()).to(x.dtype))",
        "self.w2(self.act(self.w1(x)) * self.w3(x))",
    )
    case = Case("beam+attention_bias=True", tiny_config("beam", attention_bias=True))
    (result,) = verify_case(load_spec(name, models), case, ["bf16"], gradients=False)
    assert not result.passed
    assert result.first_divergence.startswith("layers.0.feed_forward "), result.first_divergence
    assert result.first_divergence.endswith("(against HF in bf16)"), result.first_divergence
