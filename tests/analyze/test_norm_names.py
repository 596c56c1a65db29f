"""`norm.block_names`: each block norm's checkpoint name, read from where the layer calls it.

Names alone mislead: glm4's `post_attention_layernorm` is the norm *before* its MLP, and
kolibri1's checkpoint renames its post norms (`post_self_attn_layernorm` is stored as
`post_attn_norm`), so the position in the forward and the checkpoint conversion decide.
"""

from __future__ import annotations

from codegen.analyze.analysis import analyze


def test_a_sandwich_whose_post_norms_are_renamed_on_disk():
    assert dict(analyze("kolibri1").norm.block_names) == {
        "attention_norm": "input_layernorm",
        "post_attention_norm": "post_attn_norm",
        "ffn_norm": "post_attention_layernorm",
        "post_ffn_norm": "post_ffn_norm",
    }


def test_the_norm_before_the_mlp_is_found_by_position_not_by_name():
    names = dict(analyze("glm4").norm.block_names)
    assert names["ffn_norm"] == "post_attention_layernorm"
    assert names["post_attention_norm"] == "post_self_attn_layernorm"


def test_pre_norm_and_a_shared_parallel_norm():
    assert dict(analyze("llama").norm.block_names) == {
        "attention_norm": "input_layernorm",
        "ffn_norm": "post_attention_layernorm",
    }
    cohere = dict(analyze("cohere").norm.block_names)
    # one module, one role: the parallel FFN reads the attention's norm, named once
    assert cohere["attention_norm"] == "input_layernorm"
    assert cohere.get("ffn_norm", "input_layernorm") == "input_layernorm"
