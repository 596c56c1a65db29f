"""Which module classes HF's `_init_weights` chain never reaches, read statically: a toy
modeling file whose override (and PreTrainedModel's table, read from the installed library)
decides transformers' Conv1D by its tests on the module."""

from __future__ import annotations

import textwrap

import pytest

from codegen.analyze.constructor_init import (
    _imported_class,
    constructor_draws,
    init_chain,
    kind_of,
    reaches,
)
from codegen.analyze.source import Project

HEAD = """\
from torch import nn
from transformers import initialization as init
from transformers.modeling_utils import PreTrainedModel
from transformers.pytorch_utils import Conv1D


class Attention(nn.Module):
    pass


class ToyPreTrainedModel(PreTrainedModel):
    def _init_weights(self, module):
"""


def _reached(tmp_path, body: str, head: str = HEAD) -> bool:
    text = head + textwrap.indent(textwrap.dedent(body), " " * 8)
    project = Project()
    sf = project.adopt(str(tmp_path / "modeling_toy.py"), text)
    chain = init_chain(project, sf.classes["ToyPreTrainedModel"])
    conv = _imported_class(project, sf, "Conv1D")
    return reaches(chain, kind_of(project, conv))


@pytest.mark.parametrize(
    "body",
    [
        "super()._init_weights(module)\n",  # PreTrainedModel's table: Linear, Embedding, norms
        "super()._init_weights(module)\nif isinstance(module, Attention):\n    pass\n",
        "if isinstance(module, nn.Linear) and hasattr(module, 'x'):\n    pass\n",
        "if 'Norm' in module.__class__.__name__:\n    init.ones_(module.weight)\n",
        "if isinstance(module, nn.Linear):\n    pass\nelif isinstance(module, Attention):\n"
        "    pass\n",
    ],
)
def test_a_chain_without_a_branch_for_it_leaves_conv1d_alone(tmp_path, body):
    assert not _reached(tmp_path, body)


@pytest.mark.parametrize(
    "body",
    [
        "super()._init_weights(module)\nif isinstance(module, Conv1D):\n    pass\n",  # GPT-2
        "if isinstance(module, (nn.Linear, Conv1D)):\n    pass\n",
        "if isinstance(module, nn.Module):\n    pass\n",  # a base's name
        "if 'Conv' in module.__class__.__name__:\n    pass\n",
        "if not isinstance(module, nn.Linear):\n    pass\n",
        "if isinstance(module, Attention):\n    pass\nelif isinstance(module, Conv1D):\n    pass\n",
        "if hasattr(module, 'weight'):\n    pass\n",  # cannot be told: left to the table
        "init.normal_(module.weight, std=0.1)\n",  # every module
        "if self.config.tie_word_embeddings:\n    init.normal_(module.weight)\n",
    ],
)
def test_a_branch_that_may_reach_conv1d_counts(tmp_path, body):
    assert _reached(tmp_path, body)


def test_a_super_call_without_a_readable_base_is_no_chain(tmp_path):
    head = HEAD.replace("from transformers.modeling_utils import PreTrainedModel\n", "")
    head = head.replace("(PreTrainedModel)", "(UnknownBase)")
    project = Project()
    sf = project.adopt(
        str(tmp_path / "modeling_toy.py"), head + "        super()._init_weights(module)\n"
    )
    assert init_chain(project, sf.classes["ToyPreTrainedModel"]) is None


def test_conv1d_draws_its_weight_at_a_literal_std(tmp_path):
    project = Project()
    sf = project.adopt(str(tmp_path / "modeling_toy.py"), HEAD + "        pass\n")
    conv = _imported_class(project, sf, "Conv1D")
    assert {name: std for name, (std, _) in constructor_draws(project, conv).items()} == {
        "weight": 0.02
    }
    assert constructor_draws(project, sf.classes["Attention"]) == {}


# Remote code reaches the same library classes through the package itself.
PACKAGE_IMPORTS = {
    "from the package": (
        "from transformers import PreTrainedModel\nfrom transformers import Conv1D\n",
        "PreTrainedModel",
        "Conv1D",
    ),
    "as attributes of the package": ("import transformers\n", "transformers.PreTrainedModel", None),
    "a submodule of the package": (
        "import transformers as tf\nfrom transformers import pytorch_utils\n",
        "tf.PreTrainedModel",
        "pytorch_utils.Conv1D",
    ),
}


@pytest.mark.parametrize("spelling", PACKAGE_IMPORTS, ids=list(PACKAGE_IMPORTS))
def test_library_classes_imported_through_the_package_are_read(tmp_path, spelling):
    imports, base, conv_name = PACKAGE_IMPORTS[spelling]
    head = HEAD.replace(
        "from transformers.modeling_utils import PreTrainedModel\n"
        "from transformers.pytorch_utils import Conv1D\n",
        imports,
    ).replace("(PreTrainedModel)", f"({base})")
    project = Project()
    sf = project.adopt(
        str(tmp_path / "modeling_toy.py"), head + "        super()._init_weights(module)\n"
    )
    chain = init_chain(project, sf.classes["ToyPreTrainedModel"])
    assert chain is not None and [owner.name for owner, _ in chain] == [
        "ToyPreTrainedModel",
        "PreTrainedModel",
    ]
    conv = _imported_class(project, sf, conv_name or "transformers.Conv1D")
    assert conv is not None and conv.sf.name == "pytorch_utils.py"
    assert not reaches(chain, kind_of(project, conv))


def test_only_the_analysed_folder_and_transformers_are_read(tmp_path):
    project = Project()
    sf = project.adopt(
        str(tmp_path / "modeling_toy.py"), "import torch\nfrom torch import nn\nimport os\n"
    )
    assert _imported_class(project, sf, "nn.Linear") is None
    assert _imported_class(project, sf, "torch.nn.Linear") is None
    assert _imported_class(project, sf, "os.PathLike") is None
