"""BidirectionalAttention: a config setting (`use_bidirectional_attention="all"`) makes the
attention non-causal: SDPA without the causal flag, the window mask symmetric."""

import ast

import pytest
import torch

from codegen.models import references_dir
from codegen.scaffold.source import SourcePackage
from codegen.transforms.bidirectional_attention import BidirectionalAttention
from codegen.transforms.edits import EditError

PARAMS = {"field": "use_bidirectional_attention", "value": "all"}


def _package(name: str) -> SourcePackage:
    return SourcePackage.from_directory(references_dir() / name)


def _window_mask(model: str):
    """The package's `sliding_window_mask`, run as written."""
    tree = ast.parse(model)
    function = next(
        node
        for node in tree.body
        if isinstance(node, ast.FunctionDef) and node.name == "sliding_window_mask"
    )
    namespace = {"torch": torch}
    exec(compile(ast.Module(body=[function], type_ignores=[]), "model.py", "exec"), namespace)
    return namespace["sliding_window_mask"]


def test_the_setting_makes_attention_and_window_look_both_ways():
    package = _package("qwen3")
    before = package.render()["model.py"]
    assert "is_causal=mask is None," in before and "self.causal" not in before
    with pytest.raises(TypeError):  # the reference's window mask is causal only
        _window_mask(before)(7, 3, "cpu", causal=False)
    BidirectionalAttention().apply(package, **PARAMS)
    files = package.render()
    model = files["model.py"]
    assert "is_causal=self.causal and mask is None," in model
    assert "self.causal = args.causal" in model
    assert "tokens.device, causal=self.args.causal)" in model
    assert 'causal=hf_config.use_bidirectional_attention != "all",' in files["args.py"]
    assert "causal: bool = True" in files["args.py"]
    compile(model, "model.py", "exec")
    mask = _window_mask(model)
    i = torch.arange(7)
    distance = i[:, None] - i[None, :]
    # masking_utils: causal `q - w < kv <= q`; bidirectional `abs(q - kv) <= w`
    assert torch.equal(mask(7, 3, "cpu", causal=True), (distance >= 0) & (distance < 3))
    assert torch.equal(mask(7, 3, "cpu", causal=False), distance.abs() <= 3)
    assert mask(3, 3, "cpu", causal=False) is None  # nothing cut: SDPA's non-causal path


def test_attention_without_the_mask_convention_is_refused():
    """llama's attention is causal with no mask argument: nothing to keep causal by."""
    with pytest.raises(EditError):
        BidirectionalAttention().apply(_package("llama"), **PARAMS)
