"""Chunked attention (Llama4): "chunked_attention" layers attend only inside their chunk.

A package whose layers take no masks yet (llama: every layer causal) gets the per-layer
pattern first, as the sliding-window one is written: `layer_types` in the args, a `mask`
argument of the attention (None = causal), each block knowing whether it is chunked and
the layer loop handing `chunks if layer.chunked else None`."""

from __future__ import annotations

import libcst as cst
import libcst.matchers as m

from codegen.transforms import _attention_edits as edits
from codegen.transforms._rope_edits import add_args_field
from codegen.transforms.base import Transform
from codegen.transforms.edits import (
    EditError,
    InsertStatements,
    assigns,
    calls_super_init,
    expression,
    run,
    statements,
)

KIND = "chunked_attention"
FIELD = "int | None = None  # a chunked layer's query sees only keys of its own chunk"
FLAG = f'self.chunked = args.layer_types[layer_id] == "{KIND}"'
MASK = f"""
chunks = None
if "{KIND}" in self.args.layer_types:
    chunks = chunked_mask(seq, self.args.attention_chunk_size, tokens.device)
"""
CHUNKED_MASK = '''
def chunked_mask(seq: int, chunk: int, device: torch.device) -> torch.Tensor | None:
    """Causal mask inside chunks of `chunk` tokens: query i sees key j iff j <= i and
    i // chunk == j // chunk (token indices, as HF's chunked mask); None if one chunk holds
    the whole sequence."""
    if seq <= chunk:
        return None
    i = torch.arange(seq, device=device)
    return (i[:, None] >= i[None, :]) & (i[:, None] // chunk == i[None, :] // chunk)
'''

# the per-layer pattern, where the package has none (llama): chunked or full layers
LAYER_TYPES = f'LAYER_TYPES = ("full_attention", "{KIND}")'
PATTERN_FIELD = """
layer_types: tuple[str, ...] | None = None  # one of LAYER_TYPES per layer; None: all full
"""
PATTERN_MASK = f"""
chunks: torch.Tensor | None = None
if "{KIND}" in self.args.layer_types:
    chunks = chunked_mask({{seq}}, self.args.attention_chunk_size, tokens.device)
"""


class ChunkedAttention(Transform):
    """Layers typed "chunked_attention" in `layer_types` attend causally within chunks of
    `attention_chunk_size` tokens (`field`: the HF config field, read by transformers' own
    chunked mask): `LAYER_TYPES` accepts the kind, each block knows whether it is chunked,
    `Model.forward` builds the chunk mask once and hands it to the chunked layers (the
    others keep theirs); where written-out attention takes the keys each mask hides, the
    chunk mask's hidden keys are built once beside the others'. Onto the sliding-window
    pattern the qwen3 references carry (`window if layer.sliding else None`), or, where the
    layers take no mask, a pattern of its own (`chunks if layer.chunked else None`). A type
    block already joined to the layers' masks is refused: it must join the chunk mask too
    (`type_block_mask` runs after this)."""

    name = "chunked_attention"

    def apply(self, package, features=None, *, field: str = "attention_chunk_size") -> None:
        if edits.has_definition(package, "model.py", "chunked_mask"):
            return
        if edits.has_definition(package, "model.py", "type_block_mask"):
            raise EditError("a type block joins the layers' masks already: not the chunk mask")
        if not edits.has_definition(package, "args.py", "LAYER_TYPES"):
            _pattern(package, field)
            return
        edit = _LayerTypes()
        run(package, "args.py", edit)
        if edit.added:
            add_args_field(package, "attention_chunk_size", FIELD, f"hf_config.{field}")
        run(
            package,
            "model.py",
            InsertStatements("TransformerBlock", "__init__", assigns("self.sliding"), FLAG),
        )
        run(package, "model.py", InsertStatements("Model", "forward", _window_if, MASK))
        # written-out attention may already take the keys each mask hides, built once
        chunks = edits.hide_mask_too(package, "chunks") if edits.masks_hidden(package) else "chunks"
        run(package, "model.py", _LayerMask(chunks))
        run(package, "model.py", _AfterFunction("sliding_window_mask", statements(CHUNKED_MASK)))


