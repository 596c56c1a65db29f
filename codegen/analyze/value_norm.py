"""A norm on the attention's values (gemma4's weightless `v_norm`): no reference norms v,
so a package built from one would pass v on as projected. Where the last module call before
the kernel's value argument is a norm, the analysis names it."""

from __future__ import annotations

from codegen.analyze.context import Ctx
from codegen.analyze.dataflow import Term, strip
from codegen.analyze.evaluate import ModuleRec
from codegen.analyze.roles import NORM


def detect(ctx: Ctx, shared: dict) -> None:
    info = shared.get("rep")
    kernel = getattr(info, "kernel", None)
    if kernel is None:
        return
    qkv = [strip(t) for t in kernel.args if isinstance(t, Term)][:3]
    if len(qkv) != 3:
        return
    for term in _nearest_calls(qkv[2]):
        module = term.module
        if isinstance(module, ModuleRec) and ctx.roles.role(module) == NORM:
            ctx.unsupported(
                "attention.v_norm",
                f"the values go through a norm ({module.cls.name if module.cls else module.kind})"
                " before the attention: no rule yet",
                term.site.cite() if term.site else ctx.site(module),
            )
            return


def _nearest_calls(term: Term) -> list[Term]:
    """The module calls `term` reads with no other call between (the last step before the
    kernel): a norm there norms v itself, one behind a projection (MLA's latent norm before
    kv_b_proj) does not."""
    found, stack, seen = [], [term], set()
    while stack:
        t = stack.pop()
        if id(t) in seen:
            continue
        seen.add(id(t))
        if t.op == "call":
            found.append(t)
            continue
        stack.extend(a for a in t.args if isinstance(a, Term))
    return found
