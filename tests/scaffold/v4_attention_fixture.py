"""A remote-code folder with DeepSeek-V4's attention parts on a plain decoder, built at test
time: the renamed llama copy (`codegen.verify.remote_fixture`) whose attention does what
DeepSeek-V4's does in its place:

* `rotation`: the output rotated by the query's rotary factors turned back (`-sin`) at the
  query's position before the output projection (transposed to the layout the rotary
  helper expects and back);
* `kv_same`: no value projection; the rotated keys are handed to the attention as the
  values too;
* `grouped_output`: the output projected twice: each group of heads by a block of its own
  (DeepSeek-V4's grouped linear, its class copied from the installed source), then mixed
  to the hidden size (`o_groups` groups of `o_lora_rank`);
* `low_rank_q` (not in `PARTS`: ask for it): the query up-projected from a normed latent
  (q_a_proj -> q_a_norm -> q_b_proj of `q_lora_rank` features) and normed per head by a
  norm that learns no scale (DeepSeek-V4's unweighted RMS norm, copied from the installed
  source), the keys and values not latent.
* `kv_norm` (not in `PARTS`: ask for it): the keys normed over each head after their
  projection, before the rotation (`kv_norm`, an RMS norm over head_dim with the config's
  rms_norm_eps), the queries not: DeepSeek-V4's norm of its one key/value head (with
  `kv_same` the values are those normed keys). `kv_eps` names the config field of its
  epsilon (another than the block norms' rms_norm_eps: `kv_eps_value` is its value).

DeepSeek-V4 itself needs rules this one does not (compressors, hash routing, its latent
query and grouped output projection), so this is the target that isolates these parts."""

from __future__ import annotations

import ast
from pathlib import Path

from codegen.verify.remote_fixture import remote_folder

NAME = "quillfern"
CAMEL = "Quillfern"
PARTS = ("rotation", "kv_same", "grouped_output")
Q_RANK = {"q_lora_rank": 24}
GROUPS = {"o_groups": 2, "o_lora_rank": 24}  # 4 heads of 40 in 2 groups of 80 -> 2 x 24

ROTATED = (
    "        attn_output, _ = apply_rotary_pos_emb(\n"
    "            attn_output.transpose(1, 2), attn_output.transpose(1, 2), cos, -sin\n"
    "        )\n"
    "        attn_output = attn_output.transpose(1, 2)\n"
)
RESHAPE = "        attn_output = attn_output.reshape(*input_shape, -1).contiguous()\n"
V_PROJ = (
    "        self.v_proj = nn.Linear(\n"
    "            config.hidden_size, config.num_key_value_heads * self.head_dim,"
    " bias=config.attention_bias\n"
    "        )\n"
)
VALUES = "        value_states = self.v_proj(hidden_states).view(hidden_shape).transpose(1, 2)\n"
O_PROJ = (
    "        self.o_proj = nn.Linear(\n"
    "            config.num_attention_heads * self.head_dim, config.hidden_size,"
    " bias=config.attention_bias\n"
    "        )\n"
)
GROUPED_PROJ = (
    f"        self.o_a_proj = {CAMEL}GroupedLinear(\n"
    "            config.num_attention_heads * self.head_dim // config.o_groups,\n"
    "            config.o_groups * config.o_lora_rank,\n"
    "            config.o_groups,\n"
    "        )\n"
    "        self.o_b_proj = nn.Linear(config.o_groups * config.o_lora_rank, config.hidden_size,"
    " bias=False)\n"
)
OUTPUT = "        attn_output = self.o_proj(attn_output)\n"
GROUPED_OUTPUT = (
    "        grouped = attn_output.reshape(*input_shape, self.config.o_groups, -1)\n"
    "        grouped = self.o_a_proj(grouped).flatten(2)\n"
    "        attn_output = self.o_b_proj(grouped)\n"
)
Q_PROJ = (
    "        self.q_proj = nn.Linear(\n"
    "            config.hidden_size, config.num_attention_heads * self.head_dim,"
    " bias=config.attention_bias\n"
    "        )\n"
)
LOW_RANK_PROJ = (
    "        self.q_a_proj = nn.Linear(config.hidden_size, config.q_lora_rank, bias=False)\n"
    f"        self.q_a_norm = {CAMEL}RMSNorm(config.q_lora_rank, eps=config.rms_norm_eps)\n"
    "        self.q_b_proj = nn.Linear(\n"
    "            config.q_lora_rank, config.num_attention_heads * self.head_dim, bias=False\n"
    "        )\n"
    f"        self.q_b_norm = {CAMEL}UnweightedRMSNorm(eps=config.rms_norm_eps)\n"
)
QUERIES = "        query_states = self.q_proj(hidden_states).view(hidden_shape).transpose(1, 2)\n"
LOW_RANK_QUERIES = (
    "        q_residual = self.q_a_norm(self.q_a_proj(hidden_states))\n"
    "        query_states = self.q_b_proj(q_residual).view(hidden_shape).transpose(1, 2)\n"
    "        query_states = self.q_b_norm(query_states)\n"
)
K_PROJ = V_PROJ.replace("v_proj", "k_proj")
KV_NORM = f"        self.kv_norm = {CAMEL}RMSNorm(self.head_dim, eps=config.rms_norm_eps)\n"
KEYS = VALUES.replace("value_states", "key_states").replace("v_proj", "k_proj")
NORMED_KEYS = (
    "        key_states = self.kv_norm(self.k_proj(hidden_states).view(hidden_shape))"
    ".transpose(1, 2)\n"
)
ROTATE = (
    "        query_states, key_states = apply_rotary_pos_emb(query_states, key_states, cos, sin)\n"
)


