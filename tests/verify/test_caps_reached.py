"""Every cap, clamp and clip of the toy configs works in its nonlinear range on verify's
inputs, so a dropped or wrong cap changes the logits instead of hiding below it.

The HF model is run on exactly the inputs verify uses, with torch's tanh and clamp wrapped
to record what they receive: softcapping is `cap * tanh(x / cap)`, nonlinear once |x / cap|
nears 1; a clamp or clip acts on the values it changes.
"""

from __future__ import annotations

import pytest
import torch

from codegen.verify.hf_checkpoint import random_hf_model
from codegen.verify.run import make_inputs
from codegen.verify.tiny_config import CAPS, tiny_config


def _run_recording(model_type: str, **overrides):
    config = tiny_config(model_type, **overrides)
    model = random_hf_model(config)
    tanh_inputs: list[float] = []
    clamped: list[float] = []
    real_tanh, real_clamp, real_clamp_ = torch.tanh, torch.Tensor.clamp, torch.Tensor.clamp_

    def tanh(x, *args, **kwargs):
        tanh_inputs.append(x.detach().abs().max().item())
        return real_tanh(x, *args, **kwargs)

    def clamp(self, *args, **kwargs):
        out = real_clamp(self, *args, **kwargs)
        clamped.append((out != self).float().mean().item())
        return out

    def clamp_(self, *args, **kwargs):
        before = self.detach().clone()
        out = real_clamp_(self, *args, **kwargs)
        clamped.append((out != before).float().mean().item())
        return out

    torch.tanh, torch.Tensor.clamp, torch.Tensor.clamp_ = tanh, clamp, clamp_
    try:
        with torch.no_grad():
            for item in make_inputs(config.vocab_size):
                model(input_ids=item.tokens, position_ids=item.positions)
    finally:
        torch.tanh, torch.Tensor.clamp, torch.Tensor.clamp_ = real_tanh, real_clamp, real_clamp_
    return config, tanh_inputs, clamped


@pytest.mark.parametrize("model_type", ["gemma2"])
def test_attention_and_final_softcaps_are_reached(model_type):
    config, tanh_inputs, _ = _run_recording(model_type)
    assert config.final_logit_softcapping == CAPS["final_logit_softcapping"]
    assert tanh_inputs, "no softcap ran"
    # the last tanh is the final logit softcap; the earlier ones the attention softcap
    assert tanh_inputs[-1] >= 1.0, tanh_inputs[-1]
    if getattr(config, "attn_logit_softcapping", None):
        assert max(tanh_inputs[:-1]) >= 1.0, tanh_inputs


def test_swiglu_clamp_acts_on_gate_and_up_values():
    config, _, clamped = _run_recording("gpt_oss")
    assert config.swiglu_limit == CAPS["swiglu_limit"]
    assert clamped and max(clamped) >= 0.02, clamped  # at least 2% of values clamped


def test_qkv_clip_acts():
    """olmo leaves clip_qkv off by default; verify's `clip_qkv` switch setting turns it on
    at the toy cap."""
    from codegen.verify.switch_settings import switch_settings

    toy = tiny_config("olmo").to_dict()
    (setting,) = [s for s in switch_settings("olmo", toy) if "clip_qkv" in s.overrides]
    config, _, clamped = _run_recording("olmo", **setting.overrides)
    assert config.clip_qkv == CAPS["clip_qkv"]
    assert clamped and max(clamped) >= 0.02, clamped


