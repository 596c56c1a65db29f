"""Product-key experts in place of the MLP where a bool config switch says so (Doge's CDMoE)."""

from __future__ import annotations

import json

import libcst as cst
import libcst.matchers as m

from codegen.transforms import _attention_edits as edits
from codegen.transforms import _moe_edits
from codegen.transforms._ffn_edits import self_assignment
from codegen.transforms._rope_edits import add_args_field
from codegen.transforms.base import Transform
from codegen.transforms.edits import (
    EditDict,
    EditError,
    ReplaceStatements,
    add_import,
    assigns,
    code_of,
    findall,
    run,
)

EXPERTS = '''
class ProductKeyExperts(nn.Module):
    """A SwiGLU shared expert plus product-key experts, each one row of `down_embed` and
    one of `up_embed`. The router scores two halves of `n_keys` keys; the top `n_keys` of
    each half pair up (score sum, expert x * n_keys + y) and a token's top `top_k` pairs
    are its experts: silu(down row . x) times the pair's softmax weight, times the up row,
    summed over the experts and added to the shared expert's output."""

    def __init__(self, args: ModelArgs):
        super().__init__()
        self.n_keys = isqrt(args.{experts})  # keys per half: floor(sqrt(experts))
        self.top_k = args.{top_k}{renormalise_field}
        self.w1 = nn.Linear(args.dim, args.hidden_dim, bias={bias})
        self.w2 = nn.Linear(args.hidden_dim, args.dim, bias={bias})
        self.w3 = nn.Linear(args.dim, args.hidden_dim, bias={bias})
        self.router = nn.Linear(args.dim, 2 * self.n_keys, bias=False)
        self.down_embed = nn.Embedding(args.{experts}, args.dim)
        self.up_embed = nn.Embedding(args.{experts}, args.dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, seq, dim = x.shape
        tokens = batch * seq
        # as HF: the (tokens, 2 * n_keys) logits viewed as (2, tokens, n_keys), so a row's
        # two halves come from the flat logits in order, not from one token each
        logits = self.router(x).view(2, tokens, -1)
        (scores_x, scores_y), (keys_x, keys_y) = logits.topk(self.n_keys, dim=-1)
        scores = (scores_x.unsqueeze(-1) + scores_y.unsqueeze(-2)).flatten(-2)
        experts = (keys_x.unsqueeze(-1) * self.n_keys + keys_y.unsqueeze(-2)).flatten(-2)
        scores, best = scores.topk(self.top_k, dim=-1)
        experts = experts.gather(-1, best)
        weights = F.softmax(scores, dim=-1){renormalise}
        inner = torch.matmul(self.down_embed(experts), x.view(tokens, dim, 1)).view(tokens, -1)
        inner = F.silu(inner) * weights
        routed = torch.matmul(inner.view(tokens, 1, -1), self.up_embed(experts))
        return self.w2(F.silu(self.w1(x)) * self.w3(x)) + routed.view(batch, seq, dim)
'''

RENORMALISE = """
        if self.{field}:  # as HF: the softmax weights divided by their sum once more
            weights = weights / weights.sum(dim=-1, keepdim=True)"""
RENORMALISE_FIELD = "\n        self.{field} = args.{field}"

CHOICE = "self.feed_forward = (\n    ProductKeyExperts(args) if args.{field} else {dense}\n)"


