"""verify runs every config switch setting the HF source branches on, read statically, and
a package that ignores a switch fails on that setting instead of passing its default."""

from __future__ import annotations

import dataclasses

import pytest

from codegen.cli import main
from codegen.models import load_spec
from codegen.verify.cases import default_cases
from codegen.verify.run import verify_case


def labels(name: str, models=None) -> set[str]:
    return {case.label for case in default_cases(load_spec(name, models))}


def test_switch_settings_come_from_the_source_not_a_list():
    assert {
        "qwen3_moe+norm_topk_prob=True",
        "qwen3_moe+mlp_only_layers=[]",
        "qwen3_moe+use_sliding_window=False",
        "qwen3_moe+tie_word_embeddings=True",
    } <= labels("qwen3_moe")
    assert {"deepseek_v3+q_lora_rank=None", "deepseek_v3+norm_topk_prob=False"} <= labels(
        "deepseek_v3"
    )


def test_settings_are_marked_refusable_and_the_base_is_not():
    cases = default_cases(load_spec("llama"))
    assert not cases[0].may_refuse and cases[0].label == "llama"
    assert cases[1:] and all(case.may_refuse for case in cases[1:])


def test_a_refusal_is_a_gap_not_a_failure(monkeypatch):
    from references.llama import args

    # a package that pins tied embeddings off, as a package may for a setting it lacks
    monkeypatch.setitem(args.FIXED_SETTINGS, "tie_word_embeddings", False)
    (case,) = [c for c in default_cases(load_spec("llama")) if "tie_word" in c.label]
    for result in verify_case(load_spec("llama"), case, ["fp32"]):
        assert result.status == "refused" and "tie_word_embeddings=True" in result.refused


def test_refusing_the_default_config_is_a_failure():
    llama = load_spec("llama")

    class Refuses(llama.args):
        @classmethod
        def from_hf_config(cls, hf_config):
            raise NotImplementedError("nothing is supported")

    (base, *_) = default_cases(llama)
    (result,) = verify_case(dataclasses.replace(llama, args=Refuses), base, ["fp32"])
    assert result.status == "fail" and "refuses its own default config" in result.error


@pytest.fixture(scope="module")
def deepseek_v2(tmp_path_factory):
    models = tmp_path_factory.mktemp("switch") / "models"
    assert main(["scaffold", "deepseek_v2", "--out", str(models)]) == 0
    return models


def test_an_ignored_switch_fails_on_its_own_setting(deepseek_v2):
    """A DeepSeek-V2 port that always routes greedily passes the class default (greedy);
    the enumerated `topk_method='group_limited_greedy'` setting catches it."""
    args = deepseek_v2 / "deepseek_v2" / "args.py"
    source = args.read_text()
    grouped = 'return hf_config.topk_method == "group_limited_greedy"'
    assert grouped in source
    args.write_text(source.replace(grouped, "return False"))
    spec = load_spec("deepseek_v2", deepseek_v2)
    cases = default_cases(spec)
    assert cases[0].label == "deepseek_v2"
    statuses = {
        case.label: [r.status for r in verify_case(spec, case, ["fp32"])]
        for case in cases
        if case.label in ("deepseek_v2", "deepseek_v2+topk_method='group_limited_greedy'")
    }
    assert statuses["deepseek_v2"] == ["pass"]
    assert statuses["deepseek_v2+topk_method='group_limited_greedy'"] == ["fail"]


def test_a_setting_the_config_class_rejects_is_skipped_not_an_abort(monkeypatch):
    """Settings come from the source, statically; where the config class's own validation
    refuses one (as remote configs often do), that setting is reported skipped with the
    reason, and the other cases still run."""
    from codegen.verify import cases as cases_module

    real = cases_module.tiny_config

    def strict(model_type, **overrides):
        if overrides.get("tie_word_embeddings") is True:
            raise ValueError("this config class does not allow tied embeddings")
        return real(model_type, **overrides)

    monkeypatch.setattr(cases_module, "tiny_config", strict)
    cases = {case.label: case for case in default_cases(load_spec("llama"))}
    rejected = cases["llama+tie_word_embeddings=True"]
    assert rejected.config is None and "does not allow tied" in rejected.rejected
    (result,) = verify_case(load_spec("llama"), rejected, ["fp32"])
    assert result.status == "skipped" and "config class rejects" in result.skipped
    assert result.model_type == "llama"
    assert all(case.config is not None for label, case in cases.items() if case is not rejected)
