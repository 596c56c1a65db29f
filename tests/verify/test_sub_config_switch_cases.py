"""Sub-config switches in verify (issue 8): MPT's `attn_config.clip_qkv` and
`attn_config.softmax_scale` are enumerated as cases of their own, the scaffolded package
passes them, a package that pins one refuses it in one line, and a package that ignores one
fails on that setting while its default case still passes (the oracle has teeth)."""

from __future__ import annotations

import shutil

import pytest

from codegen.cli import main
from codegen.models import load_spec
from codegen.verify.cases import default_cases
from codegen.verify.run import verify_case

# the toy clamps q/k/v (transformers' DBRX cannot run without the clamp): off is the case
CLIP = "mpt+attn_config.clip_qkv=None"
SCALE = "mpt+attn_config.softmax_scale=1.0"


@pytest.fixture(scope="module")
def scaffolded(tmp_path_factory):
    models = tmp_path_factory.mktemp("mpt") / "models"
    assert main(["scaffold", "mpt", "--out", str(models)]) == 0
    return models


def _variant(scaffolded, tmp_path, old: str, new: str):
    """A copy of the scaffolded package with one edit of its args.py."""
    models = tmp_path / "models"
    shutil.copytree(scaffolded, models)
    args = models / "mpt" / "args.py"
    source = args.read_text()
    assert old in source, source
    args.write_text(source.replace(old, new))
    return load_spec("mpt", models)


def _statuses(spec, labels) -> dict[str, object]:
    cases = {case.label: case for case in default_cases(spec)}
    out = {}
    for label in labels:
        (result,) = verify_case(spec, cases[label], ["fp32"])
        out[label] = result
    return out


def test_sub_config_settings_are_cases_and_pass(scaffolded):
    spec = load_spec("mpt", scaffolded)
    labels = {case.label for case in default_cases(spec)}
    assert {CLIP, SCALE} <= labels
    results = _statuses(spec, [CLIP, SCALE])
    assert {label: r.status for label, r in results.items()} == {CLIP: "pass", SCALE: "pass"}


@pytest.mark.parametrize(
    "realised, toy, label",
    [
        ("clip_qkv=hf_config.attn_config.clip_qkv,", "1.0", CLIP),
        ("softmax_scale=hf_config.attn_config.softmax_scale,", "None", SCALE),
    ],
)
def test_a_package_ignoring_a_sub_config_switch_fails_on_it(
    scaffolded, tmp_path, realised, toy, label
):
    field = realised.split("=", 1)[0]
    spec = _variant(scaffolded, tmp_path, realised, f"{field}={toy},")
    results = _statuses(spec, ["mpt", label])
    assert results["mpt"].status == "pass"  # the default toy cannot see the defect
    assert results[label].status == "fail", results[label]


def test_a_pinned_sub_config_switch_is_refused_in_one_line(scaffolded, tmp_path):
    # the scaffolded package pins nothing (no FIXED_SETTINGS): the pin and its check added
    head = "    def from_hf_config(cls, hf_config) -> ModelArgs:\n"
    pinned = (
        "        from codegen.config_checks import require_settings\n\n"
        '        require_settings(hf_config, {"attn_config.softmax_scale": None})\n'
    )
    spec = _variant(scaffolded, tmp_path, head, head + pinned)
    (result,) = _statuses(spec, [SCALE]).values()
    assert result.status == "refused"
    assert "\n" not in result.refused
    assert "attn_config.softmax_scale=1.0 is not supported (expected None)" in result.refused
