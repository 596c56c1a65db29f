"""A remote-code folder with DeepSeek-V4's clamped SwiGLU on a verified MoE, built at test
time: the renamed deepseek_v3 copy (`codegen.verify.remote_fixture`) whose MLP (dense layers
and shared expert) computes DeepSeek-V4's MLP forward (gate clamped from above, up within
[-limit, limit], before the product) and whose routed experts apply DeepSeek-V4's
`_apply_gate` to their fused gate/up product; both methods are copied from the installed
DeepSeek-V4 source. `routed_folder` also routes with DeepSeek-V4's top-k router (its class,
copied: scores sqrt(softplus(logits)), a selection-only correction bias, the picked scores
renormalised and scaled). DeepSeek-V4 itself needs attention rules this one does not, so
this is the target that isolates its feed-forward and router."""

from __future__ import annotations

import ast
import json
import textwrap
from pathlib import Path

from codegen.verify.remote_fixture import remote_folder

NAME = "larchmont"
CAMEL = "Larchmont"
LIMIT = {"swiglu_limit": 1.0}  # the toy's bound: its gate and up reach ~2
SCORING = {"scoring_func": "sqrtsoftplus"}


def _v4_source() -> tuple[ast.Module, list[str]]:
    import transformers.models.deepseek_v4.modeling_deepseek_v4 as dsv4

    source = Path(dsv4.__file__).read_text()
    return ast.parse(source), source.splitlines()


def _v4_class(cls: str) -> ast.ClassDef:
    tree, _ = _v4_source()
    (node,) = [n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == cls]
    return node


def _v4_text(node: ast.AST) -> str:
    _, lines = _v4_source()
    return "\n".join(lines[node.lineno - 1 : node.end_lineno]) + "\n"


def _v4_method(cls: str, method: str) -> str:
    node = _v4_class(cls)
    (fn,) = [f for f in node.body if isinstance(f, ast.FunctionDef) and f.name == method]
    return _v4_text(fn)


def _replace(text: str, old: str, new: str) -> str:
    assert text.count(old) == 1, old
    return text.replace(old, new)


def clamped_folder(dest: Path, name: str = NAME, config_values: dict | None = None) -> Path:
    folder = remote_folder(
        "deepseek_v3", dest, name=name, config_values=LIMIT | (config_values or {})
    )
    (path,) = folder.glob("modeling_*.py")
    text = path.read_text()
    act = "        self.act_fn = ACT2FN[config.hidden_act]\n"
    limit = act + "        self.limit = config.swiglu_limit\n"
    # the MLP: DeepSeek-V4's forward in place of the plain SwiGLU
    mlp_forward = (
        "    def forward(self, x):\n"
        "        down_proj = self.down_proj(self.act_fn(self.gate_proj(x)) * self.up_proj(x))\n"
        "        return down_proj\n"
    )
    text = _replace(text, mlp_forward, _v4_method("DeepseekV4MLP", "forward"))
    # the routed experts: DeepSeek-V4's _apply_gate on the fused product
    split = (
        "            gate, up = nn.functional.linear(current_state, "
        "self.gate_up_proj[expert_idx]).chunk(2, dim=-1)\n"
        "            current_hidden_states = self.act_fn(gate) * up\n"
    )
    text = _replace(
        text,
        split,
        "            current_hidden_states = self._apply_gate(\n"
        "                nn.functional.linear(current_state, self.gate_up_proj[expert_idx])\n"
        "            )\n",
    )
    done = "        return final_hidden_states\n"
    apply_gate = textwrap.dedent(_v4_method("DeepseekV4Experts", "_apply_gate"))
    text = _replace(text, done, done + "\n" + textwrap.indent(apply_gate, "    "))
    assert text.count(act) == 2  # the MLP's and the experts'
    text = text.replace(act, limit)
    path.write_text(text)
    config = json.loads((folder / "config.json").read_text())
    assert config["swiglu_limit"] == LIMIT["swiglu_limit"]
    return folder


def routed_folder(dest: Path) -> Path:
    """`clamped_folder` whose MoE routes with DeepSeek-V4's top-k router (sqrtsoftplus)."""
    folder = clamped_folder(dest, "larchwood", SCORING)
    (path,) = folder.glob("modeling_*.py")
    camel = "Larchwood"
    text = path.read_text()
    router = _v4_text(_v4_class("DeepseekV4TopKRouter")).replace("DeepseekV4", camel)
    # deepseek_v3's init knows no such class: its weight starts as DeepSeek-V4's init sets it
    weight = "        self.weight = nn.Parameter(torch.empty(self.num_experts, self.hidden_dim))\n"
    router = _replace(
        router,
        weight,
        weight + "        nn.init.normal_(self.weight, std=config.initializer_range)\n",
    )
    text = _replace(text, f"class {camel}TopkRouter(", router + f"\n\nclass {camel}TopkRouter(")
    text = _replace(
        text, f"self.gate = {camel}TopkRouter(config)", f"self.gate = {camel}TopKRouter(config)"
    )
    path.write_text(text)
    return folder
