"""A q/k norm built from a torch norm class learns a scale unless built without one.

Persimmon norms each head of q and k with `nn.LayerNorm(head_dim, elementwise_affine=True)`:
the scale and bias are made by torch's `__init__`, so the analysed module holds no parameter
of its own, yet the checkpoint carries `q_layernorm.weight` / `.bias`. Read as weightless it
was planned as Llama4's parameter-free norm, which the reference cannot realise.
"""

from __future__ import annotations

from analyze_helpers import rename_model

from codegen.analyze.analysis import analyze


def test_persimmon_layernorm_per_head_has_weight():
    attention = analyze("persimmon").attention
    assert (attention.qk_norm, attention.qk_norm_weight) == ("per_head", True)


def test_renamed_copy_and_affine_off(tmp_path):
    modeling, _ = rename_model("persimmon", "quokka", str(tmp_path / "a"))
    assert analyze(modeling).attention.qk_norm_weight is True
    with open(modeling, encoding="utf-8") as fh:
        source = fh.read()
    assert source.count("elementwise_affine=True") == 2
    with open(modeling, "w", encoding="utf-8") as fh:
        fh.write(source.replace("elementwise_affine=True", "elementwise_affine=False"))
    assert analyze(modeling).attention.qk_norm_weight is False
