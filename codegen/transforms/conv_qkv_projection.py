"""Queries and keys filtered over the sequence by a depthwise then a per-head convolution,
with a mix of the two projections added; half the value heads read the previous token
(zaya's compressed convolutional attention projection)."""

from __future__ import annotations

import libcst as cst

from codegen.transforms import _attention_edits as edits
from codegen.transforms._ffn_edits import rewrite_adapter
from codegen.transforms.base import Transform
from codegen.transforms.edits import (
    EditError,
    InsertStatements,
    ReplaceStatements,
    assigns,
    code_of,
    run,
)

QK_CONV = '''
class QKConv(nn.Module):
    """Two causal convolutions over the sequence, run in turn on the queries' and keys'
    channels side by side: a depthwise filter of `kernels[0]` taps, then one of `kernels[1]`
    taps mixing the channels of each head. The input is padded once, with
    (kernels[0] - 1) + (kernels[1] - 1) zeros in front, so the second filter also reads the
    first one's output over that padding{bias_doc}."""

    def __init__(self, channels: int, head_dim: int, kernels: tuple[int, int]):
        super().__init__()
        self.padding = kernels[0] - 1 + kernels[1] - 1
        self.depthwise = nn.Conv1d(channels, channels, kernels[0], groups=channels{bias})
        self.grouped = nn.Conv1d(
            channels, channels, kernels[1], groups=channels // head_dim{bias}
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(batch, seq, channels) -> the same shape, position t reading positions <= t."""
        x = F.pad(x.transpose(1, 2), (self.padding, 0))
        return self.grouped(self.depthwise(x)).transpose(1, 2)
'''

KERNELS = "qk_conv_kernels: tuple[int, int] = {kernels}  # q/k filter taps: depthwise, per head"

BUILD = """self.wv_delayed = nn.Linear({dim}, {width}{bias})
self.qk_conv = QKConv(
    (args.n_heads + args.n_kv_heads) * args.head_dim, args.head_dim, args.qk_conv_kernels
)"""

FORWARD = """q, k = self.wq(x), self.wk(x)
# each query head and its kv head's key averaged; the keys take that mix averaged over
# the query heads of their group
mixed = 0.5 * (
    q.view(batch, seq, self.n_kv_heads, -1, self.head_dim)
    + k.view(batch, seq, self.n_kv_heads, 1, self.head_dim)
)
q_filtered, k_filtered = self.qk_conv(torch.cat([q, k], dim=-1)).split(
    [q.shape[-1], k.shape[-1]], dim=-1
)
q = (q_filtered.view(batch, seq, -1, self.head_dim) + mixed.flatten(2, 3)).transpose(1, 2)
k = (k_filtered.view(batch, seq, -1, self.head_dim) + mixed.mean(dim=3)).transpose(1, 2)
# the last half of the value heads is the previous token's projection (zeros before the
# first token)
v = torch.cat([self.wv(x), self.wv_delayed(F.pad(x, (0, 0, 1, -1)))], dim=-1)
v = v.view(batch, seq, -1, self.head_dim).transpose(1, 2)"""


