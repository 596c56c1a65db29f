"""IndexedAttention: before/after on the deepseek_v3 reference, and the generated indexer's
key choice against HF's DeepSeek-V3.2 (halves) and GLM-MoE-DSA (interleaved pairs) indexers."""

import sys
from types import SimpleNamespace

import libcst.matchers as m
import pytest
import torch

from codegen.models import load_spec, references_dir
from codegen.scaffold.build import Step
from codegen.scaffold.pipeline import scaffold_into
from codegen.scaffold.source import SourcePackage
from codegen.transforms.edits import EditError
from codegen.transforms.indexed_attention import IndexedAttention

NAMES = {
    "module": "indexer",
    "q_proj": "wq_b",
    "k_proj": "wk",
    "k_norm": "k_norm",
    "weights_proj": "weights_proj",
    "interleaved": False,
    "rope_dims": "leading",
    "k_norm_eps": 1e-06,
}


def _deepseek_v3():
    return SourcePackage.from_directory(references_dir() / "deepseek_v3")


def test_the_indexer_mask_replaces_the_causal_flag():
    package = _deepseek_v3()
    before, before_args = package.render()["model.py"], package.render()["args.py"]
    assert "class Indexer" not in before and "is_causal=True" in before
    IndexedAttention().apply(package, indexer=NAMES)
    files = package.render()
    model = files["model.py"]
    assert "class Indexer(nn.Module):" in model
    assert "self.indexer = Indexer(args)" in model
    assert "keep = self.indexer(x, q_latent, rope)" in model
    assert "F.scaled_dot_product_attention(q, k, v, attn_mask=keep, scale=self.scale)" in model
    assert "is_causal" not in model
    # the indexer reads the query latent: the single-projection query (no latent) is gone
    assert "self.wq(" not in model and "self.q_lora_rank" not in model
    assert "None: one wq instead" in before_args and "None: one wq" not in files["args.py"]
    assert "# the query latent (wq_a -> q_norm -> wq_b); the indexer reads it" in files["args.py"]
    assert "q_latent = self.q_norm(self.wq_a(x))" in model
    assert "q_pe = apply_rotary(q_pe.transpose(1, 2), cos, sin)" in model
    assert "self.k_norm = nn.LayerNorm(self.head_dim, eps=1e-06)" in model
    args = files["args.py"]
    for field in ("index_topk", "index_n_heads", "index_head_dim"):
        assert f"{field}=hf_config.{field}" in args
    adapter = files["state_dict_adapter.py"]
    for hf, house in [
        ("indexer.wq_b.weight", "indexer.wq_b.weight"),
        ("indexer.wk.weight", "indexer.wk.weight"),
        ("indexer.k_norm.weight", "indexer.k_norm.weight"),
        ("indexer.k_norm.bias", "indexer.k_norm.bias"),
        ("indexer.weights_proj.weight", "indexer.weights_proj.weight"),
    ]:
        assert f'"model.layers.{{}}.self_attn.{hf}": "layers.{{}}.attention.{house}"' in adapter


def test_a_window_mask_narrows_the_indexers_mask():
    """With a sliding-window pattern the attention already takes `attn_mask=mask` (None
    where the layer does not slide): the indexer's mask is intersected with it, not a
    second `attn_mask` keyword (which did not compile)."""
    from codegen.transforms.sliding_window import SetSlidingWindow

    package = _deepseek_v3()
    SetSlidingWindow().apply(package, mode="pattern")
    assert "attn_mask=mask" in package.render()["model.py"]
    IndexedAttention().apply(package, indexer=NAMES)
    model = package.render()["model.py"]
    compile(model, "model.py", "exec")
    sdpa = m.Call(
        func=m.Attribute(value=m.Name("F"), attr=m.Name("scaled_dot_product_attention")),
        args=[
            m.ZeroOrMore(),
            m.Arg(
                keyword=m.Name("attn_mask"),
                value=m.IfExp(
                    test=m.Comparison(left=m.Name("mask")),
                    body=m.Name("keep"),
                    orelse=m.BinaryOperation(
                        left=m.Name("keep"), operator=m.BitAnd(), right=m.Name("mask")
                    ),
                ),
            ),
            m.ZeroOrMore(),
        ],
    )
    assert len(m.findall(package.module("model.py"), sdpa)) == 1
    assert model.count("attn_mask=") == 1 and "is_causal" not in model


def test_the_checkpoint_names_come_from_the_analysis():
    package = _deepseek_v3()
    names = {**NAMES, "module": "scorer", "q_proj": "q_up", "interleaved": True}
    IndexedAttention().apply(package, indexer=names)
    files = package.render()
    adapter = files["state_dict_adapter.py"]
    assert (
        '"model.layers.{}.self_attn.scorer.q_up.weight": "layers.{}.attention.indexer.wq_b.weight"'
        in (adapter.replace("(\n            ", "").replace("\n        )", ""))
    )
    assert "apply_rotary_interleaved(q_pe.transpose(1, 2), cos, sin)" in files["model.py"]


