"""Make the routed experts' activation gpt_oss's clamped SwiGLU."""

from __future__ import annotations

import ast
import copy
from pathlib import Path

import libcst as cst

from codegen.errors import CodegenError
from codegen.transforms import _moe_edits as moe_edits
from codegen.transforms._ffn_edits import Scoped, SetClassDocstring
from codegen.transforms.base import Transform
from codegen.transforms.edits import (
    EditError,
    assigns,
    code_of,
    expression,
    is_name,
    run,
)

CLAMPED_SWIGLU = '''
def clamped_swiglu(
    gate: torch.Tensor, up: torch.Tensor, alpha: float, limit: float
) -> torch.Tensor:
    """gpt_oss's expert activation: gate and up clamped to `limit` (gate from above only),
    the gate through a sigmoid sharpened by `alpha`, and up shifted by one."""
    gate = gate.clamp(max=limit)
    up = up.clamp(-limit, limit)
    glu = gate * torch.sigmoid(gate * alpha)
    return (up + 1) * glu
'''

FIELDS = """
swiglu_alpha: float = 1.702  # expert activation: gate * sigmoid(alpha * gate) ...
swiglu_limit: float = 7.0  # ... after clamping gate to <= limit and up to [-limit, limit]
"""

# HF's method (gpt_oss GptOssExperts._apply_gate), after the gate/up split the fused-layout
# rule realises. Local names and the two `self.` attributes are compared by position, so a
# renamed variable still matches and any other maths does not.
HF_MATHS = """
gate = gate.clamp(min=None, max=self.limit)
up = up.clamp(min=-self.limit, max=self.limit)
glu = gate * torch.sigmoid(gate * self.alpha)
gated_output = (up + 1) * glu
return gated_output
"""


class SetClampedSwiglu(Transform):
    """The experts' `F.silu(gate) * up` becomes `clamped_swiglu(gate, up, alpha, limit)`
    (gpt_oss: `(up.clamp(-l, l) + 1) * g * sigmoid(alpha * g)`, g = gate.clamp(max=l)).

    Refuses unless the target's modeling source (Features.source.modeling) has exactly this
    maths in one method; `alpha` and `limit` are read from the config fields that method's
    class assigns them from (gpt_oss: swiglu_alpha, swiglu_limit).
    """

    name = "set_clamped_swiglu"

    def apply(self, package, features=None) -> None:
        alpha_field, limit_field = config_fields_of(features)
        moe_edits.own_experts(package)  # this target's experts differ from the shared ones
        run(package, "model.py", _UseClampedSwiglu())
        moe_edits.insert_before_class(package, "model.py", "Experts", CLAMPED_SWIGLU)
        run(package, "model.py", _AddParameters("Experts", ("alpha: float", "limit: float")))
        moe_edits.insert_statements(
            package,
            "Experts",
            "__init__",
            assigns("self.num_experts"),
            "self.alpha = alpha\nself.limit = limit",
        )
        run(package, "model.py", _ExtendCall("Experts", ("args.swiglu_alpha", "args.swiglu_limit")))
        run(package, "model.py", SetClassDocstring("Experts", _docstring))
        if features is not None and features.get("ffn.source") in ("dense", "shared_expert"):
            _feed_forward_too(package)
        moe_edits.add_args_fields(package, FIELDS.strip())
        moe_edits.add_config_kwargs(
            package,
            {
                "swiglu_alpha": f"hf_config.{alpha_field}",
                "swiglu_limit": f"hf_config.{limit_field}",
            },
        )


def _feed_forward_too(package) -> None:
    """The analysed clamped SwiGLU is the dense or shared MLP's (minimax_m3): FeedForward
    computes it as well, with the same alpha and limit."""
    run(package, "model.py", _UseClampedSwiglu("FeedForward"))
    run(package, "model.py", _AddParameters("FeedForward", ("alpha: float", "limit: float")))
    moe_edits.insert_statements(
        package,
        "FeedForward",
        "__init__",
        assigns("self.w2"),
        "self.alpha = alpha\nself.limit = limit",
    )
    run(package, "model.py", _ExtendCall("FeedForward", ("args.swiglu_alpha", "args.swiglu_limit")))
    run(package, "model.py", SetClassDocstring("FeedForward", _feed_forward_docstring))


