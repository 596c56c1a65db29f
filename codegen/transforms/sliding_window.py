"""Limit attention to a sliding window: on every layer, on the layers a per-layer pattern
marks, or nowhere (a reference's window removed)."""

from __future__ import annotations

from codegen.transforms import _attention_edits as edits
from codegen.transforms.base import Transform
from codegen.transforms.edits import (
    InsertStatements,
    assigns,
    calls_super_init,
    code_of,
    run,
)

MODES = ("none", "all", "pattern")

# HF masking_utils: causal plus `sliding_window_overlay` (kv_idx > q_idx - sliding_window)
MASK_FUNCTION = '''
def sliding_window_mask(seq: int, window: int, device: torch.device) -> torch.Tensor | None:
    """Causal mask limited to the last `window` keys (query included); None if nothing is cut."""
    if seq <= window:
        return None
    # the keys 0 .. window - 1 positions back: on or below the diagonal, above its band's edge
    return torch.ones(seq, seq, dtype=torch.bool, device=device).tril().triu(1 - window)
'''

# mode "all": the config may switch the window off (sliding_window None)
MASK_FUNCTION_OPTIONAL = '''
def sliding_window_mask(seq: int, window: int | None, device: torch.device) -> torch.Tensor | None:
    """Causal mask limited to the last `window` keys (query included); None if nothing is cut
    (no window configured, or the sequence fits in it)."""
    if window is None or seq <= window:
        return None
    # the keys 0 .. window - 1 positions back: on or below the diagonal, above its band's edge
    return torch.ones(seq, seq, dtype=torch.bool, device=device).tril().triu(1 - window)
'''

ALL_FIELD = """
# Every layer's query at i sees keys j with i - sliding_window < j <= i (the window counts
# the query itself); None: plain causal attention.
sliding_window: int | None = None
"""

PATTERN_FIELDS = """
# A "sliding_attention" layer's query at i sees keys j with i - sliding_window < j <= i
# (the window counts the query itself); None when no layer slides.
sliding_window: int | None = None
layer_types: tuple[str, ...] | None = None  # one of LAYER_TYPES per layer; None: all full
"""

LAYER_TYPES = 'LAYER_TYPES = ("full_attention", "sliding_attention")'

PATTERN_CHECKS = (
    edits.LAYER_PATTERN_CHECKS
    + """if "sliding_attention" in self.layer_types and self.sliding_window is None:
    raise NotImplementedError("sliding_attention layers without a sliding_window")
"""
)

PATTERN_MASK = """
window = None
if "sliding_attention" in self.args.layer_types:
    window = sliding_window_mask({seq}, self.args.sliding_window, tokens.device)
"""

ALL_MASK = "mask = sliding_window_mask({seq}, self.args.sliding_window, tokens.device)"


class SetSlidingWindow(Transform):
    """Attention sees only the last `sliding_window` keys: on `all` layers (mistral), on the
    layers `layer_types` marks "sliding_attention" (`pattern`: qwen2/3, gemma2/3, gpt_oss),
    or on none (a reference's window removed).

    Exactly HF masking_utils: key j is visible from query i iff i - window < j <= i. The
    boolean mask is built once per forward (by sequence index, as HF without a cache) and
    handed to the layers that slide; other layers stay plain causal. `pattern` maps the
    config's resolved `layer_types` (qwen's `use_sliding_window` / `max_window_layers` are
    already folded into it by the config class) and `sliding_window`.
    """

    name = "set_sliding_window"

    def apply(
        self,
        package,
        features=None,
        *,
        mode: str,
        layer_rule: str | None = None,
        window: str | None = None,
    ) -> None:
        """`layer_rule`: where the config has no `layer_types`, the condition (over
        `hf_config` and the layer index `i`) under which a layer slides, e.g. GPT-Neo's
        `hf_config.attention_layers[i] == "local"`; `window`: the window's config expression
        where it is not `hf_config.sliding_window` (`hf_config.window_size`)."""
        if mode not in MODES:
            raise ValueError(f"sliding window mode {mode!r}: expected one of {MODES}")
        if edits.has_definition(package, "model.py", "sliding_window_mask"):
            _remove(package)
        if mode != "none":
            _add(package, mode, layer_rule, window or "hf_config.sliding_window")


