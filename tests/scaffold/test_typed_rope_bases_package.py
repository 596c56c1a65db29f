"""A RoPE base per layer (`rope.layer_bases`) with `rope_parameters` nested per layer type
(`rope.per_layer_type`) in one model, on a renamed granite_swa copy whose tables are built
per (layer type, base) pair from the type's parameters with the layer's base swapped in
(`typed_bases_fixture`). The analysis records the list, the type list the parameters are
picked by, and the line; the package builds one table per pair some layer has (0: none),
found from the config when the model is built, and verifies. A package whose layers ignore
their type, or their own base, fails at that layer's attention; a backbone that swaps every
base into one type's parameters is refused in one line."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from typed_bases_fixture import BASES, FIELD, LAYER_TYPES, typed_bases_folder

from codegen.cli import main
from codegen.scaffold.testing import plan_folder, seeded_copy, verify_folder, write_planned

pytest.importorskip("transformers.models.granite_swa")

RULES = ("layer_rope_bases", "rope_per_layer_type", "nope_layers")
PICK = "ropes.get((layer.sliding, layer.rope_base))"


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    return typed_bases_folder(tmp_path_factory.mktemp("hub"))


@pytest.fixture(scope="module")
def planned(folder):
    return plan_folder(folder, rules=RULES)


@pytest.fixture(scope="module")
def built(tmp_path_factory, planned) -> Path:
    models, _ = write_planned(tmp_path_factory.mktemp("built") / "models", planned)
    return models


def test_the_analysis_reads_the_base_list_and_the_type_it_goes_with(planned, folder):
    target, _ = planned
    assert target.features.rope.layer_bases == {
        "field": FIELD,
        "base": "rope_parameters[<layer type>].rope_theta",
        "types": "layer_types",
    }
    assert target.features.rope.per_layer_type is True
    evidence = target.features.evidence["rope.layer_bases"]
    assert re.match(rf"modeling_{folder.name}\.py:\d+ ", evidence), evidence
    assert "config:layer_types" in evidence
    # the 0-base layer applies no RoPE: restated over the list, not refused
    assert target.features.rope.nope_rule == f"hf_config.{FIELD}[i]"


def test_each_layer_picks_its_base_from_its_own_types_tables(built, folder):
    model = (built / folder.name / "model.py").read_text()
    assert PICK in model
    table = "replace((args.sliding_rope or args.rope) if sliding else args.rope, theta=base)"
    assert table in model
    assert "self.rotary" not in model and "self.base_rotaries" not in model
    assert "del ropes" in model


def _built_model(built: Path, folder: Path, **config):
    """The built package's Model over the folder's config (`config`: fields replaced)."""
    import importlib
    import sys

    from transformers import AutoConfig

    hf_config = AutoConfig.from_pretrained(folder, trust_remote_code=True)
    for field, value in config.items():
        setattr(hf_config, field, value)
    sys.path.insert(0, str(built))
    try:
        args = importlib.import_module(f"{folder.name}.args")
        model = importlib.import_module(f"{folder.name}.model")
    finally:
        sys.path.remove(str(built))
    return model.Model(args.ModelArgs.from_hf_config(hf_config)), model.RotaryEmbedding


def _tables_per_forward(model, rotary_class) -> tuple[int, int]:
    """(RoPE modules the model holds, cos/sin tables one forward computes)."""
    import torch

    modules = [module for module in model.modules() if isinstance(module, rotary_class)]
    calls = []
    hooks = [module.register_forward_hook(lambda *_: calls.append(1)) for module in modules]
    try:
        with torch.no_grad():
            model(torch.zeros(1, 5, dtype=torch.long))
    finally:
        for hook in hooks:
            hook.remove()
    return len(modules), len(calls)


@pytest.mark.parametrize(
    ("layer_types", "bases"),
    [
        # the fixture's: (full, 1e4), (sliding, 1e4), (sliding, 5e5); no layer at either
        # type's own theta, and 5e5 only on a sliding layer
        (LAYER_TYPES, BASES),
        # the same package built over another config: every layer slides, two bases
        (["sliding_attention"] * 4, [1e4, 2e4, 2e4, 1e4]),
    ],
)
def test_one_table_per_layer_type_and_base_some_layer_has(built, folder, layer_types, bases):
    model, rotary_class = _built_model(built, folder, layer_types=layer_types, **{FIELD: bases})
    pairs = {(kind, base) for kind, base in zip(layer_types, bases, strict=True) if base}
    assert _tables_per_forward(model, rotary_class) == (len(pairs), len(pairs))


def test_package_is_ruff_clean(built, folder):
    from codegen.quality.style import package_checks

    assert package_checks(built / folder.name)["ruff_check"] == []


def test_package_verifies_in_fp32_and_bf16(built, folder, capsys):
    rows = verify_folder(folder, built, capsys, dtypes=(), switches=False)
    assert rows and all(row["status"] == "pass" for row in rows), rows


def _fails_at(models: Path, folder: Path, capsys) -> str:
    (row,) = verify_folder(folder, models, capsys, switches=False)
    assert row["status"] == "fail", row
    return row.get("first_divergence") or ""


def test_layers_ignoring_their_type_fail_at_the_first_sliding_one(tmp_path, built, folder, capsys):
    # layer 1 slides at layer 0's base: only its type tells their tables apart
    # (every layer takes the full-attention pair of its base)
    ignoring = "ropes.get((False, layer.rope_base))"
    models = seeded_copy(built, tmp_path / "models", folder.name, PICK, ignoring)
    assert _fails_at(models, folder, capsys).startswith("layers.1.attention")


def test_layers_ignoring_their_own_base_fail_at_the_first_that_differs(
    tmp_path, built, folder, capsys
):
    # every layer at layer 0's base: layer 2 (a sliding layer of another base) differs
    old = "self.rope_base = args.layer_rope_bases[layer_id]"
    models = seeded_copy(
        built, tmp_path / "models", folder.name, old, old.replace("layer_id]", "0]")
    )
    assert _fails_at(models, folder, capsys).startswith("layers.2.attention")


def test_every_base_in_one_types_parameters_is_refused_in_one_line(tmp_path, capsys):
    folder = typed_bases_folder(tmp_path / "hub", one_type="full_attention")
    models = tmp_path / "models"
    assert main(["scaffold", str(folder), "--out", str(models)]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert re.search(rf"modeling_{folder.name}\.py:\d+ ", err), err
    assert f'config:{FIELD} replaces rope_parameters["full_attention"].rope_theta' in err, err
    assert err.rstrip().endswith("nothing written"), err
    assert not models.exists()


def test_without_a_list_each_layer_takes_its_types_theta(built, folder):
    import importlib
    import sys
    from dataclasses import replace

    from transformers import AutoConfig

    hf_config = AutoConfig.from_pretrained(folder, trust_remote_code=True)
    sys.path.insert(0, str(built))
    try:
        args = importlib.import_module(f"{folder.name}.args")
    finally:
        sys.path.remove(str(built))
    given = args.ModelArgs.from_hf_config(hf_config)
    assert given.layer_rope_bases == tuple(BASES)
    # full layers at the full entry's 1e6, sliding ones at the sliding entry's 1e4
    assert replace(given, layer_rope_bases=None).layer_rope_bases == (1e6, 1e4, 1e4, 1e6)
