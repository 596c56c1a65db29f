"""AddAttentionSinks: before/after on the llama reference, and the generated attention
against HF gpt_oss's eager attention (the only path HF runs for sinks)."""

import sys
from types import SimpleNamespace

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

from codegen.models import load_spec, references_dir
from codegen.scaffold.build import Step
from codegen.scaffold.pipeline import scaffold_into
from codegen.scaffold.source import SourcePackage
from codegen.transforms.attention_sinks import AddAttentionSinks
from codegen.transforms.sliding_window import SetSlidingWindow


def _llama():
    return SourcePackage.from_directory(references_dir() / "llama")


def test_sinks_replace_sdpa_with_the_written_out_softmax():
    package = _llama()
    AddAttentionSinks().apply(package)
    model = package.render()["model.py"]
    assert "F.scaled_dot_product_attention" not in model
    assert "self.sinks = nn.Parameter(torch.zeros(args.n_heads))" in model
    assert "logits = torch.cat([scores, sinks], dim=-1)" in model
    assert "probs = torch.softmax(logits, dim=-1)[..., :-1].to(v.dtype)" in model
    # no mask argument: plain causal, the keys after each query hidden in place (the model
    # builds their additive table once for every layer)
    assert "scores.add_(future)" in model and "torch.where" not in model
    assert 'future = torch.full((tokens.shape[1], tokens.shape[1]), float("-inf")' in model
    adapter = package.render()["state_dict_adapter.py"]
    assert '"model.layers.{}.self_attn.sinks": "layers.{}.attention.sinks"' in adapter


def test_sinks_after_a_window_take_the_keys_the_model_hides_once():
    """No mask is inverted nor the causal mask built in a layer: the model builds the keys
    each layer type hides once, before the loop, and the attention hides what it is handed."""
    package = _llama()
    SetSlidingWindow().apply(package, mode="pattern")
    AddAttentionSinks().apply(package)
    model = package.render()["model.py"]
    attention = model[model.index("class Attention") : model.index("class FeedForward")]
    assert "mask" not in attention.replace("masked_fill_", "")
    assert "scores.add_(hidden)" in attention
    assert "torch.ones(" not in attention and "~" not in attention
    assert "torch.where" not in attention
    loop = model[model.index("        window = None\n") : model.index("h = self.norm(h)")]
    assert loop.index("future = torch.full(") < loop.index("for layer in self.layers:")
    table = 'future.new_full(window.shape, float("-inf")).masked_fill_(window, 0.0)'
    assert f"hidden_window = future if window is None else {table}" in loop
    assert "h = layer(h, rope, hidden_window if layer.sliding else future)" in loop
    assert "del future, window, hidden_window" in loop
    assert "rope, hidden)" in model and "hidden: torch.Tensor" in model


def test_a_window_added_and_removed_after_the_sinks_swaps_future_and_mask():
    """Written-out causal attention reads the model's `future` keys; a window hands each
    layer the keys it hides instead, and removing the window hands `future` down again."""
    package = _llama()
    AddAttentionSinks().apply(package)
    SetSlidingWindow().apply(package, mode="pattern")
    model = package.render()["model.py"]
    assert model.count("future = torch.full(") == 1
    assert "h = layer(h, rope, hidden_window if layer.sliding else future)" in model
    assert "scores.add_(hidden)" in model
    compile(model, "model.py", "exec")
    SetSlidingWindow().apply(package, mode="none")
    model = package.render()["model.py"]
    assert "mask" not in model.replace("masked_fill_", "")
    assert model.count("future = torch.full(") == 1 and model.count("del future") == 1
    assert "h = layer(h, rope, future)" in model
    assert "self.attention(self.attention_norm(x), rope, future)" in model
    assert "scores.add_(future)" in model and "torch.where" not in model
    compile(model, "model.py", "exec")


def _additive(mask: torch.Tensor, dtype) -> torch.Tensor:
    return torch.zeros(mask.shape, dtype=dtype).masked_fill(~mask, torch.finfo(dtype).min)


