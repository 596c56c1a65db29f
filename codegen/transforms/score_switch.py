"""Score the router's experts by the activation a config field names (`scoring_func`).

HF's router looks its score function up by name (`ACT2FN[config.scoring_func]`), so the
field is a switch no `if` shows: each value computes another model. The package reads it:
every router score site (`scores = <logits>.sigmoid()` or `F.softplus(<logits>).sqrt()`, as
the router rules wrote them, in the Gate, the MoE's `route` or the table-routed gate)
becomes `router_scores(<logits>, self.scoring_func)`, which looks the activation up in a
table of the ones the package's tables write (`SCORES`: the feed-forward's activations and
sqrt(softplus)); `from_hf_config` refuses any other value in one line. Activations exactly
zero over a range of logits (relu, relu2, relu6: `ZERO_SCORES`) join the table where HF adds
a constant to the sum the picked scores are divided by (the analysed `moe.norm_topk_eps`,
`weights / (weights.sum(...) + 1e-20)`): the package's renormalisation adds the same one, so
a token whose k picks all score zero gets zero weights in both, not 0 / 0 in the package.
"""

from __future__ import annotations

import libcst as cst
import libcst.matchers as m

from codegen.transforms import _moe_edits as moe_edits
from codegen.transforms._ffn_edits import ACTIVATIONS, SetClassDocstring
from codegen.transforms.base import Transform
from codegen.transforms.edits import (
    EditError,
    InsertStatements,
    ScopedTransformer,
    calls,
    calls_super_init,
    code_of,
    expression,
    run,
)
from codegen.transforms.score_activation import ACTIVATIONS as SCORE_ACTIVATIONS
from codegen.transforms.score_activation import _Reword

# activations exactly zero over a range of logits: a token whose k picks all score zero is
# renormalised 0 / 0 unless a constant is added to the sum, so the table holds these only
# where HF's renormalisation adds one (and the package's then adds it too)
ZERO_ON_A_RANGE = frozenset({"relu", "relu2", "relu6"})
# the score of one logit `x` each value of the switch names, HF's ACT2FN key -> its code: the
# activations the package's tables write (the feed-forward's, the router's sqrt(softplus))
SCORES = {
    **{name: code.format("x") for name, code in ACTIVATIONS.items() if name not in ZERO_ON_A_RANGE},
    **{name: code.format(x="x") for name, code in SCORE_ACTIVATIONS.items()},
}
ZERO_SCORES = {name: ACTIVATIONS[name].format("x") for name in sorted(ZERO_ON_A_RANGE)}
# where the router rules write the scores: (class, method)
SITES = moe_edits.ROUTER_SITES

FUNCTION = """
# the router's score of one logit by the activation's name in HF (scoring_func)
ROUTER_SCORES = {{
{table}
}}


def router_scores(logits: torch.Tensor, scoring_func: str) -> torch.Tensor:
    \"\"\"Each expert's score from its own logit, by the activation `scoring_func` names.\"\"\"
    return ROUTER_SCORES[scoring_func](logits)
"""
FIELD = """
# the router's score of a logit, HF's scoring_func: an activation model.ROUTER_SCORES
# names (sigmoid, sqrtsoftplus: sqrt(softplus(logit)), ...)
scoring_func: str = "{default}"
"""
REFUSE = """
score_functions = {keys}  # the activations model.ROUTER_SCORES holds
if hf_config.{field} not in score_functions:
    raise NotImplementedError(
        f"{{type(hf_config).__name__}}.{field}={{hf_config.{field}!r}}"
        f" is not supported (expected one of {{score_functions}})"
    )
"""
DOC = "scores by the activation scoring_func names"


