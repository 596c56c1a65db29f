"""A remote-code folder with hyper-connections on a plain decoder, built at test time: the
renamed llama copy (`codegen.verify.remote_fixture`) with DeepSeek-V4's hyper-connection
modules (copied from the installed source, renamed) wrapped around each sublayer as
DeepSeek-V4's decoder layer does, the embedding expanded into the streams and collapsed
before the final norm. DeepSeek-V4 itself needs rules this one does not (its attention,
hash routing), so this is the target that isolates the hyper-connection rule.
`unmixed_folder` builds the same with HY-V4's modules and decoder layer instead (the
streams added back unmixed, `post` a config magnitude times a sigmoid, summed in fp32);
its magnitude is not HY-V4's default 2, so twice a sigmoid would not pass for it."""

from __future__ import annotations

import ast
import json
from pathlib import Path

from codegen.verify.remote_fixture import remote_folder

NAME = "braidwood"
CAMEL = "Braidwood"
HC = {"hc_mult": 3, "hc_sinkhorn_iters": 5, "hc_eps": 1e-6}
_CLASSES = ("UnweightedRMSNorm", "HyperConnection", "HyperHead")

LAYER_FORWARD = """
        dtype = hidden_states.dtype
        post, comb, collapsed = self.attn_hc(hidden_states)
        attn_output, _ = self.self_attn(
            hidden_states=self.input_layernorm(collapsed),
            attention_mask=attention_mask,
            position_ids=position_ids,
            past_key_values=past_key_values,
            use_cache=use_cache,
            position_embeddings=position_embeddings,
            **kwargs,
        )
        hidden_states = post.to(dtype).unsqueeze(-1) * attn_output.unsqueeze(-2) + torch.matmul(
            comb.to(dtype).transpose(-1, -2), hidden_states
        )
        post, comb, collapsed = self.ffn_hc(hidden_states)
        mlp_output = self.mlp(self.post_attention_layernorm(collapsed))
        return post.to(dtype).unsqueeze(-1) * mlp_output.unsqueeze(-2) + torch.matmul(
            comb.to(dtype).transpose(-1, -2), hidden_states
        )
"""


def _hc_classes() -> str:
    import transformers.models.deepseek_v4.modeling_deepseek_v4 as dsv4

    source = Path(dsv4.__file__).read_text()
    tree = ast.parse(source)
    lines = source.splitlines()
    found = {
        node.name: "\n".join(lines[node.lineno - 1 : node.end_lineno])
        for node in tree.body
        if isinstance(node, ast.ClassDef) and node.name.removeprefix("DeepseekV4") in _CLASSES
    }
    text = "\n\n\n".join(found[f"DeepseekV4{name}"] for name in _CLASSES)
    # llama's init knows no such parameters: they start as DeepSeek-V4's init sets them
    for last, prefix in (
        ("self.scale = nn.Parameter(torch.empty(3))", ""),
        ("self.hc_scale = nn.Parameter(torch.empty(1))", "hc_"),
    ):
        init = (
            f"\n        nn.init.normal_(self.{prefix}fn, std=config.initializer_range)"
            f"\n        nn.init.zeros_(self.{prefix}base)"
            f"\n        nn.init.ones_(self.{prefix}scale)"
        )
        assert text.count(last) == 1, last
        text = text.replace(last, last + init)
    return text.replace("DeepseekV4Config", f"{CAMEL}Config").replace("DeepseekV4", CAMEL)


def hyper_folder(dest: Path) -> Path:
    folder = remote_folder("llama", dest, name=NAME, config_values=HC)
    _wrap(folder, CAMEL, _hc_classes(), LAYER_FORWARD)
    config = json.loads((folder / "config.json").read_text())
    assert all(config[k] == v for k, v in HC.items())
    return folder