@pytest.mark.parametrize("window", [None, 5])
def test_generated_attention_matches_hf_gpt_oss(tmp_path, window):
    from transformers.models.gpt_oss.modeling_gpt_oss import GptOssAttention

    from codegen.verify.tiny_config import tiny_config

    models = tmp_path / "models"
    steps = [Step("set_sliding_window", {"mode": "pattern"}), Step("add_attention_sinks")]
    scaffold_into(models, "llama", "sinks", ["gpt_oss"], steps)
    spec = load_spec("sinks", models)
    module = sys.modules[spec.model.__module__]
    config = tiny_config("gpt_oss", attention_bias=False)
    config._attn_implementation = "eager"
    torch.manual_seed(0)
    hf = GptOssAttention(config, layer_idx=0).eval()
    torch.nn.init.normal_(hf.sinks)
    args = spec.args(
        dim=config.hidden_size,
        n_heads=config.num_attention_heads,
        n_kv_heads=config.num_key_value_heads,
        head_dim=config.head_dim,
        n_layers=1,
    )
    ours = module.Attention(args).eval()
    mapping = {"wq": "q_proj", "wk": "k_proj", "wv": "v_proj", "wo": "o_proj"}
    state = {f"{house}.weight": getattr(hf, name).weight for house, name in mapping.items()}
    ours.load_state_dict({**state, "sinks": hf.sinks}, strict=True)

    seq = 12
    x = torch.randn(2, seq, config.hidden_size)
    i = torch.arange(seq)
    allowed = i[:, None] >= i[None, :]
    if window is not None:
        allowed &= i[:, None] - i[None, :] < window
    half = config.head_dim // 2
    identity = (torch.ones(2, seq, half), torch.zeros(2, seq, half))
    with torch.no_grad():
        expected, _ = hf(x, identity, _additive(allowed, x.dtype)[None, None])
        rope = (torch.ones(2, seq, 2 * half), torch.zeros(2, seq, 2 * half))
        hidden = torch.zeros(seq, seq).masked_fill(~allowed, float("-inf"))  # the model's
        with _Made() as made:
            got = ours(x, rope, hidden)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)
    # the layer builds no mask of its own (no `~mask`, no causal `tril`, no -inf/0 table
    # from a boolean mask): it adds the table the model builds once
    assert torch.bool not in made.dtypes and (seq, seq) not in made.shapes


@pytest.mark.parametrize("model_type", ["gpt_oss", "flint"])
def test_the_scores_and_logits_are_not_held_while_the_output_is_projected(tmp_path, model_type):
    """HF's eager function frees its scores and logits (each (batch, heads, seq, seq)) when
    it returns, before the output projection; the package drops them once the softmax has
    read them (the logits shifted by their maximum, gpt_oss, or as they are, flint), so
    while `wo` runs it holds only the probabilities, as HF holds the weights it returns."""
    from codegen.transforms.testing import held_at_projection

    models = tmp_path / "models"
    scaffold_into(models, "llama", "sinks", [model_type], [Step("add_attention_sinks")])
    spec = load_spec("sinks", models)
    module = sys.modules[spec.model.__module__]
    assert "del scores, logits" in (models / "sinks" / "model.py").read_text()
    args = spec.args(dim=32, n_heads=4, n_kv_heads=2, head_dim=8, n_layers=1)
    seq = 6
    attention = module.Attention(args).eval()
    rope = (torch.ones(2, seq, 8), torch.zeros(2, seq, 8))
    future = torch.full((seq, seq), float("-inf")).triu(1)
    assert held_at_projection(attention, seq, torch.randn(2, seq, 32), rope, future) == {"probs"}


class _Made(TorchDispatchMode):
    """The dtypes and shapes of the tensors the ops run under it return."""

    def __init__(self):
        super().__init__()
        self.dtypes, self.shapes = set(), set()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        made = [t for t in tree_leaves(out) if isinstance(t, torch.Tensor)]
        self.dtypes |= {t.dtype for t in made}
        self.shapes |= {tuple(t.shape) for t in made}
        return out


@pytest.mark.parametrize(
    ("init_line", "zeroed"),
    [("init.zeros_(module.sinks)", True), ("init.normal_(module.sinks, mean=0.0, std=std)", False)],
)
def test_sinks_start_as_hf_initialises_them(tmp_path, init_line, zeroed):
    source = tmp_path / "modeling_x.py"
    source.write_text(f"def _init_weights(self, module):\n    {init_line}\n")
    features = SimpleNamespace(source=SimpleNamespace(modeling=str(source)))
    package = _llama()
    AddAttentionSinks().apply(package, features)
    model = package.render()["model.py"]
    assert ("nn.init.zeros_(self.sinks)" in model) is zeroed


