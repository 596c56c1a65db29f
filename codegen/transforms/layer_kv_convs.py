"""The full-attention layers' key and value filters take per-token taps: fixed per-channel
taps plus taps a linear projects from the projection's input, one set per key/value head
(Inkling-2's full layers), in place of the residual filters the sliding layers keep."""

from __future__ import annotations

import libcst as cst
import libcst.matchers as m

from codegen.transforms import _attention_edits as edits
from codegen.transforms.base import Transform
from codegen.transforms.edits import EditError, ReplaceStatements, assigns, run
from codegen.transforms.kv_convs import filter_projections
from codegen.transforms.log_scaled_layers import CLASS
from codegen.transforms.transposed_linears import AfterFromHfMap

DYNAMIC_CONV = '''
class DynamicConv(nn.Module):
    """A causal short convolution added back to its input whose taps depend on the token:
    the fixed `weight` (channels, kernel), tap i weighting the token i steps back, plus the
    taps `tap_proj` projects from `source` at the token, one set per head (a group of
    channels). Computed in fp32, returned in the input's dtype; the sum is divided by
    {divisor}."""

    def __init__(self, channels: int, source_dim: int, heads: int, kernel: int):
        super().__init__()
        self.kernel = kernel
        self.weight = nn.Parameter(torch.zeros(channels, kernel))
        self.tap_proj = nn.Linear(source_dim, heads * kernel, bias=False)
        self.divisor = {divisor}

    def init_parameters(self, std: float) -> None:
        """The fixed taps start at zero (the token taps' linear as every linear)."""
        nn.init.zeros_(self.weight)

    def forward(self, x: torch.Tensor, source: torch.Tensor) -> torch.Tensor:
        # (batch, seq, heads, 1, kernel): the token's own taps, shared by its head's channels
        taps = self.tap_proj(source).float().unflatten(-1, (-1, 1, self.kernel))
        taps = taps + self.weight.float().unflatten(0, (taps.shape[2], -1))
        y = x.float()
        padded = F.pad(y.transpose(1, 2), (self.kernel - 1, 0))  # zeros before the sequence
        # (batch, seq, channels, kernel): [..., i] is the token i steps back
        windows = padded.unfold(-1, self.kernel, 1).flip(-1).transpose(1, 2)
        mixed = (windows.unflatten(2, (taps.shape[2], -1)) * taps).sum(-1).flatten(2)
        return ((mixed + y) / self.divisor).to(x.dtype)
'''
NOTE = (
    "# the full layers' fixed filter taps, stored (kernel, channels): transposed on load and save\n"
)
BUILD = (
    "self.{name} = DynamicConv(self.{proj}.out_features, self.{proj}.in_features,"
    " self.n_kv_heads, args.conv_kernel)"
)


class LayerKvConvs(Transform):
    """`LogScaledAttention` (the full layers' class, see `log_scaled_layers`) builds a
    `DynamicConv` for each key/value filter the analysis names, in place of the
    `CausalConv` `kv_convs` built there, one set of token taps per key/value head, and its
    forward hands each the projection's input besides the projection's output
    (`self.k_conv(self.wk(xk), xk)`). `convs`: the analysed `attention.layer_kv_convs`
    ({"convs": ((HF module, HF projection),), "static", "proj": HF attributes of the fixed
    taps and the taps' linear, "layout", "kernel", "divisor", "fp32", ...}); the adapter maps
    the fixed taps, which HF stores (kernel, channels), transposed (the module's are
    (channels, kernel): a channel's taps are a row, split over tp as the projection's rows)."""

    name = "layer_kv_convs"

    def apply(self, package, features=None, *, convs: dict | None = None) -> None:
        found = convs or {}
        if not found.get("convs") or not found.get("divisor"):
            raise EditError(f"per-token filters need their modules and divisor, got {found}")
        if found.get("layout") != "kernel_channels" or not found.get("fp32"):
            raise EditError(
                f"per-token filters of layout {found.get('layout')!r}, fp32 {found.get('fp32')}:"
                " (kernel, channels) taps computed in fp32 only"
            )
        if not edits.has_definition(package, "model.py", CLASS):
            raise EditError(f"the full layers' filters are {CLASS}'s: no such class")
        if not edits.has_definition(package, "model.py", "DynamicConv"):
            code = DYNAMIC_CONV.replace("{divisor}", found["divisor"])
            edits.insert_definition(package, "model.py", code, before="Attention")

        def filter_one(proj: str, name: str, module: str) -> list[tuple[str, str]]:
            run(
                package,
                "model.py",
                ReplaceStatements(
                    CLASS, "__init__", assigns(f"self.{name}"), BUILD.format(name=name, proj=proj)
                ),
            )
            edits.replace_expressions(
                package, "model.py", CLASS, "forward", _filtered(name, proj), _with_source
            )
            return [
                (f"{module}.{found['static']}", f"layers.{{}}.attention.{name}.weight"),
                (
                    f"{module}.{found['proj']}.weight",
                    f"layers.{{}}.attention.{name}.tap_proj.weight",
                ),
            ]

        modules = filter_projections(package, found["convs"], filter_one)
        if "transposed" in package.module("state_dict_adapter.py").code:
            raise EditError("the adapter transposes other keys already: one set per adapter")
        names = ", ".join(f'"{module}.{found["static"]}"' for module in modules)
        run(
            package,
            "state_dict_adapter.py",
            AfterFromHfMap(f"{NOTE}transposed = frozenset({{{names}}})"),
        )


def _filtered(name: str, proj: str):
    """`self.<name>(self.<proj>(x))`: the filter over the projection's output."""
    pattern = m.Call(
        func=m.Attribute(value=m.Name("self"), attr=m.Name(name)),
        args=[
            m.Arg(
                value=m.Call(
                    func=m.Attribute(value=m.Name("self"), attr=m.Name(proj)), args=[m.Arg()]
                )
            )
        ],
    )
    return lambda node: m.matches(node, pattern)


def _with_source(call: cst.Call) -> cst.Call:
    """`self.k_conv(self.wk(xk))` -> `self.k_conv(self.wk(xk), xk)`."""
    source = call.args[0].value.args[0].value
    return call.with_changes(
        args=[call.args[0].with_changes(comma=cst.MaybeSentinel.DEFAULT), cst.Arg(source)]
    )
