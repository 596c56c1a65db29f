"""KV sharing (keys/values read from an input of the attention's forward, no projection of
its own) and activation sparsity (a projection thresholded by its own statistics before the
activation): gemma3n's forms are read as facts the rules realise; any other form is "other",
named unsupported with file:line, not left to fail verify."""

from __future__ import annotations

import pytest
from analyze_helpers import write_synth

from codegen.analyze.analysis import analyze

_KERNEL = "        out, weights = interface(self, query, key, value, attention_mask"
_ATTN_SIGNATURE = "def forward(self, hidden_states, position_embeddings, attention_mask=None, **kw"
_GATE = "self.act_fn(self.gate_proj(x))"
_SPARSE = """
    def _sparse(self, gate):
        cutoff = torch.mean(gate, dim=-1, keepdim=True) + gate.std(dim=-1, keepdim=True) * 1.6
        return torch.relu(gate - cutoff)
"""


def _synth(tmp_path, *, shared_kv: bool = False, sparse: bool = False) -> str:
    path = write_synth(
        str(tmp_path), q_norm=False, qkv_bias=False, o_bias=False, mlp_bias=False, post_norm=False
    )
    source = open(path, encoding="utf-8").read()
    assert _KERNEL in source and _ATTN_SIGNATURE in source and _GATE in source
    if shared_kv:
        source = source.replace(_ATTN_SIGNATURE, _ATTN_SIGNATURE.replace("**kw", "kv=None, **kw"))
        source = source.replace(_KERNEL, "        key, value = kv[0], kv[1]\n" + _KERNEL)
    if sparse:
        source = source.replace(_GATE, "self.act_fn(self._sparse(self.gate_proj(x)))")
        source = source.replace(
            "\n\nclass SynthDecoderLayer", _SPARSE + "\n\nclass SynthDecoderLayer"
        )
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(source)
    return path


def _found(path: str) -> dict[str, tuple[str, str]]:
    return {u.feature: (u.detail, u.evidence) for u in analyze(path).unsupported}


def test_plain_synth_has_neither(tmp_path):
    found = _found(_synth(tmp_path))
    assert "attention.kv_sharing" not in found and "ffn.activation_sparsity" not in found


def test_keys_and_values_from_an_input_are_kv_sharing(tmp_path):
    found = _found(_synth(tmp_path, shared_kv=True))
    detail, evidence = found["attention.kv_sharing"]
    # not gemma3n's form (no reuse/store flags, no config property): "other"
    assert "another form" in detail and evidence.startswith("modeling_synth.py:")
    assert "'kv'" in evidence
    assert "ffn.activation_sparsity" not in found


def test_gate_thresholded_by_its_own_statistics_is_activation_sparsity(tmp_path):
    found = _found(_synth(tmp_path, sparse=True))
    detail, evidence = found["ffn.activation_sparsity"]
    assert "mean + k * std" in detail and evidence.startswith("modeling_synth.py:")
    assert "attention.kv_sharing" not in found


@pytest.mark.parametrize("model_type", ["gemma3n_text"])
def test_gemma3n_reads_its_kv_sharing_and_sparsity(model_type):
    features = analyze(model_type)
    found = {u.feature: (u.detail, u.evidence) for u in features.unsupported}
    # its sharing and its Gaussian top-k are the forms the rules realise: facts
    assert "attention.kv_sharing" not in found and "ffn.activation_sparsity" not in found
    assert features.attention.kv_sharing == {
        "field": "num_kv_shared_layers",
        "input": "shared_kv_states",
    }
    # the first statement reading another layer's keys and values
    assert features.evidence["attention.kv_sharing"].startswith("modeling_gemma3n.py:1221 ")
    assert features.ffn.activation_sparsity == {
        "field": "activation_sparsity_pattern",
        "per_layer": True,
    }
    assert features.evidence["ffn.activation_sparsity"].startswith("modeling_gemma3n.py:")
