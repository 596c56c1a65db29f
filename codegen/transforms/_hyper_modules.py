"""The module classes a package with hyper-connections defines (one implementation, inserted
into the generated model.py by the `hyper_connections` transform).

The residual stream is `streams` parallel copies of the hidden state, (batch, seq, streams,
dim). Before each sublayer a `HyperConnection` reads its input from the streams with
per-token weights computed from the streams themselves; after it the output is written back
and the streams are mixed. `StreamCollapse` reads the final hidden state the same way,
before the final norm.
"""

import re
import textwrap

HYPER_CONNECTION = '''
class HyperConnection(nn.Module):
    """Reads one sublayer's input from the residual streams and writes its output back.

    The streams, flattened and RMS-normalised without a weight, are projected (in fp32) to
    per-token weights: `pre` (a sigmoid) collapses the streams into the sublayer's input,
    `post` (twice a sigmoid) spreads the sublayer's output over the streams, and `comb` (a
    softmax, made doubly stochastic by Sinkhorn iterations) mixes the streams themselves.
    """

    def __init__(self, dim: int, streams: int, sinkhorn_iters: int, eps: float, norm_eps: float):
        super().__init__()
        self.streams = streams
        self.sinkhorn_iters = sinkhorn_iters
        self.eps = eps
        self.norm_eps = norm_eps
        width = (2 + streams) * streams  # pre, post: one per stream; comb: streams x streams
        self.fn = nn.Parameter(torch.empty(width, streams * dim))
        self.base = nn.Parameter(torch.zeros(width))
        self.scale = nn.Parameter(torch.ones(3))

    def init_parameters(self, std: float) -> None:
        """A normal projection, no bias and unit scales, as HF's init sets them."""
        nn.init.normal_(self.fn, mean=0.0, std=std)
        nn.init.zeros_(self.base)
        nn.init.ones_(self.scale)

    def forward(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The sublayer's input and the fp32 `post` and `comb` weights of the streams `h`."""
        n = self.streams
        flat = h.flatten(2).float()
        flat = flat * torch.rsqrt(flat.square().mean(-1, keepdim=True) + self.norm_eps)
        pre, post, comb = F.linear(flat, self.fn.float()).split([n, n, n * n], dim=-1)
        pre_base, post_base, comb_base = self.base.split([n, n, n * n])
        pre_scale, post_scale, comb_scale = self.scale.unbind(0)
        pre = torch.sigmoid(pre * pre_scale + pre_base) + self.eps
        post = 2 * torch.sigmoid(post * post_scale + post_base)
        comb = comb.unflatten(-1, (n, n)) * comb_scale + comb_base.view(n, n)
        comb = torch.softmax(comb, dim=-1) + self.eps
        # Sinkhorn: columns, then (rows, columns) again, so rows and columns each sum to ~1
        comb = comb / (comb.sum(dim=-2, keepdim=True) + self.eps)
        for _ in range(self.sinkhorn_iters - 1):
            comb = comb / (comb.sum(dim=-1, keepdim=True) + self.eps)
            comb = comb / (comb.sum(dim=-2, keepdim=True) + self.eps)
        x = (pre.unsqueeze(-1) * h).sum(dim=2).to(h.dtype)
        return x, post, comb

    @staticmethod
    def write(h: torch.Tensor, out: torch.Tensor, post: torch.Tensor, comb: torch.Tensor):
        """The streams after the sublayer: its output `out` spread by `post`, plus the
        streams `h` mixed by `comb` (stream j feeds stream k with weight comb[j, k])."""
        post, comb = post.to(h.dtype), comb.to(h.dtype)
        return post.unsqueeze(-1) * out.unsqueeze(-2) + torch.matmul(comb.mT, h)
'''

STREAM_COLLAPSE = '''
class StreamCollapse(nn.Module):
    """Collapses the residual streams into one hidden state before the final norm, with
    per-token sigmoid weights projected (in fp32) from the RMS-normalised streams."""

    def __init__(self, dim: int, streams: int, eps: float, norm_eps: float):
        super().__init__()
        self.eps = eps
        self.norm_eps = norm_eps
        self.fn = nn.Parameter(torch.empty(streams, streams * dim))
        self.base = nn.Parameter(torch.zeros(streams))
        self.scale = nn.Parameter(torch.ones(1))

    def init_parameters(self, std: float) -> None:
        """A normal projection, no bias and a unit scale, as HF's init sets them."""
        nn.init.normal_(self.fn, mean=0.0, std=std)
        nn.init.zeros_(self.base)
        nn.init.ones_(self.scale)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        flat = h.flatten(2).float()
        flat = flat * torch.rsqrt(flat.square().mean(-1, keepdim=True) + self.norm_eps)
        pre = F.linear(flat, self.fn.float()) * self.scale.float() + self.base.float()
        pre = torch.sigmoid(pre) + self.eps
        return (pre.unsqueeze(-1) * h).sum(dim=2).to(h.dtype)
'''


