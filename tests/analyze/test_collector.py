"""An analysis runs with the cyclic garbage collector paused, and gives it back as it was:
on success, on a refused target, and when the caller had paused it already."""

from __future__ import annotations

import gc

import pytest

from codegen.analyze import analysis
from codegen.errors import CodegenError

_MODEL = """
from torch import nn


class TinyForCausalLM(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.lm_head = nn.Linear(8, 16, bias=False)
"""


@pytest.fixture
def seen(monkeypatch) -> list[bool]:
    """Whether the collector was enabled while each analysis ran."""
    states: list[bool] = []
    real = analysis.analyze_target

    def spy(*args, **kwargs):
        states.append(gc.isenabled())
        return real(*args, **kwargs)

    monkeypatch.setattr(analysis, "analyze_target", spy)
    return states


def _refused(path) -> None:
    with pytest.raises(CodegenError):
        analysis.analyze(str(path))


def test_paused_while_analysing_and_enabled_again_after(tmp_path, seen) -> None:
    model = tmp_path / "modeling_tiny.py"
    model.write_text(_MODEL)
    assert gc.isenabled()
    _refused(model)  # no PreTrainedModel subclass: refused, inside the paused block
    assert seen == [False]
    assert gc.isenabled()
    analysis.analyze("llama")
    assert seen == [False, False]
    assert gc.isenabled()


def test_a_caller_that_paused_it_keeps_it_paused(tmp_path, seen) -> None:
    model = tmp_path / "modeling_tiny.py"
    model.write_text(_MODEL)
    gc.disable()
    try:
        _refused(model)
        assert seen == [False]
        assert not gc.isenabled()
    finally:
        gc.enable()
