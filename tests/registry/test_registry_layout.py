"""New entries are laid out as the formatter would lay them out (issue 13).

Start from a ruff-formatted registry file, insert entries of random lengths into every
container shape (dict of tuples, dict of strings, `OrderedDict` of nested pairs, dict of
calls), and `ruff format --check` must find nothing to change: a short entry stays on one
line next to wrapped neighbours, a long one is split like ruff splits it.
"""

from __future__ import annotations

import subprocess
import sys

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from codegen.codemods.add import add_entry
from codegen.codemods.testing import code

FORMATTED = code(
    """
    from collections import OrderedDict

    A = {
        "LlamaForCausalLM": ("llama", "LlamaForCausalLM"),
        "LlavaNextForConditionalGeneration": (
            "llava_next",
            "LlavaNextForConditionalGeneration",
        ),
    }

    B = {
        "LlamaForCausalLM": "atom.models.llama.LlamaForCausalLM",
    }

    C = OrderedDict(
        [
            (
                "DeepseekV3ForCausalLM",
                ("nemo.models.deepseek_v3.model", "DeepseekV3ForCausalLM"),
            ),
        ]
    )

    D = {
        "ArceeForCausalLM": _HfExamplesInfo("arcee-ai/AFM-4.5B-Base"),
    }
    """
)


def ruff_format_check(source: str, width: int) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "ruff", "format", "--isolated", "--line-length", str(width)]
        + ["--diff", "-"],
        input=source,
        capture_output=True,
        text=True,
    )
    return result.stdout if result.returncode else ""


NAMES = st.from_regex(r"[A-Z][a-z]{2,30}(_[0-9])?", fullmatch=True)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    names=st.lists(NAMES, min_size=4, max_size=4, unique=True),
    repeat=st.integers(1, 3),
    width=st.sampled_from([79, 88, 100, 120]),
)
def test_inserted_entries_are_already_formatted(names, repeat, width):
    assert ruff_format_check(FORMATTED, 88) == ""
    source = FORMATTED
    for index, name in enumerate(names):
        arch = name * repeat + f"X{index}ForCausalLM"
        module = arch.lower()
        source = add_entry(source, "A", arch, [module, arch], line_length=width).source
        source = add_entry(
            source, "B", arch, [f"atom.models.{module}.{arch}"], line_length=width
        ).source
        source = add_entry(
            source, "C", arch, [f"nemo.models.{module}.model", arch], line_length=width
        ).source
        example = f'_HfExamplesInfo("org/{module}", trust_remote_code=True)'
        source = add_entry(source, "D", arch, [example], expression=True, line_length=width).source
    assert ruff_format_check(source, width) == "", source
