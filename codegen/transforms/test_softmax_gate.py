"""SetSoftmaxGate: before/after on the deepseek_v3 reference."""

from __future__ import annotations

import pytest

from codegen.models import references_dir
from codegen.scaffold.source import SourcePackage
from codegen.transforms.edits import EditError
from codegen.transforms.softmax_gate import SetSoftmaxGate
from codegen.transforms.testing import package_of


def v3_package() -> SourcePackage:
    return SourcePackage.from_directory(references_dir() / "deepseek_v3")


def gate_of(files: dict[str, str]) -> str:
    return files["model.py"].split("class Gate(", 1)[1].split("\nclass ", 1)[0]


def test_grouped_gate_is_softmax_with_best_expert_groups():
    package = v3_package()
    SetSoftmaxGate().apply(package, grouped=True, renormalize=False)
    files = package.render()
    gate = gate_of(files)
    assert files["model.py"].count("class Gate(") == 1
    assert (
        "        logits = F.linear(x.reshape(-1, x.shape[-1]).float(), self.weight.float())\n"
        "        scores = logits.softmax(dim=-1).view(logits.shape[0], self.n_groups, -1)\n"
        "        top_groups = scores.amax(dim=-1).topk(self.topk_groups, dim=-1, sorted=False)[1]\n"
    ) in gate
    assert "weights, indices = scores.topk(self.top_k, dim=-1, sorted=False)\n" in gate
    assert "        return logits, weights * self.route_scale, indices\n" in gate
    for gone in ("sigmoid", "e_score_correction_bias", "_apply", "norm_topk_prob", "-inf"):
        assert gone not in gate
    assert "e_score_correction_bias" not in files["state_dict_adapter.py"]
    assert "mlp.gate.weight" in files["state_dict_adapter.py"]
    # greedy is group-limited top-k with one group: decided by the config mapping
    args = files["args.py"]
    assert "n_expert_groups=hf_config.n_group if _grouped(hf_config) else 1," in args
    assert "n_limited_groups=hf_config.topk_group if _grouped(hf_config) else 1," in args
    assert "    if _grouped(hf_config):\n" in args
    assert args.endswith('    return hf_config.topk_method == "group_limited_greedy"\n')
    assert 'for name in ("num_experts_per_tok", "first_k_dense_replace"):' in args
    assert "experts // groups < 2" not in args  # a group of one expert is fine with `max`
    assert "# routed_scaling_factor, the k weights' multiplier" in args


def test_plain_gate_and_renormalisation():
    package = v3_package()
    SetSoftmaxGate().apply(package, grouped=False, renormalize=True)
    gate = gate_of(package.render())
    assert (
        "        scores = logits.softmax(dim=-1)\n"
        "        weights, indices = scores.topk(self.top_k, dim=-1, sorted=False)\n"
        "        if self.norm_topk_prob:\n"
    ) in gate
    assert "n_groups" not in gate
    assert "self.norm_topk_prob = args.norm_topk_prob\n" in gate
    assert "renormalised when norm_topk_prob" in gate
    args = package.render()["args.py"]
    assert "topk_method" not in args
    assert "n_group" not in args.split("def _check_supported", 1)[1]


def test_without_a_correction_bias_its_prose_goes():
    package = v3_package()
    SetSoftmaxGate().apply(package, grouped=False, renormalize=False)
    files = package.render()
    for name in ("state_dict_adapter.py", "parallelize.py"):
        assert "correction bias" not in files[name]
    assert (
        "# MoE layers: router, routed experts stacked along dim 0" in files["state_dict_adapter.py"]
    )
    assert "the router is replicated" in files["parallelize.py"]


def test_auto_reads_the_router_source(tmp_path):
    modeling = tmp_path / "modeling_x.py"
    modeling.write_text('if self.topk_method == "group_limited_greedy":\n    pass\n')

    class Source:
        pass

    class Features:
        source = Source()

    Features.source.modeling = str(modeling)
    package = v3_package()
    SetSoftmaxGate().apply(package, Features())
    gate = gate_of(package.render())
    assert "self.n_groups, self.topk_groups" in gate
    assert "norm_topk_prob" not in gate  # the source never reads it


def test_running_twice_gives_the_same_code():
    package = v3_package()
    SetSoftmaxGate().apply(package, grouped=True, renormalize=False)
    once = package.render()
    SetSoftmaxGate().apply(package, grouped=True, renormalize=False)
    assert package.render() == once


def test_needs_the_deepseek_gate():
    package = package_of({"model.py": "class MoE:\n    pass\n"})
    with pytest.raises(EditError):
        SetSoftmaxGate().apply(package, grouped=True, renormalize=False)


def test_plain_gate_with_a_selection_only_correction_bias():
    # LongCat-Flash: softmax scores, a correction bias shifting the pick, the weights from the
    # unbiased scores; the bias rows stay, keyed where the target's checkpoint keeps them
    package = v3_package()
    SetSoftmaxGate().apply(package, grouped=False, renormalize=False, correction_bias=True)
    files = package.render()
    gate = gate_of(files)
    buffer = 'self.register_buffer("e_score_correction_bias", torch.zeros(args.n_routed_experts))'
    assert f"        {buffer}\n" in gate
    assert (
        "        scores = logits.softmax(dim=-1)\n"
        "        indices = (scores + self.e_score_correction_bias).topk(self.top_k, dim=-1,"
        " sorted=False)[1]\n"
        "        weights = scores.gather(1, indices)  # from the unbiased scores\n"
    ) in gate
    for gone in ("sigmoid", "_apply", "n_groups", "norm_topk_prob"):
        assert gone not in gate
    assert "correction bias shifts which experts are\n    *chosen*" in gate
    assert "mlp.gate.e_score_correction_bias" in files["state_dict_adapter.py"]
    with pytest.raises(EditError, match="grouped softmax router with a correction bias"):
        SetSoftmaxGate().apply(v3_package(), grouped=True, renormalize=False, correction_bias=True)
