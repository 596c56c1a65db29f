"""End to end: logits cut to a config field's width (inkling's `unpadded_vocab_size`, a head
stored padded past the vocabulary), planned from its analysis, scaffolded and verified
against the folder's own code in fp32 and bf16. Seeded defects (the cut dropped, the cut one
column short) fail verify and name the head.

The HF side is transformers' inkling text decoder as a renamed remote-code folder
(`remote_fixture`) whose config sets the field inside the toy's vocabulary; the package is
otherwise what the plan makes of it."""

from __future__ import annotations

from pathlib import Path

import pytest

from codegen.scaffold.testing import plan_folder, seeded_copy, verify_folder, write_planned
from codegen.verify.remote_fixture import remote_folder

NAME = "vellumine"
CUT = "return logits[..., : self.args.unpadded_vocab_size]"


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    hub = tmp_path_factory.mktemp("hub")
    return remote_folder("inkling_text", hub, name=NAME, config_values={"unpadded_vocab_size": 500})


@pytest.fixture(scope="module")
def planned(folder):
    return plan_folder(folder, {"vocab_crop"})


@pytest.fixture(scope="module")
def built(tmp_path_factory, planned) -> Path:
    models, _ = write_planned(tmp_path_factory.mktemp("built") / "models", planned)
    return models


def test_the_cut_is_read_from_the_head_slice(planned):
    target, _ = planned
    assert target.features.head.vocab_crop == "unpadded_vocab_size"
    assert "(logits[..., :unpadded_vocab_size])" in target.features.evidence["head.vocab_crop"]


def test_package_verifies_in_fp32_and_bf16(built, folder, capsys):
    assert CUT in (built / NAME / "model.py").read_text()
    rows = verify_folder(folder, built, capsys, dtypes=("fp32", "bf16"), switches=False)
    assert rows and all(row["status"] == "pass" for row in rows), rows


@pytest.mark.parametrize(
    "defect",
    [
        pytest.param("return logits", id="cut-dropped"),
        pytest.param("return logits[..., : self.args.unpadded_vocab_size - 1]", id="one-short"),
    ],
)
def test_a_wrong_cut_fails_at_the_head(tmp_path, built, folder, capsys, defect):
    models = seeded_copy(built, tmp_path / "models", NAME, CUT, defect)
    (row,) = verify_folder(folder, models, capsys, switches=False)
    assert row["status"] == "fail", row
    assert (row.get("first_divergence") or "").startswith("output"), row
