"""DropUnusedKeys: before/after on the llama reference's adapter, and the loaded table."""

import pytest

from codegen.models import references_dir
from codegen.scaffold.source import SourcePackage
from codegen.transforms.drop_unused_keys import DropUnusedKeys
from codegen.transforms.edits import EditError

KEYS = ("bert.pooler.weight", "bert.pooler.bias")


def _llama() -> SourcePackage:
    return SourcePackage.from_directory(references_dir() / "llama")


def test_unused_keys_are_dropped_rows():
    before = _llama().render()["state_dict_adapter.py"]
    assert "pooler" not in before
    package = _llama()
    DropUnusedKeys().apply(package, keys=KEYS)
    after = package.render()["state_dict_adapter.py"]
    for key in KEYS:
        assert f'"{key}": None' in after
    # the rows the reference had stay
    assert '"model.embed_tokens.weight": "tok_embeddings.weight"' in after


def test_the_adapter_drops_them_on_load_and_reports_them():
    from codegen.adapter import StateDictAdapter

    class Adapter(StateDictAdapter):
        from_hf_map = {"model.norm.weight": "norm.weight", "bert.pooler.weight": None}

    adapter = Adapter(args=None)
    keys = ["model.norm.weight", "bert.pooler.weight"]
    assert adapter.unmapped_keys(keys) == []
    assert adapter.dropped_keys(keys) == ["bert.pooler.weight"]


def test_no_keys_is_an_error():
    with pytest.raises(EditError):
        DropUnusedKeys().apply(_llama(), keys=())