def test_the_max_is_subtracted_only_where_hf_subtracts_it():
    """gpt_oss's eager attention shifts the logits by their row maximum before the softmax
    (in the scores' dtype); flint's softmaxes them as they are, so its package does too."""
    from codegen.scaffold.target import load_target
    from codegen.transforms.attention_sinks import sinks_logits_shifted

    shift = "logits = logits - logits.amax(dim=-1, keepdim=True)"
    for model_type, shifted in (("gpt_oss", True), ("flint", False)):
        features = load_target(model_type).features
        assert sinks_logits_shifted(features) is shifted
        package = _llama()
        AddAttentionSinks().apply(package, features)
        model = package.render()["model.py"]
        assert (shift in model) is shifted
        assert "probs = torch.softmax(logits, dim=-1)[..., :-1].to(v.dtype)" in model
    # no source to read (a package built without an analysis): the shift, exact in fp32
    assert sinks_logits_shifted(None) is True


def test_the_sink_scales_the_output_where_hf_scales_it(tmp_path):
    """granite_swa's eager attention applies the sink after `probs @ v`, as
    sigmoid(logsumexp(scores) - sink) in fp32; gpt_oss and flint join it to the softmax.
    The package follows each: the same value in fp32, HF's own roundings in bf16."""
    from codegen.scaffold.target import load_target
    from codegen.transforms.attention_sinks import sinks_scale_the_output

    for model_type, scaled in (("granite_swa", True), ("gpt_oss", False), ("flint", False)):
        assert sinks_scale_the_output(load_target(model_type).features) is scaled
    assert sinks_scale_the_output(None) is False
    source = tmp_path / "modeling_x.py"
    source.write_text(
        "def attend(module, w):\n"
        "    lse = torch.logsumexp(w, dim=-1)\n"
        "    return (lse - module.sinks.view(1, -1, 1)).float().sigmoid()\n"
    )
    features = SimpleNamespace(source=SimpleNamespace(modeling=str(source)))
    package = _llama()
    AddAttentionSinks().apply(package, features)
    model = package.render()["model.py"]
    assert "torch.cat([scores, sinks]" not in model
    assert "lse = torch.logsumexp(scores, dim=-1)" in model
    assert "sink_scale = (lse - self.sinks.view(1, -1, 1)).float().sigmoid()" in model
    assert "probs = torch.softmax(scores, dim=-1, dtype=torch.float32).to(v.dtype)" in model
    assert "out = (probs @ v) * sink_scale.unsqueeze(-1).to(v.dtype)" in model
    compile(model, "model.py", "exec")


def test_granite_swa_bf16_is_hf_bf16_bit_for_bit(tmp_path):
    """With the sink scaling the output as HF's does, the planned granite_swa package gives
    HF's bf16 logits exactly (as a softmax column it moved them by 1.1e-2 of max|logit|,
    beyond the same-dtype floor, on the untied setting)."""
    from codegen.scaffold.plan import make_plan
    from codegen.scaffold.target import load_target
    from codegen.verify.cases import default_cases
    from codegen.verify.run import verify_case

    target = load_target("granite_swa")
    plan = make_plan(target)
    assert plan.complete, plan.gaps
    models = tmp_path / "models"
    scaffold_into(
        models, plan.reference, "gen_swa", ["granite_swa"], plan.steps, features=target.features
    )
    spec = load_spec("gen_swa", models)
    (case,) = [c for c in default_cases(spec) if c.label.endswith("tie_word_embeddings=False")]
    (result,) = verify_case(spec, case, ["bf16"], gradients=False, export=False)
    assert result.passed, result.first_divergence
    assert result.same_dtype_diff == 0.0


def test_sinks_after_a_two_stage_output_projection():
    # DeepSeek-V4 projects its output twice (grouped_output runs first): the sinks and their
    # checkpoint row follow the second stage
    from codegen.transforms.grouped_output import GroupedOutput

    package = SourcePackage.from_directory(references_dir() / "llama")
    grouped = {"a": "o_a_proj", "b": "o_b_proj", "groups": "o_groups", "rank": "o_lora_rank"}
    GroupedOutput().apply(package, grouped=grouped)
    AddAttentionSinks().apply(package)
    files = package.render()
    model = files["model.py"]
    assert model.index("self.wo_b = ") < model.index("self.sinks = ")
    adapter = files["state_dict_adapter.py"]
    assert adapter.index("attention.wo_b.weight") < adapter.index("attention.sinks")
