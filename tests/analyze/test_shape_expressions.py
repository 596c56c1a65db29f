"""Shapes spelled as `x.size()[:-1] + (heads, 3 * d)` / `x.shape[:-1] + (4, -1)` are read
like `view(*x.shape[:-1], heads, 3 * d)`: the sizes after the leading axes count. A fused
q/k/v viewed per head as (q, k, v) triples is interleaved; one viewed as blocks split on
their own is not silently the plain [q | k | v]; q/k/v split into three equal parts with no
head size written anywhere are as many kv heads as heads."""

from __future__ import annotations

import os

import libcst as cst
import pytest
from analyze_helpers import write_synth

from codegen.analyze.analysis import analyze

_FUSED = {
    "per_head": """
        qkv = self.qkv_proj(hidden_states)
        qkv = qkv.view(qkv.size()[:-1] + (self.num_heads, 3 * self.head_dim))
        query = qkv[..., : self.head_dim].transpose(1, 2)
        key = qkv[..., self.head_dim : 2 * self.head_dim].transpose(1, 2)
        value = qkv[..., 2 * self.head_dim :].transpose(1, 2)
""",
    "blocks": """
        qkv = self.qkv_proj(hidden_states)
        qkv = qkv.reshape(qkv.shape[:-1] + (2, -1))
        query, value, key = torch.split(qkv, self.width // 2, dim=-1)
        query = query.reshape(shape).transpose(1, 2)
        key = key.reshape(shape).transpose(1, 2)
        value = value.reshape(shape).transpose(1, 2)
""",
    "thirds": """
        qkv = self.qkv_proj(hidden_states)
        query, key, value = qkv.split(self.width, dim=2)
        new = query.size()[:-1] + (self.num_heads, query.size(-1) // self.num_heads)
        query = query.view(*new).transpose(1, 2)
        key = key.view(*new).transpose(1, 2)
        value = value.view(*new).transpose(1, 2)
""",
}


def _fused_model(folder: str, form: str) -> str:
    path = write_synth(
        folder, q_norm=False, qkv_bias=False, o_bias=False, mlp_bias=False, post_norm=False
    )
    config = os.path.join(folder, "configuration_synth.py")
    with open(config, encoding="utf-8") as fh:
        text = fh.read()
    with open(config, "w", encoding="utf-8") as fh:  # as many kv heads as heads
        fh.write(text.replace("num_key_value_heads: int = 2", "num_key_value_heads: int = 4"))
    with open(path, encoding="utf-8") as fh:
        source = fh.read()
    for line in ("q_proj", "k_proj", "v_proj"):
        source = "\n".join(
            x for x in source.split("\n") if not x.strip().startswith(f"self.{line} = ")
        )
    fused = (
        "        self.num_heads = q\n"
        "        self.width = q * self.head_dim\n"
        "        self.qkv_proj = nn.Linear(h, 3 * q * self.head_dim, bias=False)\n"
    )
    if form == "thirds":  # no head size anywhere: only the split says how wide k and v are
        fused = fused.replace("self.head_dim", "(h // q)")
        source = source.replace("self.head_dim = config.head_dim", "self.head_dim = None")
        source = source.replace("self.scaling = self.head_dim**-0.5", "self.scaling = 1.0")
        source = source.replace("nn.Linear(q * self.head_dim, h", "nn.Linear(h, h")
    source = source.replace("        self.o_proj", fused + "        self.o_proj")
    forward = source.split("def forward(self, hidden_states, position_embeddings", 1)
    body = forward[1]
    lines = body.split("\n")
    kept = [
        x
        for x in lines
        if not any(
            x.strip().startswith(p) for p in ("query = self.q", "key = self.k", "value = self.v")
        )
    ]
    body = "\n".join(kept).replace(
        "shape = (*hidden_states.shape[:-1], -1, self.head_dim)",
        "shape = (*hidden_states.shape[:-1], -1, self.head_dim)" + _FUSED[form].rstrip("\n"),
        1,
    )
    source = forward[0] + "def forward(self, hidden_states, position_embeddings" + body
    cst.parse_module(source)  # still Python
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(source)
    return path


@pytest.mark.parametrize(
    ("form", "layout", "blocks", "order"),
    [
        ("per_head", "interleaved", 1, "qkv"),
        ("blocks", "blocked", 2, "qvk"),
        ("thirds", "contiguous", 1, "qkv"),
    ],
)
def test_fused_layout_from_shape_expressions(tmp_path, form, layout, blocks, order):
    attention = analyze(_fused_model(str(tmp_path / "synth"), form)).attention
    assert attention.fused_qkv is True
    assert (attention.qkv_layout, attention.qkv_blocks, attention.qkv_order) == (
        layout,
        blocks,
        order,
    )
    assert attention.kind == "mha"
    assert attention.num_kv_heads == 4


def test_blocks_split_in_sizes_that_do_not_add_up_stay_unknown(tmp_path):
    path = _fused_model(str(tmp_path / "synth"), "blocks")
    with open(path, encoding="utf-8") as fh:
        source = fh.read()
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(source.replace("self.width // 2, dim=-1)", "self.width // 4, dim=-1)"))
    assert analyze(path).attention.qkv_layout == "unknown"


def test_installed_models():
    # gpt_neox_japanese views its fused output per head as triples (kv heads == heads);
    # openai-gpt splits it in three equal parts and never writes a head size down
    assert analyze("gpt_neox_japanese").attention.qkv_layout == "interleaved"
    gpt = analyze("openai-gpt").attention
    assert (gpt.kind, gpt.num_kv_heads, gpt.head_dim, gpt.qkv_layout) == (
        "mha",
        12,
        64,
        "contiguous",
    )


def test_last_layer_output_bias():
    # gpt_neox_japanese's last attention returns its dense_bias, which the layer adds to the
    # attention output; no other layer has one
    assert analyze("gpt_neox_japanese").attention.last_layer_o_bias == "dense_bias"
    assert analyze("gpt_neox").attention.last_layer_o_bias is None


def test_post_ln_without_a_final_norm():
    # GPT-1 norms each residual sum (x = ln(x + sublayer(x))) and has no norm after its last
    # layer; its MLP width is Conv1D(4 * n_embd, n_embd)'s output; OLMo2 norms the sublayer
    # outputs (post), GPT-2 is pre-norm with ln_f
    gpt = analyze("openai-gpt")
    assert (gpt.norm.placement, gpt.norm.final, gpt.ffn.intermediate_size) == (
        "post_residual",
        False,
        3072,
    )
    assert (analyze("olmo2").norm.placement, analyze("olmo2").norm.final) == ("post", True)
    assert (analyze("gpt2").norm.placement, analyze("gpt2").norm.final) == ("pre", True)
