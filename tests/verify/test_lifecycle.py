"""The meta-device lifecycle: every reference builds on `meta`, comes back exact after
`to_empty` + `init_buffers` + load, and `init_weights` starts like HF; seeded defects
(a RoPE table computed in `__init__` only, an offset norm started at one) are named."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from codegen.layers.lifecycle import init_embedding
from codegen.models import load_spec
from codegen.verify import lifecycle
from codegen.verify.run import Case, make_inputs, verify_case
from codegen.verify.tiny_config import tiny_config

REFERENCES = ("llama", "qwen2", "qwen3", "qwen3_moe", "deepseek_v3")


def _built(spec, config):
    """A normally built package model with a random checkpoint-like state loaded."""
    torch.manual_seed(0)
    args, model, adapter = spec.build(config)
    model.init_weights()
    state = {key: value.clone() for key, value in model.state_dict().items()}
    return model.eval(), state, adapter


@pytest.mark.parametrize("name", REFERENCES)
def test_reference_builds_on_meta_and_starts_like_hf(name):
    spec, config = load_spec(name), tiny_config(name)
    model, state, adapter = _built(spec, config)
    inputs = make_inputs(config.vocab_size)
    assert lifecycle.check(spec, config, model, state, adapter, inputs) is None
    with torch.device("meta"):
        meta = spec.model(spec.args.from_hf_config(config))
    assert all(p.is_meta for p in meta.parameters())  # nothing allocated in __init__


def test_rope_table_computed_only_in_init_fails_naming_the_buffer():
    llama = load_spec("llama")

    class CachedRope(llama.model):
        def __init__(self, args):
            super().__init__(args)
            table = torch.arange(64, dtype=torch.float32).outer(torch.ones(args.dim // 2))
            self.register_buffer("rope_cache", table.cos(), persistent=False)

    spec = dataclasses.replace(llama, model=CachedRope)
    (result,) = verify_case(spec, Case("seeded", tiny_config("llama")), ["fp32"], gradients=False)
    assert not result.passed and result.lifecycle_ok is False
    assert result.lifecycle_failure == "buffer rope_cache differs after to_empty + init_buffers"


def test_init_weights_with_the_wrong_std_fails_naming_the_group():
    llama = load_spec("llama")

    class WideInit(llama.model):
        def init_weights(self, buffer_device=None):
            super().init_weights(buffer_device)
            init_embedding(self.tok_embeddings, 0.05)  # the padding row still at zero

    spec = dataclasses.replace(llama, model=WideInit)
    config = tiny_config("llama")
    failure = lifecycle.init_statistics(
        spec, config, spec.adapter(spec.args.from_hf_config(config))
    )
    assert failure.startswith("init_weights: model.embed_tokens.weight starts at mean")


def test_sampling_tolerance():
    generator = torch.Generator().manual_seed(0)
    a, b = (torch.randn(4096, generator=generator) * 0.02 for _ in range(2))
    assert not lifecycle.differs(a, b)
    assert lifecycle.differs(a * 1.5, b)  # wrong std
    assert lifecycle.differs(a + 0.01, b)  # wrong mean
    assert lifecycle.differs(torch.ones(8), torch.zeros(8))  # 1 + w norm started at one
    assert lifecycle.differs(torch.full((8,), float("nan")), torch.zeros(8))  # left empty
    assert not lifecycle.differs(torch.zeros(0), torch.zeros(0))  # a zero-width layer


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    """gemma (offset `1 + w` norms) and gpt_oss (sinks, a router bias HF draws normal)."""
    from codegen.cli import main

    out = tmp_path_factory.mktemp("lifecycle_models")
    for name in ("gemma", "gpt_oss"):
        assert main(["scaffold", name, "--out", str(out)]) == 0
    return out


@pytest.mark.parametrize("name", ["gemma", "gpt_oss"])
def test_generated_package_builds_on_meta_and_starts_like_hf(generated, name):
    spec, config = load_spec(name, generated), tiny_config(name)
    model, state, adapter = _built(spec, config)
    inputs = make_inputs(config.vocab_size)
    assert lifecycle.check(spec, config, model, state, adapter, inputs) is None


def test_offset_norm_initialised_to_one_fails_naming_it(generated, monkeypatch):
    import sys

    gemma = load_spec("gemma", generated)
    norm = sys.modules[gemma.model.__module__].OffsetRMSNorm
    monkeypatch.setattr(norm, "init_parameters", lambda self, std: self.weight.data.fill_(1.0))
    config = tiny_config("gemma")
    adapter = gemma.adapter(gemma.args.from_hf_config(config))
    failure = lifecycle.init_statistics(gemma, config, adapter)
    assert failure.startswith(
        "init_weights: model.layers.*.input_layernorm.weight starts at mean 1"
    )


def test_init_weights_drawing_the_padding_row_fails_naming_the_table():
    """HF starts llama's padding row at zero; a package whose init re-draws the whole table
    at the right std passes the statistics (one row in a vocabulary) and must still fail."""
    llama = load_spec("llama")

    class RandomPadRow(llama.model):
        def init_weights(self, buffer_device=None):
            super().init_weights(buffer_device)
            torch.nn.init.normal_(self.tok_embeddings.weight, std=self.args.initializer_range)

    spec = dataclasses.replace(llama, model=RandomPadRow)
    config = tiny_config("llama")
    assert config.pad_token_id is not None
    adapter = spec.adapter(spec.args.from_hf_config(config))
    failure = lifecycle.init_statistics(spec, config, adapter)
    assert failure == (
        "init_weights: model.embed_tokens.weight is random where HF's init starts it at zero"
    )
    assert lifecycle.init_statistics(llama, config, adapter) is None


def test_zeros_inside_a_random_tensor_are_structural():
    generator = torch.Generator().manual_seed(0)
    theirs, ours = (torch.randn(10, 4, generator=generator) for _ in range(2))
    theirs[3] = 0
    assert lifecycle.nonzero_where_hf_zeroes(ours, theirs)
    ours[3] = 0
    assert not lifecycle.nonzero_where_hf_zeroes(ours, theirs)
    assert not lifecycle.nonzero_where_hf_zeroes(ours, torch.zeros(10, 4))  # a constant tensor
    theirs[5, 1] = 0  # one exact zero in a normal draw is chance (falcon's 1.7M-entry weight)
    ours[5, 1] = 1.0
    assert not lifecycle.nonzero_where_hf_zeroes(ours, theirs)
