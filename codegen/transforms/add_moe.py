"""Turn a dense package's feed-forward into a routed mixture of SwiGLU experts."""

from __future__ import annotations

import re
from pathlib import Path

from codegen.analyze.reference import moe_layer_rule
from codegen.transforms import _moe_edits as moe_edits
from codegen.transforms._attention_edits import ensure_layer_id
from codegen.transforms._ffn_edits import self_assignment
from codegen.transforms.base import Transform
from codegen.transforms.edits import (
    EditError,
    InsertStatements,
    add_import,
    assigns,
    calls,
    code_of,
    is_statement,
    run,
)
from codegen.transforms.moe_layers import install_condition

# Which layers get the MoE block (HF's decoder-layer condition); "auto": from Features.
# `condition`: any other condition, evaluated by ModelArgs.is_moe_layer (see moe_layers).
DENSE_RULES = ("all", "sparse_step", "first_k", "condition")
# How the k softmax weights are renormalised: a config switch, always (mixtral), never, or
# by a softmax over the k selected logits (`selected`, cohere2_moe: HF's own order of
# operations, so bf16 weights round as HF's do).
NORM_TOPK = ("config", "always", "never", "selected")

MOE = '''
class MoE(nn.Module):
    """Routed feed-forward: the router `gate` scores every expert, each token runs its top_k."""

    def __init__(self, args: ModelArgs):
        super().__init__()
        self.top_k = args.top_k
        self.gate = nn.Linear(args.dim, args.num_experts, bias=False)
        self.experts = Experts(args.num_experts, args.dim, args.moe_hidden_dim)

    def route(self, logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Router logits -> (weights, expert indices), each (tokens, top_k)."""
        probs = F.softmax(logits, dim=-1, dtype=torch.float32)
        weights, indices = probs.topk(self.top_k, dim=-1)
        weights = weights / weights.sum(dim=-1, keepdim=True)
        return weights.to(logits.dtype), indices

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, seq, dim = x.shape
        x = x.view(-1, dim)
        weights, indices = self.route(self.gate(x))
        out = self.experts(x, indices, weights)
        return out.view(batch, seq, dim)
'''

RENORMALISE = "weights = weights / weights.sum(dim=-1, keepdim=True)"
SCORE_ALL = "probs = F.softmax(logits, dim=-1, dtype=torch.float32)"
PICK = "weights, indices = probs.topk(self.top_k, dim=-1)"
PICK_LOGITS = "weights, indices = logits.topk(self.top_k, dim=-1)"
SCORE_PICKED = "weights = F.softmax(weights, dim=-1, dtype=torch.float32)"
RENORMALISE_IF = f"if self.norm_topk_prob:\n    {RENORMALISE}"

FIELDS = """
# mixture of experts
num_experts: int = 8  # routed experts per MoE layer
top_k: int = 2  # experts each token is sent to
moe_hidden_dim: int = 1408  # SwiGLU inner size of one expert
"""
NORM_TOPK_FIELD = "norm_topk_prob: bool = True  # renormalise the k routing weights to sum to 1"
SPARSE_STEP_FIELDS = """
decoder_sparse_step: int = 1  # layer i is MoE when (i + 1) % decoder_sparse_step == 0 ...
mlp_only_layers: tuple[int, ...] = ()  # ... and i is not listed here
"""
FIRST_K_FIELD = "n_dense_layers: int = 1  # the first n layers keep the dense feed-forward"

IS_MOE_LAYER = '''
def is_moe_layer(self, layer_id: int) -> bool:
    """HF's rule: layers listed in mlp_only_layers stay dense, the others follow the step."""
    return (
        layer_id not in self.mlp_only_layers
        and self.num_experts > 0
        and (layer_id + 1) % self.decoder_sparse_step == 0
    )
'''

IS_MOE = {
    "sparse_step": "args.is_moe_layer({layer_id})",
    "condition": "args.is_moe_layer({layer_id})",
    "first_k": "{layer_id} >= args.n_dense_layers",
}

# HF per-expert projection -> house stacked weight
EXPERT_KEYS = (("gate_proj", "w1"), ("up_proj", "w3"), ("down_proj", "w2"))
# the dense build statement, matched by its start (a reference may pass more, e.g. a bias)
DENSE_BUILD = assigns("self.feed_forward", calling="FeedForward")
DENSE_DOWN_ROW = "layers.{}.feed_forward.w2.weight"