def _pattern(package, field: str) -> None:
    """Chunked or full layers where the layers take no mask yet: the args' `layer_types`,
    the attention's `mask` (None = causal), `self.chunked` per block, the chunk mask built
    once per forward and handed to the chunked layers (written out: its hidden keys)."""
    edits.insert_definition(package, "args.py", LAYER_TYPES)
    edits.add_args_field(package, PATTERN_FIELD, "layer_types=tuple(hf_config.layer_types)")
    add_args_field(package, "attention_chunk_size", FIELD, f"hf_config.{field}")
    edits.append_to_method(
        package, "args.py", "ModelArgs", "__post_init__", edits.LAYER_PATTERN_CHECKS
    )
    edits.take_mask(package)
    layer_id = edits.ensure_layer_id(package)
    flag = f'self.chunked = args.layer_types[{layer_id}] == "{KIND}"'
    run(
        package,
        "model.py",
        InsertStatements("TransformerBlock", "__init__", calls_super_init, flag),
    )
    edits.insert_definition(package, "model.py", CHUNKED_MASK, before="Model")
    forward = edits.find_method(package.module("model.py"), "Model", "forward")
    seq = "seq" if any(assigns("seq")(s) for s in forward.body.body) else "tokens.shape[1]"
    build = PATTERN_MASK.format(seq=seq)
    run(
        package,
        "model.py",
        InsertStatements("Model", "forward", edits.is_layer_loop, build, before=True),
    )
    edits.hand_down(
        package, "mask: torch.Tensor | None", passed="chunks if layer.chunked else None"
    )
    edits.hide_masks_once(package)


def _window_if(statement) -> bool:
    """`if "sliding_attention" in self.args.layer_types: ...`"""
    return m.matches(
        statement,
        m.If(test=m.Comparison(left=m.SimpleString('"sliding_attention"'))),
    )


class _LayerTypes(cst.CSTTransformer):
    """`LAYER_TYPES = (...)` gets the chunked kind."""

    def __init__(self):
        super().__init__()
        self.hits = self.added = 0

    def leave_Assign(self, original, updated):
        if not m.matches(
            updated, m.Assign(targets=[m.AssignTarget(m.Name("LAYER_TYPES"))], value=m.Tuple())
        ):
            return updated
        self.hits += 1
        kinds = [e.value for e in updated.value.elements]
        if any(m.matches(k, m.SimpleString(f'"{KIND}"')) for k in kinds):
            return updated
        self.added += 1
        elements = [
            cst.Element(k, comma=cst.Comma(whitespace_after=cst.SimpleWhitespace(" ")))
            for k in kinds
        ]
        elements.append(cst.Element(cst.SimpleString(f'"{KIND}"')))
        return updated.with_changes(value=updated.value.with_changes(elements=elements))


class _LayerMask(cst.CSTTransformer):
    """`window if layer.sliding else None` -> `chunks if layer.chunked else (...)` (with
    `hidden_window` / `hidden_chunks` where the layers take hidden keys)."""

    def __init__(self, chunks: str):
        super().__init__()
        self.chunks, self.hits = chunks, 0

    def leave_IfExp(self, original, updated):
        if not m.matches(
            updated, m.IfExp(test=m.Attribute(value=m.Name("layer"), attr=m.Name("sliding")))
        ):
            return updated
        self.hits += 1
        inner = updated.with_changes(lpar=[cst.LeftParen()], rpar=[cst.RightParen()])
        return expression(f"{self.chunks} if layer.chunked else None").with_changes(orelse=inner)


class _AfterFunction(cst.CSTTransformer):
    def __init__(self, name: str, new: list):
        super().__init__()
        self.name, self.new, self.hits = name, new, 0

    def leave_Module(self, original, updated):
        body = list(updated.body)
        for i, statement in enumerate(body):
            if m.matches(statement, m.FunctionDef(name=m.Name(self.name))):
                self.hits += 1
                return updated.with_changes(body=body[: i + 1] + self.new + body[i + 1 :])
        return updated
