"""ChunkedAttention: before/after on the qwen3 reference; the mask it writes is HF's chunked
causal mask."""

from __future__ import annotations

import ast

import libcst as cst
import pytest
import torch

from codegen.models import references_dir
from codegen.scaffold.source import SourcePackage
from codegen.transforms.chunked_attention import ChunkedAttention


def chunked_package() -> SourcePackage:
    package = SourcePackage.from_directory(references_dir() / "qwen3")
    ChunkedAttention().apply(package, field="attention_chunk_size")
    return package


def test_chunked_layers_get_their_own_mask():
    files = chunked_package().render()
    model, args = files["model.py"], files["args.py"]
    assert '"chunked_attention")' in args.split("LAYER_TYPES = ", 1)[1].split("\n", 1)[0]
    assert "attention_chunk_size=hf_config.attention_chunk_size," in args
    assert 'self.chunked = args.layer_types[layer_id] == "chunked_attention"' in model
    assert "chunks = chunked_mask(seq, self.args.attention_chunk_size, tokens.device)" in model
    assert "chunks if layer.chunked else (window if layer.sliding else None)" in model


def test_twice_is_once():
    package = chunked_package()
    once = package.render()
    ChunkedAttention().apply(package, field="attention_chunk_size")
    assert package.render() == once


def test_mask_is_transformers_chunked_causal_mask():
    masking = pytest.importorskip("transformers.masking_utils")
    module = cst.parse_module(chunked_package().render()["model.py"])
    (fn,) = [
        s for s in module.body if isinstance(s, cst.FunctionDef) and s.name.value == "chunked_mask"
    ]
    namespace = {"torch": torch}
    exec("from __future__ import annotations\n" + cst.Module([fn]).code, namespace)
    seq, chunk = 20, 8
    inner = masking.chunked_causal_mask_function(chunk, torch.zeros(1, dtype=torch.long))
    i = torch.arange(seq)
    want = torch.tensor([[bool(inner(0, 0, q, k)) for k in i] for q in i])
    assert torch.equal(namespace["chunked_mask"](seq, chunk, torch.device("cpu")), want)
    assert namespace["chunked_mask"](chunk, chunk, torch.device("cpu")) is None


def test_after_written_out_attention_the_chunk_mask_is_hidden_once_like_the_others():
    """Written-out attention first (its rules come earlier) or last: the same package."""
    from codegen.transforms import _attention_edits as edits

    explicit_first = SourcePackage.from_directory(references_dir() / "qwen3")
    edits.make_attention_explicit(explicit_first)
    ChunkedAttention().apply(explicit_first, field="attention_chunk_size")
    chunked_first = chunked_package()
    edits.make_attention_explicit(chunked_first)
    model = explicit_first.render()["model.py"]
    table = "future.new_full(chunks.shape, float('-inf')).masked_fill_(chunks, 0.0)"
    assigned = {
        ast.unparse(n.targets[0]): ast.unparse(n.value)
        for n in ast.walk(ast.parse(model))
        if isinstance(n, ast.Assign)
    }
    assert assigned["hidden_chunks"] == f"future if chunks is None else {table}"
    assert explicit_first.render() == chunked_first.render()


def test_layers_without_masks_get_a_chunk_pattern_of_their_own():
    """llama's layers are all causal and take no mask: the transform writes the per-layer
    pattern itself (`layer_types`, the attention's `mask`, `self.chunked` per block) and
    hands the chunked layers the chunk mask, the others None (plain causal)."""
    package = SourcePackage.from_directory(references_dir() / "llama")
    before = package.render()
    assert "layer_types" not in before["args.py"] and "mask" not in before["model.py"]
    ChunkedAttention().apply(package, field="attention_chunk_size")
    files = package.render()
    model, args = files["model.py"], files["args.py"]
    assert 'LAYER_TYPES = ("full_attention", "chunked_attention")' in args
    assert "layer_types=tuple(hf_config.layer_types)," in args
    assert "attention_chunk_size=hf_config.attention_chunk_size," in args
    assert 'self.chunked = args.layer_types[layer_id] == "chunked_attention"' in model
    assert "TransformerBlock(args, i) for i in range(args.n_layers)" in model
    assert "chunks = chunked_mask(tokens.shape[1], self.args.attention_chunk_size" in model
    assert "h = layer(h, rope, chunks if layer.chunked else None)" in model
    assert "attn_mask=mask" in model and "is_causal=mask is None" in model
    ChunkedAttention().apply(package, field="attention_chunk_size")
    assert package.render() == files  # twice is once


def test_a_type_block_joined_before_the_chunks_is_refused():
    """The block joins the masks the layers are handed when it is built: chunks added after
    it would be a chunked layer's mask without the block, so that order is one EditError."""
    from codegen.transforms.edits import EditError
    from codegen.transforms.type_block_mask import TypeBlockMask

    package = SourcePackage.from_directory(references_dir() / "qwen3")
    block = {"input": "token_type_ids", "type": 1, "field": "prefix_lm", "on": True}
    TypeBlockMask().apply(package, block=block)
    with pytest.raises(EditError, match="a type block joins the layers' masks already"):
        ChunkedAttention().apply(package, field="attention_chunk_size")
