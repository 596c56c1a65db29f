"""End to end: Inkling-2's full-attention layers with their input-dependent short
convolutions on the keys and values (`inkling2_full_fixture` with `dynamic_convs`: fixed taps
plus per-token taps projected from the key/value input, one set per kv head, the sum divided
by sqrt(2 * kernel + 1)), planned from the analysis, scaffolded and verified against the
folder's own code in fp32, bf16 and on tp=2. Seeded defects in the filters fail verify and
name the full layer's attention."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from inkling2_full_fixture import derive_full

from codegen.scaffold.testing import plan_folder, seed, verify_folder, write_planned

pytest.importorskip("transformers.models.inkling2")

NAME = "quillful"
FULL_LAYER = "layers.5.attention"  # the toy's one full-attention layer


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    return derive_full(tmp_path_factory.mktemp("hub"), NAME, dynamic_convs=True)


@pytest.fixture(scope="module")
def built(tmp_path_factory, folder) -> Path:
    planned = plan_folder(folder, rules=("log_scaled_layers", "layer_kv_inputs", "layer_kv_convs"))
    models, _ = write_planned(tmp_path_factory.mktemp("built") / "models", planned)
    return models


def test_package_verifies_in_fp32_and_bf16(folder, built, capsys):
    model = (built / NAME / "model.py").read_text()
    assert "self.k_conv(self.wk(xk), xk)" in model and "self.v_conv(self.wv(xv), xv)" in model
    rows = verify_folder(folder, built, capsys, dtypes=("fp32", "bf16"), switches=False)
    assert rows and all(row["status"] == "pass" for row in rows), rows


@pytest.mark.parametrize(
    ("old", "new"),
    [
        # the sum not divided by sqrt(2 * kernel + 1)
        ("return ((mixed + y) / self.divisor).to(x.dtype)", "return (mixed + y).to(x.dtype)"),
        # the key filter's token taps projected from the queries' input
        ("self.k_conv(self.wk(xk), xk)", "self.k_conv(self.wk(xk), x)"),
        # the fixed taps in the order of a causal Conv1d (oldest token first)
        (
            "taps = taps + self.weight.float()",
            "taps = taps + self.weight.flip(-1).float()",
        ),
    ],
)
def test_seeded_defects_fail_and_name_the_module(tmp_path, folder, built, capsys, old, new):
    models = tmp_path / "models"
    shutil.copytree(built, models)
    seed(models, NAME, old, new)
    (row,) = verify_folder(folder, models, capsys, dtypes=("fp32",), switches=False)
    assert row["status"] == "fail", row
    assert (row.get("first_divergence") or "").startswith(FULL_LAYER), (row.get("error"), row)


def test_shard_plan_passes_on_tp2(folder, built, capsys):
    """tp=2: each rank holds the filter taps of the kv heads its k/v projection rows make up."""
    plan = (built / NAME / "parallelize.py").read_text()
    assert '"layers.*.attention.k_conv.tap_proj": "token_filter"' in plan
    (row,) = verify_folder(folder, built, capsys, "--parallel", "tp=2", switches=False)
    assert row["status"] == "pass", row
