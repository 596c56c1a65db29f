"""AddAttentionSoftcap: before/after on the llama reference, and the generated attention
against HF gemma2's eager attention."""

import ast
import sys

import libcst as cst
import torch

from codegen.models import load_spec, references_dir
from codegen.scaffold.build import Step
from codegen.scaffold.pipeline import scaffold_into
from codegen.scaffold.source import SourcePackage
from codegen.transforms.attention_sinks import AddAttentionSinks
from codegen.transforms.attention_softcap import AddAttentionSoftcap


def test_softcap_caps_scores_before_the_mask():
    package = SourcePackage.from_directory(references_dir() / "llama")
    AddAttentionSoftcap().apply(package)
    files = package.render()
    lines = [line.strip() for line in files["model.py"].splitlines()]
    cap = lines.index("scores = (scores / self.softcap).tanh_()")
    assert lines[cap + 1] == "scores = scores * self.softcap"
    assert lines[cap - 1].startswith("if self.softcap is not None:")  # the config switches it
    assert lines[cap - 2] == "scores = q @ k.transpose(2, 3) * self.head_dim**-0.5"
    assert lines[cap + 2] == "scores.add_(future)"
    assert "self.softcap = args.attn_softcap" in lines
    assert "attn_softcap=hf_config.attn_logit_softcapping," in files["args.py"]
    assert "attn_softcap: float | None = 50.0" in files["args.py"]


def _calls(node: ast.AST) -> list[str]:
    return [ast.unparse(c.func) for c in ast.walk(node) if isinstance(c, ast.Call)]


def test_the_model_builds_the_additive_mask_once_and_each_layer_adds_it():
    """The -inf/0 table is built once per forward, before the layer loop, in the dtype of
    the stream the layers compute in (the scores'); the written-out attention adds the
    table it is handed and builds nothing from a mask (before: a `torch.where` and a cast
    to the scores' dtype in every layer)."""
    package = SourcePackage.from_directory(references_dir() / "llama")
    AddAttentionSoftcap().apply(package)
    tree = ast.parse(package.render()["model.py"])
    classes = {c.name: c for c in tree.body if isinstance(c, ast.ClassDef)}

    def method(cls: str, name: str) -> ast.FunctionDef:
        return next(f for f in classes[cls].body if getattr(f, "name", None) == name)

    attention = method("Attention", "forward")
    adds = [
        c
        for c in ast.walk(attention)
        if isinstance(c, ast.Call) and ast.unparse(c.func) == "scores.add_"
    ]
    assert [ast.unparse(a) for c in adds for a in c.args] == ["future"]
    assert not {"torch.where", "torch.full", "torch.ones", "float"} & set(_calls(attention))
    forward = method("Model", "forward")
    loop = next(i for i, s in enumerate(forward.body) if isinstance(s, ast.For))
    built = [
        (i, s.value)
        for i, s in enumerate(forward.body)
        if isinstance(s, ast.Assign) and ast.unparse(s.targets[0]) == "future"
    ]
    assert len(built) == 1 and built[0][0] < loop
    table = built[0][1]  # torch.full((seq, seq), float("-inf"), dtype=..., ...).triu(1)
    full = table.func.value
    assert table.func.attr == "triu" and ast.unparse(full.func) == "torch.full"
    assert ast.unparse(full.args[1]) == "float('-inf')"
    assert {k.arg: ast.unparse(k.value) for k in full.keywords}["dtype"] == "h.dtype"


def test_softcap_keeps_a_custom_sdpa_scale_and_composes_with_sinks():
    package = SourcePackage.from_directory(references_dir() / "llama")
    source = package.render()["model.py"].replace(
        "is_causal=True,", "is_causal=True, scale=self.scale,"
    )
    package.files["model.py"] = cst.parse_module(source)
    AddAttentionSoftcap().apply(package)
    AddAttentionSinks().apply(package)
    model = package.render()["model.py"]
    assert "scores = q @ k.transpose(2, 3) * self.scale" in model
    assert model.count(".tanh_()") == 1
    assert "logits = torch.cat([scores, sinks], dim=-1)" in model


def test_generated_attention_matches_hf_gemma2(tmp_path):
    from transformers.models.gemma2.modeling_gemma2 import Gemma2Attention

    from codegen.verify.tiny_config import tiny_config

    models = tmp_path / "models"
    scaffold_into(models, "llama", "capped", ["gemma2"], [Step("add_attention_softcap")])
    spec = load_spec("capped", models)
    module = sys.modules[spec.model.__module__]
    config = tiny_config("gemma2", attn_logit_softcapping=2.0)
    config.query_pre_attn_scalar = config.head_dim  # the scale this transform's snippet uses
    config._attn_implementation = "eager"
    torch.manual_seed(0)
    hf = Gemma2Attention(config, layer_idx=1).eval()  # layer 1: full attention
    args = spec.args(
        dim=config.hidden_size,
        n_heads=config.num_attention_heads,
        n_kv_heads=config.num_key_value_heads,
        head_dim=config.head_dim,
        n_layers=1,
        attn_softcap=2.0,
    )
    ours = module.Attention(args).eval()
    mapping = {"wq": "q_proj", "wk": "k_proj", "wv": "v_proj", "wo": "o_proj"}
    ours.load_state_dict(
        {f"{house}.weight": getattr(hf, name).weight * 4 for house, name in mapping.items()}
    )
    for name in mapping.values():  # large scores, so the cap matters
        getattr(hf, name).weight.data *= 4
    seq = 12
    x = torch.randn(2, seq, config.hidden_size)
    i = torch.arange(seq)
    additive = torch.zeros(seq, seq).masked_fill(i[:, None] < i[None, :], torch.finfo(x.dtype).min)
    rope = (torch.ones(2, seq, config.head_dim), torch.zeros(2, seq, config.head_dim))
    future = torch.zeros(seq, seq).masked_fill(i[:, None] < i[None, :], float("-inf"))
    with torch.no_grad():
        expected, _ = hf(x, rope, additive[None, None])
        got = ours(x, rope, future)  # the table the model builds
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)
    ours.softcap = 1e6  # effectively uncapped: the cap made a difference
    with torch.no_grad():
        got = ours(x, rope, future)
    assert not torch.allclose(got, expected, rtol=1e-3, atol=1e-4)
