"""Parts of a decoder layer outside its attention, FFN and norms are named as unsupported
with their evidence (gemma3n's AltUp / Laurel blocks, per-layer-input projections, a
per-layer input multiplied into the stream, a feed-forward nested in a sublayer beside the
FFN), not left to fail verify; wrappers of a known part (BERT's attention with its output
projection) and an FFN of bare linears are not. X-MOD's per-language adapters, read whole,
are tests/analyze/test_language_adapters.py."""

from __future__ import annotations

import os

import pytest
from analyze_helpers import write_synth

from codegen.analyze.analysis import analyze

_EXTRA_MODULE = """

class SynthSideBlock(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.left = nn.Linear(config.hidden_size, 8, bias=False)
        self.right = nn.Linear(8, config.hidden_size, bias=False)

    def forward(self, x):
        return x + self.right(self.left(x))


class SynthDecoderLayer(nn.Module):"""

_INIT = "        self.mlp = SynthMLP(config)\n"
_SIGNATURE = "def forward(self, hidden_states, position_embeddings=None, attention_mask=None, **kw"
_RETURN = "        return hidden_states\n\n\nclass SynthPreTrainedModel"


def _synth(tmp_path, *, side_block: bool, layer_input: bool) -> str:
    path = write_synth(
        str(tmp_path), q_norm=False, qkv_bias=False, o_bias=False, mlp_bias=False, post_norm=False
    )
    source = open(path, encoding="utf-8").read()
    assert _INIT in source and _SIGNATURE in source and _RETURN in source
    if side_block:
        source = source.replace("\n\nclass SynthDecoderLayer(nn.Module):", _EXTRA_MODULE)
        source = source.replace(_INIT, _INIT + "        self.side = SynthSideBlock(config)\n")
        source = source.replace(
            _RETURN, _RETURN.replace("return hidden_states", "return self.side(hidden_states)")
        )
    if layer_input:
        source = source.replace(_SIGNATURE, _SIGNATURE.replace("**kw", "extra=None, **kw"))
        source = source.replace(
            _RETURN, _RETURN.replace("return hidden_states", "return hidden_states * extra")
        )
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(source)
    return path


def _found(path: str) -> dict[str, tuple[str, str]]:
    return {
        u.feature: (u.detail, u.evidence)
        for u in analyze(path).unsupported
        if u.feature.startswith("block.layer_")
    }


def test_plain_layer_has_no_extras(tmp_path):
    assert _found(_synth(tmp_path, side_block=False, layer_input=False)) == {}


def test_side_block_is_named_with_its_class_and_line(tmp_path):
    found = _found(_synth(tmp_path, side_block=True, layer_input=False))
    detail, evidence = found["block.layer_modules"]
    assert "side (SynthSideBlock)" in detail
    assert evidence.startswith("modeling_synth.py:")
    assert "block.layer_input" not in found


def test_input_multiplied_into_the_layer_is_named(tmp_path):
    found = _found(_synth(tmp_path, side_block=False, layer_input=True))
    detail, evidence = found["block.layer_input"]
    assert "'extra'" in detail and evidence.startswith("modeling_synth.py:")
    assert "block.layer_modules" not in found


@pytest.mark.parametrize("model_type", ["bert", "opt", "gpt_neo"])
def test_wrappers_and_bare_ffn_linears_are_known_parts(model_type):
    """BERT's `attention` (self-attention + output dense + norm), OPT's fc1/fc2, GPT-Neo's
    `attn` wrapper: all belong to the attention or the FFN."""
    assert _found(model_type) == {}


_BOTTLENECK = """

class SynthBottleneck(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.down = nn.Linear(config.hidden_size, 8)
        self.up = nn.Linear(8, config.hidden_size)
        self.act = ACT2FN["gelu"]

    def forward(self, x):
        return self.up(self.act(self.down(x)))


class SynthAdapted(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.norm = SynthRMSNorm(config.hidden_size)
@BANKS@
    def forward(self, x):
        return x + @CALL@(self.norm(x))


class SynthDecoderLayer(nn.Module):"""

_BANKS = {
    "dict": (
        "        self.banks = nn.ModuleDict({})\n"
        '        for name in ("en", "fr"):\n'
        "            self.banks[name] = SynthBottleneck(config)\n",
        'self.banks["en"]',
        "post.banks (ModuleDict of 2 SynthBottleneck)",
    ),
    "list": (
        "        self.banks = nn.ModuleList([SynthBottleneck(config) for _ in range(3)])\n",
        "self.banks[0]",
        "post.banks (ModuleList of 3 SynthBottleneck)",
    ),
    "single": (
        "        self.bank = SynthBottleneck(config)\n",
        "self.bank",
        "post.bank (SynthBottleneck)",
    ),
}


def _adapted(tmp_path, kind: str) -> str:
    """The synthetic layer with a sublayer after its MLP that holds a norm and feed-forward
    adapters (a dict filled by subscript in a loop, a list, or one module)."""
    path = write_synth(
        str(tmp_path), q_norm=False, qkv_bias=False, o_bias=False, mlp_bias=False, post_norm=False
    )
    source = open(path, encoding="utf-8").read()
    banks, call, _ = _BANKS[kind]
    block = _BOTTLENECK.replace("@BANKS@", banks).replace("@CALL@", call)
    source = source.replace("\n\nclass SynthDecoderLayer(nn.Module):", block)
    source = source.replace(_INIT, _INIT + "        self.post = SynthAdapted(config)\n")
    source = source.replace(
        _RETURN, _RETURN.replace("return hidden_states", "return self.post(hidden_states)")
    )
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(source)
    return path


@pytest.mark.parametrize("kind", sorted(_BANKS))
def test_feed_forward_nested_in_a_sublayer_is_named(tmp_path, kind):
    """A feed-forward of its own inside a sublayer that is not a part (beside a norm) is a
    second FFN the package would drop: named by path, with the line that builds it."""
    found = _found(_adapted(tmp_path, kind))
    detail, evidence = found["block.layer_modules"]
    assert _BANKS[kind][2] in detail
    line = int(evidence.split(":")[1].split()[0])
    source = open(os.path.join(tmp_path, "modeling_synth.py"), encoding="utf-8").read()
    built = source.splitlines()[line - 1]
    assert ("self.bank" in built) and ("SynthAdapted" not in built)