def unmixed_connection(post_magnitude: float | None, post_eps: bool, write_fp32: bool) -> str:
    """`HyperConnection` for streams added back unmixed (no `comb`): `post` is a sigmoid
    times `post_magnitude` (None: the module's `post_magnitude`, a config value), plus the
    eps where `post_eps`; `write` sums in fp32 and casts back where `write_fp32`."""
    if post_magnitude is None:
        magnitude, magnitude_param = "self.post_magnitude", " post_magnitude: float,"
        magnitude_attr = "\n        self.post_magnitude = post_magnitude"
        magnitude_doc = "a sigmoid times `post_magnitude`"
    else:
        magnitude, magnitude_param, magnitude_attr = repr(post_magnitude), "", ""
        magnitude_doc = f"{post_magnitude!r} times a sigmoid"
    post = f"{magnitude} * torch.sigmoid(post * post_scale + post_base)"
    if post_eps:
        post += " + self.eps"
        magnitude_doc += " plus eps"
    if write_fp32:
        write = "return (post.unsqueeze(-1) * out.float().unsqueeze(-2) + h.float()).to(h.dtype)"
        write_doc = " (summed in fp32)"
    else:
        write = "return post.to(h.dtype).unsqueeze(-1) * out.unsqueeze(-2) + h"
        write_doc = ""
    return f'''
class HyperConnection(nn.Module):
    """Reads one sublayer's input from the residual streams and writes its output back.

    The streams, flattened and RMS-normalised without a weight, are projected (in fp32) to
    per-token weights: `pre` (a sigmoid) collapses the streams into the sublayer's input,
    `post` spreads the sublayer's output over the streams, which are added back as they
    are (no mix among them). `post` is {magnitude_doc}.
    """

    def __init__(self, dim: int, streams: int,{magnitude_param} eps: float, norm_eps: float):
        super().__init__()
        self.streams = streams{magnitude_attr}
        self.eps = eps
        self.norm_eps = norm_eps
        self.fn = nn.Parameter(torch.empty(2 * streams, streams * dim))  # pre, post
        self.base = nn.Parameter(torch.zeros(2 * streams))
        self.scale = nn.Parameter(torch.ones(2))

    def init_parameters(self, std: float) -> None:
        """A normal projection, no bias and unit scales, as HF's init sets them."""
        nn.init.normal_(self.fn, mean=0.0, std=std)
        nn.init.zeros_(self.base)
        nn.init.ones_(self.scale)

    def forward(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The sublayer's input and the fp32 `post` weights of the streams `h`."""
        n = self.streams
        flat = h.flatten(2).float()
        flat = flat * torch.rsqrt(flat.square().mean(-1, keepdim=True) + self.norm_eps)
        pre, post = F.linear(flat, self.fn.float()).split([n, n], dim=-1)
        pre_base, post_base = self.base.split([n, n])
        pre_scale, post_scale = self.scale.unbind(0)
        pre = torch.sigmoid(pre * pre_scale + pre_base) + self.eps
        post = {post}
        x = (pre.unsqueeze(-1) * h).sum(dim=2).to(h.dtype)
        return x, post

    @staticmethod
    def write(h: torch.Tensor, out: torch.Tensor, post: torch.Tensor) -> torch.Tensor:
        """The streams after the sublayer: its output `out` spread by `post`, plus the
        streams `h` as they are{write_doc}."""
        {write}
'''


_ONES = "        nn.init.ones_(self.scale)\n"
_ZEROS = "        nn.init.zeros_(self.base)\n"


def with_init(code: str, scale: float, base: str, pre: str) -> str:
    """`code`'s `init_parameters` starting the scales at `scale` and, for `base` "minus_log",
    the bias of the `pre` weights (a slice expression of `self.base`) at
    -log(max(streams - 1, 1)): pre then weighs each stream about 1 / (streams - 1)."""
    if code.count(_ONES) != 1 or code.count(_ZEROS) != 1:
        raise ValueError("the module's init_parameters is not the house's")
    if scale != 1.0:
        code = code.replace(_ONES, f"        nn.init.constant_(self.scale, {scale!r})\n")
    if base == "minus_log":
        streams = "self.fn.shape[0]" if pre == "self.base" else "self.streams"
        code = code.replace(
            _ZEROS,
            _ZEROS + f"        nn.init.constant_({pre}, -log(max({streams} - 1, 1)))\n",
        )
    if scale != 1.0 or base == "minus_log":
        said = re.search(r'"""A normal projection[^"]*"""', code)
        told = f"scales of {scale!r}" + (
            ", the pre weights' bias at -log(streams - 1)" if base == "minus_log" else ""
        )
        text = textwrap.fill(
            f"A normal projection, {told}, as HF's init sets them.",
            width=89,
            subsequent_indent=" " * 8,
        )
        code = code.replace(said.group(0), f'"""{text}"""')
    return code
