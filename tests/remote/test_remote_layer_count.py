"""The toy of a renamed remote-code folder whose config class derives a field from the layer
count (hrm_text: `num_layers_per_stack`, then `num_hidden_layers` inflated to the cache's slot
count): the toy leaves the derived field to the class, as `tiny_config` does, or the
folder's full-size value contradicts the toy's layer count and HF's cache runs out of slots."""

from __future__ import annotations

from codegen.verify.remote import load_remote, remote_toy_config
from codegen.verify.remote_fixture import neutral_name, remote_folder
from codegen.verify.tiny_config import tiny_config


def test_the_derived_layer_count_is_the_classes(tmp_path) -> None:
    folder = remote_folder("hrm_text", tmp_path, name=neutral_name("hrm_text"))
    config = remote_toy_config(load_remote(folder, trust_remote_code=True))
    slots = config.num_layers_per_stack * config.H_cycles * (config.L_cycles + 1)
    assert config.num_hidden_layers == slots
    assert config.num_layers_per_stack == tiny_config("hrm_text").num_layers_per_stack