class AddMoe(Transform):
    """Feed-forward layers become a routed MoE: a linear router `gate` with softmax top-k
    and stacked SwiGLU `experts` run with grouped GEMMs, on the layers `dense_rule` picks.

    Parameters: `dense_rule` (`all` layers, qwen-style `sparse_step` =
    decoder_sparse_step + mlp_only_layers, deepseek-style `first_k` =
    first_k_dense_replace, or `condition`: HF's own condition `condition` over `config` and
    `layer_idx`, evaluated by ModelArgs.is_moe_layer), `norm_topk_prob` (`config` switch,
    `always` as mixtral, `never`);
    `auto` reads either from the target's Features (`moe.layer_condition`, the condition;
    `moe.norm_topk_prob`, a config switch when the config class has the field).
    ModelArgs reads the Qwen-MoE config names (num_experts, num_experts_per_tok,
    moe_intermediate_size, ...); `map_config_fields` points them elsewhere. The adapter maps
    the per-expert checkpoint keys `mlp.experts.{}.gate_proj/up_proj/down_proj.weight` (and
    `mlp.gate.weight`), stacked in expert order; `rename_hf_keys` renames them.
    """

    name = "add_moe"

    def apply(
        self,
        package,
        features=None,
        *,
        dense_rule: str = "all",
        norm_topk_prob: str = "config",
        condition: str | None = None,
    ) -> None:
        if dense_rule == "auto":
            dense_rule = dense_rule_of(features)
            condition = features.get("moe.layer_condition")
        if norm_topk_prob == "auto":
            norm_topk_prob = norm_topk_of(features)
        if dense_rule not in DENSE_RULES:
            raise ValueError(f"dense_rule {dense_rule!r}: one of {DENSE_RULES}")
        if norm_topk_prob not in NORM_TOPK:
            raise ValueError(f"norm_topk_prob {norm_topk_prob!r}: one of {NORM_TOPK}")
        if moe_edits.has_class(package, "model.py", "MoE"):
            raise EditError("model.py already has a MoE class")
        _add_args(package, dense_rule, norm_topk_prob)
        if dense_rule == "condition":
            install_condition(package, condition)
        _add_classes(package, norm_topk_prob)
        _wire_block(package, dense_rule)
        _add_rows(package, dense_rule)
        moe_edits.rows_on_disk(package, features)


def dense_rule_of(features) -> str:
    """The `dense_rule` HF's decoder-layer condition (`Features.moe.layer_condition`, the
    condition restated as "layer_idx is MoE") spells: a named rule when it is exactly that
    rule's condition, else `condition`."""
    if features is None:
        raise ValueError("dense_rule='auto' needs the target's Features")
    rule = moe_layer_rule(features.get("moe.layer_condition"))
    return "condition" if rule == "unknown" else rule


def norm_topk_of(features) -> str:
    """`config` when the target's config class has a norm_topk_prob switch, else the
    constant behaviour its code has (`Features.moe.norm_topk_prob`). A softmax over the k
    selected logits (`Features.moe.norm_topk_by`) renormalises whatever a declared flag
    says, so the flag is no switch there: `selected`."""
    if features is None:
        raise ValueError("norm_topk_prob='auto' needs the target's Features")
    if features.get("moe.norm_topk_by") == "softmax":
        return "selected"
    if _config_declares(features, "norm_topk_prob"):
        return "config"
    value = features.get("moe.norm_topk_prob")
    if value is True:
        return "always"
    if value is False:
        return "never"
    raise ValueError(f"moe.norm_topk_prob is {value!r}")


def _config_declares(features, field: str) -> bool:
    """Whether the target's configuration source declares `field` (read as text: scaffold
    stays static, and a config class names its fields literally)."""
    path = features.source.configuration
    if not path:
        return False
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError:
        return False
    return re.search(rf"\b{re.escape(field)}\b", text) is not None


