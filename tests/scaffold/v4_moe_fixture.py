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


def clamped_folder(
    dest: Path,
    name: str = NAME,
    config_values: dict | None = None,
    base: str = "deepseek_v3",
    plain_shared: bool = False,
) -> Path:
    """The renamed copy of `base` (deepseek_v3, or qwen2_moe: its shared expert beside a
    dense MLP of the same class, gated) with DeepSeek-V4's clamped MLP and experts.
    `plain_shared` (qwen2_moe): the shared expert a class of its own, an unclamped SwiGLU."""
    folder = remote_folder(base, dest, name=name, config_values=LIMIT | (config_values or {}))
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
    if plain_shared:
        camel = name.capitalize()
        built = f"self.shared_expert = {camel}MLP("
        text = _replace(text, built, f"self.shared_expert = {camel}SharedMLP(")
        own = PLAIN_SHARED.replace(CAMEL, camel)
        text = _replace(text, f"class {camel}MLP(", own + f"class {camel}MLP(")
    path.write_text(text)
    config = json.loads((folder / "config.json").read_text())
    assert config["swiglu_limit"] == LIMIT["swiglu_limit"]
    return folder


PLAIN_SHARED = f"""class {CAMEL}SharedMLP(nn.Module):
    def __init__(self, config, intermediate_size):
        super().__init__()
        self.gate_proj = nn.Linear(config.hidden_size, intermediate_size, bias=False)
        self.up_proj = nn.Linear(config.hidden_size, intermediate_size, bias=False)
        self.down_proj = nn.Linear(intermediate_size, config.hidden_size, bias=False)
        self.act_fn = ACT2FN[config.hidden_act]

    def forward(self, x):
        return self.down_proj(self.act_fn(self.gate_proj(x)) * self.up_proj(x))


"""


def routed_folder(dest: Path, name: str = "larchwood", config_values: dict | None = None) -> Path:
    """`clamped_folder` whose MoE routes with DeepSeek-V4's top-k router (sqrtsoftplus)."""
    folder = clamped_folder(dest, name, SCORING | (config_values or {}))
    (path,) = folder.glob("modeling_*.py")
    camel = name.capitalize()
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


HASHED = "larchfield"


