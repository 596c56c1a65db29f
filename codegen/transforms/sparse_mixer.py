"""Route with a sparse mixer (PhiMoE): chained max picks, each weighted by a masked softmax."""

from __future__ import annotations

import libcst as cst
import libcst.matchers as m

from codegen.transforms import _moe_edits as moe_edits
from codegen.transforms.base import Transform
from codegen.transforms.edits import EditError, calls_super_init, dotted, run

ROUTE = '''
"""Router logits -> (weights, expert indices), each (tokens, picks): a sparse mixer."""
weights, indices = [], []
remaining = logits
for _ in range({picks}):
    top, index = remaining.max(dim=-1, keepdim=True)
    # logits too far below this pick, relative to their size, take no part in its weight
    gap = (top - logits) / logits.abs().clamp(min=top)
    masked = remaining.masked_fill(gap > 2 * self.router_jitter, float("-inf"))
    weights.append(masked.softmax(dim=-1).gather(-1, index))
    indices.append(index)
    remaining = remaining.scatter(-1, index, float("-inf"))
return torch.cat(weights, dim=-1), torch.cat(indices, dim=-1)
'''
FIELD = "router_jitter: float = 0.0  # sparse mixer: relative logit gap kept beside each pick"
INIT = "self.router_jitter = args.router_jitter"


class SetSparseMixer(Transform):
    """The router becomes a sparse mixer as HF runs it in eval mode: `picks` times, the best
    remaining expert is picked (`max`), its weight is the softmax, at the pick, of the
    remaining logits with those whose gap below the pick, relative to `max(|logit|, pick)`,
    exceeds `2 * router_jitter` masked out; the pick is then excluded. No renormalisation.
    `jitter_field` is the HF config field of `router_jitter`. HF picks `picks` experts
    whatever `num_experts_per_tok` says, so the package does too."""

    name = "set_sparse_mixer"

    def apply(self, package, features=None, *, picks: int = 2, jitter_field: str | None = None):
        if not isinstance(picks, int) or isinstance(picks, bool) or picks < 1:
            raise ValueError(f"picks {picks!r}: a positive int")
        if not jitter_field:
            raise EditError("sparse mixer: the config field of its mask threshold is unknown")
        if not moe_edits.has_class(package, "model.py", "MoE"):
            raise EditError("model.py has no MoE class (run add_moe first)")
        run(
            package,
            "model.py",
            _RouteBody(moe_edits.commented_statements(ROUTE.format(picks=picks))),
        )
        run(package, "model.py", _DropUnread(("top_k", "norm_topk_prob")), required=False)
        if not _assigns(package, "router_jitter"):
            moe_edits.add_args_fields(package, FIELD)
            moe_edits.add_config_kwargs(package, {"router_jitter": f"hf_config.{jitter_field}"})
            moe_edits.insert_statements(package, "MoE", "__init__", calls_super_init, INIT)


def _moe_methods(package, name: str):
    classes = m.findall(package.module("model.py"), m.ClassDef(name=m.Name("MoE")))
    return [f for c in classes for f in m.findall(c, m.FunctionDef(name=m.Name(name)))]


def _assigns(package, attr: str) -> bool:
    target = m.AssignTarget(target=dotted(f"self.{attr}"))
    return any(m.findall(f, m.Assign(targets=[target])) for f in _moe_methods(package, "__init__"))


class _RouteBody(cst.CSTTransformer):
    """MoE.route's whole body replaced (a second run finds it already replaced)."""

    def __init__(self, body):
        super().__init__()
        self.body, self.hits, self._class = body, 0, []

    def visit_ClassDef(self, node):
        self._class.append(node.name.value)

    def leave_ClassDef(self, original, updated):
        self._class.pop()
        return updated

    def leave_FunctionDef(self, original, updated):
        if self._class[-1:] != ["MoE"] or updated.name.value != "route":
            return updated
        self.hits += 1
        return updated.with_changes(body=updated.body.with_changes(body=self.body))


class _DropUnread(cst.CSTTransformer):
    """`self.<attr> = ...` lines of MoE.__init__ that no MoE method reads any more."""

    def __init__(self, attrs):
        super().__init__()
        self.attrs, self.hits, self._class = attrs, 0, []

    def visit_ClassDef(self, node):
        self._class.append(node.name.value)

    def leave_ClassDef(self, original, updated):
        self._class.pop()
        if original.name.value != "MoE":
            return updated
        unread = [a for a in self.attrs if not _read_in(updated, a)]
        return updated.visit(_DropAssign(unread)) if unread else updated


def _read_in(cls: cst.ClassDef, attr: str) -> bool:
    reads = m.findall(cls, dotted(f"self.{attr}"))
    writes = [
        t.target
        for a in m.findall(cls, m.Assign())
        for t in a.targets
        if m.matches(t.target, dotted(f"self.{attr}"))
    ]
    return len(reads) > len(writes)


class _DropAssign(cst.CSTTransformer):
    def __init__(self, attrs):
        super().__init__()
        self.attrs = attrs

    def leave_SimpleStatementLine(self, original, updated):
        small = updated.body[0] if len(updated.body) == 1 else None
        if isinstance(small, cst.Assign) and len(small.targets) == 1:
            if any(m.matches(small.targets[0].target, dotted(f"self.{a}")) for a in self.attrs):
                return cst.RemoveFromParent()
        return updated
