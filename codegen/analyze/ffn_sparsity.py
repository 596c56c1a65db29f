"""An FFN that thresholds a projection by the projection's own statistics before going on.

gemma3n's activation sparsity keeps only the gate activations above mean + k * std of each
row (`relu(x - (mean + std * k))`, a Gaussian top-k, k the standard normal's quantile of the
layer's target sparsity): a package built from a reference's FFN would skip it and differ
everywhere. Where the traced FFN subtracts from a projection's output a statistic (mean, std,
var, quantile, k-th value) of that same output, the analysis looks for that exact form in the
FFN's class: a method computing `GAUSSIAN_TOPK` from an attribute the class reads from a config
field (`self.s = config.pattern[layer_idx]`: one value per layer), which `forward` applies to
the gate only where that value is positive. Found, it is the fact `ffn.activation_sparsity`
({"field", "per_layer"}); any other thresholding is "other", named unsupported.
"""

from __future__ import annotations

import ast
import copy

from codegen.analyze.context import Ctx
from codegen.analyze.dataflow import Term, walk
from codegen.analyze.evaluate import ModuleRec
from codegen.analyze.roles import MLP

_STATISTICS = ("mean", "std", "var", "quantile", "kthvalue", "topk", "std_mean", "var_mean")

# HF's method (gemma3n Gemma3nTextMLP._gaussian_topk) without its comments; local names and
# `self.` attributes compare by position, so a renamed variable matches and other maths do not
GAUSSIAN_TOPK = """
def f(self, x):
    p = torch.tensor(self.s, dtype=torch.float32, device=x.device)
    normal = torch.distributions.normal.Normal(0, 1)
    k: torch.Tensor = normal.icdf(p)
    k = k.type(x.dtype)
    mean = torch.mean(x, dim=-1, keepdim=True)
    std = torch.std(x, dim=-1, keepdim=True, unbiased=False)
    cutoff = mean + std * k
    return nn.functional.relu(x - cutoff)
"""


def detect(ctx: Ctx) -> dict | str | None:
    """{"field": the config field of the per-layer target sparsity, "per_layer": indexed by
    the layer}; "other" for a thresholding of another form (named unsupported); else None."""
    layers = [rec for rec in ctx.model.layers or () if isinstance(rec, ModuleRec)]
    if not layers:
        return None
    for _, child in layers[0].children():
        if not isinstance(child, ModuleRec) or ctx.roles.role(child) != MLP:
            continue
        for term in ctx.trace(child).terms:
            if term.op == "sub" and _thresholded(term):
                where = term.site.cite() if term.site else ctx.class_site(child)
                found = _gaussian_topk(child)
                if found is not None:
                    ctx.cite("ffn.activation_sparsity", f"{where} (config.{found['field']})")
                    return found
                ctx.cite("ffn.activation_sparsity", where)
                return "other"
    return None


def _thresholded(term: Term) -> bool:
    minuend, subtrahend = (list(term.args) + [None, None])[:2]
    if not (isinstance(minuend, Term) and isinstance(subtrahend, Term)):
        return False
    calls = {id(t) for t in walk(minuend) if t.op == "call"}
    return any(
        t.op == "fn"
        and t.name.rsplit(".", 1)[-1] in _STATISTICS
        and any(id(x) in calls for x in walk(t))
        for t in walk(subtrahend)
    )


def _gaussian_topk(rec: ModuleRec) -> dict | None:
    info = rec.cls
    if info is None or "__init__" not in info.methods or "forward" not in info.methods:
        return None
    methods = {name: _parse(info.sf.code(fn)) for name, fn in info.methods.items()}
    expected = normalised(ast.parse(GAUSSIAN_TOPK.strip()).body[0])
    for name, method in methods.items():
        if method is None:
            continue
        maths, attrs = normalised(method)
        if maths != expected[0] or len(attrs) != 1:
            continue
        source = _config_source(methods["__init__"], attrs[0])
        if source is not None and _guarded_call(methods["forward"], name, attrs[0]):
            return source
    return None


def _parse(code: str) -> ast.FunctionDef | None:
    try:
        node = ast.parse(code).body[0]
    except SyntaxError:
        return None
    return node if isinstance(node, ast.FunctionDef) else None


def normalised(method: ast.FunctionDef) -> tuple[str, tuple[str, ...]]:
    """The method's body with its parameters and locals renamed by first appearance and its
    `self.` attributes likewise (their original names returned in order); docstrings go."""
    names: dict[str, str] = {}
    attrs: dict[str, str] = {}
    body = [
        s
        for s in method.body
        if not (isinstance(s, ast.Expr) and isinstance(s.value, ast.Constant))
    ]
    for arg in method.args.args[1:]:
        names.setdefault(arg.arg, f"v{len(names)}")

    class _Rename(ast.NodeTransformer):
        def visit_Attribute(self, node):
            if isinstance(node.value, ast.Name) and node.value.id == "self":
                return ast.Name(attrs.setdefault(node.attr, f"s{len(attrs)}"), node.ctx)
            return self.generic_visit(node)

        def visit_Name(self, node):
            if node.id in ("torch", "nn", "F"):
                return node
            return ast.Name(names.setdefault(node.id, f"v{len(names)}"), node.ctx)

    text = "\n".join(ast.unparse(_Rename().visit(copy.deepcopy(s))) for s in body)
    return text, tuple(attrs)


def _config_source(init: ast.FunctionDef | None, attr: str) -> dict | None:
    """`self.<attr> = config.<field>[<layer index>]` (per layer) or `= config.<field>`."""
    for node in ast.walk(init) if init is not None else ():
        if not (
            isinstance(node, ast.Assign)
            and len(node.targets) == 1
            and isinstance(node.targets[0], ast.Attribute)
            and node.targets[0].attr == attr
        ):
            continue
        value, per_layer = node.value, False
        if isinstance(value, ast.Subscript) and isinstance(value.slice, ast.Name):
            value, per_layer = value.value, True
        if (
            isinstance(value, ast.Attribute)
            and isinstance(value.value, ast.Name)
            and value.value.id == "config"
        ):
            return {"field": value.attr, "per_layer": per_layer}
    return None


def _guarded_call(forward: ast.FunctionDef | None, method: str, attr: str) -> bool:
    """forward applies `self.<method>` only under `if self.<attr> > 0`."""
    for node in ast.walk(forward) if forward is not None else ():
        if not (isinstance(node, ast.If) and isinstance(node.test, ast.Compare)):
            continue
        test = node.test
        if not (
            isinstance(test.left, ast.Attribute)
            and test.left.attr == attr
            and len(test.ops) == 1
            and isinstance(test.ops[0], ast.Gt)
            and isinstance(test.comparators[0], ast.Constant)
            and test.comparators[0].value == 0
        ):
            continue
        called = {
            n.func.attr
            for n in ast.walk(ast.Module(body=node.body, type_ignores=[]))
            if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute)
        }
        if method in called:
            return True
    return False
