"""Sparse-mixer routing (PhiMoE's `sparsemixer`), read from the router's traced terms.

No top-k: each expert is picked by a `max` over the logits, the earlier picks filled with
-inf (`scatter`) before the next `max`; each pick's weight is a softmax over the logits with
those too far below the pick masked out (`masked_fill`, relative to `abs().clamp()`), taken
at the pick (`gather`). Eval mode only: training's sampled picks are not realised.

`jitter_field` names the config field the masking threshold is built from: the selection
function's parameter compared in the mask, bound at the router's call site to a `self.X`
its `__init__` sets from the config.
"""

from __future__ import annotations

import libcst as cst
import libcst.matchers as cm

from codegen.analyze.dataflow import Term, walk
from codegen.analyze.walk import findall


def _fn(t: Term, *names: str) -> bool:
    return t.op == "fn" and t.name.rsplit(".", 1)[-1] in names


def picks(terms: list[Term]) -> int:
    """How many experts a sparse mixer picks (0: the terms are no sparse mixer)."""
    if any(_fn(t, "topk") for t in terms):
        return 0
    maxes = [t for t in terms if _fn(t, "max")]
    excluded = [
        t
        for t in terms
        if _fn(t, "scatter", "scatter_")
        and any(a == float("-inf") for a in t.args if isinstance(a, float))
    ]
    # the second max reads the logits with the first pick excluded
    chained = [m for m in maxes if any(any(x is s for x in walk(m)) for s in excluded)]
    masked = [t for t in terms if _fn(t, "masked_fill")]
    weighted = [
        t for t in terms if _fn(t, "softmax") and any(any(x is k for x in walk(t)) for k in masked)
    ]
    relative = any(_fn(t, "clamp") and any(_fn(x, "abs") for x in walk(t)) for t in terms)
    if len(maxes) < 2 or not chained or not weighted or not relative:
        return 0
    return len(maxes)


def jitter_field(project, tracer, router) -> str | None:
    """The config field the mask threshold comes from (PhiMoE's `router_jitter_noise`)."""
    if router is None or router.cls is None:
        return None
    forward = project.find_method(router.cls, "forward")
    init = project.find_method(router.cls, "__init__")
    if forward is None or init is None:
        return None
    from_config = {
        t.target.attr.value: a.value.attr.value
        for a in findall(
            init[1],
            cm.Assign(
                targets=[cm.AssignTarget(cm.Attribute(cm.Name("self")))],
                value=cm.Attribute(cm.Name()),
            ),
        )
        for t in a.targets
    }
    for func, _ in tracer.func_calls:
        node = func.node
        if not isinstance(node, cst.FunctionDef):
            continue
        params = [p.name.value for p in node.params.params]
        compared = {
            n.value for c in findall(node.body, cm.Comparison()) for n in findall(c, cm.Name())
        }
        for call in findall(forward[1], cm.Call(func=cm.Name(func.name))):
            for i, arg in enumerate(call.args):
                name = (
                    arg.keyword.value if arg.keyword else (params[i] if i < len(params) else None)
                )
                value = arg.value
                if (
                    name in compared
                    and cm.matches(value, cm.Attribute(cm.Name("self")))
                    and value.attr.value in from_config
                ):
                    return from_config[value.attr.value]
    return None
