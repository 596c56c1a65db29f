"""AddOutputGate: before/after on the llama and qwen3 references, and the generated attention
against HF's gated attentions (HRM: a plain gate projection; Beam: plus a per-head bias)."""

import dataclasses
import sys
from types import SimpleNamespace

import libcst
import pytest
import torch

from codegen.analyze.switches import Switch, SwitchValue
from codegen.models import load_spec, references_dir
from codegen.scaffold.build import Step
from codegen.scaffold.pipeline import scaffold_into
from codegen.scaffold.source import SourcePackage
from codegen.transforms.edits import EditError
from codegen.transforms.output_gate import AddOutputGate


def _reference(name="llama"):
    return SourcePackage.from_directory(references_dir() / name)


def test_plain_gate_multiplies_the_attention_output_before_wo():
    package = _reference()
    before = package.render()["model.py"]
    assert "self.wg" not in before
    AddOutputGate().apply(package, projection="gate_proj")
    files = package.render()
    model = files["model.py"]
    assert "self.wg = nn.Linear(args.dim, args.n_heads * args.head_dim, bias=False)" in model
    assert (
        "self.wo(out.transpose(1, 2).reshape(batch, seq, -1) * torch.sigmoid(self.wg(x)))" in model
    )
    assert "gate_bias" not in model
    adapter = files["state_dict_adapter.py"]
    row = '"model.layers.{}.self_attn.gate_proj.weight": "layers.{}.attention.wg.weight"'
    assert row in adapter
    assert "wg.bias" not in adapter


def test_an_upcast_gate_takes_its_sigmoid_in_fp32_and_casts_the_product_back():
    """Inkling-2 gates with `(out.float() * sigmoid(gate.float())).to(dtype)`: in bf16 a
    gate computed in bf16 differs from it."""
    package = _reference()
    AddOutputGate().apply(package, projection="gate_proj", fp32=True)
    model = package.render()["model.py"]
    out = "out.transpose(1, 2).reshape(batch, seq, -1)"
    assert f"self.wo(({out} * torch.sigmoid(self.wg(x).float())).to(x.dtype))" in model
    plain = _reference()
    AddOutputGate().apply(plain, projection="gate_proj")
    assert ".float()" not in plain.render()["model.py"].split("self.wo(", 1)[1].split("\n")[0]
    with pytest.raises(EditError, match="fp32 sigmoid gate per head"):
        AddOutputGate().apply(_reference(), projection="g", per_head=True, fp32=True)


def test_renamed_projection_and_head_bias_are_mapped_by_their_names():
    package = _reference("qwen3")
    AddOutputGate().apply(package, projection="g", head_bias="g_bias")
    files = package.render()
    model = files["model.py"]
    assert "self.gate_bias = nn.Parameter(torch.zeros(args.n_heads))" in model
    assert "self.gate_bias[:, None]" in model
    assert "init_parameters" not in model  # the source zeroes nothing: the table's default
    adapter = files["state_dict_adapter.py"]
    assert '"model.layers.{}.self_attn.g.weight": "layers.{}.attention.wg.weight"' in adapter
    assert '"model.layers.{}.self_attn.g_bias": "layers.{}.attention.gate_bias"' in adapter


def test_gate_under_mla_is_as_wide_as_the_value_heads():
    package = _reference("deepseek_v3")
    AddOutputGate().apply(package, projection="g_proj")
    model = package.render()["model.py"]
    assert "self.wg = nn.Linear(args.dim, args.n_heads * self.v_head_dim, bias=False)" in model


def test_per_head_gate_under_mla_splits_the_output_by_the_value_head():
    package = _reference("deepseek_v3")
    before = package.render()["model.py"]
    assert "self.wg" not in before
    AddOutputGate().apply(package, projection="g_proj", per_head=True)
    model = package.render()["model.py"]
    assert "self.wg = nn.Linear(args.dim, args.n_heads, bias=False)" in model
    assert (
        "self.wo((out.transpose(1, 2).reshape(batch, seq, -1).unflatten(-1, (-1, self.v_head_dim))"
        " * torch.sigmoid(self.wg(x)).unsqueeze(-1)).flatten(-2))"
    ) in model
    biased = _reference("deepseek_v3")
    AddOutputGate().apply(biased, projection="g", head_bias="g_bias")
    model = biased.render()["model.py"]
    assert "self.wg(x).unflatten(-1, (-1, self.v_head_dim)) + self.gate_bias[:, None]" in model


