"""GuardPerLayerCopies: a per-layer list the config class repeats from one size is refused
unless every entry is that size; before/after on the qwen3 reference."""

from __future__ import annotations

import importlib
import sys
import textwrap
from types import SimpleNamespace

import pytest

from codegen.models import references_dir
from codegen.scaffold.source import SourcePackage
from codegen.transforms.per_layer_copies import GuardPerLayerCopies, copies_in

CONFIG = textwrap.dedent(
    """
    class XConfig(PreTrainedConfig):
        def __post_init__(self, **kwargs):
            if self.heads_per_layer is None:
                self.heads_per_layer = [self.num_attention_heads] * self.num_hidden_layers
            self.layer_types = ["full_attention"] * self.num_hidden_layers
            self.same = [self.same] * 2
    """
)


def test_lists_repeating_a_size_are_found():
    """A list of a literal or of the field itself is no copy of another size."""
    assert copies_in(CONFIG) == {"heads_per_layer": "num_attention_heads"}


def _args(tmp_path, copies):
    package = SourcePackage.from_directory(references_dir() / "qwen3")
    before = package.render()["args.py"]
    GuardPerLayerCopies().apply(package, copies=copies)
    files = package.render()
    folder = tmp_path / "guarded"
    folder.mkdir()
    for name, text in files.items():
        (folder / name).write_text(text)
    sys.path.insert(0, str(tmp_path))
    try:
        return before, files["args.py"], importlib.import_module("guarded.args")
    finally:
        sys.path.remove(str(tmp_path))


def test_from_hf_config_refuses_entries_that_differ(tmp_path):
    from codegen.verify.tiny_config import tiny_config

    before, after, args = _args(tmp_path, {"heads_per_layer": "num_attention_heads"})
    assert "heads_per_layer" not in before and "heads_per_layer" in after
    config = tiny_config("qwen3")
    args.ModelArgs.from_hf_config(config)  # no such list: accepted
    config.heads_per_layer = [config.num_attention_heads] * config.num_hidden_layers
    args.ModelArgs.from_hf_config(config)  # the size on every layer: accepted
    config.heads_per_layer = [config.num_attention_heads, 2, 2, 2]
    with pytest.raises(NotImplementedError, match="heads_per_layer=.*only num_attention_heads"):
        args.ModelArgs.from_hf_config(config)


def test_a_list_the_package_reads_or_a_size_it_does_not_is_left_alone():
    package = SourcePackage.from_directory(references_dir() / "qwen3")
    before = package.render()["args.py"]
    GuardPerLayerCopies().apply(package, copies={"layer_types": "num_attention_heads"})
    GuardPerLayerCopies().apply(package, copies={"x_per_layer": "not_read_size"})
    GuardPerLayerCopies().apply(package, SimpleNamespace(source=SimpleNamespace()))
    assert package.render()["args.py"] == before
