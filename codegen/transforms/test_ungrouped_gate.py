"""UngroupedGate: before/after on the deepseek_v3 reference: the Gate's group-limited pick
becomes the top k of all experts (the correction bias still steering it, the weights the
unbiased scores), and ModelArgs / from_hf_config keep nothing of the groups."""

from codegen.models import references_dir
from codegen.scaffold.source import SourcePackage
from codegen.transforms._attention_edits import find_method
from codegen.transforms.edits import code_of
from codegen.transforms.score_activation import ScoreActivation
from codegen.transforms.ungrouped_gate import UngroupedGate


def _package():
    return SourcePackage.from_directory(references_dir() / "deepseek_v3")


def test_the_gate_picks_the_top_k_of_all_experts():
    package = _package()
    before = package.render()
    assert "self.n_groups" in before["model.py"] and "hf_config.n_group" in before["args.py"]
    UngroupedGate().apply(package)
    files = package.render()
    forward = code_of(find_method(package.module("model.py"), "Gate", "forward"))
    assert (
        "indices = (scores + self.e_score_correction_bias).topk(self.top_k, dim=-1, "
        "sorted=False)[1]"
    ) in forward
    for kept in ("scores = logits.sigmoid()", "weights = scores.gather(1, indices)"):
        assert kept in forward
    for gone in ("group", "masked_fill", "view("):
        assert gone not in forward
    init = code_of(find_method(package.module("model.py"), "Gate", "__init__"))
    assert "n_groups" not in init and "topk_groups" not in init
    assert "and top-k over all experts, in fp32" in files["model.py"]
    args = files["args.py"]
    for gone in ("n_group", "topk_group", "n_expert_groups", "n_limited_groups", "groups"):
        assert gone not in args, gone
    assert 'for name in ("num_experts_per_tok", "first_k_dense_replace"):' in args
    assert "if hf_config.num_experts_per_tok > hf_config.n_routed_experts:" in args


def test_after_another_score_the_pick_is_still_ungrouped():
    package = _package()
    ScoreActivation().apply(package, activation="sqrtsoftplus")
    UngroupedGate().apply(package)
    forward = code_of(find_method(package.module("model.py"), "Gate", "forward"))
    assert "scores = F.softplus(logits).sqrt()" in forward and "n_groups" not in forward