def test_layers_without_an_indexer_reuse_the_last_ones_keys(tmp_path):
    """A per-layer setting that builds no indexer on some layers (GLM-5's and HY-V4's
    "shared") is realised: those layers reuse the keys the last indexer chose, handed from
    layer to layer in `selection`."""
    switch = SimpleNamespace(
        field="indexer_types",
        kind="per_layer",
        configured=["full", "full"],
        values=(
            SimpleNamespace(
                test="layers", operand="shared", selects="skip_topk = True; indexer: None"
            ),
        ),
    )
    package = _deepseek_v3()
    names = {**NAMES, "rope_dims": "trailing", "k_norm_eps": "rms_norm_eps"}
    IndexedAttention().apply(package, SimpleNamespace(switches=(switch,)), indexer=names)
    files = package.render()
    model, args = files["model.py"], files["args.py"]
    assert 'self.indexer = None if args.indexer_types[layer_id] == "shared" else Indexer(args)' in (
        model
    )
    assert 'selection["keep"] = self.indexer(x, q_latent, rope)' in model
    assert "h = layer(h, rope, selection)" in model
    assert "indexer_types=tuple(hf_config.indexer_types)" in args
    # a first layer without an indexer has no keys to reuse: refused in one line (HF raises)
    assert "if hf_config.indexer_types[0] == 'shared':" in args
    assert "the first layer has no earlier indexer to reuse" in args
    assert "index_k_norm_eps=hf_config.rms_norm_eps" in args
    # the rotated dims trail the indexer's q/k heads
    assert "q_nope, q_pe = q.split(split, dim=-1)" in model
    folder = tmp_path / "gen_shared_indexer"
    folder.mkdir()
    for name, text in files.items():
        (folder / name).write_text(text)
    sys.path.insert(0, str(tmp_path))
    try:
        import importlib

        args_module = importlib.import_module("gen_shared_indexer.args")
        model_module = importlib.import_module("gen_shared_indexer.model")
    finally:
        sys.path.remove(str(tmp_path))
    built = model_module.Model(
        args_module.ModelArgs(
            dim=32,
            n_layers=3,
            n_heads=2,
            vocab_size=64,
            q_lora_rank=16,
            kv_lora_rank=8,
            qk_nope_head_dim=6,
            qk_rope_head_dim=4,
            v_head_dim=5,
            hidden_dim=48,
            n_dense_layers=3,
            index_topk=3,
            index_n_heads=2,
            index_head_dim=8,
            indexer_types=("full", "shared", "full"),
        )
    )
    assert [layer.attention.indexer is None for layer in built.layers] == [False, True, False]
    assert built(torch.randint(0, 64, (1, 6))).shape == (1, 6, 64)


def _typed_switch():
    # dots3: layer_types builds the indexer on "indexed_attention" layers only
    return SimpleNamespace(
        field="layer_types",
        kind="per_layer",
        configured=["indexed_attention", "sliding_attention", "sliding_attention"],
        values=(
            SimpleNamespace(
                test="layers", operand="indexed_attention", selects="indexer: Indexer(...)"
            ),
            SimpleNamespace(
                test="layers",
                operand="sliding_attention",
                selects="sliding_window: config.sliding_window",
            ),
        ),
    )


def test_an_indexer_on_one_layer_type_only(tmp_path):
    """Where the layer types say which layers build the indexer (dots3's
    "indexed_attention" beside windowed "sliding_attention" layers), only those layers
    have one, the type is one ModelArgs knows, and its mask narrows the layer's own."""
    from codegen.transforms.sliding_window import SetSlidingWindow

    package = _deepseek_v3()
    SetSlidingWindow().apply(package, mode="pattern")
    features = SimpleNamespace(switches=(_typed_switch(),))
    IndexedAttention().apply(package, features, indexer=NAMES)
    files = package.render()
    model = files["model.py"]
    assert (
        'self.indexer = Indexer(args) if args.layer_types[layer_id] == "indexed_attention"'
        " else None"
    ) in model
    assert "if self.indexer is not None:" in model
    assert "mask = keep if mask is None else keep & mask" in model
    assert model.count("attn_mask=") == 1
    assert "indexed_attention" in files["args.py"].split("LAYER_TYPES = ")[1].split("\n")[0]
    folder = tmp_path / "gen_typed_indexer"
    folder.mkdir()
    for name, text in files.items():
        (folder / name).write_text(text)
    sys.path.insert(0, str(tmp_path))
    try:
        import importlib

        args_module = importlib.import_module("gen_typed_indexer.args")
        model_module = importlib.import_module("gen_typed_indexer.model")
    finally:
        sys.path.remove(str(tmp_path))
    args = args_module.ModelArgs(
        dim=32,
        n_layers=3,
        n_heads=2,
        vocab_size=64,
        q_lora_rank=16,
        kv_lora_rank=8,
        qk_nope_head_dim=6,
        qk_rope_head_dim=4,
        v_head_dim=5,
        hidden_dim=48,
        n_dense_layers=3,
        sliding_window=2,
        layer_types=("indexed_attention", "sliding_attention", "sliding_attention"),
        index_topk=3,
        index_n_heads=2,
        index_head_dim=8,
    )
    built = model_module.Model(args)
    assert built.layers[0].attention.indexer is not None
    assert built.layers[1].attention.indexer is None
    assert built(torch.randint(0, 64, (1, 6))).shape == (1, 6, 64)