def _feed_forward_docstring(old: str | None) -> str:
    # the formula names the activation: `SwiGLU: ` goes (the line stays short)
    text = (old or "SwiGLU: w2(silu(w1(x)) * w3(x)).").replace("SwiGLU: ", "", 1)
    for plain, clamped in (
        ("silu(gate) * up", "clamped_swiglu(gate, up)"),
        ("silu(w1(x)) * w3(x)", "clamped_swiglu(w1(x), w3(x))"),
    ):
        text = text.replace(plain, clamped)
    return text


def config_fields_of(features) -> tuple[str, str]:
    """(alpha field, limit field) of the target's clamped SwiGLU. Raises CodegenError (one
    line, no traceback) when its modeling source does not compute exactly HF_MATHS."""
    path = features.get("source.modeling") if features is not None else None
    if not path or not Path(path).is_file():
        raise ValueError("set_clamped_swiglu needs the target's modeling source")
    tree = ast.parse(Path(path).read_text())
    expected = _normalised(ast.parse(HF_MATHS.strip()).body)
    for cls in (node for node in ast.walk(tree) if isinstance(node, ast.ClassDef)):
        for method in (node for node in cls.body if isinstance(node, ast.FunctionDef)):
            maths, attrs = _normalised(_without_split(method.body))
            if maths != expected[0]:
                continue
            limit, alpha = attrs
            sources = _config_sources(cls)
            if alpha in sources and limit in sources:
                return sources[alpha], sources[limit]
            raise CodegenError(f"{cls.name}: self.{alpha} / self.{limit} are not config fields")
    raise CodegenError(
        "ffn.kind = 'other' is not gpt_oss's clamped SwiGLU: no method computes it", path=path
    )


def _without_split(body: list[ast.stmt]) -> list[ast.stmt]:
    """The method body without its docstring and a leading `gate, up = ...` split."""
    if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
        body = body[1:]
    if body and isinstance(body[0], ast.Assign) and isinstance(body[0].targets[0], ast.Tuple):
        body = body[1:]
    return body


def _returned_directly(body: list[ast.stmt]) -> list[ast.stmt]:
    """`v = <expr>; return v` -> `return <expr>` (the same maths, written either way)."""
    if (
        len(body) >= 2
        and isinstance(body[-1], ast.Return)
        and isinstance(body[-1].value, ast.Name)
        and isinstance(body[-2], ast.Assign)
        and len(body[-2].targets) == 1
        and isinstance(body[-2].targets[0], ast.Name)
        and body[-2].targets[0].id == body[-1].value.id
    ):
        return [*body[:-2], ast.Return(body[-2].value)]
    return body


class _Canonical(ast.NodeTransformer):
    """Spellings of the same call or constant made one: `x.clamp(lo, hi)` and
    `x.clamp(min=None, max=hi)` -> keywords without None; `1.0` -> `1`."""

    def visit_Call(self, node):
        self.generic_visit(node)
        func = node.func
        if isinstance(func, ast.Attribute) and func.attr == "clamp":
            keywords = [ast.keyword(n, a) for n, a in zip(("min", "max"), node.args, strict=False)]
            keywords += node.keywords
            node.args = []
            node.keywords = [
                k
                for k in keywords
                if not (isinstance(k.value, ast.Constant) and k.value.value is None)
            ]
        return node

    def visit_Constant(self, node):
        if isinstance(node.value, float) and node.value.is_integer():
            return ast.Constant(int(node.value))
        return node


def _normalised(body: list[ast.stmt]) -> tuple[str, tuple[str, ...]]:
    """The statements' source with local names and `self.` attributes renamed by first
    appearance (v0, v1.. / s0, s1..), and the original attribute names in that order;
    a value returned through a name and equivalent call spellings compare equal."""
    names: dict[str, str] = {}
    attrs: dict[str, str] = {}
    body = [_Canonical().visit(copy.deepcopy(s)) for s in _returned_directly(body)]

    class _Rename(ast.NodeTransformer):
        def visit_Attribute(self, node):
            if isinstance(node.value, ast.Name) and node.value.id == "self":
                return ast.Name(attrs.setdefault(node.attr, f"s{len(attrs)}"), node.ctx)
            return self.generic_visit(node)

        def visit_Name(self, node):
            if node.id in ("torch", "F", "nn"):
                return node
            return ast.Name(names.setdefault(node.id, f"v{len(names)}"), node.ctx)

    renamed = [ast.unparse(_Rename().visit(copy.deepcopy(statement))) for statement in body]
    return "\n".join(renamed), tuple(attrs)


