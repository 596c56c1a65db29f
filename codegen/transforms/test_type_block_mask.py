"""TypeBlockMask: before/after on the llama reference; the mask it writes is transformers'
causal mask with the type-1 tokens' block overlay (HRM-Text's prefix LM). On the qwen3
reference, whose layers are handed a sliding window's mask, the block joins it: transformers'
sliding-window causal mask with the same overlay."""

from __future__ import annotations

import textwrap
import types

import libcst as cst
import libcst.matchers as m
import pytest
import torch

from codegen.models import references_dir
from codegen.scaffold.source import SourcePackage
from codegen.transforms._attention_edits import call_of, replace_expressions
from codegen.transforms.edits import EditError, expression
from codegen.transforms.type_block_mask import TypeBlockMask

BLOCK = {"input": "token_type_ids", "type": 1, "field": "prefix_lm", "on": True}


def typed_package(block=BLOCK, reference="llama") -> SourcePackage:
    package = SourcePackage.from_directory(references_dir() / reference)
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


def functions(package: SourcePackage, *names: str) -> dict:
    """The package's module-level functions `names`, run as written."""
    module = cst.parse_module(package.render()["model.py"])
    found = [s for s in module.body if isinstance(s, cst.FunctionDef) and s.name.value in names]
    namespace = {"torch": torch}
    exec("from __future__ import annotations\n" + cst.Module(found).code, namespace)
    return namespace


def transformers_mask(inner, types: torch.Tensor) -> torch.Tensor:
    """(batch, 1, seq, seq) of a masking_utils mask function, True = attend."""
    i = [torch.tensor(x) for x in range(types.shape[1])]
    head = torch.tensor(0)
    return torch.tensor(
        [
            [[[bool(inner(torch.tensor(b), head, q, k)) for k in i] for q in i]]
            for b in range(types.shape[0])
        ]
    )


TYPES = torch.randint(0, 2, (2, 12), generator=torch.Generator().manual_seed(0))


def test_mask_is_transformers_causal_mask_with_the_block_overlay():
    masking = pytest.importorskip("transformers.masking_utils")
    overlay = masking.blockwise_overlay(torch.where(TYPES == 1, 0, -1))
    want = transformers_mask(masking.or_masks(masking.causal_mask_function, overlay), TYPES)
    assert torch.equal(
        functions(typed_package(), "type_block_mask")["type_block_mask"](TYPES, 1), want
    )


def test_the_block_joins_a_sliding_window_pattern():
    """qwen3's layers are handed `window if layer.sliding else None`: the window gains the
    block and the causal layers take `mask`, the causal mask with it."""
    before = SourcePackage.from_directory(references_dir() / "qwen3").render()["model.py"]
    assert "h = layer(h, rope, window if layer.sliding else None)" in before
    package = typed_package(reference="qwen3")
    model = package.render()["model.py"]
    assert "h = layer(h, rope, window if layer.sliding else mask)" in model
    assert "window = type_block_mask(token_type_ids, 1, window)" in model
    assert "mask = type_block_mask(token_type_ids, 1)" in model
    assert model.count("def type_block_mask(") == 1 and "NotImplementedError" not in model


@pytest.mark.parametrize("window", [4, 12])  # one that cuts, one the sequence fits in
def test_joined_masks_are_transformers_masks_with_the_block_overlay(window):
    """`or_masks(<layer's mask>, blockwise_overlay)`, as create_causal_mask and
    create_sliding_window_causal_mask build them given block_sequence_ids: the type-1 tokens
    see each other beyond the window too."""
    masking = pytest.importorskip("transformers.masking_utils")
    run = functions(typed_package(reference="qwen3"), "type_block_mask", "sliding_window_mask")
    overlay = masking.blockwise_overlay(torch.where(TYPES == 1, 0, -1))
    sliding = masking.sliding_window_causal_mask_function(window)
    want = transformers_mask(masking.or_masks(sliding, overlay), TYPES)
    seq = TYPES.shape[1]
    got = run["type_block_mask"](TYPES, 1, run["sliding_window_mask"](seq, window, "cpu"))
    assert torch.equal(got, want)
    causal = transformers_mask(masking.or_masks(masking.causal_mask_function, overlay), TYPES)
    assert torch.equal(run["type_block_mask"](TYPES, 1), causal)


