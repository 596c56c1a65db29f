"""Hold the routed experts' gate and up weights fused, in the checkpoint's on-disk layout."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import libcst as cst
import libcst.matchers as m

from codegen.errors import CodegenError
from codegen.transforms import _moe_edits as moe_edits
from codegen.transforms._ffn_edits import (
    ReplaceExpressions,
    SetClassDocstring,
    rename_component,
    rewrite_adapter,
)
from codegen.transforms.base import Transform
from codegen.transforms.edits import (
    EditError,
    ReplaceStatements,
    assigns,
    code_of,
    dotted,
    findall,
    run,
    uses,
)

# how the fused gate_up output splits into (gate, up), per checkpoint layout
SPLITS = {
    # gpt_oss: gate and up alternate along the output features
    "interleaved": "gate, up = gate_up[..., ::2], gate_up[..., 1::2]",
    # gate is the first half, up the second
    "concat": "gate, up = gate_up.chunk(2, dim=-1)",
}
# the weights' shapes: [num_experts, in, out] when the checkpoint stores them transposed
# (x @ w, gpt_oss), else the house's [num_experts, out, in] (x @ w.mT)
SHAPES = {
    True: ("(num_experts, dim, 2 * hidden_dim)", "(num_experts, hidden_dim, dim)"),
    False: ("(num_experts, 2 * hidden_dim, dim)", "(num_experts, dim, hidden_dim)"),
}
LAYOUT_WORDS = {"interleaved": "gate = even features", "concat": "gate = first half"}
# the decorator transformers puts on a fused experts module; it says how the weights lie
_EXPERTS_DECORATOR = "use_experts_implementation"


class FuseExperts(Transform):
    """The experts' w1 (gate) and w3 (up) become one `w13` laid out as the checkpoint's
    fused 3-D tensor, so every expert tensor loads 1:1 (no split, stack or transpose).

    `layout`: how gate and up share w13's output features (`interleaved`: gate = even
    features, gpt_oss; `concat`: gate = first half). `transposed`: the checkpoint stores
    [num_experts, in, out] (`x @ w`) rather than the house's [num_experts, out, in];
    `auto` reads transformers' `@use_experts_implementation(is_transposed=...)` on the
    target's experts module. `hf_name`: the checkpoint's fused gate/up tensor
    (`mlp.experts.gate_up_proj`, with `mlp.experts.down_proj` beside it).
    """

    name = "fuse_experts"

    def resolved_params(self, params: dict, features=None) -> dict:
        if params.get("layout") == "separate":  # the FFN feature describes a dense MLP beside
            return {**params, "layout": layout_of(features)}  # the experts: read theirs
        return params

    def apply(
        self,
        package,
        features=None,
        *,
        layout: str,
        transposed: bool | str = "auto",
        hf_name: str = "gate_up_proj",
    ) -> None:
        layout = self.resolved_params({"layout": layout}, features)["layout"]
        if layout not in SPLITS:
            raise ValueError(f"gate/up layout {layout!r} is not one of {sorted(SPLITS)}")
        if transposed == "auto":
            transposed = transposed_of(features)
        if not isinstance(transposed, bool):
            raise ValueError(f"transposed {transposed!r}: True, False or 'auto'")
        moe_edits.own_experts(package)  # this target's experts differ from the shared ones
        _fuse_weights(package, transposed)
        _fuse_forward(package, layout, transposed)
        run(package, "model.py", SetClassDocstring("Experts", _docstring(layout, transposed)))
        _fuse_rows(package, hf_name)
        moe_edits.rows_on_disk(package, features)


def transposed_of(features) -> bool:
    """`is_transposed` of the target's `@use_experts_implementation(...)` (default False);
    CodegenError when the modeling source has no such module."""
    path = features.get("source.modeling") if features is not None else None
    if not path or not Path(path).is_file():
        raise ValueError("transposed='auto' needs the target's modeling source")
    for node in ast.walk(ast.parse(Path(path).read_text())):
        if not isinstance(node, ast.ClassDef):
            continue
        for decorator in node.decorator_list:
            if _called(decorator) == _EXPERTS_DECORATOR and not isinstance(decorator, ast.Call):
                return False  # bare `@use_experts_implementation`: is_transposed's default
            if isinstance(decorator, ast.Call) and _called(decorator) == _EXPERTS_DECORATOR:
                flags = {k.arg: k.value for k in decorator.keywords}
                flag = flags.get("is_transposed", ast.Constant(False))
                if not isinstance(flag, ast.Constant) or not isinstance(flag.value, bool):
                    raise CodegenError("is_transposed is not a literal bool", path=path)
                return flag.value
    found = _undecorated_experts(path)
    if found is not None:
        return found[0]
    if _linear_experts(path):
        return False  # F.linear(x, weight[i]): each expert's slice is [out, in]
    raise CodegenError(
        f"no @{_EXPERTS_DECORATOR}(...) experts module says how the fused experts lie "
        "(pass transposed=True/False)",
        path=path,
    )


def layout_of(features) -> str:
    """How the target's fused experts module splits gate_up (`concat`: `.chunk(2, ...)`,
    `interleaved`: `[..., ::2]`), for when the FFN feature describes a dense MLP beside it."""
    path = features.get("source.modeling") if features is not None else None
    if not path or not Path(path).is_file():
        raise ValueError("layout of the experts needs the target's modeling source")
    for node in ast.walk(ast.parse(Path(path).read_text())):
        if isinstance(node, ast.ClassDef) and any(
            _called(d) == _EXPERTS_DECORATOR for d in node.decorator_list
        ):
            inner = list(ast.walk(node))
            if any(isinstance(n, ast.Slice) and _is_two(n.step) for n in inner):
                return "interleaved"
            calls = [n for n in inner if isinstance(n, ast.Call) and _called(n) == "chunk"]
            if any(c.args and _is_two(c.args[0]) for c in calls):
                return "concat"
    found = _undecorated_experts(path)
    if found is not None and found[1] is not None:
        return found[1]
    raise CodegenError(
        f"no @{_EXPERTS_DECORATOR} experts module shows how gate_up splits "
        "(.chunk(2) or [..., ::2])",
        path=path,
    )


def _undecorated_experts(path) -> tuple[bool, str | None] | None:
    """(transposed, layout) of the one experts module without the decorator that holds its
    gate and up fused in one 3-D parameter (`nn.Parameter(torch.zeros(n, a, 2 * b))`,
    Llama4): transposed when the doubled size is the last axis; the layout from how its
    forward splits the product (None when it does not show). None when no single class does."""
    found = []
    for node in ast.walk(ast.parse(Path(path).read_text())):
        if not isinstance(node, ast.ClassDef):
            continue
        for call in ast.walk(node):
            if not (isinstance(call, ast.Call) and _called(call) == "Parameter" and call.args):
                continue
            shape = call.args[0]
            dims = shape.args if isinstance(shape, ast.Call) else []
            if len(dims) == 1 and isinstance(dims[0], ast.Tuple):
                dims = dims[0].elts
            doubled = [i for i, d in enumerate(dims) if _doubled(d)]
            if len(dims) == 3 and len(doubled) == 1 and doubled[0] > 0:
                found.append((node, doubled[0] == 2))
    if len({id(n) for n, _ in found}) != 1:
        return None
    node, transposed = found[0]
    inner = list(ast.walk(node))
    layout = None
    if any(isinstance(n, ast.Slice) and _is_two(n.step) for n in inner):
        layout = "interleaved"
    elif any(
        isinstance(n, ast.Call) and _called(n) == "chunk" and n.args and _is_two(n.args[0])
        for n in inner
    ):
        layout = "concat"
    return transposed, layout


def _linear_experts(path) -> bool:
    """Exactly one class holds a 3-D parameter and multiplies by its slices with `F.linear`
    (JetMoE's parallel experts: `F.linear(rows, self.weight[i])`), the [out, in] layout."""
    found = []
    for node in ast.walk(ast.parse(Path(path).read_text())):
        if not isinstance(node, ast.ClassDef):
            continue
        three_d = any(
            isinstance(call, ast.Call)
            and _called(call) == "Parameter"
            and call.args
            and isinstance(call.args[0], ast.Call)
            and len(call.args[0].args) == 3
            for call in ast.walk(node)
        )
        linear = any(
            isinstance(call, ast.Call)
            and _called(call) == "linear"
            and len(call.args) > 1
            and isinstance(call.args[1], ast.Subscript)
            for call in ast.walk(node)
        )
        if three_d and linear:
            found.append(node)
    return len(found) == 1


def _doubled(node: ast.expr) -> bool:
    """`2 * x` or `x * 2`."""
    return (
        isinstance(node, ast.BinOp)
        and isinstance(node.op, ast.Mult)
        and (_is_two(node.left) or _is_two(node.right))
    )


def _is_two(node: ast.expr | None) -> bool:
    return isinstance(node, ast.Constant) and node.value == 2


def _called(node: ast.expr) -> str:
    func = node.func if isinstance(node, ast.Call) else node
    return func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")


def _fuse_weights(package, transposed: bool) -> None:
    w13, w2 = SHAPES[transposed]
    init = ("Experts", "__init__")
    run(
        package,
        "model.py",
        ReplaceStatements(*init, assigns("self.w1"), f"self.w13 = nn.Parameter(torch.empty{w13})"),
    )
    run(package, "model.py", ReplaceStatements(*init, assigns("self.w3"), ""))
    if transposed:
        run(
            package,
            "model.py",
            ReplaceStatements(
                *init, assigns("self.w2"), f"self.w2 = nn.Parameter(torch.empty{w2})"
            ),
        )


def _fuse_forward(package, layout: str, transposed: bool) -> None:
    """The statements computing gate and up (and SwiGLU of them) become one fused product
    and its split; `w2` is used as stored."""
    block = _gate_up_block(package)
    rows = _rows_of_gate(block)
    weight = "self.w13" if transposed else "self.w13.mT"
    code = f"gate_up = grouped_mm({rows}, {weight}, offs=offsets)\n{SPLITS[layout]}"
    if not any(assigns("up")(statement) for statement in block):
        # the block also applied SwiGLU (add_moe: hidden = silu(.. w1 ..) * (.. w3 ..))
        hidden = next((_swiglu_target(s) for s in block if _swiglu_target(s)), None)
        if hidden is None:
            raise EditError("Experts.forward's gate/up block is not SwiGLU over grouped_mm")
        code += f"\n{hidden} = F.silu(gate) * up"
    forward = ("Experts", "forward")
    run(package, "model.py", ReplaceStatements(*forward, uses("self.w1"), code))
    run(package, "model.py", ReplaceStatements(*forward, uses("self.w3"), ""))
    if transposed:
        run(package, "model.py", ReplaceExpressions(*forward, "self.w2.mT", "self.w2"))


# `grouped_mm(<rows>, self.w1, ...)` or `grouped_mm(<rows>, self.w1.mT, ...)`
_GATE_PRODUCT = m.Call(
    func=m.Name("grouped_mm"),
    args=[
        m.Arg(value=m.Name(), keyword=None),
        m.Arg(value=dotted("self.w1") | m.Attribute(value=dotted("self.w1")), keyword=None),
        m.ZeroOrMore(),
    ],
)
# `F.silu(grouped_mm(...), ...)`: SwiGLU's gate, the operand its product starts with
_SILU_OF_PRODUCT = m.Call(
    func=dotted("F.silu"),
    args=[m.Arg(value=m.Call(func=m.Name("grouped_mm"))), m.ZeroOrMore()],
)


def _rows_of_gate(block: list[cst.BaseStatement]) -> str:
    """The rows (a name) the block multiplies by `self.w1` in `grouped_mm`."""
    for statement in block:
        for call in findall(statement, _GATE_PRODUCT):
            return code_of(call.args[0].value)
    raise EditError("Experts.forward does not multiply its rows by self.w1 in grouped_mm")


def _swiglu_target(statement: cst.BaseStatement) -> str | None:
    """`h` of `h = F.silu(grouped_mm(...)) [* ...]`, else None."""
    if not m.matches(
        statement,
        m.SimpleStatementLine(body=[m.Assign(targets=[m.AssignTarget(target=m.Name())])]),
    ):
        return None
    assign = statement.body[0]
    value = assign.value
    while isinstance(value, cst.BinaryOperation):  # the product's first operand
        value = value.left
    if not m.matches(value, _SILU_OF_PRODUCT):
        return None
    return assign.targets[0].target.value


def _gate_up_block(package) -> list[cst.BaseStatement]:
    """Experts.forward's statements reading w1 or w3 (checked to be contiguous)."""
    body = _method_statements(package, "Experts", "forward")
    reads = [uses("self.w1")(s) or uses("self.w3")(s) for s in body]
    used = [i for i, read in enumerate(reads) if read]
    if not used or used != list(range(used[0], used[-1] + 1)):
        raise EditError("Experts.forward's w1/w3 statements are not one block")
    return [body[i] for i in used]


def _method_statements(package, class_name: str, method: str) -> list[cst.BaseStatement]:
    """The statements of `class_name.method` in model.py."""
    for statement in package.module("model.py").body:
        if isinstance(statement, cst.ClassDef) and statement.name.value == class_name:
            for item in statement.body.body:
                if isinstance(item, cst.FunctionDef) and item.name.value == method:
                    return list(item.body.body)
    raise EditError(f"model.py has no {class_name}.{method}")


def _docstring(layout: str, transposed: bool):
    order = "[num_experts, in, out]" if transposed else "[num_experts, out, in]"
    split = LAYOUT_WORDS[layout]

    def rewrite(old: str | None) -> str:
        first, _, rest = (old or "Routed experts.").partition("\n")
        # the layout clause of the first line is replaced, whichever words it used
        first = re.sub(r" (?:held as|as stacked weights) .*", "", first.rstrip("."))
        indent = re.match(r"\n*( *)", rest).group(1) if rest else "    "
        return (
            f"{first} held as stored on disk, {order}.\n\n"
            f"{indent}`w13` is gate and up in one product ({split}), `w2` the down projection.\n"
            + (rest if rest.strip() else indent)
        )

    return rewrite


# the house keys of the per-expert weights the fused tensors replace
_EXPERT_ROWS = (".experts.w1", ".experts.w2", ".experts.w3")


def _fuse_rows(package, hf_name: str) -> None:
    """Per-expert w1/w3/w2 rows (`experts.{}.gate_proj.weight`) become the fused tensors'
    rows (`experts.gate_up_proj`, `experts.down_proj`), mapped 1:1."""
    found = []

    def fused(hf: str) -> str:
        return hf.replace(".experts.{}.", ".experts.").removesuffix(".weight")

    def rewrite(hf: str, house: str | None):
        if house is None or not house.endswith(_EXPERT_ROWS):
            return [(hf, house)]
        found.append(house)
        if house.endswith(".w3"):
            return []
        if house.endswith(".w1"):
            return [(rename_component(fused(hf), "gate_proj", hf_name), house[:-1] + "13")]
        return [(fused(hf), house)]

    rewrite_adapter(package, rewrite)
    if len(found) != 3:
        raise EditError(f"the adapter's expert rows are {found}, not w1, w2, w3")