def hashed_folder(dest: Path, name: str = HASHED, fp32_scores: bool = False) -> Path:
    """`routed_folder` whose MoE layers typed "hash_moe" by `config.mlp_layer_types` route
    with DeepSeek-V4's hash router (its class, copied: the experts `tid2eid[input_ids]`, a
    table of vocab_size x top_k expert ids, weighted by their renormalised, scaled scores),
    the token ids handed from the model through the decoder layer to the MoE as DeepSeek-V4
    does. The config's default types the first two MoE layers hash_moe, the rest moe; the
    table of each layer starts as a trained one would be: distinct experts per token, drawn
    anew for every layer (verify's checkpoint keeps it: it fills only a table holding one
    value, `codegen/verify/index_tables.py`).
    `fp32_scores`: both routers take their activation of the bf16 logits upcast
    (`score_fn(logits.float())`), their scores and weights in fp32."""
    folder = routed_folder(dest, name)
    camel = name.capitalize()
    (path,) = folder.glob("modeling_*.py")
    text = path.read_text()
    router = _v4_text(_v4_class("DeepseekV4HashRouter")).replace("DeepseekV4", camel)
    weight = "        self.weight = nn.Parameter(torch.empty(self.num_experts, self.hidden_dim))\n"
    router = _replace(
        router,
        weight,
        weight + "        nn.init.normal_(self.weight, std=config.initializer_range)\n",
    )
    table = "torch.zeros(config.vocab_size, self.top_k, dtype=torch.long), persistent=True)\n"
    router = _replace(
        router,
        table,
        table + "        with torch.no_grad():\n"
        "            picks = torch.rand(config.vocab_size, self.num_experts).argsort(dim=-1)\n"
        "            self.tid2eid.copy_(picks[:, : self.top_k])\n",
    )
    text = _replace(text, f"class {camel}TopkRouter(", router + f"\n\nclass {camel}TopkRouter(")
    # the MoE block: DeepSeek-V4's choice of router by the layer's type, and its call
    text = _replace(
        text,
        f"    def __init__(self, config: {camel}Config):\n        super().__init__()\n"
        "        self.config = config\n",
        f"    def __init__(self, config: {camel}Config, layer_idx: int):\n"
        "        super().__init__()\n        self.config = config\n"
        '        self.is_hash = config.mlp_layer_types[layer_idx] == "hash_moe"\n',
    )
    text = _replace(
        text,
        f"self.gate = {camel}TopKRouter(config)",
        f"self.gate = {camel}HashRouter(config) if self.is_hash else {camel}TopKRouter(config)",
    )
    text = _replace(
        text,
        "    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:\n"
        "        residuals = hidden_states\n",
        "    def forward(self, hidden_states: torch.Tensor, input_ids: torch.Tensor | None = None)"
        " -> torch.Tensor:\n        residuals = hidden_states\n",
    )
    text = _replace(
        text,
        "        _, topk_weights, topk_indices = self.gate(hidden_states)\n",
        "        if self.is_hash:\n"
        "            _, topk_weights, topk_indices = self.gate(hidden_states, input_ids)\n"
        "        else:\n"
        "            _, topk_weights, topk_indices = self.gate(hidden_states)\n",
    )
    # the decoder layer hands the token ids to its MoE; the model to its layers
    text = _replace(
        text, f"self.mlp = {camel}MoE(config)", f"self.mlp = {camel}MoE(config, layer_idx)"
    )
    text = _replace(
        text,
        "        position_embeddings: tuple[torch.Tensor, torch.Tensor] | None = None,\n"
        "        **kwargs: Unpack[TransformersKwargs],\n    ) -> torch.Tensor:\n",
        "        position_embeddings: tuple[torch.Tensor, torch.Tensor] | None = None,\n"
        "        input_ids: torch.Tensor | None = None,\n"
        "        **kwargs: Unpack[TransformersKwargs],\n    ) -> torch.Tensor:\n",
    )
    text = _replace(
        text,
        "        hidden_states = self.mlp(hidden_states)\n",
        f"        if isinstance(self.mlp, {camel}MoE):\n"
        "            hidden_states = self.mlp(hidden_states, input_ids=input_ids)\n"
        "        else:\n"
        "            hidden_states = self.mlp(hidden_states)\n",
    )
    text = _replace(
        text,
        "                position_embeddings=position_embeddings,\n"
        "                attention_mask=causal_mask,\n",
        "                position_embeddings=position_embeddings,\n"
        "                input_ids=input_ids,\n"
        "                attention_mask=causal_mask,\n",
    )
    if fp32_scores:
        scored = "        scores = self.score_fn(logits)\n"
        assert text.count(scored) == 2  # the top-k router's and the hash router's
        text = text.replace(scored, "        scores = self.score_fn(logits.float())\n")
    path.write_text(text)
    (config,) = folder.glob("configuration_*.py")
    text = config.read_text()
    text = _replace(
        text,
        "    num_mtp_layers: int = 1\n",
        "    num_mtp_layers: int = 1\n    mlp_layer_types: list[str] | None = None\n",
    )
    text = _replace(
        text,
        "        self.head_dim = self.qk_rope_head_dim\n",
        "        self.head_dim = self.qk_rope_head_dim\n"
        "        n, n_hash = self.num_hidden_layers, self.first_k_dense_replace + 2\n"
        "        if self.mlp_layer_types is None:\n"
        '            hashed, rest = ["hash_moe"] * min(n, n_hash), ["moe"] * max(0, n - n_hash)\n'
        "            self.mlp_layer_types = hashed + rest\n"
        "        self.mlp_layer_types = list(self.mlp_layer_types[:n])\n",
    )
    doc = "    rope_interleave (`bool`, *optional*, defaults to `True`):\n"
    text = _replace(
        text,
        doc,
        "    mlp_layer_types (`list[str]`, *optional*):\n"
        '        Per layer, `"hash_moe"` (experts looked up by token id) or `"moe"`.\n' + doc,
    )
    config.write_text(text)
    return folder