def _add_args(package, dense_rule: str, norm_topk_prob: str) -> None:
    fields = FIELDS.strip()
    kwargs = {
        "num_experts": "hf_config.num_experts",
        "top_k": "hf_config.num_experts_per_tok",
        "moe_hidden_dim": "hf_config.moe_intermediate_size",
    }
    if norm_topk_prob == "config":
        fields += "\n" + NORM_TOPK_FIELD
        kwargs["norm_topk_prob"] = "hf_config.norm_topk_prob"
    if dense_rule == "sparse_step":
        fields += "\n" + SPARSE_STEP_FIELDS.strip()
        kwargs["decoder_sparse_step"] = "hf_config.decoder_sparse_step"
        kwargs["mlp_only_layers"] = "tuple(hf_config.mlp_only_layers or ())"
    elif dense_rule == "first_k":
        fields += "\n" + FIRST_K_FIELD
        kwargs["n_dense_layers"] = "hf_config.first_k_dense_replace"
    moe_edits.add_args_fields(package, fields)
    moe_edits.add_config_kwargs(package, kwargs)
    if dense_rule == "sparse_step":
        moe_edits.add_method(package, "args.py", "ModelArgs", IS_MOE_LAYER)


def _add_classes(package, norm_topk_prob: str) -> None:
    moe_edits.insert_after_class(package, "model.py", "FeedForward", MOE)
    add_import(package, "model.py", moe_edits.SHARED_EXPERTS_MODULE, "Experts")
    if norm_topk_prob == "config":
        moe_edits.replace_statement(
            package, "model.py", "MoE", "route", is_statement(RENORMALISE), RENORMALISE_IF
        )
        run(
            package,
            "model.py",
            InsertStatements(
                "MoE",
                "__init__",
                assigns("self.top_k"),
                "self.norm_topk_prob = args.norm_topk_prob",
            ),
        )
    elif norm_topk_prob == "never":
        moe_edits.replace_statement(
            package, "model.py", "MoE", "route", is_statement(RENORMALISE), ""
        )
    elif norm_topk_prob == "selected":
        for anchor, code in ((SCORE_ALL, PICK_LOGITS), (PICK, SCORE_PICKED), (RENORMALISE, "")):
            moe_edits.replace_statement(
                package, "model.py", "MoE", "route", is_statement(anchor), code
            )


def _dense_build(package) -> str:
    """The block's `self.feed_forward = FeedForward(...)` statement as the reference has it."""
    value = self_assignment(package, "model.py", "TransformerBlock", "__init__", "feed_forward")
    if value is None:
        raise EditError("TransformerBlock.__init__ builds no self.feed_forward")
    return f"self.feed_forward = {code_of(value)}"


def _wire_block(package, dense_rule: str) -> None:
    if dense_rule == "all":
        moe_edits.replace_statement(
            package, "model.py", "TransformerBlock", "__init__", DENSE_BUILD, "self.moe = MoE(args)"
        )
        moe_edits.replace_self_attribute(
            package, "TransformerBlock", "forward", "feed_forward", "self.moe"
        )
        moe_edits.remove_class(package, "model.py", "FeedForward")
        return
    dense = _dense_build(package)
    layer_id = ensure_layer_id(package)
    build = (
        f"self.is_moe = {IS_MOE[dense_rule].format(layer_id=layer_id)}\n"
        "if self.is_moe:\n"
        "    self.moe = MoE(args)\n"
        "else:\n"
        f"    {dense}"
    )
    moe_edits.replace_statement(
        package, "model.py", "TransformerBlock", "__init__", DENSE_BUILD, build
    )
    moe_edits.replace_self_attribute(package, "TransformerBlock", "forward", "feed_forward", "ffn")
    run(
        package,
        "model.py",
        InsertStatements(
            "TransformerBlock",
            "forward",
            calls("ffn"),
            "ffn = self.moe if self.is_moe else self.feed_forward",
            before=True,
        ),
    )


def _add_rows(package, dense_rule: str) -> None:
    rows = [
        moe_edits.row("model.layers.{}.mlp.gate.weight", "layers.{}.moe.gate.weight"),
        moe_edits.row(
            "model.layers.{}.mlp.experts.{}.gate_proj.weight", "layers.{}.moe.experts.w1"
        ),
        moe_edits.row("model.layers.{}.mlp.experts.{}.up_proj.weight", "layers.{}.moe.experts.w3"),
        moe_edits.row(
            "model.layers.{}.mlp.experts.{}.down_proj.weight", "layers.{}.moe.experts.w2"
        ),
    ]
    moe_edits.insert_rows_after(package, DENSE_DOWN_ROW, rows)
    if dense_rule == "all":
        moe_edits.drop_rows(package, ".feed_forward.")
