"""The epsilon a decoder's norms add, as the code has it (a config field or a constant).

A config without an epsilon field (OLMo's non-parametric LayerNorm fixes 1e-5 in its
forward) still needs one in a generated package: the value the code uses stands for it.
Read from the norm instance: an `eps` / `variance_epsilon` attribute or constructor argument,
else the `eps=` of a functional `layer_norm` / `rms_norm` call, else the small constant added
before a square root (`variance + 1e-6`).

`eps_field` names the config field the norm's constructor reads its epsilon from
(`eps=config.layer_norm_eps`): a config may declare more than one (cohere2_moe's unset
`rms_norm_eps` beside `layer_norm_eps`), and only the one the code reads is the norm's.
"""

from __future__ import annotations

import libcst as cst

from codegen.analyze import eps_expression
from codegen.analyze.evaluate import ModuleRec
from codegen.analyze.module_owners import owners

_NAMES = ("eps", "variance_epsilon", "epsilon", "layer_norm_eps")
_FUNCTIONAL = ("layer_norm", "rms_norm", "group_norm")


def norm_eps(ctx, rec: ModuleRec) -> float | None:
    """The epsilon of norm `rec`, or None when the code does not show a number."""
    for name in _NAMES:
        for value in (rec.attrs.get(name), rec.kwargs.get(name)):
            if _number(value):
                return float(value)
    if rec.ext_base in ("LayerNorm", "RMSNorm") or rec.kind in ("LayerNorm", "RMSNorm"):
        if len(rec.args) > 1 and _number(rec.args[1]):
            return float(rec.args[1])
    if rec.external == "LayerNorm" and len(rec.args) <= 1 and "eps" not in rec.kwargs:
        return 1e-5  # torch.nn.LayerNorm built without one: torch's default (OPT)
    if rec.cls is None:
        return None
    terms = ctx.trace(rec).terms
    for term in terms:
        if term.op == "fn" and term.name.rsplit(".", 1)[-1] in _FUNCTIONAL:
            value = term.kwargs.get("eps")
            if _number(value):
                return float(value)
    for term in terms:
        if term.op == "add":
            small = [a for a in term.args if _number(a) and 0 < a < 1e-2]
            if small:
                return float(small[0])
    return None


def eps_field(ctx, rec: ModuleRec) -> str | None:
    """The config field passed as the epsilon where `rec` is built (`eps=config.X`, or the
    second positional argument of a torch norm, or the one at the place of a class's
    `__init__` parameter `eps`; directly or through a local bound to it, `eps_expression`),
    when the config has it; else None."""
    _, value = eps_argument(ctx, rec)
    if value is None:
        return None
    found = eps_expression.read(ctx, rec.site, value, owners(ctx, rec))
    return found.field if found.how == "config" else None


def eps_argument(ctx, rec: ModuleRec) -> tuple[bool, cst.BaseExpression | None]:
    """(read, the argument) passed as the epsilon where `rec` is built: an `eps=`-like
    keyword, else the positional argument at the norm's `eps` place (a torch norm's second).
    `read` is False where the site is no call, or where positional arguments go past the
    first while the class's `eps` place is unknown; the argument is None where none is
    passed (the class's default)."""
    call = rec.site.node if rec.site is not None else None
    if not isinstance(call, cst.Call):
        return False, None
    named = [a.value for a in call.args if a.keyword is not None and a.keyword.value in _NAMES]
    if named:
        return True, named[0]
    positional = [a.value for a in call.args if a.keyword is None and not a.star]
    torch_norm = {rec.external, rec.ext_base} & {"LayerNorm", "RMSNorm"}
    at = 1 if torch_norm else _eps_position(ctx, rec)
    if at is None:
        return len(positional) <= 1, None
    return True, positional[at] if len(positional) > at else None


def _eps_position(ctx, rec: ModuleRec) -> int | None:
    """Where the norm class's `__init__` takes its epsilon among its positional parameters
    (`(self, hidden_size, eps)`: 1; Llama4's L2 norm `(self, eps)`: 0), else None."""
    found = ctx.model.project.find_method(rec.cls, "__init__") if rec.cls is not None else None
    if found is None:
        return None
    params = [p.name.value for p in found[1].params.params if p.name.value != "self"]
    return next((i for i, name in enumerate(params) if name in _NAMES), None)


def _number(value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)
