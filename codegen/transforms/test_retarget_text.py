"""RetargetText: before/after on a package written for a reference, retargeted to mixtral."""

import pytest

from codegen.transforms.retarget_text import RetargetText, reference_word
from codegen.transforms.testing import package_of

BEFORE = '''"""Qwen3-MoE model arguments and their mapping from an HF Qwen3MoeConfig.

Qwen3MoeConfig resolves its window switches itself.

Fields are the house names.
"""

# HF qwen3_moe reads this field
# only when the flag is set
LIMIT = 2  # llama3 rope kind, Qwen3 says


class ModelArgs:
    """HF Qwen3MoeDecoderLayer's rule, verbatim."""

    dim: int = 2048  # hidden size

    def check(self, hf_config):
        """Refuse what qwen3_moe does not build."""
        if hf_config.flag:
            raise ValueError(f"qwen3_moe: flag {hf_config.flag} (Qwen3MoeConfig)")
        return call(
            a=1,
            # Qwen3-MoE sets this itself
            b=2,
        )
'''

AFTER = '''"""mixtral model arguments and their mapping from an HF MixtralConfig.

Fields are the house names.
"""

LIMIT = 2


class ModelArgs:
    dim: int = 2048  # hidden size

    def check(self, hf_config):
        if hf_config.flag:
            raise ValueError(f"mixtral: flag {hf_config.flag} (MixtralConfig)")
        return call(
            a=1,
            b=2,
        )
'''


def test_reference_prose_is_reworded_or_dropped():
    package = package_of({"args.py": BEFORE})
    RetargetText().apply(
        package,
        name="mixtral",
        title="mixtral",
        references=["llama", "qwen3", "qwen3_moe"],
        config_class="MixtralConfig",
    )
    assert package.render()["args.py"] == AFTER


def test_the_target_own_name_is_kept():
    source = '"""Qwen3: llama with QK-norm."""\n\nX = "qwen3: x"  # Qwen3Config says\n'
    package = package_of({"args.py": source})
    RetargetText().apply(
        package, name="qwen3", title="qwen3", references=["llama"], config_class="Qwen3Config"
    )
    assert package.render()["args.py"] == (
        '"""Qwen3: qwen3 with QK-norm."""\n\nX = "qwen3: x"  # Qwen3Config says\n'
    )


def test_a_summary_that_grows_past_the_line_is_rewrapped():
    summary = (
        "HF Llama checkpoint keys <-> house keys (the table of llama with no biases at all here)."
    )
    package = package_of({"state_dict_adapter.py": f'"""{summary}"""\n'})
    RetargetText().apply(
        package, name="granitemoehybrid", title="granitemoehybrid", references=["llama"]
    )
    text = package.render()["state_dict_adapter.py"]
    first, second = text.splitlines()[:2]
    assert first.startswith('"""HF granitemoehybrid checkpoint keys') and len(first) <= 100
    assert second == "biases at all here)."
    assert text.endswith('here).\n"""\n')


@pytest.mark.parametrize(
    ("word", "known", "rest"),
    [
        ("qwen3_moe", "qwen3moe", ""),
        ("Qwen3-MoE", "qwen3moe", ""),
        ("Qwen3MoeConfig", "qwen3moe", "Config"),
        ("Qwen3MoeConfig", "qwen3", "MoeConfig"),
        ("DeepSeek-V3", "deepseekv3", ""),
        ("llama3", "llama", None),
        ("Llamas", "llama", None),
        ("qwen2x", "qwen2", None),
        ("LlamaForCausalLM", "llama", "ForCausalLM"),
    ],
)
def test_reference_word_spellings(word, known, rest):
    assert reference_word(word, known) == rest


def test_the_targets_own_model_type_is_never_reworded():
    """qwen2_moe starts with the qwen2 reference's name but is the target's own word."""
    from codegen.transforms.retarget_text import Words

    words = Words(
        "qwen2_moe_from_llama", "qwen2_moe_from_llama", ["qwen2"], own_names=["qwen2_moe"]
    )
    assert words.reword('supported_model_types=frozenset({"qwen2_moe"})') == (
        'supported_model_types=frozenset({"qwen2_moe"})'
    )
    assert words.reword("qwen2: a bias on q/k/v") == "qwen2_moe_from_llama: a bias on q/k/v"


FOREIGN_BEFORE = '''"""deepseek_v2's RoPE deltas.

- Interleaved pairs (`rope_interleave`, HF `apply_rotary_pos_emb_interleave`): rotated
  pair by pair.
- The window: `use_sliding_window` turns it on.
- The scale: `qk_head_dim ** -0.5` (HF `yarn_get_mscale`).
"""


def f(head_dim):
    """Not mapped: num_nextn_predict_layers (the MTP head)."""
    # `max_window_layers` is unused
    x = 1
    return head_dim + x  # head_dim is the package's own word
'''

