"""ClampFeedForward: before/after on the deepseek_v3 reference: FeedForward's (the dense
layers' and the shared expert's) `F.silu(w1(x)) * w3(x)` clamps both branches to
`swiglu_limit`, read from the config field the analysis names, passed where each is built;
the routed experts stay unclamped (theirs is clamp_experts')."""

from codegen.models import references_dir
from codegen.scaffold.source import SourcePackage
from codegen.transforms._attention_edits import find_method
from codegen.transforms.clamped_experts import ClampExperts
from codegen.transforms.clamped_ffn import ClampFeedForward
from codegen.transforms.edits import code_of


def test_the_feed_forward_clamps_gate_and_up():
    package = SourcePackage.from_directory(references_dir() / "deepseek_v3")
    before = package.render()["model.py"]
    assert "clamp" not in code_of(find_method(package.module("model.py"), "FeedForward", "forward"))
    ClampFeedForward().apply(package, limit="v4_limit")
    forward = code_of(find_method(package.module("model.py"), "FeedForward", "forward"))
    clamped = "F.silu(self.w1(x).clamp(max=self.limit)) * self.w3(x).clamp(-self.limit, self.limit)"
    assert clamped in forward
    files = package.render()
    assert "swiglu_limit=hf_config.v4_limit" in files["args.py"]
    assert files["model.py"].count("args.swiglu_limit") == 2  # shared expert, dense layers
    assert "w2(silu(w1(x).clamp(max=limit)) * w3(x).clamp(-limit, limit))" in files["model.py"]
    assert before.count("from codegen.layers.experts import Experts") == 1
    assert "from codegen.layers.experts import Experts" in files["model.py"]  # experts as shared


def test_both_clamps_share_one_field():
    package = SourcePackage.from_directory(references_dir() / "deepseek_v3")
    ClampFeedForward().apply(package, limit="swiglu_limit")
    ClampExperts().apply(package, limit="swiglu_limit")
    files = package.render()
    assert files["args.py"].count("swiglu_limit: float") == 1
    assert files["args.py"].count("swiglu_limit=hf_config.swiglu_limit") == 1
    assert files["model.py"].count("args.swiglu_limit") == 3


def test_a_shared_expert_of_its_own_class_stays_unclamped():
    package = SourcePackage.from_directory(references_dir() / "deepseek_v3")
    ClampFeedForward().apply(package, limit="swiglu_limit", shared_unclamped=True)
    model = package.render()["model.py"]
    unbounded = 'FeedForward(args.dim, args.n_shared_experts * args.moe_hidden_dim, float("inf"))'
    assert f"# a SwiGLU of its own: unclamped\n        self.shared_experts = {unbounded}" in model
    assert model.count("args.swiglu_limit") == 1  # the dense layers'
