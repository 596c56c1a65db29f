"""A remote-code copy of llama whose MLP calls a swish written out in its own file
(`x * torch.sigmoid(x)`) scaffolds a SwiGLU package that verifies against that code: the
activation is read from what the function computes, not from the sigmoid inside it."""

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