def _add(package, mode: str, layer_rule: str | None, window: str) -> None:
    pattern = mode == "pattern"
    # args
    if pattern:
        types = "tuple(hf_config.layer_types)"
        if layer_rule is not None:
            types = (
                f'tuple("sliding_attention" if {layer_rule} else "full_attention"'
                " for i in range(hf_config.num_hidden_layers))"
            )
        edits.insert_definition(package, "args.py", LAYER_TYPES)
        edits.add_args_field(package, PATTERN_FIELDS)
        edits.add_hf_kwarg(package, f"sliding_window={window}")
        edits.add_hf_kwarg(package, f"layer_types={types}")
        edits.append_to_method(package, "args.py", "ModelArgs", "__post_init__", PATTERN_CHECKS)
    else:
        edits.add_args_field(package, ALL_FIELD, f"sliding_window={window}")
    edits.take_mask(package)
    # with a pattern, the block knows whether it slides
    if pattern:
        layer_id = edits.ensure_layer_id(package)
        sliding = f'self.sliding = args.layer_types[{layer_id}] == "sliding_attention"'
        run(
            package,
            "model.py",
            InsertStatements("TransformerBlock", "__init__", calls_super_init, sliding),
        )
    # the model builds the mask once
    edits.insert_definition(
        package, "model.py", MASK_FUNCTION if pattern else MASK_FUNCTION_OPTIONAL, before="Model"
    )
    forward = edits.find_method(package.module("model.py"), "Model", "forward")
    seq = "seq" if any(assigns("seq")(s) for s in forward.body.body) else "tokens.shape[1]"
    build = (PATTERN_MASK if pattern else ALL_MASK).format(seq=seq)
    run(
        package,
        "model.py",
        InsertStatements("Model", "forward", edits.is_layer_loop, build, before=True),
    )
    # handed through the block (with a pattern, to the layers that slide)
    passed = "window if layer.sliding else None" if pattern else "mask"
    edits.hand_down(package, "mask: torch.Tensor | None", passed=passed)
    # written-out attention: the keys each mask hides, once for all layers
    edits.hide_masks_once(package)


def _remove(package) -> None:
    # args
    for name in ("sliding_window", "layer_types"):
        if f"{name}:" in package.module("args.py").code:
            edits.remove_args_field(package, name)
    if edits.has_definition(package, "args.py", "LAYER_TYPES"):
        edits.remove_definition(package, "args.py", "LAYER_TYPES")
    edits.remove_statements(
        package,
        "args.py",
        "ModelArgs",
        "__post_init__",
        edits.mentions("layer_types", "sliding_window", "unknown"),
        required=False,
    )
    edits.drop_docstring_paragraphs(package, "args.py", ("window",))
    # model: the loop, the mask, the block, the attention
    edits.replace_expressions(
        package,
        "model.py",
        "Model",
        "forward",
        edits.call_of("layer"),
        lambda call: edits.without_arg(call, position=len(call.args) - 1),
    )
    edits.remove_statements(
        package, "model.py", "Model", "forward", edits.mentions("window", "mask")
    )
    edits.remove_definition(package, "model.py", "sliding_window_mask")
    edits.remove_statements(
        package,
        "model.py",
        "TransformerBlock",
        "__init__",
        assigns("self.sliding"),
        required=False,
    )
    edits.drop_layer_id_if_unused(package)
    edits.replace_expressions(
        package,
        "model.py",
        "TransformerBlock",
        "forward",
        edits.call_of("self.attention"),
        lambda call: edits.without_arg(call, position=len(call.args) - 1),
    )
    edits.remove_param(package, "TransformerBlock", "forward", "mask")
    edits.set_attention_masking(package, with_mask=False)
    # a reference built with its window has no such note (qwen3_moe)
    edits.remove_statements(
        package,
        "model.py",
        "Attention",
        "forward",
        lambda s: code_of(s) == edits.MASK_DOC,
        required=False,
    )
    edits.remove_param(package, "Attention", "forward", "mask")
