"""A gated norm (A.X-K2's `y = norm(x); y * sigmoid(mlp(y))`) sits where a plain norm would:
the layer's placement is read through it (pre-norm, not `unknown`), the feed-forward that
computes its gate is not taken for the layer's MLP, and the gated norms are a feature of
their own the plan stops on (no rule builds them yet), read from the data flow so a renamed
copy reads the same."""

from __future__ import annotations

from analyze_helpers import rename_model

from codegen.analyze.analysis import analyze
from codegen.scaffold.plan import make_plan
from codegen.scaffold.target import load_target


def test_axk2_is_pre_norm_with_gated_norms(tmp_path):
    modeling, _ = rename_model("axk2", "wallaby", str(tmp_path))
    text = open(modeling, encoding="utf-8").read()
    edits = {  # the gate's feed-forward renamed where it is built and called
        "self.mlp = WALLABYGateMLP(config)": "self.gater = WALLABYGateMLP(config)",
        "torch.sigmoid(self.mlp(y).float())": "torch.sigmoid(self.gater(y).float())",
    }
    for old, new in edits.items():
        assert old in text, old
        text = text.replace(old, new)
    open(modeling, "w", encoding="utf-8").write(text)
    for source in ("axk2", modeling):
        norm = analyze(source).norm
        assert norm.placement == "pre", source
        assert norm.gated.startswith("input_layernorm, post_attention_layernorm: ")
    plan = make_plan(load_target("axk2"))
    # the gate's feed-forward is the norm's, not a layer module no rule realises
    assert not plan.gaps and "gated_norm" in {step.rule for step in plan.steps}


def test_plain_norms_are_not_gated():
    for model_type in ("llama", "deepseek_v3", "qwen3_moe"):
        norm = analyze(model_type).norm
        assert norm.gated is None and norm.placement == "pre"
