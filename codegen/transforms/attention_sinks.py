"""Add learned per-head attention sinks: an extra logit per head in the softmax (gpt_oss)."""

from __future__ import annotations

from pathlib import Path

import libcst as cst
import libcst.matchers as m

from codegen.transforms import _attention_edits as edits
from codegen.transforms import _moe_edits as moe_edits
from codegen.transforms.base import Transform
from codegen.transforms.edits import (
    InsertStatements,
    ReplaceStatements,
    assigns,
    run,
)

SINKS = "self.sinks = nn.Parameter(torch.zeros(args.n_heads))  # one learned logit per head"
FREE_LOGITS = "del scores, logits  # not held while the values are weighed and projected"

# HF gpt_oss eager_attention_forward, step for step (it softmaxes in the scores' dtype).
# The scores and logits (each a (batch, heads, seq, seq) tensor) go once the softmax has
# read them: HF's function frees them on return, before the output projection
SOFTMAX_WITH_SINKS = f"""
sinks = self.sinks.view(1, -1, 1, 1).expand(batch, -1, seq, 1)
logits = torch.cat([scores, sinks], dim=-1)
logits = logits - logits.amax(dim=-1, keepdim=True)  # as HF: no overflow in bf16
probs = torch.softmax(logits, dim=-1)[..., :-1].to(v.dtype)  # the sink's share is dropped
{FREE_LOGITS}
"""
# the same where HF's softmax takes the logits as they are (softmax subtracts the max itself:
# a second pass over the scores would only cost time)
SOFTMAX_WITH_SINKS_AS_THEY_ARE = f"""
sinks = self.sinks.view(1, -1, 1, 1).expand(batch, -1, seq, 1)
logits = torch.cat([scores, sinks], dim=-1)
probs = torch.softmax(logits, dim=-1)[..., :-1].to(v.dtype)  # the sink's share is dropped
{FREE_LOGITS}
"""

# the same sink as a scale of the attention output (granite_swa's eager attention): the
# softmax of the scores alone, then the output times sigmoid(logsumexp(scores) - sink), the
# share the sink column would have left the keys; computed in fp32 and rounded back, as HF
SINK_SCALES_THE_OUTPUT = """
lse = torch.logsumexp(scores, dim=-1)  # each query's log-sum of its keys' exps
sink_scale = (lse - self.sinks.view(1, -1, 1)).float().sigmoid()  # keys' share, fp32
probs = torch.softmax(scores, dim=-1, dtype=torch.float32).to(v.dtype)
"""
SCALED_OUT = "out = (probs @ v) * sink_scale.unsqueeze(-1).to(v.dtype)"

_ROW = ("model.layers.{}.self_attn.sinks", "layers.{}.attention.sinks")

# init_weights: the sinks start at zero where HF's `_init_weights` zeroes them (the table's
# default for a house parameter is normal(0, std), as gpt_oss draws them)
ZERO_INIT = """
def init_parameters(self, std: float) -> None:
    nn.init.zeros_(self.sinks)  # HF's _init_weights starts the sinks at zero
"""

# where HF's `_init_weights` starts the sinks at a config value (HY-V4's learnable_sink_init)
SINK_INIT_FIELD = "sink_init: float = 0.0  # the sinks' starting value (HF's init)"
SINK_INIT = "self.sink_init = args.sink_init"
CONSTANT_INIT = """
def init_parameters(self, std: float) -> None:
    nn.init.constant_(self.sinks, self.sink_init)  # as HF's _init_weights starts them
"""

# `<init>.constant_(<module>.sinks, <self.>config.<field>)`
_CONFIG_SINKS = m.Call(
    func=m.Attribute(attr=m.Name("constant_")),
    args=[
        m.Arg(m.Attribute(attr=m.Name("sinks"))),
        m.Arg(m.Attribute(value=m.Name("config") | m.Attribute(attr=m.Name("config")))),
    ],
)


def sinks_init_field(features) -> str | None:
    """The config field the target's HF `_init_weights` starts the sinks at, if any."""
    tree = _modeling_tree(features)
    found = m.findall(tree, _CONFIG_SINKS) if tree is not None else []
    return found[0].args[1].value.attr.value if len(found) == 1 else None


# `<init>.zeros_(<module>.sinks)` (init.zeros_, nn.init.zeros_, torch.nn.init.zeros_)
_ZEROS_SINKS = m.Call(
    func=m.Attribute(attr=m.Name("zeros_")),
    args=[m.Arg(m.Attribute(attr=m.Name("sinks"))), m.ZeroOrMore()],
)


