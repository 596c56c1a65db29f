"""Where each norm's epsilon comes from: a config field, or a number written in the code.

A package reads one config field for its norms' epsilon (`args.norm_eps`). HF code may build
some norms with `eps=config.X` and others with a number of its own: CTRL's block norms are
`nn.LayerNorm(n_embd, eps=1e-6)` while its final norm reads `config.layer_norm_epsilon`,
JetMoE's layer norms pass nothing (their class's default) while its final norm reads
`config.rms_norm_eps`. In the default config the two agree, so the values cannot tell
them apart: only a config with another epsilon does. Read from each construction site:

    config         `eps=config.X` (or the argument at the class's `eps` position)
    literal        a number written at the site (`eps=1e-6`)
    class_default  no epsilon passed: the norm class's own default
    other          something else (a helper's parameter): not decided here

A local between the argument and its source is followed (`eps = config.X` or `eps = 1e-6`
earlier in the function, `eps_expression`), and so is a parameter the function fills in when
its caller passes none (`eps = eps or 1e-6`: the caller's argument, else the number). One
that cannot be followed (bound more than once to different things, or to what is not read)
stays "other" with `unread` saying which: `norm_eps_gap` names it, never a silent guess.

for the decoder layers' norms ("block"), the norm outside the layers last built ("final")
and the q/k norms ("qk"). Each construction site is a record of its own (`Interp.instantiate`
shares a record only between calls at one site), so a norm at `eps=1e-6` and one at
`eps=config.X` whose default is 1e-6 keep their own sources.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import libcst as cst

from codegen.analyze import eps_expression
from codegen.analyze.context import Ctx
from codegen.analyze.evaluate import ModuleRec
from codegen.analyze.final_norm import _outside
from codegen.analyze.module_owners import owners
from codegen.analyze.norm_eps import _NAMES, eps_argument, norm_eps
from codegen.analyze.roles import NORM

CONSTANT = ("literal", "class_default")  # a number no config field sets
TORCH_LAYER_NORM_EPS = 1e-5  # torch.nn.LayerNorm built without one


@dataclass(frozen=True)
class Source:
    how: str  # config | literal | class_default | other
    field: str | None = None  # the config field, for "config"
    value: float | None = None  # the number the code uses, where it shows one
    site: str | None = None  # the construction sites (", "-joined where several agree)
    unread: str | None = None  # for "other": the local standing between, when one does

    def describe(self) -> str:
        if self.how == "config":
            return f"config.{self.field}"
        if self.how == "other" or self.value is None:
            return "other"
        return f"{self.how.replace('_', ' ')} {self.value!r}"


def source(ctx: Ctx, rec: ModuleRec) -> Source:
    """Where the epsilon of norm `rec` comes from, read at its construction site."""
    site = ctx.site(rec)
    found, node = eps_argument(ctx, rec)
    if not found:
        return Source("other", site=site)
    if node is None:
        value = _class_default(ctx, rec)
        how = "class_default" if value is not None else "other"
        return Source(how, value=value, site=site)
    said = eps_expression.read(ctx, rec.site, node, owners(ctx, rec))
    if said.how == "config":
        return Source("config", field=said.field, value=norm_eps(ctx, rec), site=site)
    if said.how == "literal":
        return Source("literal", value=said.value, site=site)
    return Source("other", value=norm_eps(ctx, rec), site=site, unread=said.unread)


def read(
    ctx: Ctx, block: list[ModuleRec], qk: list[ModuleRec] = ()
) -> dict[str, tuple[Source, ...]]:
    """The sources of the block norms, the final norm and the q/k norms (each group's
    distinct sources, in order; a group the model lacks is left out)."""
    final = final_norm(ctx)
    groups = {"block": block, "final": [final] if final is not None else [], "qk": list(qk)}
    found = {}
    for group, recs in groups.items():
        sources: list[Source] = []
        for rec in recs:
            one = source(ctx, rec)
            at = next((i for i, seen in enumerate(sources) if _same(one, seen)), None)
            if at is None:
                sources.append(one)
            elif one.site and one.site not in (sites := (sources[at].site or "").split(", ")):
                merged = ", ".join([s for s in sites if s] + [one.site])
                sources[at] = dataclasses.replace(sources[at], site=merged)
        if sources:
            found[group] = tuple(sources)
    return found


def describe(ctx: Ctx, found: dict[str, tuple[Source, ...]]) -> dict[str, str] | None:
    """The feature value ({"block": "literal 1e-06", "final": "config.layer_norm_epsilon"}),
    cited at each group's construction sites; None when no norm was found."""
    if not found:
        return None
    value = {g: " | ".join(s.describe() for s in sources) for g, sources in found.items()}
    sites = [f"{g} {s.site}" for g, sources in found.items() for s in sources if s.site]
    ctx.cite("norm.eps_sources", "; ".join(sites) or None)
    return value


def constant_layers(found: dict[str, tuple[Source, ...]]) -> Source | None:
    """The block norms' source when every one is the same number of the code's (a literal or
    their class's default) while the final norm reads a config field; else None."""
    block, final = found.get("block", ()), found.get("final", ())
    if len(final) != 1 or final[0].how != "config" or not block:
        return None
    if any(s.how not in CONSTANT or s.value is None for s in block):
        return None
    if len({s.value for s in block}) != 1:
        return None
    return block[0]


def final_norm(ctx: Ctx) -> ModuleRec | None:
    """The backbone's norm built last beside its layers (an embedding norm comes before the
    layers), else the first norm outside the decoder layers, else None."""
    model = ctx.model
    owned = [
        rec
        for _, rec in (model.stack_owner.children() if model.stack_owner is not None else ())
        if isinstance(rec, ModuleRec) and ctx.roles.role(rec) == NORM
    ]
    if owned:
        return owned[-1]
    layers = {id(layer) for layer in model.layers or ()}
    for _, rec in _outside(model.entry, "", layers, 0):
        if isinstance(rec, ModuleRec) and ctx.roles.role(rec) == NORM:
            return rec
    return None


def _class_default(ctx: Ctx, rec: ModuleRec) -> float | None:
    """The epsilon a norm built without one takes: the number its class's `__init__`
    defaults its `eps`-like parameter to, else torch's LayerNorm's; None where the class
    takes no such parameter (it finds the value itself: perhaps in the config)."""
    found = ctx.model.project.find_method(rec.cls, "__init__") if rec.cls is not None else None
    if found is None:
        return TORCH_LAYER_NORM_EPS if "LayerNorm" in (rec.external, rec.ext_base) else None
    params = found[1].params
    for param in (*params.params, *params.kwonly_params):
        default = param.default
        if param.name.value in _NAMES and isinstance(default, cst.Integer | cst.Float):
            return float(default.evaluated_value)
    return None


def _same(one: Source, other: Source) -> bool:
    return _identity(one) == _identity(other)


def _identity(source: Source) -> tuple:
    return source.how, source.field, source.value, source.unread