FOREIGN_AFTER = '''"""deepseek_v2's RoPE deltas.

- Interleaved pairs: rotated pair by pair.
- The scale: `qk_head_dim ** -0.5` (HF `yarn_get_mscale`).
"""


def f(head_dim):
    x = 1
    return head_dim + x  # head_dim is the package's own word
'''


def test_hf_names_the_target_lacks_leave_the_prose():
    """A parenthesis naming only foreign HF names goes; a bullet, docstring or comment that
    still names one goes; a name the package's code uses is its own word."""
    package = package_of({"rope.py": FOREIGN_BEFORE})
    RetargetText().apply(
        package,
        name="deepseek_v2",
        title="deepseek_v2",
        references=["deepseek_v3"],
        foreign_names=[
            "rope_interleave",
            "apply_rotary_pos_emb_interleave",
            "use_sliding_window",
            "num_nextn_predict_layers",
            "max_window_layers",
            "head_dim",
        ],
    )
    assert package.render()["rope.py"] == FOREIGN_AFTER


def test_foreign_hf_names_are_the_references_fields_and_functions_the_target_lacks(tmp_path):
    from codegen.transforms import retarget_text

    config = tmp_path / "configuration_t.py"
    config.write_text(
        "class TConfig:\n    attribute_map = {'n_experts': 'num_local_experts'}\n"
        "    hidden_size: int = 8\n"
    )
    modeling = tmp_path / "modeling_t.py"
    modeling.write_text("def rotate_half(x):\n    return x\n")
    names = retarget_text.foreign_hf_names(["deepseek_v3"], str(modeling), str(config))
    assert "rope_interleave" in names and "num_nextn_predict_layers" in names
    assert "apply_rotary_pos_emb_interleave" in names
    assert not {"hidden_size", "num_local_experts", "rotate_half"} & set(names)


def test_config_keys_naming_a_reference_are_data_and_stay():
    """Ministral3 reads `rope_parameters["llama_4_scaling_beta"]`: a key, not prose."""
    source = (
        'BETA = rope["llama_4_scaling_beta"]\n'
        'SCALE = rope.get("llama_4_scaling_beta", 0.0)\n'
        'MESSAGE = "llama: no"\n'
    )
    package = package_of({"args.py": source})
    RetargetText().apply(
        package, name="ministral3", title="ministral3", references=["llama"], config_class=None
    )
    assert package.render()["args.py"] == (
        'BETA = rope["llama_4_scaling_beta"]\n'
        'SCALE = rope.get("llama_4_scaling_beta", 0.0)\n'
        'MESSAGE = "ministral3: no"\n'
    )


def test_a_parenthesis_loses_only_its_foreign_items():
    """`rope_interleave` is foreign to the target, its HF rotation function is not: the
    bullet stays, naming the function alone."""
    source = (
        '"""Deltas.\n\n- Interleaved pairs (`rope_interleave`,'
        ' HF `apply_rotary_pos_emb_interleave`): each pair turns by one frequency.\n"""\n\nX = 1\n'
    )
    package = package_of({"rope.py": source})
    RetargetText().apply(
        package,
        name="deepseek_v32",
        title="deepseek_v32",
        references=["deepseek_v3"],
        foreign_names=["rope_interleave"],
    )
    assert package.render()["rope.py"].startswith(
        '"""Deltas.\n\n- Interleaved pairs (HF `apply_rotary_pos_emb_interleave`):'
        " each pair turns by one frequency.\n"
    )


@pytest.mark.parametrize(
    ("summary", "name", "origin", "after"),
    [
        # qwen3's table "plus q_norm / k_norm" compares it with llama: exaone4's own table
        # is no yardstick, so the parenthesis goes; the origin's name is reworded
        (
            "HF Qwen3 checkpoint keys <-> house keys (llama's table plus q_norm / k_norm).",
            "exaone4",
            "qwen3",
            "HF exaone4 checkpoint keys <-> house keys.",
        ),
        # the target copied from its own reference: the comparison with llama goes too
        (
            "HF Qwen2 checkpoint keys <-> house keys (llama's table; q/k/v biases).",
            "qwen2",
            "qwen2",
            "HF Qwen2 checkpoint keys <-> house keys.",
        ),
        # a parenthesis naming the origin only is reworded, not dropped
        (
            "HF Qwen3 keys (as qwen3 names them).",
            "exaone4",
            "qwen3",
            "HF exaone4 keys (as exaone4 names them).",
        ),
    ],
)
def test_a_summary_comparing_with_another_reference_loses_the_comparison(
    summary, name, origin, after
):
    package = package_of({"state_dict_adapter.py": f'"""{summary}"""\n'})
    RetargetText().apply(
        package,
        name=name,
        title=name,
        references=[r for r in ("llama", "qwen2", "qwen3", "qwen3_moe") if r != name],
        own=[name],
        origin=origin,
    )
    assert package.render()["state_dict_adapter.py"] == f'"""{after}"""\n'
