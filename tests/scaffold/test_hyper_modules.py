"""The hyper-connection modules a package defines (codegen/transforms/_hyper_modules.py)
against transformers' DeepSeek-V4 ones: same weights, same streams, same values, in fp32 and
with bf16 streams (the weights kept in fp32, as HF keeps them); and seeded defects (the
Sinkhorn normalisation skipped, the write-back mix transposed, the streams collapsed by
their mean) that the comparison catches."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from codegen.transforms._hyper_modules import HYPER_CONNECTION, STREAM_COLLAPSE

dsv4 = pytest.importorskip("transformers.models.deepseek_v4.modeling_deepseek_v4")

DIM, STREAMS = 24, 4


def _classes(source: str = HYPER_CONNECTION + STREAM_COLLAPSE):
    namespace = {"torch": torch, "nn": nn, "F": F}
    exec(compile(source, "<hyper>", "exec"), namespace)
    return namespace["HyperConnection"], namespace["StreamCollapse"]


def _config():
    from transformers import DeepseekV4Config

    return DeepseekV4Config(hidden_size=DIM, hc_mult=STREAMS, hc_sinkhorn_iters=20)


def _pair(source: str = HYPER_CONNECTION + STREAM_COLLAPSE):
    torch.manual_seed(0)
    config = _config()
    hf_hc, hf_head = dsv4.DeepseekV4HyperConnection(config), dsv4.DeepseekV4HyperHead(config)
    for p in list(hf_hc.parameters()) + list(hf_head.parameters()):
        nn.init.normal_(p, std=0.5)
    HyperConnection, StreamCollapse = _classes(source)
    eps = config.hc_eps, config.rms_norm_eps
    hc = HyperConnection(DIM, STREAMS, config.hc_sinkhorn_iters, *eps)
    head = StreamCollapse(DIM, STREAMS, *eps)
    hc.load_state_dict(hf_hc.state_dict())
    head.load_state_dict({k.removeprefix("hc_"): v for k, v in hf_head.state_dict().items()})
    return (hf_hc, hf_head), (hc, head)


def _run(hf, ours, dtype):
    (hf_hc, hf_head), (hc, head) = hf, ours
    torch.manual_seed(1)
    h = torch.randn(2, 5, STREAMS, DIM).to(dtype)
    out = torch.randn(2, 5, DIM).to(dtype)  # a sublayer's output
    post, comb, collapsed = hf_hc(h)
    hf_streams = post.to(dtype).unsqueeze(-1) * out.unsqueeze(-2) + torch.matmul(
        comb.to(dtype).transpose(-1, -2), h
    )  # DeepseekV4DecoderLayer's write-back
    x, post2, comb2 = hc(h)
    streams = hc.write(h, out, post2, comb2)
    return (collapsed, hf_streams, hf_head(h)), (x, streams, head(h))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_hyper_connection_matches_transformers(dtype):
    theirs, ours = _run(*_pair(), dtype)
    for a, b in zip(theirs, ours, strict=True):
        assert a.dtype == b.dtype
        torch.testing.assert_close(b, a, rtol=0, atol=0)


@pytest.mark.parametrize(
    ("old", "new", "broken"),
    [
        # the Sinkhorn normalisation skipped: comb is the softmax as it is
        ("for _ in range(self.sinkhorn_iters - 1):", "for _ in range(0):", 1),
        # the write-back mix transposed (stream k feeds stream j)
        ("torch.matmul(comb.mT, h)", "torch.matmul(comb, h)", 1),
        # the sublayer's input and the final hidden state as the streams' mean
        ("x = (pre.unsqueeze(-1) * h).sum(dim=2)", "x = h.mean(dim=2)", 0),
        ("return (pre.unsqueeze(-1) * h).sum(dim=2)", "return h.mean(dim=2)", 2),
    ],
)
def test_seeded_defects_are_caught(old, new, broken):
    source = HYPER_CONNECTION + STREAM_COLLAPSE
    assert source.count(old) == 1, old
    theirs, ours = _run(*_pair(source.replace(old, new)), torch.float32)
    assert not torch.allclose(ours[broken], theirs[broken], atol=1e-4)
