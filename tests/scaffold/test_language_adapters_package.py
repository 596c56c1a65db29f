"""End to end: X-MOD (transformers' xmod: XLM-R layers with a bottleneck adapter per
language after the FFN, each sample's chosen by its language id), planned from its
analysis, scaffolded and verified against the installed transformers model in every setting
of the adapters' norm switches; the package holds every language's adapter (three in the
toy, the second the default). Seeded defects, each a slip of the adapter path, fail verify
and name the module where it lives."""

from __future__ import annotations

import pytest

from codegen.models import load_spec
from codegen.scaffold.plan import make_plan
from codegen.scaffold.target import load_target
from codegen.scaffold.testing import write_planned
from codegen.verify.cases import default_cases
from codegen.verify.run import Case, verify_case
from codegen.verify.tiny_config import tiny_config

TARGET = "xmod"


@pytest.fixture(scope="module")
def planned():
    target = load_target(TARGET)
    plan = make_plan(target)
    assert plan.complete, plan.gaps
    assert "language_adapters" in {step.rule for step in plan.steps}
    return target, plan


def _package(tmp_path, planned, without: str | None = None):
    return write_planned(tmp_path / "models", planned, without)


def _verify(models, name, dtypes=("fp32",), case=None):
    spec = load_spec(name, models)
    case = case or default_cases(spec, switches=False)[0]
    return verify_case(spec, case, list(dtypes))


def _seed(models, name, old: str, new: str) -> None:
    path = models / name / "model.py"
    source = path.read_text()
    assert source.count(old) == 1, old
    path.write_text(source.replace(old, new))


@pytest.mark.parametrize(
    "switch",
    [
        {},
        {"adapter_layer_norm": True},
        {"adapter_reuse_layer_norm": False},
        {"ln_before_adapter": False},
    ],
)
def test_package_verifies_in_every_setting_of_the_norm_switches(tmp_path, planned, switch):
    models, name = _package(tmp_path, planned)
    case = Case(
        TARGET + "".join(f"+{k}={v}" for k, v in switch.items()), tiny_config(TARGET, **switch)
    )
    results = _verify(models, name, ("fp32", "bf16"), case)
    assert all(r.passed for r in results), [r.error or r.first_divergence for r in results]
    args = load_spec(name, models).args.from_hf_config(case.config)
    assert args.languages == tuple(case.config.languages) and len(args.languages) == 3
    assert args.default_language == args.languages[1]


def test_package_without_the_rule_fails_on_the_adapter_keys(tmp_path, planned):
    models, name = _package(tmp_path, planned, without="language_adapters")
    (result,) = _verify(models, name)
    assert not result.passed
    assert any("adapter_modules" in key for key in result.unexpected_keys), result.unexpected_keys


_ADAPTED = "self.post_ffn_norm(self.language_adapter(h + self.feed_forward(h), lang_ids))"


def test_dropped_adapters_fail_and_are_named_never_run(tmp_path, planned):
    models, name = _package(tmp_path, planned)
    _seed(models, name, _ADAPTED, "self.post_ffn_norm(h + self.feed_forward(h))")
    (result,) = _verify(models, name)
    assert not result.passed
    assert result.first_divergence.startswith(
        "layers.0.adapters.en_XX, layers.0.adapters.toy_0, layers.0.adapters.toy_1 (HF"
        " roberta.encoder.layer.0.output.adapter_modules.en_XX"
    ), result.first_divergence
    assert "never run" in result.first_divergence


def test_wrong_languages_adapter_fails_and_is_named(tmp_path, planned):
    """Every sample run through the first language's adapter instead of the default's (the
    toy's second): that adapter reads the rows HF gives the default's."""
    models, name = _package(tmp_path, planned)
    _seed(
        models, name, "index = self.args.languages.index(self.args.default_language)", "index = 0"
    )
    (result,) = _verify(models, name)
    assert not result.passed
    assert result.first_divergence.startswith(
        "layers.0.adapters.en_XX (HF roberta.encoder.layer.0.output.adapter_modules.en_XX)"
        " reads another input"
    ), result.first_divergence


def test_adapter_fed_after_the_final_norm_fails_at_the_adapter(tmp_path, planned):
    """The layer norm order slipped: the FFN's sum normed before the adapters (which norm it
    again) instead of after them: the default language's adapter reads another input."""
    models, name = _package(tmp_path, planned)
    _seed(
        models,
        name,
        _ADAPTED,
        "self.language_adapter(self.post_ffn_norm(h + self.feed_forward(h)), lang_ids)",
    )
    (result,) = _verify(models, name)
    assert not result.passed
    assert result.first_divergence.startswith(
        "layers.0.adapters.toy_0 (HF roberta.encoder.layer.0.output.adapter_modules.toy_0)"
        " reads another input"
    ), result.first_divergence


@pytest.mark.parametrize(
    "old, new, switch",
    [
        # the adapter's residual dropped
        ("return adapted + residual", "return adapted", {}),
        # the residual taken on the other side of the adapters' norm (ln_before_adapter)
        (
            "residual = normed if self.adapter_residual_after_norm else x",
            "residual = x if self.adapter_residual_after_norm else normed",
            {},
        ),
        # no norm before the adapters: the FFN's norm runs once, after them
        ("return adapted + residual", "return adapted", {"adapter_reuse_layer_norm": False}),
    ],
)
def test_adapter_residual_slips_are_named_at_the_adapters_output(
    tmp_path, planned, old, new, switch
):
    """The residual is added in the block's own code (no module of its own): every part of
    the first layer reads HF's input and returns HF's output on its first call; the FFN's
    norm, run again after the adapters (HF's too), reads another sum than HF's there, and
    the adapter run before it is named as the stage whose output the layer combines amiss.
    Where the norm runs only after the adapters, its first call reads that sum: HF's
    `output`, holding the adapters, returns it, so it is still the adapters' stage."""
    models, name = _package(tmp_path, planned)
    _seed(models, name, old, new)
    case = None
    if switch:
        label = TARGET + "".join(f"+{k}={v}" for k, v in switch.items())
        case = Case(label, tiny_config(TARGET, **switch))
    (result,) = _verify(models, name, case=case)
    assert not result.passed
    assert result.first_divergence.startswith(
        "layers.0.adapters.toy_0 (HF roberta.encoder.layer.0.output.adapter_modules.toy_0)"
        " output stage: what the layer's own code makes of it differs from HF's where"
        " layers.0.post_ffn_norm (HF roberta.encoder.layer.0.output.LayerNorm) reads it on its"
        f" call {1 if switch else 2}"
    ), result.first_divergence
