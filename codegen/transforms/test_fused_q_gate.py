"""FusedQGate and QLatentConcat: before/after on the deepseek_v3 reference, and the generated
attention against HF's A.X-K2 attention (the gate rows of the fused query projection, the
query latent read normed and as it is); seeded defect: the gate cut from the wrong end of
each head's rows."""

import sys

import pytest
import torch

from codegen.models import load_spec, references_dir
from codegen.scaffold.build import Step
from codegen.scaffold.pipeline import scaffold_into
from codegen.scaffold.source import SourcePackage
from codegen.transforms.edits import EditError
from codegen.transforms.fused_q_gate import FusedQGate
from codegen.transforms.q_latent_concat import QLatentConcat

_INDEXER = {
    "module": "indexer",
    "q_proj": "wq_b",
    "k_proj": "wk",
    "k_norm": "k_norm",
    "weights_proj": "weights_proj",
    "interleaved": False,
    "rope_dims": "leading",
    "k_norm_eps": 1e-6,
}


def _reference(name="deepseek_v3"):
    return SourcePackage.from_directory(references_dir() / name)


def _one_line(model: str) -> str:
    return " ".join(model.split()).replace("( ", "(").replace(" )", ")")


def test_per_head_gate_widens_the_query_projection_and_gates_before_wo():
    package = _reference()
    before = package.render()["model.py"]
    assert "gate" not in before.split("class Attention")[1].split("class FeedForward")[0]
    FusedQGate().apply(package, layout="per_head_q_gate")
    model = _one_line(package.render()["model.py"])
    wide = "args.n_heads * (qk_dim + self.v_head_dim), bias=False)"
    assert f"self.wq = nn.Linear(args.dim, {wide}" in model
    assert f"self.wq_b = nn.Linear(args.q_lora_rank, {wide}" in model
    assert (
        "q, gate = q.unflatten(-1, (-1, self.nope_dim + self.rope_dim + self.v_head_dim))"
        ".split([self.nope_dim + self.rope_dim, self.v_head_dim], dim=-1)"
    ) in model
    assert "* torch.sigmoid(gate.flatten(-2)))" in model
    assert ".float()" not in model.split("def forward")[1].split("class FeedForward")[0]


@pytest.mark.parametrize(
    ("layout", "cut"),
    [
        (
            "per_head_gate_q",
            "gate, q = q.unflatten(-1, (-1, self.nope_dim + self.rope_dim + self.v_head_dim))"
            ".split([self.v_head_dim, self.nope_dim + self.rope_dim], dim=-1)",
        ),
        (
            "concatenated_q_gate",
            "q, gate = q.split([self.n_heads * (self.nope_dim + self.rope_dim),"
            " self.n_heads * self.v_head_dim], dim=-1)",
        ),
        (
            "concatenated_gate_q",
            "gate, q = q.split([self.n_heads * self.v_head_dim,"
            " self.n_heads * (self.nope_dim + self.rope_dim)], dim=-1)",
        ),
    ],
)
def test_each_layout_cuts_its_rows(layout, cut):
    package = _reference()
    FusedQGate().apply(package, layout=layout, fp32=True)
    model = _one_line(package.render()["model.py"])
    assert cut in model
    gate = "gate.flatten(-2)" if layout.startswith("per_head") else "gate"
    assert f"* torch.sigmoid({gate}.float())).to(x.dtype))" in model


def test_refusals_are_one_line():
    with pytest.raises(EditError, match="layout 'rows'"):
        FusedQGate().apply(_reference(), layout="rows")
    with pytest.raises(EditError, match="v_head_dim"):  # no latent attention
        FusedQGate().apply(_reference("llama"), layout="per_head_q_gate")
    with pytest.raises(EditError, match="normed query latent"):  # the reference's inline q
        QLatentConcat().apply(_reference())


