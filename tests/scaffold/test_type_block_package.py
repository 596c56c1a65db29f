"""End to end: hrm_text's prefix LM on a renamed remote-code copy (`remote_folder`). Its
backbone takes `token_type_ids` and, while `prefix_lm` holds, the tokens of type 1 see each
other both ways in the causal mask. The analysis reads that from the code's structure, the
plan threads the types into the package's mask, `prefix_lm` is a switch verify runs in both
settings, and verify draws 0/1 types for both models. Seeded defects (the types ignored,
inverted, the switch ignored) fail verify naming the first attention. Packed documents take
their own types: verify's packed check compares each to HF run alone with its slice, and
fails a package whose packed path drops the types or lets the block cross documents."""

from __future__ import annotations

import pytest

from codegen.analyze.locate import resolve
from codegen.analyze.model import load_model
from codegen.analyze.switches import switches_of_model
from codegen.scaffold.testing import plan_folder, seed, seeded_copy, verify_folder, write_planned
from codegen.verify.remote_fixture import remote_folder

pytest.importorskip("transformers.models.hrm_text")

BUILD = "mask = type_block_mask(token_type_ids, 1)"
SWITCH = "if token_type_ids is not None and self.args.prefix_lm:"
FIRST_ATTENTION = "inner.layers.0.attention"
# (old, new, whether it shows only with prefix_lm off)
DEFECTS = {
    "types-ignored": (BUILD, "mask = None", False),
    "types-inverted": (BUILD, "mask = type_block_mask(1 - token_type_ids, 1)", False),
    "switch-ignored": (SWITCH, "if token_type_ids is not None:", True),
}
PACKED = (
    "forward_packed(\n"
    "                self, tokens, positions, cu_seqlens, token_type_ids=token_type_ids\n"
    "            )"
)
# the whole row run at once with positions restarting per document: causal attention stays
# inside each document, but the type-1 tokens of every document see each other
ACROSS = (
    (
        "return " + PACKED,
        """if token_type_ids is None:
                return forward_packed(self, tokens, positions, cu_seqlens)
            from .packing import document_bounds

            cuts = document_bounds(cu_seqlens, tokens.numel())
            positions = torch.cat([torch.arange(end - start) for start, end in cuts])[None]
            docs = torch.cat([torch.full((b - a,), i) for i, (a, b) in enumerate(cuts)])""",
    ),
    (
        BUILD,
        BUILD
        + """
            if cu_seqlens is not None:
                mask = mask & (docs[:, None] == docs[None, :])
                block = token_type_ids == 1
                mask = mask | (block[:, None, :, None] & block[:, None, None, :])""",
    ),
)
PACKED_DEFECTS = {
    "packed-types-dropped": ((PACKED, "forward_packed(self, tokens, positions, cu_seqlens)"),),
    "block-across-documents": ACROSS,
}


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return remote_folder("hrm_text", tmp_path_factory.mktemp("hub"), name="zarathe")


@pytest.fixture(scope="module")
def planned(folder):
    target, plan = plan_folder(folder, rules=("type_block_mask", "recurrent_stacks"))
    (step,) = [s for s in plan.steps if s.rule == "type_block_mask"]
    assert step.params["block"] == {
        "input": "token_type_ids",
        "type": 1,
        "field": "prefix_lm",
        "on": True,
    }
    return target, plan


@pytest.fixture(scope="module")
def built(tmp_path_factory, planned):
    return write_planned(tmp_path_factory.mktemp("models"), planned)


def test_the_block_is_read_from_the_structure_with_its_lines(folder):
    from codegen.analyze.analysis import analyze

    features = analyze(str(folder))
    assert features.attention.type_block == {
        "input": "token_type_ids",
        "type": 1,
        "field": "prefix_lm",
        "on": True,
    }
    where = features.evidence["attention.type_block"]
    assert where.startswith("modeling_zarathe.py:") and "modeling_zarathe.py:" in where[20:], where
    switch = {s.name: s for s in switches_of_model(load_model(resolve(str(folder))))}
    assert {v.label for v in switch["prefix_lm"].values} == {"True", "False"}


def test_package_verifies_both_settings_with_types(folder, built, capsys):
    models, name = built
    model = (models / name / "model.py").read_text()
    assert BUILD in model and SWITCH in model
    assert "prefix_lm=hf_config.prefix_lm" in (models / name / "args.py").read_text()
    rows = verify_folder(folder, models, capsys, dtypes=("fp32", "bf16"))
    assert {row["case"].partition("+")[2] for row in rows} >= {"", "prefix_lm=False"}, rows
    assert all(row["status"] == "pass" for row in rows), rows


@pytest.mark.parametrize("defect", list(DEFECTS), ids=list(DEFECTS))
def test_a_seeded_defect_fails_at_the_first_attention(tmp_path, folder, built, capsys, defect):
    old, new, off_only = DEFECTS[defect]
    models, name = tmp_path / "models", built[1]
    seeded_copy(built[0], models, name, old, new)
    rows = verify_folder(folder, models, capsys, switches=off_only)
    row = next(r for r in rows if r["case"].endswith("+prefix_lm=False") or not off_only)
    assert row["status"] == "fail", row
    assert row["first_divergence"].startswith(FIRST_ATTENTION), row["first_divergence"]


@pytest.mark.parametrize("defect", list(PACKED_DEFECTS), ids=list(PACKED_DEFECTS))
def test_a_packed_defect_fails_the_packed_check(tmp_path, folder, built, capsys, defect):
    """Verify packs the documents with their own 0/1 types: a packed path that drops them,
    or a block that reaches the type-1 tokens of another document, differs from HF run on
    each document alone."""
    (old, new), *more = PACKED_DEFECTS[defect]
    models, name = tmp_path / "models", built[1]
    seeded_copy(built[0], models, name, old, new)
    for old, new in more:
        seed(models, name, old, new)
    (row,) = verify_folder(folder, models, capsys, switches=False)
    assert row["status"] == "fail" and row["packed_ok"] is False, row
    assert row["packed_failure"].startswith("packed document "), row["packed_failure"]
    assert row["first_divergence"] is None, row  # the unpacked run still matches HF
