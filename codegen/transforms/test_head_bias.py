"""SetHeadBias: before/after on the references, and the generated head's logits."""

import pytest

from codegen.models import references_dir
from codegen.scaffold.source import SourcePackage
from codegen.transforms.edits import EditError
from codegen.transforms.head_bias import SetHeadBias, fix_tied_head
from codegen.transforms.testing import package_of


@pytest.mark.parametrize("reference", ["llama", "deepseek_v3"])
def test_the_head_gets_a_bias_and_its_row(reference):
    package = SourcePackage.from_directory(references_dir() / reference)
    before = package.render()
    assert "nn.Linear(args.dim, args.vocab_size, bias=False)" in before["model.py"]
    SetHeadBias().apply(package)
    after = package.render()
    assert "self.output = nn.Linear(args.dim, args.vocab_size, bias=True)" in after["model.py"]
    adapter = after["state_dict_adapter.py"]
    weight = adapter.index('"lm_head.weight": "output.weight"')
    assert adapter.index('"lm_head.bias": "output.bias"') > weight


def test_the_bias_key_follows_the_head_weight_key():
    package = package_of(
        {
            "model.py": (
                "class Model:\n    def __init__(self, args):\n"
                "        self.output = nn.Linear(args.dim, args.vocab_size, bias=False)\n"
            ),
            "state_dict_adapter.py": 'from_hf_map = {"embed_out.weight": "output.weight"}\n',
        }
    )
    SetHeadBias().apply(package)
    assert '"embed_out.bias": "output.bias"' in package.render()["state_dict_adapter.py"]


def test_no_head_row_is_refused():
    package = package_of(
        {
            "model.py": (
                "class Model:\n    def __init__(self, args):\n        self.output = f(bias=False)\n"
            ),
            "state_dict_adapter.py": "from_hf_map = {}\n",
        }
    )
    with pytest.raises(EditError):
        SetHeadBias().apply(package)


def _bert_generation_like():
    return package_of(
        {
            "model.py": (
                "class Model:\n    def __init__(self, args):\n"
                "        self.output = nn.Linear(args.dim, args.vocab_size, bias=False)\n"
            ),
            "state_dict_adapter.py": 'from_hf_map = {"lm_head.weight": "output.weight"}\n',
            "args.py": "FIXED_SETTINGS = {}\n",
        }
    )


def test_a_bias_kept_apart_from_its_projection_is_read_from_its_key_and_fixes_tying():
    """BertGeneration: lm_head.decoder's bias is lm_head.bias only while the head is tied."""
    package = _bert_generation_like()
    SetHeadBias().apply(package, key="lm_head.bias", projection="lm_head.decoder")
    files = package.render()
    assert '"lm_head.bias": "output.bias"' in files["state_dict_adapter.py"]
    assert '"tie_word_embeddings": True' in files["args.py"]
    # a second pin (head_transform's) is not a second entry
    fix_tied_head(package)
    assert package.render()["args.py"].count("tie_word_embeddings") == 1


def test_a_bias_beside_its_projection_leaves_tying_free():
    package = _bert_generation_like()
    SetHeadBias().apply(package, key="lm_head.decoder.bias", projection="lm_head.decoder")
    files = package.render()
    assert '"lm_head.decoder.bias": "output.bias"' in files["state_dict_adapter.py"]
    assert "tie_word_embeddings" not in files["args.py"]
