"""Inkling-2's text decoder with both layer classes kept (sliding and full), renamed
(`remote_fixture`), with the parts no rule realises yet taken out of the copy so the full
layers' own attention forward verifies.

Taken out of both layer classes: the block attention residuals (plain pre-norm residuals),
the MoE (a plain SwiGLU MLP), the q/k and relative-state L2 clips, the per-token sinks; and
the logits' soft cap. Taken out of the full layers only: the key and value inputs of their
own (one normed hidden state feeds the queries, keys and values, as on the sliding layers)
and the input-dependent short convolutions (the sliding layers' static ones in their place).
Kept on the full layers: their own attention class, whose queries and relative states are
scaled by the log of the token's position; with `own_inputs`, their key and value inputs
of their own too (the stream normed by the layer's key and value input norms, beside the
query's), the short convolutions static still; with `dynamic_convs`, those inputs and the
input-dependent short convolutions they feed the taps of (HF's full layers' own)."""

from __future__ import annotations

import re
import sys
from pathlib import Path

from codegen.verify.remote_fixture import remote_folder

sys.path.insert(0, str(Path(__file__).parent))
from inkling2_fixture import plain_stack  # noqa: E402

STATIC_CONV = (
    "self.{n}_sconv = {p}ShortConvolution(\n"
    "            self.num_key_value_heads * self.head_dim, config.sconv_kernel_size, layer_idx,"
    " conv_idx={i}\n        )"
)

# the full layers: one normed input for the queries, keys and values
ONE_INPUT = [
    (r"        self\.k_input_layernorm = .*?\n        self\.v_input_layernorm = .*?\n", ""),
    (r"self\.q_input_layernorm", "self.input_layernorm"),
    (
        r"            hidden_states=self\.input_layernorm\(query_hidden_states\)"
        r"\.to\(dtype\),\n.*?value_hidden_states=.*?\n",
        "            hidden_states=self.input_layernorm(hidden_states).to(dtype),\n",
    ),
    (
        r"        key_hidden_states: torch\.Tensor,\n"
        r"        value_hidden_states: torch\.Tensor,\n",
        "",
    ),
    (r'        r"""\n        key_hidden_states \(.*?"""\n', ""),
]

# the full layers: the queries', keys' and values' norms all read the layer's input
OWN_INPUTS = [
    (
        rf"self\.{n[0]}_input_layernorm\({n}_hidden_states\)",
        rf"self.{n[0]}_input_layernorm(hidden_states)",
    )
    for n in ("query", "key", "value")
]


def derive_full(
    dest: Path,
    name: str,
    own_inputs: bool = False,
    block_residuals: bool = False,
    dynamic_convs: bool = False,
) -> Path:
    """The renamed folder; `edits` apply to every match (both layer classes), `once` to the
    first. `own_inputs`: the full layers keep their key and value inputs (each the layer's
    input through a norm of its own). `block_residuals` keeps the block attention residuals
    (with the full layers' own inputs as HF reads them: the three outputs of their depth
    module's three queries, each through its norm). `dynamic_convs` keeps the full layers'
    input-dependent short convolutions (and the key and value inputs their taps read)."""
    folder = remote_folder("inkling2_text", dest, name=name)
    path = folder / f"modeling_{name}.py"
    source = path.read_text()
    p = re.search(r"class (\w+)SlidingAttention\b", source).group(1)
    own_inputs = own_inputs or block_residuals or dynamic_convs
    keys, values = (
        ("key_hidden_states", "value_hidden_states") if own_inputs else ("hidden_states",) * 2
    )
    source = plain_stack(source, residuals=not block_residuals)
    edits = [
        # the q/k/relative-state L2 clips and the per-token sinks
        (
            r"        self\.sink_proj = .*?\n        self\.q_l2_clip = .*?\n.*?rel_l2_clip = .*?\n",
            "",
        ),
        (r"        sinks = self\.sink_proj\(hidden_states\)\n", ""),
        (r"self\.q_l2_clip\((query_states\.view\(hidden_shape\))\)", r"\1"),
        (r"self\.k_l2_clip\((key_states\.view\(hidden_shape\))\)", r"\1"),
        (r"self\.rel_l2_clip\((relative_states\.view\([^)]*\))\)", r"\1"),
        (r"            sinks=sinks\.transpose\(1, 2\)\.unsqueeze\(-1\),\n", ""),
    ]
    static = [
        # the full layers: static short convolutions on the keys and values
        (
            rf"self\.k_sconv = {p}DynamicShortConvolution\(.*?\n        \)",
            STATIC_CONV.format(p=p, n="k", i=0),
        ),
        (
            rf"self\.v_sconv = {p}DynamicShortConvolution\(.*?\n        \)",
            STATIC_CONV.format(p=p, n="v", i=1),
        ),
        (
            r"self\.k_sconv\(\n\s*self\.k_proj\(key_hidden_states\), key_hidden_states,"
            r" (.*?)\n\s*\)",
            rf"self.k_sconv(self.k_proj({keys}), \1)",
        ),
        (
            r"self\.v_sconv\(\n\s*self\.v_proj\(value_hidden_states\),\n\s*value_hidden_states,\n"
            r"\s*(past_key_values=past_key_values),\n\s*(conv_mask=conv_mask),\n\s*\)",
            rf"self.v_sconv(self.v_proj({values}), \1, \2)",
        ),
    ]
    edits += [] if dynamic_convs else static
    edits += [] if block_residuals else OWN_INPUTS if own_inputs else ONE_INPUT
    once = [(r"        logits = self\.logit_softcap\(logits\)\n", "")]
    for pattern, replacement in edits:
        source, count = re.subn(pattern, replacement, source, flags=re.DOTALL)
        assert count, pattern  # the installed inkling2 changed: the fixture needs a look
    for pattern, replacement in once:
        source, count = re.subn(pattern, replacement, source, count=1, flags=re.DOTALL)
        assert count, pattern
    path.write_text(source)
    return folder