def test_a_head_size_no_attribute_holds_is_refused():
    AddOutputGate().apply(_without_head_dim(), projection="gate_proj")  # per feature: no split
    with pytest.raises(EditError, match="one head's size"):
        AddOutputGate().apply(_without_head_dim(), projection="gate_proj", per_head=True)


def _without_head_dim():
    package = _reference("llama")
    source = package.module("model.py").code.replace("        self.head_dim = args.head_dim\n", "")
    package.files["model.py"] = libcst.parse_module(source)
    return package


def _bias_switch(field: str, biased: str) -> Switch:
    return Switch(
        field,
        "bool",
        (SwitchValue("True", "truthy", selects=f"bias on {biased}"), SwitchValue("False", "falsy")),
    )


@pytest.mark.parametrize(
    ("switches", "bias", "expected"),
    [
        ((_bias_switch("attention_bias", "q_proj, gate_proj"),), False, "args.attention_bias"),
        ((_bias_switch("attention_bias", "q_proj, o_proj"),), False, "False"),
        ((), True, "True"),
    ],
)
def test_gate_bias_follows_the_switch_that_biases_it(switches, bias, expected):
    package = _reference("qwen3")
    features = SimpleNamespace(switches=switches, source=SimpleNamespace(modeling=""))
    AddOutputGate().apply(package, features, projection="gate_proj", bias=bias)
    files = package.render()
    assert f"args.dim, args.n_heads * args.head_dim, bias={expected})" in files["model.py"]
    row = '"model.layers.{}.self_attn.gate_proj.bias": "layers.{}.attention.wg.bias"'
    assert (row in files["state_dict_adapter.py"]) is (expected != "False")


def test_gate_bias_starts_at_zero_where_hf_zeroes_it(tmp_path):
    source = tmp_path / "modeling_x.py"
    source.write_text("def _init_weights(self, module):\n    init.zeros_(module.g_bias)\n")
    features = SimpleNamespace(switches=(), source=SimpleNamespace(modeling=str(source)))
    package = _reference()
    AddOutputGate().apply(package, features, projection="g", head_bias="g_bias")
    assert "nn.init.zeros_(self.gate_bias)" in package.render()["model.py"]


def _ours(tmp_path, reference, steps, model_type, config):
    models = tmp_path / "models"
    scaffold_into(models, reference, "gated", [model_type], steps)
    spec = load_spec("gated", models)
    module = sys.modules[spec.model.__module__]
    sizes = {
        "dim": config.hidden_size,
        "n_heads": config.num_attention_heads,
        "n_kv_heads": getattr(config, "num_key_value_heads", config.num_attention_heads),
        "head_dim": config.head_dim,
        "n_layers": 1,
    }
    # a package of a multi-head target has no n_kv_heads (`drop_kv_heads`)
    fields = {field.name for field in dataclasses.fields(spec.args)}
    args = spec.args(**{key: value for key, value in sizes.items() if key in fields})
    return module.Attention(args).eval()


def _identity_rope(seq, head_dim):
    return torch.ones(2, seq, head_dim), torch.zeros(2, seq, head_dim)


def test_generated_attention_matches_hf_hrm_text(tmp_path):
    from transformers.models.hrm_text.modeling_hrm_text import HrmTextAttention

    from codegen.verify.tiny_config import tiny_config

    config = tiny_config("hrm_text", attention_bias=False)
    config._attn_implementation = "eager"
    torch.manual_seed(0)
    hf = HrmTextAttention(config, layer_idx=0).eval()
    step = Step("add_output_gate", {"projection": "gate_proj"})
    ours = _ours(tmp_path, "llama", [step], "hrm_text", config)
    names = {"wq": "q_proj", "wk": "k_proj", "wv": "v_proj", "wo": "o_proj", "wg": "gate_proj"}
    ours.load_state_dict(
        {f"{house}.weight": getattr(hf, name).weight for house, name in names.items()}, strict=True
    )
    seq = 7
    x = torch.randn(2, seq, config.hidden_size)
    causal = torch.full((seq, seq), float("-inf")).triu(1)[None, None]
    rope = _identity_rope(seq, config.head_dim)
    with torch.no_grad():
        expected, _ = hf(x, rope, causal)
        got = ours(x, rope)
        ours.wg.weight.zero_()  # sigmoid(0) = 1/2 everywhere: the gate no longer selects
        flat = ours(x, rope)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)
    assert not torch.allclose(flat, expected, atol=1e-4)


