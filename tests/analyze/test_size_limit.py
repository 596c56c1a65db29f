"""A modeling file over the analyzer's size limit is refused in one line before parsing
(a 20 MB input once took minutes and gigabytes); one just under it is analysed."""

from __future__ import annotations

import time

from codegen.analyze.source import MAX_SOURCE_BYTES
from codegen.cli import main

_MODEL = """
import torch
from torch import nn


class TinyForCausalLM(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.lm_head = nn.Linear(8, 16, bias=False)

    def forward(self, x):
        return self.lm_head(x)
"""


def _padded(path, size: int) -> None:
    filler = "# " + "x" * 77 + "\n"
    text = _MODEL + filler * ((size - len(_MODEL)) // len(filler) + 1)
    path.write_text(text[:size])


def test_an_oversized_modeling_file_is_one_line_exit_2(tmp_path, capsys) -> None:
    big = tmp_path / "modeling_big.py"
    _padded(big, MAX_SOURCE_BYTES + 1)
    started = time.perf_counter()
    rc = main(["analyze", str(big)])
    err = capsys.readouterr().err
    assert rc == 2
    assert err.count("\n") == 1 and "Traceback" not in err
    assert str(big) in err and "MB" in err and "modeling file" in err
    assert time.perf_counter() - started < 5  # refused before libcst sees it


def test_a_file_under_the_limit_is_not_refused(tmp_path, capsys) -> None:
    small = tmp_path / "modeling_small.py"
    _padded(small, 64 << 10)
    main(["analyze", str(small)])
    assert "over the" not in capsys.readouterr().err
