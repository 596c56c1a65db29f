"""A remote-code copy of llama whose MLP calls a swish written out in its own file
(`x * torch.sigmoid(x)`) scaffolds a SwiGLU package that verifies against that code, and so
does a copy of gpt2 whose MLP picks that swish from a table of its own by
`config.activation_function`: the activation is read from what the function computes, not
from the sigmoid inside it (the gpt2 copy's package would otherwise run sigmoid). A
written-out quick_gelu (x * sigmoid(1.702 x)) makes a GeGLU package (llama, which reads no
config field for it: hidden_act="silu" is not pinned) and a GELU MLP (gpt2, an activation
module of its own picked from its table) that verify too."""

from __future__ import annotations

import re
from pathlib import Path

SWISH = "def own_swish(x):\n    return x * torch.sigmoid(x)\n\n\n"
QUICK_GELU = "def own_quick(x):\n    return x * torch.sigmoid(1.702 * x)\n\n\n"
QUICK_GELU_MODULE = (
    "class OwnQuick(nn.Module):\n    def forward(self, x):\n"
    "        return x * torch.sigmoid(1.702 * x)\n\n\n"
)


def _edited(folder: Path, old: str, new: str, defined: str) -> Path:
    """`folder`'s modeling file with `old` replaced by `new` and `defined` put before its
    first class."""
    modeling = next(folder.glob("modeling_*.py"))
    text = modeling.read_text()
    assert text.count(old) == 1, old
    text = text.replace(old, new)
    first = re.search(r"(?m)^(@|class )", text).start()
    modeling.write_text(text[:first] + defined + text[first:])
    return folder


def written_swish_folder(dest: Path) -> Path:
    """The renamed remote-code llama folder, its MLP's activation the written-out swish."""
    from codegen.verify.remote_fixture import remote_folder

    folder = remote_folder("llama", dest, "quokkel")
    modeling = next(folder.glob("modeling_*.py"))
    text = modeling.read_text()
    assert "self.act_fn(self.gate_proj(x))" in text
    text = text.replace("self.act_fn(self.gate_proj(x))", "own_swish(self.gate_proj(x))")
    first = re.search(r"(?m)^(@|class )", text).start()
    modeling.write_text(text[:first] + SWISH + text[first:])
    return folder


def picked_swish_folder(dest: Path) -> Path:
    """The renamed remote-code gpt2 folder, its MLP's activation the written-out swish its
    own table holds under the configured name (gelu_new)."""
    from codegen.verify.remote_fixture import remote_folder

    folder = remote_folder("gpt2", dest, "wombix")
    modeling = next(folder.glob("modeling_*.py"))
    text = modeling.read_text()
    lookup = "ACT2FN[config.activation_function]"
    assert lookup in text
    text = text.replace(lookup, "OWN_ACTS[config.activation_function]")
    first = re.search(r"(?m)^(@|class )", text).start()
    table = SWISH.replace("own_swish", "own_act") + 'OWN_ACTS = {"gelu_new": own_act}\n\n\n'
    modeling.write_text(text[:first] + table + text[first:])
    return folder


def _verified(folder: Path, tmp_path: Path, name: str):
    from codegen.scaffold.testing import plan_folder, verify_toy, write_planned
    from codegen.verify.remote import load_remote, remote_toy_config
    from codegen.verify.run import Case

    target, plan = plan_folder(folder)
    models, package = write_planned(tmp_path / "models", (target, plan))
    remote = load_remote(folder, True)
    case = Case(name, remote_toy_config(remote))
    return target, verify_toy(models, package, case=case, gradients=False)[0]


def test_a_swish_picked_from_a_local_table_scaffolds_and_verifies(tmp_path):
    target, result = _verified(picked_swish_folder(tmp_path / "hub"), tmp_path, "wombix")
    assert (target.features.ffn.kind, target.features.ffn.activation) == ("mlp", "silu")
    assert result.status == "pass", result.to_json()


def test_a_written_out_swish_scaffolds_and_verifies(tmp_path):
    from codegen.scaffold.testing import plan_folder, verify_toy, write_planned
    from codegen.verify.remote import load_remote, remote_toy_config
    from codegen.verify.run import Case

    folder = written_swish_folder(tmp_path / "hub")
    target, plan = plan_folder(folder)
    assert (target.features.ffn.kind, target.features.ffn.activation) == ("swiglu", "silu")
    models, name = write_planned(tmp_path / "models", (target, plan))
    remote = load_remote(folder, True)
    result = verify_toy(
        models, name, case=Case("quokkel", remote_toy_config(remote)), gradients=False
    )[0]
    assert result.status == "pass", result.to_json()


def test_a_written_out_quick_gelu_called_by_a_gated_mlp_scaffolds_and_verifies(tmp_path):
    from codegen.verify.remote_fixture import remote_folder

    folder = _edited(
        remote_folder("llama", tmp_path / "hub", "quokkel"),
        "self.act_fn(self.gate_proj(x))",
        "own_quick(self.gate_proj(x))",
        QUICK_GELU,
    )
    target, result = _verified(folder, tmp_path, "quokkel")
    assert (target.features.ffn.kind, target.features.ffn.activation) == ("geglu", "quick_gelu")
    assert result.status == "pass", result.to_json()
    args = (tmp_path / "models" / "quokkel" / "args.py").read_text()
    assert "hidden_act" not in args  # the copy reads no field for its activation


def test_a_quick_gelu_module_picked_from_a_local_table_scaffolds_and_verifies(tmp_path):
    from codegen.verify.remote_fixture import remote_folder

    folder = _edited(
        remote_folder("gpt2", tmp_path / "hub", "wombix"),
        "ACT2FN[config.activation_function]",
        "OWN_ACTS[config.activation_function]",
        QUICK_GELU_MODULE + 'OWN_ACTS = {"gelu_new": OwnQuick()}\n\n\n',
    )
    target, result = _verified(folder, tmp_path, "wombix")
    features = target.features.ffn
    assert (features.kind, features.activation) == ("gelu_mlp", "quick_gelu")
    assert features.activation_field == "activation_function"
    assert result.status == "pass", result.to_json()
