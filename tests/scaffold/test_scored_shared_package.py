"""End to end: inkling's MoE, whose router scores two stacked shared experts with rows of
its own past the routed experts', normalises the picked and the shared sigmoid scores
together and multiplies them by a learned gain (`global_scale`, kept in fp32), planned from
the analysis, scaffolded and verified against a renamed copy of the folder's own code.
Seeded defects, each a bug of the class these parts bring, fail verify and name the MoE.

The HF side is transformers' inkling text decoder as a renamed remote-code folder
(`remote_fixture`), whole: the toy's layers are all MoE, and verify also runs it with
`mlp_layer_types` mixing dense and sparse layers. verify perturbs every tensor away from
HF's init, so the gain is not one and the correction bias not zero."""

from __future__ import annotations

from pathlib import Path

import pytest

from codegen.scaffold.testing import plan_folder, seeded_copy, verify_folder, write_planned
from codegen.verify.remote_fixture import remote_folder

pytest.importorskip("transformers.models.inkling")

NAME = "quillon"
RULES = {"moe_scored_shared_experts", "moe_router_gain"}


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    return remote_folder("inkling_text", tmp_path_factory.mktemp("hub"), name=NAME)


@pytest.fixture(scope="module")
def planned(folder):
    return plan_folder(folder, RULES)


@pytest.fixture(scope="module")
def built(tmp_path_factory, planned) -> tuple[Path, str]:
    """The package, built once; each seeded defect edits a copy."""
    return write_planned(tmp_path_factory.mktemp("built") / "models", planned)


def _verify(folder: Path, models: Path, capsys, *flags: str) -> list[dict]:
    return verify_folder(folder, models, capsys, *flags, dtypes=())


def test_package_verifies_with_its_settings(folder, built, capsys):
    models, _ = built
    rows = _verify(folder, models, capsys, "--dtype", "fp32")
    ran = [row for row in rows if row["status"] != "refused"]
    # the base case, mlp_layer_types mixing dense and sparse layers, and the logits cut to
    # unpadded_vocab_size (rule vocab_crop)
    assert len(ran) == 3 and all(row["status"] == "pass" for row in ran), rows


@pytest.mark.parametrize(
    ("old", "new"),
    [
        # the shared experts weighted equally (their mean weight), not each by its own
        (
            "hidden = hidden * weights.T[..., None].to(x.dtype)",
            "hidden = hidden * weights.mean(dim=-1)[None, :, None].to(x.dtype)",
        ),
        # the picked experts normalised alone, the shared ones left at their sigmoid
        (
            "weights = (chosen - chosen.logsumexp(dim=-1, keepdim=True)).exp()",
            "weights = torch.cat([(chosen[:, : self.top_k] - chosen[:, : self.top_k]"
            ".logsumexp(dim=-1, keepdim=True)).exp(), chosen[:, self.top_k :].exp()], dim=-1)",
        ),
        # the router's trained gain dropped
        (
            "weights = weights * self.routed_scaling * self.router_gain.float()",
            "weights = weights * self.routed_scaling",
        ),
    ],
)
def test_seeded_defects_fail_and_name_the_moe(tmp_path, folder, built, capsys, old, new):
    models, name = tmp_path / "models", built[1]
    seeded_copy(built[0], models, name, old, new)
    rows = _verify(folder, models, capsys, "--dtype", "fp32")
    (row,) = [row for row in rows if "+" not in row["case"]]
    assert row["status"] == "fail", row
    assert (row.get("first_divergence") or "").startswith("layers.0.moe"), row
