"""TypeBlockMask: before/after on the llama reference; the mask it writes is transformers'
causal mask with the type-1 tokens' block overlay (HRM-Text's prefix LM)."""

from __future__ import annotations

import libcst as cst
import pytest
import torch

from codegen.models import references_dir
from codegen.scaffold.source import SourcePackage
from codegen.transforms.type_block_mask import TypeBlockMask

BLOCK = {"input": "token_type_ids", "type": 1, "field": "prefix_lm", "on": True}


def typed_package(block=BLOCK) -> SourcePackage:
    package = SourcePackage.from_directory(references_dir() / "llama")
    TypeBlockMask().apply(package, block=block)
    return package


def test_types_reach_the_attention_under_the_switch():
    """... and the packed path, which hands each document its own slice of them."""
    before = SourcePackage.from_directory(references_dir() / "llama").render()["model.py"]
    assert "token_type_ids" not in before and "is_causal=True" in before
    files = typed_package().render()
    model, args = files["model.py"], files["args.py"]
    assert "token_type_ids: torch.Tensor | None = None" in model
    assert "if token_type_ids is not None and self.args.prefix_lm:" in model
    assert "mask = type_block_mask(token_type_ids, 1)" in model
    assert "h = layer(h, rope, mask)" in model
    assert "attn_mask=mask" in model and "is_causal=mask is None" in model
    packed = "forward_packed(self, tokens, positions, cu_seqlens, token_type_ids=token_type_ids)"
    assert packed in model and "NotImplementedError" not in model
    assert "prefix_lm: bool = True" in args and "prefix_lm=hf_config.prefix_lm," in args


def test_a_switch_that_opens_when_false_is_negated():
    model = typed_package({**BLOCK, "on": False}).render()["model.py"]
    assert "if token_type_ids is not None and not self.args.prefix_lm:" in model


def test_twice_is_once():
    package = typed_package()
    once = package.render()
    TypeBlockMask().apply(package, block=BLOCK)
    assert package.render() == once


def test_mask_is_transformers_causal_mask_with_the_block_overlay():
    masking = pytest.importorskip("transformers.masking_utils")
    module = cst.parse_module(typed_package().render()["model.py"])
    (fn,) = [
        s
        for s in module.body
        if isinstance(s, cst.FunctionDef) and s.name.value == "type_block_mask"
    ]
    namespace = {"torch": torch}
    exec("from __future__ import annotations\n" + cst.Module([fn]).code, namespace)
    types = torch.randint(0, 2, (2, 12), generator=torch.Generator().manual_seed(0))
    inner = masking.or_masks(
        masking.causal_mask_function, masking.blockwise_overlay(torch.where(types == 1, 0, -1))
    )
    i = [torch.tensor(x) for x in range(types.shape[1])]
    head = torch.tensor(0)
    want = torch.tensor(
        [
            [[[bool(inner(torch.tensor(b), head, q, k)) for k in i] for q in i]]
            for b in range(types.shape[0])
        ]
    )
    assert torch.equal(namespace["type_block_mask"](types, 1), want)
