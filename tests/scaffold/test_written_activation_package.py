"""A remote-code copy of llama whose MLP calls a swish written out in its own file
(`x * torch.sigmoid(x)`) scaffolds a SwiGLU package that verifies against that code, and so
does a copy of gpt2 whose MLP picks that swish from a table of its own by
`config.activation_function`: the activation is read from what the function computes, not
from the sigmoid inside it (the gpt2 copy's package would otherwise run sigmoid)."""

from __future__ import annotations

import re
from pathlib import Path

SWISH = "def own_swish(x):\n    return x * torch.sigmoid(x)\n\n\n"


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