def test_generated_attention_matches_hf_beam_with_head_bias(tmp_path):
    from transformers.models.beam.modeling_beam import BeamAttention

    from codegen.verify.tiny_config import tiny_config

    config = tiny_config("beam", attention_bias=False)
    config._attn_implementation = "eager"
    torch.manual_seed(0)
    hf = BeamAttention(config, layer_idx=config.layer_types.index("full_attention")).eval()
    torch.nn.init.normal_(hf.gate_bias)
    step = Step("add_output_gate", {"projection": "gate_proj", "head_bias": "gate_bias"})
    ours = _ours(tmp_path, "qwen3", [step], "beam", config)
    names = {"wq": "q_proj", "wk": "k_proj", "wv": "v_proj", "wo": "o_proj", "wg": "gate_proj"}
    state = {f"{house}.weight": getattr(hf, name).weight for house, name in names.items()}
    state |= {"q_norm.weight": hf.q_norm.weight, "k_norm.weight": hf.k_norm.weight}
    ours.load_state_dict({**state, "gate_bias": hf.gate_bias}, strict=True)
    seq = 7
    x = torch.randn(2, seq, config.hidden_size)
    causal = torch.full((seq, seq), float("-inf")).triu(1)[None, None]
    rope = _identity_rope(seq, config.head_dim)
    with torch.no_grad():
        expected, _ = hf(x, rope, causal)
        got = ours(x, rope, None)
        without_bias = ours.gate_bias.zero_() is not None and ours(x, rope, None)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)
    assert not torch.allclose(without_bias, expected, atol=1e-4)  # the bias is load-bearing


def _gated_package(tmp_path, step: Step):
    from codegen.scaffold.build import build_package

    files = build_package("qwen3", "gated", ["qwen3"], [step])
    (tmp_path / "gated").mkdir()
    (tmp_path / "__init__.py").write_text('MODEL_SPECS = {"gated": "gated.spec:SPEC"}\n')
    for file, text in files.items():
        (tmp_path / "gated" / file).write_text(text)
    return load_spec("gated", tmp_path), files["parallelize.py"]


def test_gate_and_head_bias_are_split_with_the_heads_on_tp2(tmp_path):
    """The shard rows of rules/sharding.py: wg column-wise, gate_bias per head; seeded
    defect: the bias left whole on every rank no longer fits the rank's heads."""
    from codegen.verify.cases import base_config
    from codegen.verify.parallel import plan_module, verify_parallel

    step = Step("add_output_gate", {"projection": "gate_proj", "head_bias": "gate_bias"})
    spec, plan = _gated_package(tmp_path, step)
    assert '"layers.*.attention.wg": "colwise"' in plan
    assert '"layers.*.attention.gate_bias": "head_param"' in plan
    config = base_config("qwen3")[0]
    result = verify_parallel(spec, config, "tp=2")
    assert result.passed, result.line()
    whole = {**plan_module(spec).PLAN, "layers.*.attention.gate_bias": "replicate"}
    assert not verify_parallel(spec, config, "tp=2", plan=whole).passed


def test_softplus_gate_per_head_matches_hf_laguna(tmp_path):
    """laguna: one gate per head from `g_proj` (num_heads outputs), softplus in fp32,
    broadcast over each head's features."""
    from transformers.models.laguna.modeling_laguna import LagunaAttention

    from codegen.verify.tiny_config import tiny_config

    config = tiny_config("laguna")
    config._attn_implementation = "eager"
    torch.manual_seed(0)
    hf = LagunaAttention(config, 0, config.num_attention_heads).eval()
    step = Step("add_output_gate", {"projection": "g_proj", "fn": "softplus", "per_head": True})
    ours = _ours(tmp_path, "qwen3", [step], "laguna", config)
    assert ours.wg.out_features == config.num_attention_heads
    names = {"wq": "q_proj", "wk": "k_proj", "wv": "v_proj", "wo": "o_proj", "wg": "g_proj"}
    state = {f"{house}.weight": getattr(hf, name).weight for house, name in names.items()}
    state |= {"q_norm.weight": hf.q_norm.weight, "k_norm.weight": hf.k_norm.weight}
    ours.load_state_dict(state, strict=True)
    seq = 7
    x = torch.randn(2, seq, config.hidden_size)
    causal = torch.full((seq, seq), float("-inf")).triu(1)[None, None]
    rope = _identity_rope(seq, config.head_dim)
    with torch.no_grad():
        expected, _ = hf(x, rope, causal)
        got = ours(x, rope, None)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)
    with pytest.raises(EditError):  # a per-head gate with a per-head bias: no edit for it
        AddOutputGate().apply(_reference("qwen3"), projection="g", head_bias="b", per_head=True)