def test_dynamic_mask_top_k_drops_keys_on_the_long_input_only():
    """doge's dynamic mask keeps `keep_window_size` keys per query row only where the keys
    outnumber it: the toy's window sits between the short and the long input, and on the
    long one the top-k masks keys the causal (and sliding) mask left visible."""
    config = tiny_config("doge")
    window = config.keep_window_size
    lengths = [item.tokens.shape[1] for item in make_inputs(config.vocab_size)]
    assert min(lengths) <= window < max(lengths), (window, lengths)
    model = random_hf_model(config)
    attention = model.model.layers[0].self_attn
    dropped: list[int] = []
    real_topk = torch.topk

    def topk(x, k, *args, **kwargs):
        out = real_topk(x, k, *args, **kwargs)
        visible = (x > torch.finfo(x.dtype).min).sum(-1)  # keys the causal mask leaves
        dropped.append(int((visible - k).clamp(min=0).sum()))
        return out

    torch.topk = topk
    try:
        with torch.no_grad():
            for item in make_inputs(config.vocab_size):
                model(input_ids=item.tokens, position_ids=item.positions)
    finally:
        torch.topk = real_topk
    assert attention.keep_window_size == window
    assert dropped and min(dropped) > 0, dropped  # every top-k run masked visible keys
    assert len(dropped) == config.num_hidden_layers  # long input only: one run per layer


def test_relative_bias_extent_is_reached_on_the_full_layers():
    """inkling's relative bias reads `rel_extent` distances on its full layers and zeroes
    those beyond: the toy's extent sits between the window (the sliding layers' extent) and
    the long input, so the long input's full-layer scores reach past it (the clamp and the
    zero act on keys the causal mask leaves)."""
    modeling = pytest.importorskip("transformers.models.inkling.modeling_inkling")
    config = tiny_config("inkling_text")
    model = random_hf_model(config)
    beyond: dict[int, int] = {}
    real = modeling.InklingRelativeLogits.forward

    def forward(self, states, query_positions, key_positions):
        distance = query_positions[:, None] - key_positions[None, :]
        beyond[self.rel_extent] = beyond.get(self.rel_extent, 0) + int(
            (distance >= self.rel_extent).sum()
        )
        return real(self, states, query_positions, key_positions)

    modeling.InklingRelativeLogits.forward = forward
    try:
        with torch.no_grad():
            for item in make_inputs(config.vocab_size):
                model(input_ids=item.tokens, position_ids=item.positions)
    finally:
        modeling.InklingRelativeLogits.forward = real
    assert config.rel_extent < max(item.tokens.shape[1] for item in make_inputs(512))
    assert beyond.get(config.rel_extent, 0) > 0, beyond  # the full layers' clamp acts
    assert config.sliding_window_size in beyond  # sliding layers read their window


def test_inkling2_l2_clips_are_reached():
    """Each L2 clip of inkling2's attention scales some head vectors down (its scale first);
    the keys' and relative states' clips also pass others unchanged."""
    pytest.importorskip("transformers.models.inkling2")
    config = tiny_config("inkling2_text")
    model = random_hf_model(config)
    clipped: dict[str, list[float]] = {}

    def record(name):
        def hook(module, inputs, _):
            x = inputs[0].float() * (module.scale.float() if hasattr(module, "scale") else 1)
            above = torch.linalg.vector_norm(x, dim=-1) > module.threshold
            clipped.setdefault(name.rsplit(".", 1)[-1], []).append(above.float().mean().item())

        return hook

    for name, module in model.named_modules():
        if type(module).__name__.endswith("L2Clip"):
            module.register_forward_hook(record(name))
    with torch.no_grad():
        for item in make_inputs(config.vocab_size):
            model(input_ids=item.tokens, position_ids=item.positions)
    assert set(clipped) == {"q_l2_clip", "k_l2_clip", "rel_l2_clip"}
    assert all(share > 0 for shares in clipped.values() for share in shares), clipped
    passing = clipped["k_l2_clip"] + clipped["rel_l2_clip"]
    assert all(share < 1 for share in passing), clipped


def test_inkling2_logits_are_cut_inside_the_toy_vocabulary():
    """The cut (`unpadded_vocab_size`, 200058 by default, past the toy's 512 rows) falls
    inside the toy's head, so HF's logits lose columns a package must drop too."""
    pytest.importorskip("transformers.models.inkling2")
    config = tiny_config("inkling2_text")
    assert config.unpadded_vocab_size < config.vocab_size
    item = make_inputs(config.vocab_size)[0]
    with torch.no_grad():
        logits = random_hf_model(config)(input_ids=item.tokens).logits
    assert logits.shape[-1] == config.unpadded_vocab_size
