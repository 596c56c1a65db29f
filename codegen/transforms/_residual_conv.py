"""The module the residual-convolution transforms share (no Transform here): a causal
depthwise convolution added back to its input, and the ModelArgs field of its kernel."""

from __future__ import annotations

from codegen.transforms import _attention_edits as edits
from codegen.transforms.edits import EditError, is_statement

CAUSAL_CONV = '''
class CausalConv(nn.Module):
    """A causal depthwise convolution added back to its input: each channel's filter of
    `kernel` taps sees positions t - kernel + 1 .. t (a sequence starts from zeros).{notes}"""

    def __init__(self, channels: int, kernel: int):
        super().__init__()
        self.conv = nn.Conv1d(
            channels, channels, kernel, groups=channels, padding=kernel - 1, bias=False
        ){divisor_init}

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
        # HF's order, the filtered first: the sum keeps its layout (channels outermost), which
        # decides the attention kernel SDPA picks for the keys and values
        return (mixed[..., :seq].transpose(1, 2) + y).to(x.dtype)  # the right padding cropped"""
BODY = """mixed = self.conv(x.transpose(1, 2))[..., :seq]  # the right padding cropped
        return x + mixed.transpose(1, 2)"""

DIVISOR_DOC = "\n    The sum is divided by {divisor}."
DIVISOR_INIT = "\n        self.divisor = {divisor}"
FP32_DIVIDED = """y = x.float()
        mixed = self.conv(y.transpose(1, 2).to(self.conv.weight.dtype)).float()
        # HF's order, the filtered first: the sum keeps its layout (channels outermost), which
        # decides the attention kernel SDPA picks for the keys and values
        summed = mixed[..., :seq].transpose(1, 2) + y  # the right padding cropped
        return (summed / self.divisor).to(x.dtype)"""
DIVIDED = """mixed = self.conv(x.transpose(1, 2))[..., :seq]  # the right padding cropped
        return (x + mixed.transpose(1, 2)) / self.divisor"""

KERNEL = "conv_kernel: int = {kernel}  # taps of the causal depthwise filters"


def add_causal_conv(package, convs: dict) -> None:
    """`CausalConv` before `Attention` and the `conv_kernel` field, once per package; the
    sum divided by the analysed `divisor` (an expression over `kernel`) where there is one."""
    if not {"convs", "conv", "kernel", "fp32"} <= set(convs) or not convs["convs"]:
        raise EditError(f"residual convolutions need their modules and kernel, got {convs}")
    fp32, divisor = bool(convs["fp32"]), convs.get("divisor")
    if edits.has_definition(package, "model.py", "CausalConv"):
        init = edits.find_method(package.module("model.py"), "CausalConv", "__init__")
        built = any(is_statement(f"self.divisor = {divisor}")(s) for s in init.body.body)
        if built != bool(divisor):  # one module for both: their sums divided alike
            raise EditError(f"the residual convolutions divide their sums otherwise ({divisor})")
        return
    body = (FP32_DIVIDED if fp32 else DIVIDED) if divisor else (FP32_BODY if fp32 else BODY)
    notes = (FP32_DOC if fp32 else "") + (DIVISOR_DOC.format(divisor=divisor) if divisor else "")
    code = CAUSAL_CONV.replace("{notes}", notes).replace("{body}", body)
    code = code.replace("{divisor_init}", DIVISOR_INIT.format(divisor=divisor) if divisor else "")
    edits.insert_definition(package, "model.py", code, before="Attention")
    if divisor and "math." in divisor and "import math" not in package.module("model.py").code:
        edits.insert_definition(package, "model.py", "import math\n")  # tidy sorts it
    field = convs.get("kernel_field")
    kernel = f"hf_config.{field}" if field else str(convs["kernel"])
    edits.add_args_field(package, KERNEL.format(kernel=convs["kernel"]), f"conv_kernel={kernel}")