def _wrap(folder: Path, camel: str, classes: str, layer_forward: str) -> None:
    """The hyper-connection classes and decoder layer written into the folder's modeling file,
    the embedding expanded into the streams and collapsed before the final norm."""
    (path,) = folder.glob("modeling_*.py")
    text = path.read_text()
    layer = f"class {camel}DecoderLayer("
    text = text.replace(layer, classes + "\n\n\n" + layer, 1)
    norm = (
        "        self.post_attention_layernorm = "
        f"{camel}RMSNorm(config.hidden_size, eps=config.rms_norm_eps)\n"
    )
    assert text.count(norm) == 1
    text = text.replace(
        norm,
        norm
        + f"        self.attn_hc = {camel}HyperConnection(config)\n"
        + f"        self.ffn_hc = {camel}HyperConnection(config)\n",
    )
    body = "        residual = hidden_states\n        hidden_states = self.input_layernorm"
    start = text.index(body)
    ret = "        return hidden_states\n"
    end = text.index(ret, start) + len(ret)
    text = text[:start] + layer_forward.lstrip("\n") + text[end:]
    final = f"        self.norm = {camel}RMSNorm(config.hidden_size, eps=config.rms_norm_eps)\n"
    assert text.count(final) == 1
    text = text.replace(final, final + f"        self.hc_head = {camel}HyperHead(config)\n")
    for old, new in (
        (
            "        hidden_states = inputs_embeds\n",
            "        hidden_states = inputs_embeds.unsqueeze(2).expand("
            "-1, -1, self.config.hc_mult, -1).contiguous()\n",
        ),
        (
            "        hidden_states = self.norm(hidden_states)\n",
            "        hidden_states = self.norm(self.hc_head(hidden_states))\n",
        ),
    ):
        assert text.count(old) == 1, old
        text = text.replace(old, new)
    if "import torch.nn.functional as F" not in text:
        torch_nn = "\nfrom torch import nn\n"
        text = text.replace(torch_nn, "\nimport torch.nn.functional as F" + torch_nn, 1)
    path.write_text(text)


UNMIXED_NAME = "braidwick"
UNMIXED_CAMEL = "Braidwick"
UNMIXED_HC = {"hc_mult": 3, "hc_eps": 1e-6, "hc_magnitude": 1.5}

UNMIXED_LAYER_FORWARD = """
        dtype = hidden_states.dtype
        residual = hidden_states
        post, hidden_states = self.attn_hc(hidden_states)
        hidden_states = self.input_layernorm(hidden_states)
        hidden_states, _ = self.self_attn(
            hidden_states=hidden_states,
            attention_mask=attention_mask,
            position_ids=position_ids,
            past_key_values=past_key_values,
            use_cache=use_cache,
            position_embeddings=position_embeddings,
            **kwargs,
        )
        hidden_states = (
            post.float().unsqueeze(-1) * hidden_states.float().unsqueeze(-2) + residual.float()
        ).to(dtype)
        residual = hidden_states
        post, hidden_states = self.ffn_hc(hidden_states)
        hidden_states = self.post_attention_layernorm(hidden_states)
        hidden_states = self.mlp(hidden_states)
        return (
            post.float().unsqueeze(-1) * hidden_states.float().unsqueeze(-2) + residual.float()
        ).to(dtype)
"""


def _unmixed_classes() -> str:
    import transformers.models.hy_v4.modeling_hy_v4 as hy

    source = Path(hy.__file__).read_text()
    tree = ast.parse(source)
    lines = source.splitlines()
    found = {
        node.name: "\n".join(lines[node.lineno - 1 : node.end_lineno])
        for node in tree.body
        if isinstance(node, ast.ClassDef) and node.name.removeprefix("HYV4") in _CLASSES
    }
    text = "\n\n\n".join(found[f"HYV4{name}"] for name in _CLASSES)
    for last, prefix in (
        ("self.scale = nn.Parameter(torch.empty(2))", ""),
        ("self.hc_scale = nn.Parameter(torch.empty(1))", "hc_"),
    ):
        init = (
            f"\n        nn.init.normal_(self.{prefix}fn, std=config.initializer_range)"
            f"\n        nn.init.zeros_(self.{prefix}base)"
            f"\n        nn.init.ones_(self.{prefix}scale)"
        )
        assert text.count(last) == 1, last
        text = text.replace(last, last + init)
    # transformers' autocast helper is torch's own outside the library
    text = text.replace("maybe_autocast(", "torch.autocast(")
    return text.replace("HYV4Config", f"{UNMIXED_CAMEL}Config").replace("HYV4", UNMIXED_CAMEL)


def unmixed_folder(dest: Path) -> Path:
    folder = remote_folder("llama", dest, name=UNMIXED_NAME, config_values=UNMIXED_HC)
    _wrap(folder, UNMIXED_CAMEL, _unmixed_classes(), UNMIXED_LAYER_FORWARD)
    config = json.loads((folder / "config.json").read_text())
    assert all(config[k] == v for k, v in UNMIXED_HC.items())
    return folder
