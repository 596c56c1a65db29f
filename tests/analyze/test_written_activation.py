"""An activation written out as a function of the analysed file is named by what it
computes, never by an op inside it: `x * torch.sigmoid(x)` is silu (not sigmoid), the erf and
tanh forms of GELU are gelu and gelu_new, `x * sigmoid(1.702 * x)` is quick_gelu and
`relu(x) ** 2` relu2, whether the MLP calls the function directly (a gated MLP, llama's shape)
or picks it from a model-local table by a config field (an ungated one, gpt2's shape). A
written-out function computing none of them (`x * torch.tanh(x)`) is named unsupported."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from analyze_helpers import rename_model

from codegen.analyze.analysis import analyze

FORMS = {
    "silu": "return x * torch.sigmoid(x)",
    "gelu": "return 0.5 * x * (1.0 + torch.erf(x / math.sqrt(2.0)))",
    "gelu_new": (
        "return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi)"
        " * (x + 0.044715 * torch.pow(x, 3.0))))"
    ),
    "quick_gelu": "return x * torch.sigmoid(1.702 * x)",
    "relu2": "return torch.relu(x) ** 2",
}
SWISH_SQUARED = "return torch.square(x * x.sigmoid()) / (x * torch.sigmoid(x))"  # still silu


def _own_activation(body: str) -> str:
    return f"import math\n\n\ndef own_act(x):\n    {body}\n\n\n"


def _llama_calling(tmp_path, body: str) -> Path:
    """A renamed llama whose MLP calls a function of its own file on the gate."""
    copy, _ = rename_model("llama", "zorblax", str(tmp_path))
    modeling = Path(copy)
    text = modeling.read_text()
    text = text.replace("self.act_fn(self.gate_proj(x))", "own_act(self.gate_proj(x))")
    first_class = re.search(r"(?m)^(@|class )", text).start()
    modeling.write_text(text[:first_class] + _own_activation(body) + text[first_class:])
    return modeling


def _gpt2_picking(tmp_path, body: str) -> Path:
    """A renamed gpt2 whose MLP picks a function of its own file from a local table by the
    config field activation_function (gelu_new in the default config)."""
    copy, _ = rename_model("gpt2", "zorblax", str(tmp_path))
    modeling = Path(copy)
    text = modeling.read_text()
    text = text.replace(
        "ACT2FN[config.activation_function]", "OWN_ACTS[config.activation_function]"
    )
    first_class = re.search(r"(?m)^(@|class )", text).start()
    table = _own_activation(body) + 'OWN_ACTS = {"gelu_new": own_act}\n\n\n'
    modeling.write_text(text[:first_class] + table + text[first_class:])
    return modeling


@pytest.mark.parametrize("name", sorted(FORMS))
def test_a_written_out_activation_the_mlp_calls_is_named_by_what_it_computes(tmp_path, name):
    features = analyze(str(_llama_calling(tmp_path, FORMS[name])))
    assert features.ffn.activation == name
    assert not [u for u in features.unsupported if u.feature == "ffn.activation"]


def test_a_rewritten_swish_is_still_silu(tmp_path):
    assert analyze(str(_llama_calling(tmp_path, SWISH_SQUARED))).ffn.activation == "silu"


def test_a_swish_the_mlp_calls_makes_a_swiglu(tmp_path):
    features = analyze(str(_llama_calling(tmp_path, FORMS["silu"])))
    assert (features.ffn.kind, features.ffn.activation) == ("swiglu", "silu")


@pytest.mark.parametrize("name", ["silu", "gelu", "gelu_new"])
def test_a_written_out_activation_picked_from_a_local_table(tmp_path, name):
    modeling = _gpt2_picking(tmp_path, FORMS[name])
    features = analyze(str(modeling))
    assert features.ffn.activation == name
    assert features.ffn.activation_field == "activation_function"


@pytest.mark.parametrize("shape", [_llama_calling, _gpt2_picking])
def test_an_unknown_written_out_activation_is_named_unsupported(tmp_path, shape):
    modeling = shape(tmp_path, "return x * torch.tanh(x)")
    features = analyze(str(modeling))
    found = [u for u in features.unsupported if u.feature == "ffn.activation"]
    assert found, features.unsupported
    assert found[0].evidence.startswith(f"{modeling.name}:"), found[0].evidence
    assert features.ffn.activation not in ("tanh", "sigmoid", "silu")


def _own_module(body: str) -> str:
    return (
        "import math\n\n\nclass OwnAct(nn.Module):\n"
        f"    def forward(self, x):\n        {body}\n\n\n"
    )


def _llama_holding(tmp_path, body: str) -> Path:
    """A renamed llama whose MLP holds an activation module of its own file
    (`self.act_fn = OwnAct()`) and calls it on the gate."""
    copy, _ = rename_model("llama", "zorblax", str(tmp_path))
    modeling = Path(copy)
    text = modeling.read_text()
    text = text.replace("self.act_fn = ACT2FN[config.hidden_act]", "self.act_fn = OwnAct()")
    first_class = re.search(r"(?m)^(@|class )", text).start()
    modeling.write_text(text[:first_class] + _own_module(body) + text[first_class:])
    return modeling


def _gpt2_picking_module(tmp_path, body: str, entry: str = "OwnAct()") -> Path:
    """A renamed gpt2 whose MLP picks an activation module of its own file from a local
    table by activation_function: an instance, or the class (`OWN_ACTS[...]()`)."""
    copy, _ = rename_model("gpt2", "zorblax", str(tmp_path))
    modeling = Path(copy)
    text = modeling.read_text()
    call = "()" if entry == "OwnAct" else ""
    text = text.replace(
        "ACT2FN[config.activation_function]", f"OWN_ACTS[config.activation_function]{call}"
    )
    first_class = re.search(r"(?m)^(@|class )", text).start()
    table = _own_module(body) + f'OWN_ACTS = {{"gelu_new": {entry}}}\n\n\n'
    modeling.write_text(text[:first_class] + table + text[first_class:])
    return modeling


@pytest.mark.parametrize("name", sorted(FORMS))
def test_an_activation_module_of_the_file_is_named_by_what_it_computes(tmp_path, name):
    """`self.act_fn = OwnAct()`, its forward elementwise on one tensor: named like a
    written-out function (a swish module is silu, not the sigmoid inside it)."""
    features = analyze(str(_llama_holding(tmp_path, FORMS[name])))
    assert features.ffn.activation == name
    assert not [u for u in features.unsupported if u.feature.startswith("ffn.")]


@pytest.mark.parametrize("entry", ["OwnAct()", "OwnAct"])
@pytest.mark.parametrize("name", ["silu", "quick_gelu"])
def test_an_activation_module_picked_from_a_local_table(tmp_path, name, entry):
    features = analyze(str(_gpt2_picking_module(tmp_path, FORMS[name], entry)))
    assert features.ffn.activation == name
    assert features.ffn.activation_field == "activation_function"


@pytest.mark.parametrize("shape", [_llama_holding, _gpt2_picking_module])
def test_an_unknown_activation_module_is_named_unsupported(tmp_path, shape):
    features = analyze(str(shape(tmp_path, "return x * torch.tanh(x)")))
    assert [u for u in features.unsupported if u.feature == "ffn.activation"]
    assert features.ffn.activation not in ("tanh", "sigmoid", "silu")


@pytest.mark.parametrize(
    ("shape", "kind"), [(_llama_calling, "geglu"), (_gpt2_picking, "gelu_mlp")]
)
def test_a_written_out_quick_gelu_makes_a_gelu_kind(tmp_path, shape, kind):
    """quick_gelu, x * sigmoid(1.702 x), is a GELU variant: geglu gated, gelu_mlp ungated
    (a kind a rule realises, not `other`)."""
    features = analyze(str(shape(tmp_path, FORMS["quick_gelu"])))
    assert (features.ffn.kind, features.ffn.activation) == (kind, "quick_gelu")


TWO_TENSORS = {
    "function": (
        "def own_glu(x, gate):\n    return x * gate * torch.sigmoid(gate)\n\n\n",
        "own_glu",
    ),
    "module": (
        "class OwnGlu(nn.Module):\n    def forward(self, x, gate):\n"
        "        return x * gate * torch.sigmoid(gate)\n\n\n",
        "OwnGlu",
    ),
}


@pytest.mark.parametrize("form", sorted(TWO_TENSORS))
def test_a_gated_activation_written_on_two_tensors_is_refused_by_name(tmp_path, form):
    """`own_glu(up, gate)` computing the gated product itself: refused in one line naming
    the function (or module class) and where it is defined, cited where the MLP calls it."""
    code, name = TWO_TENSORS[form]
    copy, _ = rename_model("llama", "zorblax", str(tmp_path))
    modeling = Path(copy)
    text = modeling.read_text()
    gated = "self.act_fn(self.gate_proj(x)) * self.up_proj(x)"
    if form == "function":
        text = text.replace(gated, "own_glu(self.up_proj(x), self.gate_proj(x))")
    else:
        text = text.replace("self.act_fn = ACT2FN[config.hidden_act]", "self.act_fn = OwnGlu()")
        text = text.replace(gated, "self.act_fn(self.up_proj(x), self.gate_proj(x))")
    first_class = re.search(r"(?m)^(@|class )", text).start()
    text = text[:first_class] + code + text[first_class:]
    modeling.write_text(text)
    defined = text[: text.index(code)].count("\n") + 1
    features = analyze(str(modeling))
    found = [u for u in features.unsupported if u.feature == "ffn.activation"]
    assert found, features.unsupported
    assert found[0].detail.startswith(f"{name} ({modeling.name}:{defined}) takes several")
    assert "\n" not in found[0].detail
    assert found[0].evidence.startswith(f"{modeling.name}:")
