"""The module the residual-convolution transforms share (no Transform here): a causal
depthwise convolution added back to its input, and the ModelArgs field of its kernel."""

from __future__ import annotations

from codegen.transforms import _attention_edits as edits
from codegen.transforms.edits import EditError

CAUSAL_CONV = '''
class CausalConv(nn.Module):
    """A causal depthwise convolution added back to its input: each channel's filter of
    `kernel` taps sees positions t - kernel + 1 .. t (a sequence starts from zeros).{fp32}"""

    def __init__(self, channels: int, kernel: int):
        super().__init__()
        self.conv = nn.Conv1d(
            channels, channels, kernel, groups=channels, padding=kernel - 1, bias=False
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        seq = x.shape[1]
        {body}
'''
FP32_DOC = (
    "\n    The input is taken in fp32, filtered in the filter's dtype (kept fp32) and returned in"
    "\n    its own dtype."
)
FP32_BODY = """y = x.float()
        mixed = self.conv(y.transpose(1, 2).to(self.conv.weight.dtype)).float()
        return (y + mixed[..., :seq].transpose(1, 2)).to(x.dtype)  # the right padding cropped"""
BODY = """mixed = self.conv(x.transpose(1, 2))[..., :seq]  # the right padding cropped
        return x + mixed.transpose(1, 2)"""

KERNEL = "conv_kernel: int = {kernel}  # taps of the causal depthwise filters"


def add_causal_conv(package, convs: dict) -> None:
    """`CausalConv` before `Attention` and the `conv_kernel` field, once per package."""
    if not {"convs", "conv", "kernel", "fp32"} <= set(convs) or not convs["convs"]:
        raise EditError(f"residual convolutions need their modules and kernel, got {convs}")
    if edits.has_definition(package, "model.py", "CausalConv"):
        return
    fp32 = bool(convs["fp32"])
    code = CAUSAL_CONV.replace("{fp32}", FP32_DOC if fp32 else "")
    code = code.replace("{body}", FP32_BODY if fp32 else BODY)
    edits.insert_definition(package, "model.py", code, before="Attention")
    field = convs.get("kernel_field")
    kernel = f"hf_config.{field}" if field else str(convs["kernel"])
    edits.add_args_field(package, KERNEL.format(kernel=convs["kernel"]), f"conv_kernel={kernel}")
