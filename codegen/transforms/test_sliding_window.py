"""SetSlidingWindow: before/after on the references, and the mask's exact semantics."""

import pytest
import torch

from codegen.models import references_dir
from codegen.scaffold.source import SourcePackage
from codegen.scaffold.tidy import ruff_format
from codegen.transforms.ffn_bias import SetFeedForwardBias
from codegen.transforms.o_bias import SetOutputBias
from codegen.transforms.qkv_bias import SetQkvBias
from codegen.transforms.sliding_window import MASK_FUNCTION_OPTIONAL, SetSlidingWindow


def _package(reference):
    return SourcePackage.from_directory(references_dir() / reference)


def _code(text):  # formatted, without the module docstring
    text = ruff_format({"x.py": text})["x.py"]
    return text[text.index('"""', 3) + 3 :] if text.startswith('"""') else text


def test_pattern_from_llama_reproduces_the_qwen2_reference():
    package = _package("llama")
    # qwen2 has fixed q/k/v biases where llama has config switches: its plan's bias steps
    for step, enabled in ((SetQkvBias(), True), (SetOutputBias(), False)):
        step.apply(package, enabled=enabled)
    SetFeedForwardBias().apply(package, enabled=False)
    SetSlidingWindow().apply(package, mode="pattern")
    model = _code(package.render()["model.py"])
    reference = _code(_package("qwen2").render()["model.py"])
    # qwen2 also names `seq` once; otherwise the same code
    reference = reference.replace("        seq = tokens.shape[1]\n", "")
    model = model.replace("tokens.shape[1]", "seq")
    reference = reference.replace("tokens.shape[1]", "seq")
    assert model == reference
    args = package.render()["args.py"]
    assert 'LAYER_TYPES = ("full_attention", "sliding_attention")' in args
    assert "layer_types=tuple(hf_config.layer_types)," in args
    assert "sliding_window=hf_config.sliding_window," in args


def test_all_builds_one_mask_for_every_layer():
    package = _package("llama")
    SetSlidingWindow().apply(package, mode="all")
    files = package.render()
    model = files["model.py"]
    assert (
        "mask = sliding_window_mask(tokens.shape[1], self.args.sliding_window, tokens.device)"
        in (model)
    )
    assert "h = layer(h, rope, mask)" in model
    assert "layer_types" not in model and "self.sliding" not in model
    assert "if window is None or seq <= window:" in model
    assert "sliding_window: int | None = None" in files["args.py"]
    assert "layer_types" not in files["args.py"]


@pytest.mark.parametrize("reference", ["qwen2", "qwen3"])
def test_none_removes_the_references_window(reference):
    package = _package(reference)
    SetSlidingWindow().apply(package, mode="none")
    files = package.render()
    body = _code(files["model.py"])
    for gone in ("window", "mask", "sliding", "layer_id", "layer_types"):
        assert gone not in body, gone
    assert "TransformerBlock(args) for _ in range(args.n_layers)" in body
    assert "h = layer(h, rope)" in body
    assert "q, k, v, is_causal=True, enable_gqa=self.n_heads != self.n_kv_heads" in body
    for gone in ("window", "layer_types", "LAYER_TYPES", "__post_init__"):
        assert gone not in files["args.py"], gone


def test_switching_pattern_to_all_leaves_one_window():
    package = _package("qwen2")
    SetSlidingWindow().apply(package, mode="all")
    files = package.render()
    assert files["model.py"].count("def sliding_window_mask") == 1
    assert "layer_types" not in files["args.py"]


def test_pattern_replaces_the_moe_references_every_layer_window():
    """qwen3_moe's window (every layer, when configured) is built in, with no mask note."""
    package = _package("qwen3_moe")
    assert "sliding_window_mask(tokens.shape[1], self.args.sliding_window" in _code(
        package.render()["model.py"]
    )
    SetSlidingWindow().apply(package, mode="pattern")
    files = package.render()
    body = _code(files["model.py"])
    assert body.count("def sliding_window_mask") == 1
    assert 'self.sliding = args.layer_types[layer_id] == "sliding_attention"' in body
    assert "h = layer(h, rope, window if layer.sliding else None)" in body
    assert "layer_types=tuple(hf_config.layer_types)," in files["args.py"]


def test_unknown_mode_is_refused():
    with pytest.raises(ValueError):
        SetSlidingWindow().apply(_package("llama"), mode="chunked")


def test_mask_is_hf_sliding_window_overlay():
    """key j visible from query i iff i - window < j <= i (masking_utils)."""
    namespace = {"torch": torch}
    exec(MASK_FUNCTION_OPTIONAL, namespace)
    mask_of = namespace["sliding_window_mask"]
    seq, window = 10, 3
    mask = mask_of(seq, window, torch.device("cpu"))
    for i in range(seq):
        for j in range(seq):
            assert bool(mask[i, j]) == (i - window < j <= i)
    assert mask_of(seq, seq, torch.device("cpu")) is None  # nothing cut
    assert mask_of(seq, None, torch.device("cpu")) is None  # no window configured


def test_a_layer_rule_and_window_field_replace_layer_types(tmp_path):
    """GPT-Neo: no `layer_types` in the config; a layer slides where its attention type is
    "local", the window is `window_size`. The mapped args run on a config of that shape."""
    package = _package("llama")
    SetSlidingWindow().apply(
        package,
        mode="pattern",
        layer_rule='hf_config.attention_layers[i] == "local"',
        window="hf_config.window_size",
    )
    args = package.render()["args.py"]
    assert "layer_types=tuple(hf_config.layer_types)" not in args
    assert "sliding_window=hf_config.sliding_window" not in args
    assert "sliding_window=hf_config.window_size," in args
    namespace: dict = {}
    exec(args.replace("from .", "from codegen.references.llama."), namespace)  # noqa: S102
    from types import SimpleNamespace

    hf_config = SimpleNamespace(
        hidden_size=64,
        num_hidden_layers=3,
        num_attention_heads=4,
        num_key_value_heads=4,
        head_dim=16,
        intermediate_size=96,
        vocab_size=32,
        rms_norm_eps=1e-6,
        rope_parameters={"rope_type": "default", "rope_theta": 10000.0},
        max_position_embeddings=64,
        tie_word_embeddings=False,
        attention_bias=False,
        mlp_bias=False,
        attention_layers=["global", "local", "global"],
        window_size=5,
    )
    built = namespace["ModelArgs"].from_hf_config(hf_config)
    assert built.layer_types == ("full_attention", "sliding_attention", "full_attention")
    assert built.sliding_window == 5
