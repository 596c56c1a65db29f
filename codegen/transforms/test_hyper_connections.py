"""HyperConnections: before/after on the llama and qwen3_moe references. Each residual add
of the block becomes a read of the sublayer's input from the streams and a write-back through
the layer's hyper-connection; the model copies the embedding into the streams and collapses
them before the final norm; the adapter maps the modules' parameters to HF's keys."""

from __future__ import annotations

import importlib
import sys

import pytest
import torch

from codegen.models import references_dir
from codegen.scaffold.source import SourcePackage
from codegen.transforms._attention_edits import find_method
from codegen.transforms.edits import EditError, code_of
from codegen.transforms.hyper_connections import HyperConnections

HYPER = {
    "params": ("fn", "base", "scale"),
    "streams": "hc_mult",
    "sinkhorn_iters": "hc_sinkhorn_iters",
    "eps": "hc_eps",
    "norm_eps": "rms_norm_eps",
    "layer": ("attn_hc", "ffn_hc"),
    "head": "hc_head",
    "head_params": ("hc_fn", "hc_base", "hc_scale"),
    "mix": "sinkhorn",
    "post_scale": 2,
    "post_eps": False,
    "write_fp32": False,
    "scale_init": 1.0,
    "pre_base_init": "zeros",
    "head_scale_init": 1.0,
    "head_base_init": "zeros",
}


def _widened(reference: str = "llama") -> SourcePackage:
    package = SourcePackage.from_directory(references_dir() / reference)
    HyperConnections().apply(package, hyper=HYPER)
    return package


def _body(package, cls: str, method: str) -> str:
    function = find_method(package.module("model.py"), cls, method)
    return "".join(code_of(s).strip() + "\n" for s in function.body.body)


def test_the_blocks_residual_adds_become_hyper_connections():
    assert _body(_widened(), "TransformerBlock", "forward") == (
        "sub_in, post, comb = self.attention_hc(x)\n"
        "h = self.attention_hc.write(x, self.attention(self.attention_norm(sub_in), rope),"
        " post, comb)\n"
        "sub_in, post, comb = self.ffn_hc(h)\n"
        "return self.ffn_hc.write(h, self.feed_forward(self.ffn_norm(sub_in)), post, comb)\n"
    )


def test_a_moe_block_picks_its_ffn_as_before():
    body = _body(_widened("qwen3_moe"), "TransformerBlock", "forward")
    assert "ffn = self.moe if self.is_moe else self.feed_forward\n" in body
    assert "return self.ffn_hc.write(h, ffn(self.ffn_norm(sub_in)), post, comb)\n" in body


def test_the_model_expands_and_collapses_the_streams_and_maps_the_keys():
    package = _widened()
    body = _body(package, "Model", "forward")
    expand = "h = h.unsqueeze(2).expand(-1, -1, self.args.hc_streams, -1)"
    assert body.index(expand) < body.index("for layer in self.layers")
    assert "h = self.norm(self.stream_collapse(h))" in body
    files = package.render()
    for row in (
        '"model.layers.{}.attn_hc.fn": "layers.{}.attention_hc.fn"',
        '"model.layers.{}.ffn_hc.scale": "layers.{}.ffn_hc.scale"',
        '"model.hc_head.hc_base": "stream_collapse.base"',
    ):
        assert row in files["state_dict_adapter.py"]
    assert "hc_sinkhorn_iters=hf_config.hc_sinkhorn_iters" in files["args.py"]
    for name in ("class HyperConnection(", "class StreamCollapse("):
        assert files["model.py"].count(name) == 1


