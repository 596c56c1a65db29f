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