class ConvQkvProjection(Transform):
    """`Attention` filters the query and key projections with `QKConv` (a depthwise then a
    per-head causal convolution over the sequence, padded once in front) and adds each a
    mix of the two projections: the queries half the sum of each query head and its kv
    head's key, the keys that mix averaged over their group. `wv` shrinks to half the value
    width and `wv_delayed`, the other half, projects the previous token (zeros before the
    first), its heads after `wv`'s. `conv` is the analysed `attention.conv_projection`: the HF
    module and its parts' names (the adapter maps them), the kernels and their config
    fields, and whether the convolutions have a bias."""

    name = "conv_qkv_projection"

    def apply(self, package, features=None, *, conv: dict) -> None:
        needed = {"module", "q", "k", "value", "delayed", "depthwise", "grouped", "kernels"}
        if not needed <= set(conv):
            raise EditError(f"the convolutional projection needs {sorted(needed)}, got {conv}")
        bias = "" if conv.get("conv_bias", True) else ", bias=False"
        code = QK_CONV.replace("{bias}", bias)
        doc = "" if bias else " (its bias included)"
        edits.insert_definition(
            package, "model.py", code.replace("{bias_doc}", doc), before="Attention"
        )
        fields = conv.get("kernel_fields") or (None, None)
        hf = ", ".join(
            f"hf_config.{field}" if field else str(kernel)
            for field, kernel in zip(fields, conv["kernels"], strict=True)
        )
        edits.add_args_field(
            package,
            KERNELS.format(kernels=tuple(conv["kernels"])),
            f"qk_conv_kernels=({hf})",
        )
        _halve_values(package)
        run(
            package,
            "model.py",
            ReplaceStatements("Attention", "forward", assigns("q", "k"), ""),
        )
        run(package, "model.py", ReplaceStatements("Attention", "forward", assigns("v"), FORWARD))
        _map_keys(package, conv)


def _halve_values(package) -> None:
    """`wv` projects half the value width; `wv_delayed` (built alike) the other half, and
    `qk_conv` after them."""
    found = {}

    class _Read(cst.CSTVisitor):
        def visit_Assign(self, node):
            target = node.targets[0].target
            if code_of(target) == "self.wv" and isinstance(node.value, cst.Call):
                found["call"] = node.value

    package.module("model.py").visit(_Read())
    call = found.get("call")
    if call is None or len(call.args) < 2:
        raise EditError("model.py's Attention builds no self.wv = nn.Linear(dim, width, ...)")
    dim, width = (code_of(a.value) for a in call.args[:2])
    rest = "".join(", " + code_of(a).rstrip(", ") for a in call.args[2:])
    halved = f"{width} // 2"
    run(
        package,
        "model.py",
        ReplaceStatements(
            "Attention",
            "__init__",
            assigns("self.wv"),
            f"self.wv = nn.Linear({dim}, {halved}{rest})",
        ),
    )
    run(
        package,
        "model.py",
        InsertStatements(
            "Attention",
            "__init__",
            assigns("self.wv"),
            BUILD.format(dim=dim, width=halved, bias=rest),
        ),
    )


def _map_keys(package, conv: dict) -> None:
    """The q/k/v rows read the HF module's projections; `wv_delayed` and the convolutions
    get rows of their own."""
    house = {"wq": conv["q"], "wk": conv["k"], "wv": conv["value"]}
    prefixes = set()

    def rewrite(hf, key):
        if key is None or not key.startswith("layers.{}.attention."):
            return [(hf, key)]
        proj, _, param = key.removeprefix("layers.{}.attention.").partition(".")
        prefix = hf.rsplit(".", 2)[0]  # the attention's HF path
        prefixes.add(prefix)
        if proj not in house:
            return [(hf, key)]
        rows = [(f"{prefix}.{conv['module']}.{house[proj]}.{param}", key)]
        if proj == "wv":
            rows.append(
                (
                    f"{prefix}.{conv['module']}.{conv['delayed']}.{param}",
                    f"layers.{{}}.attention.wv_delayed.{param}",
                )
            )
        return rows

    rewrite_adapter(package, rewrite)
    if len(prefixes) != 1:
        raise EditError(f"state_dict_adapter.py's attention rows have prefixes {prefixes}")
    prefix = f"{prefixes.pop()}.{conv['module']}"
    params = ("weight", "bias") if conv.get("conv_bias", True) else ("weight",)
    rows = [
        (f"{prefix}.{conv[part]}.{param}", f"layers.{{}}.attention.qk_conv.{part}.{param}")
        for part in ("depthwise", "grouped")
        for param in params
    ]
    edits.insert_rows_after(package, "layers.{}.attention.wv_delayed.weight", rows)
