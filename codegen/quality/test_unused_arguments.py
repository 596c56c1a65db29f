"""unused_arguments: ruff's ARG findings in a package, less the (file, parameter) pairs a
caller passes by contract."""

import textwrap

from codegen.quality.unused_arguments import INTERFACE_ARGUMENTS, unused_arguments

ROPE = """
def _default(rope, dim: int, seq_len: int):
    return rope.theta / dim
"""
MODEL = """
class PlainRMSNorm:
    def __init__(self, dim: int, eps: float):
        self.eps = eps

    def forward(self, tokens, cu_seqlens=None, max_seqlen=None):
        return tokens if cu_seqlens is None else tokens[cu_seqlens]
"""


def test_an_unread_parameter_is_found_and_an_interface_one_is_not(tmp_path):
    package = tmp_path / "toy"
    package.mkdir()
    (package / "rope.py").write_text(textwrap.dedent(ROPE))
    (package / "model.py").write_text(textwrap.dedent(MODEL))
    (package / "helpers.py").write_text(textwrap.dedent(ROPE))  # seq_len: no contract here
    found = unused_arguments(package)
    assert [line.split(": ", 1)[0] for line in found] == ["toy/helpers.py:2", "toy/model.py:3"]
    assert "`seq_len`" in found[0] and "`dim`" in found[1]


def test_every_row_says_which_caller_fixes_the_parameter():
    for (filename, name), reason in INTERFACE_ARGUMENTS.items():
        assert filename.endswith(".py") and name.isidentifier() and len(reason) > 20