def test_a_mask_the_block_cannot_join_is_refused():
    """A layer mask that is neither a name the forward binds nor None (here a call) is one
    clear EditError, not a block joined to part of it."""
    package = SourcePackage.from_directory(references_dir() / "qwen3")

    def other(call):
        args = list(call.args)
        args[-1] = args[-1].with_changes(value=expression("window.clone()"))
        return call.with_changes(args=args)

    replace_expressions(package, "model.py", "Model", "forward", call_of("layer"), other)
    assert "h = layer(h, rope, window.clone())" in package.render()["model.py"]
    with pytest.raises(EditError, match=r"the layers' mask `window.clone\(\)` is not one"):
        TypeBlockMask().apply(package, block=BLOCK)


def chunked_typed_package() -> SourcePackage:
    """llama with chunked layers (a pattern of the chunked transform's own), then the block."""
    from codegen.transforms.chunked_attention import ChunkedAttention

    package = SourcePackage.from_directory(references_dir() / "llama")
    ChunkedAttention().apply(package, field="attention_chunk_size")
    TypeBlockMask().apply(package, block=BLOCK)
    return package


def test_the_block_joins_the_chunk_mask():
    """The chunked layers are handed `chunks` (the full ones None): the chunks gain the
    block and the full layers take `mask`, the causal mask with it."""
    model = chunked_typed_package().render()["model.py"]
    assert "h = layer(h, rope, chunks if layer.chunked else mask)" in model
    assert "chunks = type_block_mask(token_type_ids, 1, chunks)" in model
    assert "mask = type_block_mask(token_type_ids, 1)" in model


@pytest.mark.parametrize("chunk", [4, 12])  # one that cuts, one the sequence fits in
def test_joined_chunk_masks_are_transformers_masks_with_the_block_overlay(chunk):
    """`or_masks(chunked_causal_mask_function, blockwise_overlay)`, as
    create_chunked_causal_mask builds it given block_sequence_ids: the type-1 tokens see
    each other across chunks too."""
    masking = pytest.importorskip("transformers.masking_utils")
    run = functions(chunked_typed_package(), "type_block_mask", "chunked_mask")
    overlay = masking.blockwise_overlay(torch.where(TYPES == 1, 0, -1))
    padding = torch.zeros(TYPES.shape[0], dtype=torch.long)
    chunked = masking.chunked_causal_mask_function(chunk, padding)
    want = transformers_mask(masking.or_masks(chunked, overlay), TYPES)
    seq = TYPES.shape[1]
    got = run["type_block_mask"](TYPES, 1, run["chunked_mask"](seq, chunk, "cpu"))
    assert torch.equal(got, want)


def test_written_out_attention_adds_the_table_the_model_builds_once():
    """Attention written out before the block: no layer turns the mask into its 0/-inf
    table (nor builds the causal mask); `Model.forward` builds the table of the keys the
    mask hides once, before the layer loop, and every layer adds it to its scores in place."""
    from codegen.transforms._attention_edits import make_attention_explicit

    package = SourcePackage.from_directory(references_dir() / "llama")
    make_attention_explicit(package)
    TypeBlockMask().apply(package, block=BLOCK)
    model = package.render()["model.py"]
    attention = model[model.index("class Attention") : model.index("class FeedForward")]
    assert "scores.add_(hidden)" in attention and "hidden: torch.Tensor" in attention
    assert "torch.where" not in attention and "torch.ones(" not in attention
    forward = model[model.index("    def forward(self, tokens") :]
    table = 'future.new_full(mask.shape, float("-inf")).masked_fill_(mask, 0.0)'
    built = f"hidden_mask = future if mask is None else {table}"
    assert forward.count(built) == 1 and forward.count("future = torch.full(") == 1
    assert forward.index("mask = type_block_mask(token_type_ids, 1)") < forward.index(built)
    assert forward.index(built) < forward.index("for layer in self.layers:")
    assert "h = layer(h, rope, hidden_mask)" in forward
    assert "del future, mask, hidden_mask" in forward


def test_the_block_joins_chunks_and_windows_together():
    """qwen3's window pattern with chunked layers too: each mask the loop picks among gains
    the block, the causal layers take `mask`."""
    from codegen.transforms.chunked_attention import ChunkedAttention

    package = SourcePackage.from_directory(references_dir() / "qwen3")
    ChunkedAttention().apply(package, field="attention_chunk_size")
    TypeBlockMask().apply(package, block=BLOCK)
    model = package.render()["model.py"]
    handed = "h = layer(h, rope, chunks if layer.chunked else (window if layer.sliding else mask))"
    assert handed in model
    assert "chunks = type_block_mask(token_type_ids, 1, chunks)" in model
    assert "window = type_block_mask(token_type_ids, 1, window)" in model
    assert "mask = type_block_mask(token_type_ids, 1)" in model


