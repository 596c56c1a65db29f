import libcst.matchers as m
import pytest

from codegen.models import references_dir
from codegen.scaffold.source import SourcePackage
from codegen.transforms.edits import EditError, findall
from codegen.transforms.router_mlp import RouterMlp

ZAYA = {
    "router": "gate",
    "down": "down_proj",
    "down_bias": True,
    "width": "router_hidden_size",
    "mlp": "router_mlp",
    "norm": "norm",
    "linears": ("fc1", "fc2", "out_proj"),
    "biases": (True, True, False),
    "activation": "gelu",
    "state_scale": "router_states_scale",
    "carried_from": 1,
    "skip_bias_init": -1.0,
    "skip_bias_on_load": -1.0,
}


def _package(reference: str = "qwen3_moe") -> SourcePackage:
    return SourcePackage.from_directory(references_dir() / reference)


def test_the_router_is_an_mlp_whose_state_goes_through_the_layers():
    package = _package()
    RouterMlp().apply(package, found=ZAYA)
    files = package.render()
    model = files["model.py"]
    (router,) = findall(package.module("model.py"), m.ClassDef(name=m.Name("Router")))
    assert findall(router, m.FunctionDef(name=m.Name("init_parameters")))
    assert "self.out = nn.Linear(args.router_dim, args.num_experts + 1, bias=False)" in model
    assert "return self.out(F.gelu(self.fc2(F.gelu(self.fc1(self.norm(h)))))), h" in model
    assert "h = h + state * self.state_scale" in model
    assert "self.moe = MoE(args, carried=layer_id >= 1)" in model
    assert "out, state = self.moe(self.ffn_norm(h), state)" in model
    assert "out = self.feed_forward(self.ffn_norm(h))" in model  # dense layers pass it on
    assert "return h + out, state" in model
    assert "state = None  # the router state each layer hands to the next" in model
    assert "h, state = layer(h, rope, mask, state)" in model
    assert "skip = indices == self.num_experts" in model
    assert "self.gate" not in model
    adapter = files["state_dict_adapter.py"]
    assert '"model.layers.{}.mlp.gate.weight"' not in adapter
    for hf, house in (
        ("down_proj.bias", "down.bias"),
        ("router_states_scale", "state_scale"),
        ("router_mlp.norm.weight", "norm.weight"),
        ("router_mlp.fc2.bias", "fc2.bias"),
        ("router_mlp.out_proj.weight", "out.weight"),
    ):
        assert f'"model.layers.{{}}.mlp.gate.{hf}": "layers.{{}}.moe.router.{house}"' in adapter
    assert "router_dim=hf_config.router_hidden_size" in files["args.py"]


def test_a_correction_bias_gets_the_skip_class_row_and_its_start():
    from codegen.transforms.moe_router import SetMoeRouter

    package = _package()
    SetMoeRouter().apply(
        package, router="softmax_topk", score_func="softmax", correction_bias=True, bias_on="scores"
    )
    RouterMlp().apply(package, found=ZAYA)
    model = package.render()["model.py"]
    assert 'register_buffer("e_score_correction_bias", torch.zeros(args.num_experts + 1))' in model
    assert "self.e_score_correction_bias[-1] = -1.0" in model
    # set again after every load, as HF's loading does
    assert (
        "        super()._load_from_state_dict(state_dict, prefix, *args)\n"
        "        self.e_score_correction_bias[-1] = -1.0\n"
    ) in model


def test_a_checkpoints_skip_bias_is_kept_where_hf_keeps_it():
    from codegen.transforms.moe_router import SetMoeRouter

    package = _package()
    SetMoeRouter().apply(
        package, router="softmax_topk", score_func="softmax", correction_bias=True, bias_on="scores"
    )
    RouterMlp().apply(package, found=ZAYA | {"skip_bias_on_load": None})
    assert "_load_from_state_dict" not in package.render()["model.py"]


def test_without_an_moe_it_refuses():
    with pytest.raises(EditError, match="no MoE class"):
        RouterMlp().apply(_package("llama"), found=ZAYA)