def test_latent_concat_reads_the_latent_normed_and_as_it_is():
    from codegen.transforms.indexed_attention import IndexedAttention

    package = _reference()
    IndexedAttention().apply(package, indexer=_INDEXER)
    before = _one_line(package.render()["model.py"])
    assert "q = self.wq_b(q_latent)" in before
    QLatentConcat().apply(package)
    model = _one_line(package.render()["model.py"])
    assert "self.wq_b = nn.Linear(2 * args.q_lora_rank," in model
    assert "q_raw = self.wq_a(x)" in model
    assert "q_latent = self.q_norm(q_raw)" in model
    assert "q = self.wq_b(torch.cat([q_latent, q_raw], dim=-1))" in model
    assert "keep = self.indexer(x, q_latent, rope)" in model  # the indexer keeps the normed one


_STEPS = [
    Step("indexed_attention", {"indexer": _INDEXER}),
    Step("q_latent_concat", {}),
]


def _attention(tmp_path, config, layout):
    models = tmp_path / layout
    steps = [*_STEPS, Step("fused_q_gate", {"layout": layout, "fp32": True})]
    scaffold_into(models, "deepseek_v3", "gated", ["axk2"], steps)
    spec = load_spec("gated", models)
    module = sys.modules[spec.model.__module__]
    args = spec.args.from_hf_config(config)
    return module.Attention(args).eval()


_NAMES = {
    "wq_a": "q_a_proj",
    "q_norm": "q_a_layernorm",
    "wq_b": "q_gate_proj",
    "wkv_a": "kv_a_proj_with_mqa",
    "kv_norm": "kv_a_layernorm",
    "wkv_b": "kv_b_proj",
    "wo": "o_proj",
    "indexer": "indexer",
}


def test_generated_attention_matches_hf_axk2_and_the_other_end_does_not(tmp_path):
    from transformers.models.axk2.modeling_axk2 import AXK2Attention

    from codegen.verify.tiny_config import tiny_config

    config = tiny_config("axk2")
    config._attn_implementation = "eager"
    torch.manual_seed(0)
    hf = AXK2Attention(config, layer_idx=0).eval()
    for parameter in hf.parameters():
        torch.nn.init.normal_(parameter, std=0.2)
    state = {}
    for house, name in _NAMES.items():
        for key, value in getattr(hf, name).state_dict().items():
            state[f"{house}.{key}"] = value
    seq = 7
    x = torch.randn(2, seq, config.hidden_size)
    causal = torch.full((seq, seq), float("-inf")).triu(1)[None, None]
    rope_dim = config.qk_rope_head_dim
    identity = torch.ones(2, seq, rope_dim), torch.zeros(2, seq, rope_dim)
    with torch.no_grad():
        expected, _ = hf(x, identity, causal)
        outputs = {}
        for layout in ("per_head_q_gate", "per_head_gate_q"):
            ours = _attention(tmp_path, config, layout)
            ours.load_state_dict(state, strict=True)
            outputs[layout] = ours(x, identity)
    torch.testing.assert_close(outputs["per_head_q_gate"], expected, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(outputs["per_head_gate_q"], expected, atol=1e-3)


@pytest.mark.parametrize(
    ("on_disk", "row"),
    [
        ("q_b_proj", "model.layers.{}.self_attn.q_b_proj.weight"),  # transformers' rename
        ("q_gate_proj", "model.layers.{}.self_attn.q_gate_proj.weight"),  # remote code
    ],
)
def test_the_fused_rows_are_read_under_the_checkpoint_name(on_disk, row):
    from types import SimpleNamespace

    keys = ["q_a_proj.weight", "q_gate_proj.weight", "o_proj.weight"]
    state = SimpleNamespace(
        prefix="model.layers",
        layer_keys=[f"self_attn.{k}" for k in keys],
        checkpoint_layer_keys=[f"self_attn.{k.replace('q_gate_proj', on_disk)}" for k in keys],
    )
    package = _reference()
    features = SimpleNamespace(state_dict=state)
    FusedQGate().apply(package, features, layout="per_head_q_gate", projection="q_gate_proj")
    adapter = package.render()["state_dict_adapter.py"]
    assert f'"{row}": "layers.{{}}.attention.wq_b.weight"' in adapter