def explicit_windowed_package() -> SourcePackage:
    """qwen3 (layers handed `window if layer.sliding else None`) with its attention written
    out: the layers take the keys each mask hides, tables built once per forward."""
    from codegen.transforms._attention_edits import make_attention_explicit

    package = SourcePackage.from_directory(references_dir() / "qwen3")
    make_attention_explicit(package)
    return package


def test_the_block_joins_the_masks_whose_hidden_keys_the_layers_take():
    """Before: the layers take `hidden_window` and the causal `future`, tables built from
    `window`. After: `window` and the causal `mask` gain the block before their tables are
    built, and the full layers take `hidden_mask`, freed with the others."""
    package = explicit_windowed_package()
    before = package.render()["model.py"]
    assert "h = layer(h, rope, hidden_window if layer.sliding else future)" in before
    TypeBlockMask().apply(package, block=BLOCK)
    model = package.render()["model.py"]
    assert "h = layer(h, rope, hidden_window if layer.sliding else hidden_mask)" in model
    forward = model[model.index("    def forward(self, tokens") :]
    joined = [
        "mask = type_block_mask(token_type_ids, 1)",
        "window = type_block_mask(token_type_ids, 1, window)",
    ]
    tables = [
        "future = torch.full(",
        "hidden_mask = future if mask is None else",
        "hidden_window =",
    ]
    assert all(forward.count(line) == 1 for line in joined + tables)
    assert forward.index("window = sliding_window_mask(") < forward.index(joined[0])
    assert all(forward.index(j) < forward.index(t) for j in joined for t in tables)
    assert "del future, mask, window, hidden_mask, hidden_window" in forward
    assert model.count("def type_block_mask(") == 1 and "NotImplementedError" not in model
    TypeBlockMask().apply(package, block=BLOCK)
    assert package.render()["model.py"] == model


@pytest.mark.parametrize("window", [4, 12])  # one that cuts, one the sequence fits in
def test_joined_hidden_keys_are_transformers_masks_with_the_block_overlay(window):
    """The tables the layers add, run as written: -inf exactly where transformers' mask
    (`or_masks(<the layer's mask function>, blockwise_overlay)`) hides a key."""
    masking = pytest.importorskip("transformers.masking_utils")
    package = explicit_windowed_package()
    TypeBlockMask().apply(package, block=BLOCK)
    module = cst.parse_module(package.render()["model.py"])
    model = next(s for s in module.body if m.matches(s, m.ClassDef(name=m.Name("Model"))))
    forward = next(
        s for s in model.body.body if m.matches(s, m.FunctionDef(name=m.Name("forward")))
    )
    start = next(
        i
        for i, s in enumerate(forward.body.body)
        if m.matches(
            s, m.SimpleStatementLine(body=[m.Assign(targets=[m.AssignTarget(m.Name("window"))])])
        )
    )
    stop = next(i for i, s in enumerate(forward.body.body) if isinstance(s, cst.For))
    tables = cst.Module(list(forward.body.body[start:stop])).code
    run = functions(package, "type_block_mask", "sliding_window_mask")
    seq = TYPES.shape[1]
    args = types.SimpleNamespace(
        layer_types=("sliding_attention",), sliding_window=window, prefix_lm=True
    )
    scope = {
        **run,
        "torch": torch,
        "self": types.SimpleNamespace(args=args),
        "seq": seq,
        "tokens": TYPES,
        "token_type_ids": TYPES,
        "h": torch.zeros(1, dtype=torch.float32),
    }
    exec(textwrap.dedent(tables), scope)
    overlay = masking.blockwise_overlay(torch.where(TYPES == 1, 0, -1))
    sliding = masking.sliding_window_causal_mask_function(window)
    for table, inner in (("hidden_window", sliding), ("hidden_mask", masking.causal_mask_function)):
        want = transformers_mask(masking.or_masks(inner, overlay), TYPES)
        assert torch.equal(scope[table] == 0, want.expand_as(scope[table]))


def test_a_table_the_block_cannot_join_is_refused():
    """Written out, a layer argument that is neither `future` nor the table of a mask the
    forward binds is one clear EditError, the package left as it was."""
    package = explicit_windowed_package()

    def other(call):
        args = list(call.args)
        args[-1] = args[-1].with_changes(value=expression("future.clone()"))
        return call.with_changes(args=args)

    replace_expressions(package, "model.py", "Model", "forward", call_of("layer"), other)
    before = package.render()
    with pytest.raises(EditError, match=r"the layers' mask `future.clone\(\)` is not one"):
        TypeBlockMask().apply(package, block=BLOCK)
    assert package.render() == before