class ProductKeyExpertsSwitch(Transform):
    """Where the config's bool switch (`keys["field"]`) is on, each block's feed-forward is
    `ProductKeyExperts`: the SwiGLU (the shared expert, under the dense MLP's checkpoint
    names) plus experts that are rows of two embedding tables, chosen per token by a
    product-key router, exactly in HF's order of operations (its view of the router logits
    included); the shared expert's biases are the MLP's (its setting or config switch).
    `keys` is the analysis's `ffn.product_keys`: the switch, the expert count and
    top-k config fields (ModelArgs fields of the same names), the flag renormalising the
    top-k weights (None: none) and the HF attribute names the adapter maps."""

    name = "product_key_experts"

    def apply(self, package, features=None, *, keys: dict | None = None) -> None:
        needed = {"field", "router", "down", "up", "w1", "w3", "w2", "experts", "top_k"}
        if not isinstance(keys, dict) or not needed <= set(keys):
            raise EditError("product_key_experts: the analysed switch, fields and names")
        add_args_field(
            package,
            keys["field"],
            "bool = False  # product-key experts in place of the MLP",
            f"hf_config.{keys['field']}",
        )
        add_args_field(
            package,
            keys["experts"],
            "int = 16  # product-key experts",
            f"hf_config.{keys['experts']}",
        )
        add_args_field(
            package,
            keys["top_k"],
            "int = 2  # product-key experts per token",
            f"hf_config.{keys['top_k']}",
        )
        renormalise = keys.get("renormalise")
        if renormalise:
            add_args_field(
                package,
                renormalise,
                "bool = False  # the experts' top-k weights divided by their sum",
                f"hf_config.{renormalise}",
            )
        dense = self_assignment(package, "model.py", "TransformerBlock", "__init__", "feed_forward")
        if dense is None:
            raise EditError("TransformerBlock.__init__ builds no self.feed_forward")
        _moe_edits.insert_after_class(
            package,
            "model.py",
            "FeedForward",
            EXPERTS.format(
                bias=_dense_bias(package, dense),
                experts=keys["experts"],
                top_k=keys["top_k"],
                renormalise=RENORMALISE.format(field=renormalise) if renormalise else "",
                renormalise_field=RENORMALISE_FIELD.format(field=renormalise)
                if renormalise
                else "",
            ),
        )
        add_import(package, "model.py", "math", "isqrt")
        run(
            package,
            "model.py",
            ReplaceStatements(
                "TransformerBlock",
                "__init__",
                assigns("self.feed_forward"),
                CHOICE.format(field=keys["field"], dense=code_of(dense)),
            ),
        )
        prefix = _mlp_prefix(package, keys)
        edits.insert_rows_after(
            package,
            "layers.{}.feed_forward.w2.weight",
            [
                (f"{prefix}.{keys['router']}.weight", "layers.{}.feed_forward.router.weight"),
                (f"{prefix}.{keys['down']}.weight", "layers.{}.feed_forward.down_embed.weight"),
                (f"{prefix}.{keys['up']}.weight", "layers.{}.feed_forward.up_embed.weight"),
            ],
        )


def _dense_bias(package, dense: cst.Call) -> str:
    """The dense MLP's bias setting, which the shared expert (under the same checkpoint
    names) shares: FeedForward's literal, else the `bias=` its call passes (a config
    switch, `args.mlp_bias`), else its parameter's default."""
    built = self_assignment(package, "model.py", "FeedForward", "__init__", "w1")
    bias = _keyword(built, "bias") if isinstance(built, cst.Call) else None
    if bias is None:
        raise EditError("FeedForward.__init__ builds no self.w1 with a bias= setting")
    if not m.matches(bias, m.Name("bias")):
        return code_of(bias)
    passed = _keyword(dense, "bias") if isinstance(dense, cst.Call) else None
    if passed is not None:
        return code_of(passed)
    feed_forward = m.ClassDef(name=m.Name("FeedForward"))
    for found in findall(package.module("model.py"), feed_forward):
        for param in findall(found, m.Param(name=m.Name("bias"))):
            if param.default is not None:
                return code_of(param.default)
    raise EditError("FeedForward's bias parameter has no default and no argument")


def _keyword(call: cst.Call, name: str) -> cst.BaseExpression | None:
    return next((a.value for a in call.args if a.keyword and a.keyword.value == name), None)


def _mlp_prefix(package, keys: dict) -> str:
    """The HF prefix of the dense MLP's keys (`model.layers.{}.mlp`); the shared expert's
    projections must be stored under the same names, since they share its rows."""
    rows = {}

    def look(key, value):
        try:
            rows[json.loads(value)] = json.loads(key)
        except ValueError:  # a dropped key (None) or a stacked row: not a projection's
            pass
        return [(key, value)]

    run(package, "state_dict_adapter.py", EditDict("from_hf_map", look))
    prefixes = set()
    for house in ("w1", "w3", "w2"):
        hf = rows.get(f"layers.{{}}.feed_forward.{house}.weight")
        if hf is None or not hf.endswith(f".{keys[house]}.weight"):
            raise EditError(f"the shared expert's {keys[house]} is not the MLP's {house} row")
        prefixes.add(hf.rsplit(".", 2)[0])
    if len(prefixes) != 1:
        raise EditError("the MLP's projections under different prefixes")
    return prefixes.pop()