class AddAttentionSinks(Transform):
    """Each head gets a learned sink logit `sinks[h]` that joins every query's softmax as an
    extra column and is dropped after it, so a head can attend to "nothing" (gpt_oss).
    `init_weights` starts them as the target's HF `_init_weights` does: zero when it zeroes
    `.sinks`, else normal(0, std).

    SDPA cannot take sinks, so the attention maths is written out, exactly as HF's eager
    path: scaled scores, mask, the sink column concatenated, the row maximum subtracted where
    HF subtracts it (gpt_oss, in the scores' dtype), softmax, sink column dropped. Where HF
    applies the sink as a scale of the output instead (sigmoid(logsumexp(scores) - sink),
    in fp32: granite_swa), the package does that, so its bf16 roundings are HF's. The
    adapter maps `self_attn.sinks`.
    """

    name = "add_attention_sinks"

    def apply(self, package, features=None) -> None:
        run(
            package,
            "model.py",
            # after the output projection (its second stage where it is projected twice)
            InsertStatements("Attention", "__init__", assigns("self.wo", "self.wo_b"), SINKS),
        )
        edits.make_attention_explicit(package)
        if sinks_scale_the_output(features):
            softmax = SINK_SCALES_THE_OUTPUT
            run(
                package,
                "model.py",
                ReplaceStatements("Attention", "forward", assigns("out"), SCALED_OUT),
            )
        elif sinks_logits_shifted(features):
            softmax = SOFTMAX_WITH_SINKS
        else:
            softmax = SOFTMAX_WITH_SINKS_AS_THEY_ARE
        run(
            package,
            "model.py",
            ReplaceStatements(
                "Attention", "forward", assigns("probs", calling="torch.softmax"), softmax
            ),
        )
        adapter = package.module("state_dict_adapter.py").code
        anchor = next(
            (
                row
                for row in ("attention.wo.bias", "attention.wo_b.weight")
                if f"layers.{{}}.{row}" in adapter
            ),
            "attention.wo.weight",
        )
        edits.insert_rows_after(package, f"layers.{{}}.{anchor}", [_ROW])
        field = sinks_init_field(features)
        if field is not None:
            edits.add_args_field(package, SINK_INIT_FIELD, f"sink_init=hf_config.{field}")
            run(
                package,
                "model.py",
                InsertStatements("Attention", "__init__", assigns("self.sinks"), SINK_INIT),
            )
            moe_edits.add_method(package, "model.py", "Attention", CONSTANT_INIT)
        elif sinks_start_at_zero(features):
            moe_edits.add_method(package, "model.py", "Attention", ZERO_INIT)


# `<x> - <x>.amax(...)` or `<x> - <x>.max(...).values`: the logits shifted by their maximum
_MINUS_MAX = m.BinaryOperation(
    operator=m.Subtract(),
    right=m.Call(func=m.Attribute(attr=m.Name("amax")))
    | m.Attribute(value=m.Call(func=m.Attribute(attr=m.Name("max"))), attr=m.Name("values")),
)


def sinks_logits_shifted(features) -> bool:
    """Whether the target's HF attention subtracts the row maximum from the logits, sink
    column included, before its softmax (a function that reads `.sinks` and does). Without
    the source (nothing to read) the shift stays: it changes no value in fp32."""
    tree = _modeling_tree(features)
    if tree is None:
        return True
    return any(
        m.findall(function, _MINUS_MAX)
        for function in m.findall(tree, m.FunctionDef())
        if m.findall(function, m.Attribute(attr=m.Name("sinks")))
    )


# `<torch>.logsumexp(...)`: the log-sum of the exps a sink's share is computed from
_LOGSUMEXP = m.Call(func=m.Attribute(attr=m.Name("logsumexp")) | m.Name("logsumexp"))


def sinks_scale_the_output(features) -> bool:
    """Whether the target's HF attention applies the sink as a scale of its output (a
    function that reads `.sinks` and takes the scores' logsumexp) rather than as a softmax
    column. Without the source: the column, as gpt_oss."""
    tree = _modeling_tree(features)
    if tree is None:
        return False
    return any(
        m.findall(function, _LOGSUMEXP)
        for function in m.findall(tree, m.FunctionDef())
        if m.findall(function, m.Attribute(attr=m.Name("sinks")))
    )


def _modeling_tree(features) -> cst.Module | None:
    path = getattr(getattr(features, "source", None), "modeling", "")
    if not path or not Path(path).is_file():
        return None
    return cst.parse_module(Path(path).read_text())


def sinks_start_at_zero(features) -> bool:
    """Whether the target's HF modeling source zeroes the sinks in its weight init."""
    tree = _modeling_tree(features)
    return tree is not None and bool(m.findall(tree, _ZEROS_SINKS))