def _config_sources(cls: ast.ClassDef) -> dict[str, str]:
    """`self.<attr> = config.<field>` assignments of the class: attr -> field."""
    sources = {}
    for node in ast.walk(cls):
        if (
            isinstance(node, ast.Assign)
            and isinstance(node.targets[0], ast.Attribute)
            and isinstance(node.value, ast.Attribute)
            and isinstance(node.value.value, ast.Name)
            and node.value.value.id == "config"
        ):
            sources[node.targets[0].attr] = node.value.attr
    return sources


def _docstring(old: str | None) -> str:
    text = old or "Routed experts."
    if "SwiGLU" not in text:
        raise EditError("the Experts docstring does not name its SwiGLU activation")
    return text.replace("SwiGLU", "clamped-SwiGLU", 1)


class SiluProduct(Scoped):
    """Rewrites each `F.silu(<gate>) * <up>` in `class_name.forward` to `replace(gate, up)`
    (the two branches as code)."""

    def __init__(self, class_name: str = "Experts"):
        super().__init__(class_name, "forward")

    def replace(self, gate: str, up: str) -> str:
        raise NotImplementedError

    def leave_BinaryOperation(self, original, updated):
        left = updated.left
        if not (
            self.in_scope()
            and isinstance(updated.operator, cst.Multiply)
            and isinstance(left, cst.Call)
            and is_name(left.func, "F.silu")
            and len(left.args) == 1
        ):
            return updated
        self.hits += 1
        return expression(self.replace(code_of(left.args[0].value), code_of(updated.right)))


class _UseClampedSwiglu(SiluProduct):
    """`F.silu(<gate>) * <up>` in Experts.forward (or another class's) ->
    `clamped_swiglu(<gate>, <up>, ...)`."""

    def replace(self, gate: str, up: str) -> str:
        return f"clamped_swiglu({gate}, {up}, self.alpha, self.limit)"


class _AddParameters(cst.CSTTransformer):
    """Append parameters (`"alpha: float"`) to `class_name.__init__`."""

    def __init__(self, class_name: str, params: tuple[str, ...]):
        super().__init__()
        self.class_name, self.hits = class_name, 0
        signature = cst.parse_statement(f"def f(self, {', '.join(params)}): pass")
        self.new = list(signature.params.params[1:])
        self._class: list[str] = []

    def visit_ClassDef(self, node):
        self._class.append(node.name.value)

    def leave_ClassDef(self, original, updated):
        self._class.pop()
        return updated

    def leave_FunctionDef(self, original, updated):
        if self._class[-1:] != [self.class_name] or updated.name.value != "__init__":
            return updated
        self.hits += 1
        params = list(updated.params.params)
        # before the first parameter with a default (llama's `bias: bool = False`)
        at = next((i for i, p in enumerate(params) if p.default is not None), len(params))
        comma = cst.Comma(whitespace_after=cst.SimpleWhitespace(" "))
        params = [p.with_changes(comma=comma) for p in params]
        params[-1] = params[-1].with_changes(comma=cst.MaybeSentinel.DEFAULT)
        new = [p.with_changes(comma=comma) for p in self.new]
        if at == len(params):
            params[-1] = params[-1].with_changes(comma=comma)
            new[-1] = new[-1].with_changes(comma=cst.MaybeSentinel.DEFAULT)
        params[at:at] = new
        return updated.with_changes(params=updated.params.with_changes(params=params))


class _ExtendCall(cst.CSTTransformer):
    """Append positional arguments to every `func(...)` call (the Experts(...) build)."""

    def __init__(self, func: str, args: tuple[str, ...]):
        super().__init__()
        self.func, self.args, self.hits = func, args, 0

    def leave_Call(self, original, updated):
        if code_of(updated.func) != self.func:
            return updated
        self.hits += 1
        args = list(updated.args)
        # before the first keyword argument (`bias=args.mlp_bias`)
        at = next((i for i, a in enumerate(args) if a.keyword is not None), len(args))
        comma = cst.Comma(whitespace_after=cst.SimpleWhitespace(" "))
        args = [a.with_changes(comma=comma) for a in args]
        new = [cst.Arg(expression(a), comma=comma) for a in self.args]
        args[at:at] = new
        args[-1] = args[-1].with_changes(comma=cst.MaybeSentinel.DEFAULT)
        return updated.with_changes(args=args)