def test_the_package_runs_on_streams(tmp_path):
    folder = tmp_path / "gen_hyper"
    folder.mkdir()
    for filename, text in _widened().render().items():
        (folder / filename).write_text(text)
    sys.path.insert(0, str(tmp_path))
    try:
        args_module = importlib.import_module("gen_hyper.args")
        model_module = importlib.import_module("gen_hyper.model")
    finally:
        sys.path.remove(str(tmp_path))
    args = args_module.ModelArgs(dim=16, n_layers=2, n_heads=2, n_kv_heads=1, head_dim=8)
    args.vocab_size, args.hidden_dim, args.hc_streams = 32, 24, 3
    model = model_module.Model(args)
    model.init_weights()
    assert model.layers[0].attention_hc.fn.shape == (15, 48)
    assert torch.equal(model.stream_collapse.scale, torch.ones(1))
    logits = model(torch.randint(0, 32, (2, 5)))
    assert logits.shape == (2, 5, 32) and torch.isfinite(logits).all()


def test_a_block_without_residual_adds_is_an_error():
    package = _widened()
    with pytest.raises(EditError):
        HyperConnections().apply(package, hyper=HYPER)


# HY-V4's form: the streams added back unmixed, post a config magnitude times a sigmoid + eps
UNMIXED = {
    **HYPER,
    "sinkhorn_iters": None,
    "mix": None,
    "post_scale": "hc_magnitude",
    "post_eps": True,
    "write_fp32": True,
    "scale_init": 0.01,
    "pre_base_init": "minus_log",
    "head_scale_init": 0.01,
    "head_base_init": "minus_log",
}


def test_the_unmixed_form_writes_back_without_a_mix():
    package = SourcePackage.from_directory(references_dir() / "llama")
    HyperConnections().apply(package, hyper=UNMIXED)
    assert _body(package, "TransformerBlock", "forward") == (
        "sub_in, post = self.attention_hc(x)\n"
        "h = self.attention_hc.write(x, self.attention(self.attention_norm(sub_in), rope), post)\n"
        "sub_in, post = self.ffn_hc(h)\n"
        "return self.ffn_hc.write(h, self.feed_forward(self.ffn_norm(sub_in)), post)\n"
    )
    files = package.render()
    assert "hc_post_magnitude=hf_config.hc_magnitude" in files["args.py"]
    assert "hc_sinkhorn_iters" not in files["args.py"] + files["model.py"]
    write = find_method(package.module("model.py"), "HyperConnection", "write")
    assert code_of(write.body.body[-1]).strip() == (
        "return (post.unsqueeze(-1) * out.float().unsqueeze(-2) + h.float()).to(h.dtype)"
    )
    init = _body(package, "HyperConnection", "init_parameters")
    assert "nn.init.constant_(self.scale, 0.01)" in init
    assert "nn.init.constant_(self.base[: self.streams], -log(max(self.streams - 1, 1)))" in init
    collapse = _body(package, "StreamCollapse", "init_parameters")
    assert "nn.init.constant_(self.base, -log(max(self.fn.shape[0] - 1, 1)))" in collapse
    forward = _body(package, "HyperConnection", "forward")
    assert (
        "post = self.post_magnitude * torch.sigmoid(post * post_scale + post_base) + self.eps"
        in forward
    )


def test_the_rms_factor_scales_the_projection_where_hf_applies_it_there():
    """HY-V4 scales the projection of the raw streams by their RMS factor: the flattened
    streams (batch, seq, streams x dim) are not written normed, in either module."""
    package = SourcePackage.from_directory(references_dir() / "llama")
    HyperConnections().apply(
        package, hyper={**UNMIXED, "norm_after": True, "head_norm_after": True}
    )
    connection = _body(package, "HyperConnection", "forward")
    assert (
        "pre, post = (F.linear(flat, self.fn.float()) * norm).split([n, n], dim=-1)" in connection
    )
    collapse = _body(package, "StreamCollapse", "forward")
    assert (
        "pre = F.linear(flat, self.fn.float()) * norm * self.scale.float() + self.base.float()"
        in collapse
    )
    for body in (connection, collapse):
        assert "flat = flat *" not in body
        assert "norm = torch.rsqrt(flat.square().mean(-1, keepdim=True) + self.norm_eps)" in body
