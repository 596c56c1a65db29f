"""End to end: GPT-1's Conv1D projections start where HF's model leaves them.

transformers' Conv1D draws its weight at std 0.02 in its constructor. GPT-1's `_init_weights`
(its override, then PreTrainedModel's table through `super()`) has no branch for it, so HF's
model keeps 0.02 whatever initializer_range says; GPT-2's override re-draws it at
initializer_range. The planned packages start like HF's at an initializer_range off 0.02:
GPT-1's through `constructor_std` (without it verify's lifecycle check names the weight),
GPT-2's without it. A renamed remote-code copy of GPT-1 is read and starts the same.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from codegen.analyze.analysis import analyze
from codegen.cli import main
from codegen.models import load_spec
from codegen.scaffold.pipeline import scaffold_into
from codegen.scaffold.plan import make_plan
from codegen.scaffold.target import load_target
from codegen.verify import lifecycle
from codegen.verify.cases import base_config
from codegen.verify.remote import load_remote, remote_toy_config
from codegen.verify.remote_fixture import neutral_name, remote_folder

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "analyze"))
from analyze_helpers import rename_model  # noqa: E402

TYPE = "openai-gpt"
KEPT = (
    ("transformer.h.{}.attn.c_attn.weight", 0.02),
    ("transformer.h.{}.attn.c_proj.weight", 0.02),
    ("transformer.h.{}.mlp.c_fc.weight", 0.02),
    ("transformer.h.{}.mlp.c_proj.weight", 0.02),
)
RANGE = 0.1  # far enough from the constructor's 0.02 for the statistics to tell


def _scaffolded(source, models: Path, name: str, without: str | None = None):
    target = load_target(source)
    plan = make_plan(target)
    assert plan.complete, plan.gaps
    assert without is None or without in [s.rule for s in plan.steps]
    steps = [s for s in plan.steps if s.rule != without]
    scaffold_into(models, plan.reference, name, [source], steps, features=target.features)
    return load_spec(name, models), plan


def _init_failure(spec, config) -> str | None:
    config.initializer_range = RANGE
    return lifecycle.init_statistics(spec, config, spec.adapter(spec.args.from_hf_config(config)))


def test_the_analysis_reads_the_conv1d_projections_hf_leaves(tmp_path):
    for source in (TYPE, rename_model(TYPE, "quoll", str(tmp_path))[0]):
        assert analyze(source).state_dict.constructor_std == KEPT
    assert analyze("gpt2").state_dict.constructor_std == ()  # its override re-draws them


def test_the_planned_package_starts_like_hf(tmp_path):
    spec, _ = _scaffolded(TYPE, tmp_path / "models", "gen_gpt1")
    assert _init_failure(spec, base_config(TYPE)[0]) is None


def test_without_the_rule_the_projections_follow_initializer_range(tmp_path):
    spec, _ = _scaffolded(TYPE, tmp_path / "models", "gen_gpt1", without="constructor_std")
    failure = _init_failure(spec, base_config(TYPE)[0])
    assert failure is not None and failure.startswith("init_weights: transformer.h.*.attn.c_attn")


def test_gpt2_keeps_initializer_range(tmp_path):
    spec, plan = _scaffolded("gpt2", tmp_path / "models", "gen_gpt2")
    assert "constructor_std" not in [s.rule for s in plan.steps]
    assert _init_failure(spec, base_config("gpt2")[0]) is None


def _through_the_package(folder: Path, spelling: str) -> None:
    """Rewrite the copy's library imports the way remote code often spells them."""
    modeling = next(folder.glob("modeling_*.py"))
    text = modeling.read_text()
    utils = "from transformers.modeling_utils import PreTrainedModel, slice_logits_to_keep\n"
    conv = "from transformers.pytorch_utils import Conv1D\n"
    assert utils in text and conv in text
    rest = "from transformers.modeling_utils import slice_logits_to_keep\n"
    if spelling == "from transformers import PreTrainedModel":
        text = text.replace(utils, "from transformers import PreTrainedModel\n" + rest)
    elif spelling == "import transformers":
        text = text.replace(utils, "import transformers\n" + rest).replace(conv, "")
        text = text.replace("(PreTrainedModel)", "(transformers.PreTrainedModel)")
        text = re.sub(r"\bConv1D\(", "transformers.Conv1D(", text)
    modeling.write_text(text)


@pytest.mark.parametrize(
    "spelling", [None, "from transformers import PreTrainedModel", "import transformers"]
)
def test_a_renamed_remote_copy_starts_like_its_code(tmp_path, spelling):
    name = neutral_name(TYPE)
    folder = remote_folder(TYPE, tmp_path / "hub", name=name)
    if spelling is not None:
        _through_the_package(folder, spelling)
        assert analyze(str(folder)).state_dict.constructor_std == KEPT
    models = tmp_path / "models"
    assert main(["scaffold", str(folder), "--out", str(models)]) == 0
    assert "CONSTRUCTOR_STDS" in (models / name / "model.py").read_text()
    config = remote_toy_config(load_remote(folder, trust_remote_code=True))
    assert _init_failure(load_spec(name, models), config) is None


def test_reading_the_package_imports_neither_torch_nor_transformers(tmp_path):
    folder = remote_folder(TYPE, tmp_path / "hub", name=neutral_name(TYPE))
    _through_the_package(folder, "import transformers")
    code = (
        "import sys\n"
        "from codegen.analyze.analysis import analyze\n"
        f"assert analyze({str(folder)!r}).state_dict.constructor_std\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'transformers')))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