class ScoreSwitch(Transform):
    """The router scores by `args.scoring_func`, which `from_hf_config` reads from the
    config's `field` (the analysed `moe.score_field`): any key of `SCORES`, any other value
    refused in one line. The default is the activation the router computed before
    (the configured one, as the router rules wrote it); the correction bias, the pick and
    the scaling stay as they were. `eps` is the analysed `moe.norm_topk_eps`, the constant
    HF adds to the sum the picked scores are divided by: where it is given, each
    renormalisation at the score sites (`weights / weights.sum(...)`) adds it, and the
    table also holds ZERO_SCORES (zero over a range of logits; safe once the sum cannot
    be zero), the table-routed gate's included: its picks come from a table and may score
    zero or next to it, where HF and the package compute the same weights, and the
    gradient of weights a token's picks share (one expert picked k times: its weights
    are 1/k whatever it scores, the gate's gradient exactly zero) is fp32 rounding on
    both sides, grown by 1 / (sum of scores)."""

    name = "score_switch"

    def apply(self, package, features=None, *, field: str, eps: float | None = None) -> None:
        if not field.isidentifier():
            raise EditError(f"score_switch: {field!r} is not a config field")
        found: set[str] = set()
        divisions = 0
        for cls, method in SITES:
            if not moe_edits.has_class(package, "model.py", cls):
                continue
            scores = _Scores(cls, method)
            if not run(package, "model.py", scores, required=False):
                continue
            found |= scores.activations
            if eps is not None:
                renormalise = moe_edits.Renormalise(cls, method, eps)
                run(package, "model.py", renormalise, required=False)
                divisions += renormalise.hits
            init = InsertStatements(
                cls, "__init__", calls_super_init, "self.scoring_func = args.scoring_func"
            )
            run(package, "model.py", init)
            if cls == "Gate":
                run(package, "model.py", SetClassDocstring("Gate", _docstring))
        if len(found) != 1:
            raise EditError(f"score_switch: the router scores by {sorted(found) or 'nothing'}")
        scores = {**SCORES, **ZERO_SCORES} if divisions else SCORES
        table = "\n".join(f'    "{name}": lambda x: {code},' for name, code in scores.items())
        function = FUNCTION.format(table=table)
        moe_edits.insert_before_class(package, "model.py", _first_site(package), function)
        moe_edits.add_args_fields(package, FIELD.format(default=found.pop()))
        moe_edits.add_config_kwargs(package, {"scoring_func": f"hf_config.{field}"})
        refuse = InsertStatements(
            "ModelArgs",
            "from_hf_config",
            calls("require_settings"),
            REFUSE.format(field=field, keys=tuple(scores)),
        )
        run(package, "args.py", refuse)
        for old in ("a sigmoid router", "a router of sqrt(softplus(logits)) scores"):
            run(package, "model.py", _Reword(old, f"a router of {DOC}"), required=False)
        run(package, "args.py", _Reword("k sigmoid scores", "k scores"), required=False)


def _first_site(package) -> str:
    for statement in package.module("model.py").body:
        if isinstance(statement, cst.ClassDef) and statement.name.value in dict(SITES):
            return statement.name.value
    raise EditError("model.py has no router class")


def _docstring(old: str | None) -> str:
    text = old or ""
    for phrase in ("Sigmoid router", "Router of sqrt(softplus(logits)) scores"):
        if text.startswith(phrase):
            return text.replace(phrase, f"Router of {DOC}", 1)
    raise EditError("the Gate docstring does not name its scores")


_SIGMOID = m.Call(func=m.Attribute(attr=m.Name("sigmoid")), args=[])
_TORCH_SIGMOID = m.Call(func=m.Attribute(m.Name("torch"), m.Name("sigmoid")), args=[m.Arg()])
_SQRT_SOFTPLUS = m.Call(
    func=m.Attribute(
        value=m.Call(func=m.Attribute(m.Name("F"), m.Name("softplus")), args=[m.Arg()]),
        attr=m.Name("sqrt"),
    ),
    args=[],
)


class _Scores(ScopedTransformer):
    """`scores = <x>.sigmoid()` / `torch.sigmoid(<x>)` / `F.softplus(<x>).sqrt()` in
    `cls.method` -> `scores = router_scores(<x>, self.scoring_func)`; `activations`: the
    ones replaced."""

    def __init__(self, cls: str, method: str):
        super().__init__(cls, method)
        self.activations: set[str] = set()

    def leave_Assign(self, original, updated):
        if not self.in_scope() or len(updated.targets) != 1:
            return updated
        if not m.matches(updated.targets[0].target, m.Name("scores")):
            return updated
        value = updated.value
        if m.matches(value, _SIGMOID):
            x, activation = value.func.value, "sigmoid"
        elif m.matches(value, _TORCH_SIGMOID):
            x, activation = value.args[0].value, "sigmoid"
        elif m.matches(value, _SQRT_SOFTPLUS):
            x, activation = value.func.value.args[0].value, "sqrtsoftplus"
        else:
            return updated
        self.hits += 1
        self.activations.add(activation)
        call = expression(f"router_scores({code_of(x)}, self.scoring_func)")
        return updated.with_changes(value=call)