def _v4_class(name: str) -> str:
    import transformers.models.deepseek_v4.modeling_deepseek_v4 as dsv4

    source = Path(dsv4.__file__).read_text()
    (node,) = [n for n in ast.parse(source).body if isinstance(n, ast.ClassDef) and n.name == name]
    text = "\n".join(source.splitlines()[node.lineno - 1 : node.end_lineno])
    return text.replace("DeepseekV4", CAMEL) + "\n\n\n"


def v4_attention_folder(
    dest: Path,
    name: str = NAME,
    parts=PARTS,
    groups=GROUPS,
    kv_eps: str = "rms_norm_eps",
    kv_eps_value: float | None = None,
) -> Path:
    values = {**(groups if "grouped_output" in parts else {})}
    values |= Q_RANK if "low_rank_q" in parts else {}
    values |= {kv_eps: kv_eps_value} if kv_eps_value is not None else {}
    folder = remote_folder("llama", dest, name=name, config_values=values)
    (path,) = folder.glob("modeling_*.py")
    text = path.read_text()
    edits = []
    if "rotation" in parts:
        edits.append((RESHAPE, ROTATED + RESHAPE))
    if "kv_same" in parts:
        edits += [
            (V_PROJ, ""),
            (VALUES, ""),
            (ROTATE, ROTATE + "        value_states = key_states\n"),
        ]
    if "grouped_output" in parts:
        edits += [
            (O_PROJ, GROUPED_PROJ),
            (RESHAPE, ""),
            (OUTPUT, GROUPED_OUTPUT),
            (
                "@use_kernelized_func(",
                _v4_class("DeepseekV4GroupedLinear") + "@use_kernelized_func(",
            ),
        ]
    if "low_rank_q" in parts:
        edits += [
            (Q_PROJ, LOW_RANK_PROJ),
            (QUERIES, LOW_RANK_QUERIES),
            (
                "@use_kernelized_func(",
                _v4_class("DeepseekV4UnweightedRMSNorm") + "@use_kernelized_func(",
            ),
        ]
    if "kv_norm" in parts:
        kv_norm = KV_NORM.replace("config.rms_norm_eps", f"config.{kv_eps}")
        edits += [(K_PROJ, K_PROJ + kv_norm), (KEYS, NORMED_KEYS)]
    camel = name.capitalize()  # the classes this file defines are named after the folder
    for old, new in edits:
        assert text.count(old) == 1, old
        text = text.replace(old, new.replace(CAMEL, camel))
    path.write_text(text)
    return folder
