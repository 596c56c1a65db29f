"""A remote-code folder with ZAYA's MoE, built at test time: the renamed zaya copy
(`codegen.verify.remote_fixture`) whose attention projects q, k and v with plain linear
layers in place of its convolutional projection and its q/k norm module (no rule realises
those yet), and whose layer types carry transformers' usual names (zaya's "hybrid" and
"hybrid_sliding" are "full_attention" and "sliding_attention" here). Its router (an MLP
over a down-projection adding the previous layer's router state, a skip class past the
experts' rows), its embeddings' shift and scale and its fp32 residual stream are ZAYA's
own, but for the skip class's selection bias: it starts at SKIP_BIAS, not -1, so that the
toy's tokens pick it now and then (at -1 no token does, and a package routing the skip
class to an expert would pass)."""

from __future__ import annotations

from pathlib import Path

from codegen.verify.remote_fixture import remote_folder

NAME = "wicket"
SKIP_BIAS = 0.1
CAMEL = "Wicket"

PROJECTIONS = "".join(
    f"        self.{name}_proj = nn.Linear(\n"
    f"            config.hidden_size, config.{heads} * self.head_dim, bias=config.attention_bias\n"
    "        )\n"
    for name, heads in (
        ("q", "num_attention_heads"),
        ("k", "num_key_value_heads"),
        ("v", "num_key_value_heads"),
    )
)

PROJECTED = """\
        hidden_shape = (*input_shape, -1, self.head_dim)
        query_states = self.q_proj(hidden_states).view(hidden_shape)
        key_states = self.k_proj(hidden_states).view(hidden_shape)
        value_states = self.v_proj(hidden_states).view(hidden_shape)
"""


def _once(text: str, old: str, new: str) -> str:
    assert text.count(old) == 1, old
    return text.replace(old, new)


def router_folder(dest: Path) -> Path:
    folder = remote_folder("zaya", dest, name=NAME)
    (path,) = folder.glob("modeling_*.py")
    text = path.read_text()
    text = _once(
        text,
        f"""        self.qkv_proj = {CAMEL}CCAProjection(
            config=self.config,
            layer_idx=layer_idx,
        )
""",
        PROJECTIONS,
    )
    text = _once(text, f"        self.qk_norm = {CAMEL}QKNorm(config)\n", "")
    text = _once(
        text,
        "        query_states, key_states, value_states = self.qkv_proj(hidden_states,"
        " past_key_values, conv_mask)\n"
        "        query_states, key_states = self.qk_norm(query_states, key_states)\n",
        PROJECTED,
    )
    start = "balancing_biases[-1] = -1.0"
    assert text.count(start) == 2  # built so, and so again by _init_weights
    text = text.replace(start, f"balancing_biases[-1] = {SKIP_BIAS}")
    path.write_text(text)
    for path in [*folder.glob("*.py"), folder / "config.json"]:
        text = path.read_text().replace('"hybrid_sliding"', '"sliding_attention"')
        path.write_text(text.replace('"hybrid"', '"full_attention"'))
    return folder
