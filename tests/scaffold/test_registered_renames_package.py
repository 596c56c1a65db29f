"""End to end: a remote-code folder whose modeling file registers its own load-time key
renames (`register_checkpoint_conversion_mapping(...)` at module level, the one way remote
code gets a conversion): its checkpoint stores the MoE router's weight as
`mlp.router.weight` (the module's `mlp.gate.weight`) and the attention's input norm as
`attn_norm.weight` (the module's `input_layernorm.weight`). The adapter's rows are keyed by
the names on disk, read from that registration as the analysis reads it: the MoE rows by
`_moe_edits.rows_on_disk`, the other rows by `align_hf_keys`. Built on a renamed copy of
transformers' inkling2 text decoder (`inkling2_fixture`, plain residual stream), scaffolded,
and verified in fp32 against the folder's own code. Before both lookups read the folder's
registration (they read the installed transformers mapping only, which knows no renamed
model type), the rows kept the module names and the package could not load the checkpoint."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from codegen.scaffold.testing import plan_folder, verify_folder, write_planned

sys.path.insert(0, str(Path(__file__).parent))
from inkling2_fixture import inkling2_folder  # noqa: E402

pytest.importorskip("transformers.models.inkling2")

# a model type of its own: transformers keeps a registration for the rest of the process,
# so the other renamed inkling2 folders' checkpoints (quillette) must not get these renames
NAME = "quillwort"

RENAMES = """

register_checkpoint_conversion_mapping(
    "{name}",
    [
        WeightRenaming(
            source_patterns=r"mlp\\.router\\.weight", target_patterns=r"mlp.gate.weight"
        ),
        WeightRenaming(
            source_patterns=r"attn_norm\\.weight", target_patterns=r"input_layernorm.weight"
        ),
    ],
    overwrite=True,
)
"""


def renamed_on_disk(folder: Path) -> Path:
    path = folder / f"modeling_{NAME}.py"
    source = path.read_text()
    imports = (
        "from transformers.conversion_mapping import register_checkpoint_conversion_mapping\n"
        "from transformers.core_model_loading import WeightRenaming\n"
    )
    at = source.index("\nimport ") + 1
    path.write_text(source[:at] + imports + source[at:] + RENAMES.format(name=NAME))
    return folder


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    folder = inkling2_folder(tmp_path_factory.mktemp("hub"), plain_residual=True, name=NAME)
    return renamed_on_disk(folder)


@pytest.fixture(scope="module")
def planned(folder):
    target, plan = plan_folder(folder)
    disk = target.features.state_dict.checkpoint_layer_keys
    assert "mlp.router.weight" in disk and "attn_norm.weight" in disk, disk
    return target, plan


@pytest.fixture(scope="module")
def built(tmp_path_factory, planned) -> tuple[Path, str]:
    return write_planned(tmp_path_factory.mktemp("built") / "models", planned)


def test_the_key_lookups_read_the_folders_registration(planned):
    """Each lookup on its own (the scaffold also pairs rows by shape, which a lone router
    or norm survives): `rows_on_disk` renames the MoE row of a reference adapter to the
    registered name; `on_disk`, as align_hf_keys asks it, gives the registered names."""
    from codegen.analyze.conversion import analysed, on_disk
    from codegen.models import references_dir
    from codegen.scaffold.source import SourcePackage
    from codegen.transforms._moe_edits import rows_on_disk

    features = planned[0].features
    package = SourcePackage.from_directory(references_dir() / "qwen3_moe")
    rows_on_disk(package, features)
    adapter = package.render()["state_dict_adapter.py"]
    assert '"model.layers.{}.mlp.router.weight": "layers.{}.moe.gate.weight"' in adapter
    conversions = analysed(features)
    assert on_disk(conversions, "model.layers.{}.input_layernorm.weight") == (
        "model.layers.{}.attn_norm.weight"
    )
    assert on_disk(conversions, "model.layers.{}.mlp.gate.weight") == (
        "model.layers.{}.mlp.router.weight"
    )


def test_rows_are_keyed_by_the_registered_names(built):
    models, name = built
    rows = (models / name / "state_dict_adapter.py").read_text()
    assert '.{}.mlp.router.weight": "layers.{}.moe.gate.weight"' in rows, rows
    assert '.{}.attn_norm.weight": "layers.{}.attention_norm.weight"' in rows, rows
    assert "mlp.gate.weight" not in rows and "input_layernorm" not in rows, rows


def test_package_verifies(folder, built, capsys):
    rows = verify_folder(folder, built[0], capsys, dtypes=("fp32",), switches=False)
    assert len(rows) == 1 and rows[0]["status"] == "pass", rows