def test_an_attention_without_the_causal_flag_is_an_error():
    package = _deepseek_v3()
    IndexedAttention().apply(package, indexer=NAMES)
    with pytest.raises(EditError):
        IndexedAttention().apply(package, indexer=NAMES)


def _hf_mask(hf, x, q_latent, rope, seq):
    causal = torch.ones(seq, seq, dtype=torch.bool).tril()
    chosen = hf(x, q_latent, rope, causal[None].expand(x.shape[0], -1, -1), None).long()
    keep = torch.zeros(x.shape[0], seq, seq, dtype=torch.bool).scatter(-1, chosen, True)
    return (keep & causal)[:, None]


@pytest.mark.parametrize(
    ("model_type", "indexer_class", "interleaved"),
    [
        ("deepseek_v32", "DeepseekV32Indexer", False),
        ("glm_moe_dsa", "GlmMoeDsaIndexer", True),
    ],
)
def test_the_generated_indexer_keeps_hf_indexers_keys(
    tmp_path, model_type, indexer_class, interleaved
):
    import importlib

    from codegen.verify.tiny_config import tiny_config

    models = tmp_path / "models"
    steps = [Step("indexed_attention", {"indexer": {**NAMES, "interleaved": interleaved}})]
    scaffold_into(models, "deepseek_v3", "dsa", [model_type], steps)
    spec = load_spec("dsa", models)
    module = sys.modules[spec.model.__module__]
    hf_module = importlib.import_module(f"transformers.models.{model_type}.modeling_{model_type}")
    config = tiny_config(model_type)
    assert config.index_topk < 6  # fewer keys kept than the short test input holds
    torch.manual_seed(0)
    hf = getattr(hf_module, indexer_class)(config, layer_idx=0).eval()
    for parameter in hf.parameters():
        torch.nn.init.normal_(parameter)
    args = spec.args.from_hf_config(config)
    ours = module.Indexer(args).eval()
    ours.load_state_dict(hf.state_dict(), strict=True)

    seq = 16
    x = torch.randn(2, seq, config.hidden_size)
    q_latent = torch.randn(2, seq, config.q_lora_rank)
    rope = module.RotaryEmbedding(args.rope, args.qk_rope_head_dim)(
        torch.arange(5, 5 + seq).expand(2, -1)
    )
    expected = _hf_mask(hf, x, q_latent, rope, seq)
    got = ours(x, q_latent, rope)
    assert torch.equal(got, expected)
    kept = got.sum(-1).flatten()
    assert int(kept.max()) == config.index_topk  # later queries lose keys
    # the other rotation picks other keys: the layout is part of the choice
    other = {**NAMES, "interleaved": not interleaved}
    scaffold_into(
        models,
        "deepseek_v3",
        "dsa_other",
        [model_type],
        [Step("indexed_attention", {"indexer": other})],
    )
    wrong = sys.modules[load_spec("dsa_other", models).model.__module__].Indexer(args).eval()
    wrong.load_state_dict(hf.state_dict(), strict=True)
    assert not torch.equal(wrong(x, q_latent, rope), expected)


def test_the_scores_scale_on_the_weights_where_hf_applies_it_there():
    """HY-V4 scales the per-head weights, not the (batch, seq, heads, keys) scores."""
    package = _deepseek_v3()
    IndexedAttention().apply(package, indexer={**NAMES, "scale_on_weights": True})
    model = package.render()["model.py"]
    assert "scores = F.relu(scores)  # (batch, seq, heads, keys)" in model
    assert "weights = weights * self.n_heads**-0.5 * self.head_dim**-0.5" in model
    assert "scores * self.head_dim**-0.5" not in model


def test_explicit_attention_selects_its_keys_before_making_its_scores():
    """Written-out attention (HY-V4's, with sinks) runs the indexer before `scores = q @ k...`,
    as HF selects before it attends: the indexer's (batch, seq, heads, keys) fp32 scores are
    not held beside the attention's (batch, heads, seq, keys) ones, which raised the forward's
    peak memory above HF's. The masking still hides the keys the indexer left out."""
    from codegen.transforms import _attention_edits

    package = _deepseek_v3()
    _attention_edits.make_attention_explicit(package)
    IndexedAttention().apply(package, indexer=NAMES)
    model = package.render()["model.py"]
    compile(model, "model.py", "exec")
    forward = _attention_edits.find_method(package.module("model.py"), "Attention", "forward")
    lines = [package.module("model.py").code_for_node(s) for s in forward.body.body]
    index = {
        name: next(i for i, line in enumerate(lines) if anchor in line)
        for name, anchor in (
            ("keep", "keep = self.indexer(x, q_latent, rope)"),
            ("scores", "scores = q @ k.transpose(2, 3)"),
            ("masking", 'scores.add_(torch.where(keep, future, float("-inf")))'),
        )
    }
    assert index["keep"] < index["scores"] < index["masking"]
