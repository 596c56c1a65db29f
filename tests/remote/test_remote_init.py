"""The lifecycle check's HF initialisation of a renamed remote-code folder (issue 9).

Transformers' guard for custom code skips `_init_weights` on a module with no tensors of its
own, so GPT-2's scaled `c_proj` init (keyed on the attention and MLP containers) never runs
when the same file is remote code. The reference the lifecycle check compares `init_weights`
with is the folder's `_init_weights` applied to every module, as for an installed model.
"""

from __future__ import annotations

import math

import pytest

from codegen.verify.lifecycle import hf_initialised
from codegen.verify.remote import load_remote, remote_toy_config
from codegen.verify.remote_fixture import neutral_name, remote_folder
from codegen.verify.tiny_config import tiny_config


@pytest.mark.parametrize("model_type", ["gpt2", "gpt_bigcode"])
def test_a_renamed_copy_starts_as_its_code_says(model_type, tmp_path) -> None:
    folder = remote_folder(model_type, tmp_path, name=neutral_name(model_type))
    remote = load_remote(folder, trust_remote_code=True)
    config = remote_toy_config(remote)
    assert remote.model_class.is_custom_code()  # the path transformers guards differently
    scaled = config.initializer_range / math.sqrt(2 * config.n_layer)
    by_name = hf_initialised(tiny_config(model_type)).state_dict()
    copy = hf_initialised(config).state_dict()
    projections = [key for key in copy if key.endswith("attn.c_proj.weight")]
    assert projections
    for key in projections:
        assert copy[key].std().item() == pytest.approx(scaled, rel=0.1), key
        assert by_name[key].std().item() == pytest.approx(scaled, rel=0.1), key
    assert remote.model_class.is_custom_code()  # the guard is restored afterwards
