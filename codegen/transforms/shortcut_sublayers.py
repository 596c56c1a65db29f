"""Turn the reference's block (one attention, one MoE or dense feed-forward) into a layer of
attention sublayers, each with its own dense feed-forward and pre-norms, beside a shortcut
MoE (LongCat-Flash's decoder layer; the analysis's `block.sublayers`).

The block keeps one implementation of each part: `Attention`, `FeedForward`, `MoE` and the
norms are built as the reference builds them, `count` times in a `nn.ModuleList` (the MoE
once). The MoE reads sublayer `moe_input`'s normed feed-forward input and its output is added
to the layer's last residual sum. The adapter's rows of those parts get the list index
(`layers.{}.attention.{}.wq_a.weight` <- `model.layers.{}.self_attn.{}.q_a_proj.weight`),
named as the checkpoint's module lists.

Before (deepseek_v3)::

    self.attention_norm = RMSNorm(args.dim, args.norm_eps)
    self.attention = Attention(args)
    ...
    if self.is_moe:
        self.moe = MoE(args)
    else:
        self.feed_forward = FeedForward(args.dim, args.hidden_dim)

After (count 2, moe_input 0)::

    self.attention_norm = nn.ModuleList(RMSNorm(args.dim, args.norm_eps) for _ in range(2))
    self.attention = nn.ModuleList(Attention(args) for _ in range(2))
    ...
    self.feed_forward = nn.ModuleList(FeedForward(args.dim, args.hidden_dim) for _ in range(2))
    self.moe = MoE(args)

    def forward(self, x, rope):
        h = x + self.attention[0](self.attention_norm[0](x), rope)
        normed = self.ffn_norm[0](h)
        shortcut = self.moe(normed)
        h = h + self.feed_forward[0](normed)
        h = h + self.attention[1](self.attention_norm[1](h), rope)
        return h + self.feed_forward[1](self.ffn_norm[1](h)) + shortcut
"""

from __future__ import annotations

import libcst as cst
import libcst.matchers as m

from codegen.transforms.base import Transform
from codegen.transforms.edits import EditDict, EditError, code_of, expression, run, statements

_BLOCK = "TransformerBlock"
# the house parts the sublayers repeat, as the reference block names them
PARTS = ("attention_norm", "attention", "ffn_norm", "feed_forward")


class ShortcutSublayers(Transform):
    """The block holds `count` attention sublayers, each with its own dense feed-forward and
    pre-norms, and a shortcut MoE reading sublayer `moe_input`'s normed feed-forward input,
    added to the last residual sum."""

    name = "shortcut_sublayers"

    def apply(self, package, features=None, *, sublayers: dict) -> None:
        count, moe_input = int(sublayers["count"]), int(sublayers["moe_input"])
        if not 0 <= moe_input < count or count < 2:
            raise EditError(f"shortcut_sublayers: {count} sublayers, MoE from {moe_input}")
        names = dict(sublayers["names"])
        if set(names) != set(PARTS):
            raise EditError(f"shortcut_sublayers: names for {sorted(names)}, not {PARTS}")
        run(package, "model.py", _Block(count, moe_input))
        run(package, "state_dict_adapter.py", _IndexRows(names))
        run(package, "args.py", _FfnComment(count), required=False)


class _Block(cst.CSTTransformer):
    """TransformerBlock: the parts in module lists, the MoE built on every layer, and the
    forward of the sublayers with the shortcut."""

    def __init__(self, count: int, moe_input: int):
        super().__init__()
        self.count, self.moe_input = count, moe_input
        self.hits = 0

    def leave_ClassDef(self, original, updated):
        if updated.name.value != _BLOCK:
            return updated
        body = []
        for item in updated.body.body:
            if isinstance(item, cst.FunctionDef) and item.name.value == "__init__":
                item = _with_body(item, self._init(list(item.body.body)))
            elif isinstance(item, cst.FunctionDef) and item.name.value == "forward":
                item = _with_body(item, self._forward(item))
            body.append(item)
        self.hits += 1
        doc = statements(f'"""{_docstring(self.count, self.moe_input)}"""')
        if body and _is_docstring(body[0]):
            body = body[1:]
        return updated.with_changes(body=updated.body.with_changes(body=[*doc, *body]))

    def _init(self, body: list) -> list:
        built: dict[str, cst.BaseExpression] = {}
        out: list = []
        for statement in body:
            target, value = _self_assign(statement)
            if target == "is_moe":
                continue  # every layer has the MoE
            if isinstance(statement, cst.If) and _builds(statement, "moe"):
                moe, ffn = _branch_calls(statement)
                built["feed_forward"] = ffn
                out.append(_listed("feed_forward", ffn, self.count))
                out.append(statements(f"self.moe = {code_of(moe)}")[0])
                continue
            if target in PARTS:
                built[target] = value
                out.append(
                    _listed(target, value, self.count).with_changes(
                        leading_lines=statement.leading_lines
                    )
                )
                continue
            out.append(statement)
        missing = [part for part in PARTS if part not in built]
        if missing:
            raise EditError(f"{_BLOCK}.__init__ builds no {missing} (or no MoE branch)")
        return out

    def _forward(self, forward: cst.FunctionDef) -> list:
        params = [p.name.value for p in forward.params.params][1:]
        if not params:
            raise EditError(f"{_BLOCK}.forward takes no hidden states")
        x, rest = params[0], params[1:]
        extra = "".join(f", {name}" for name in rest)
        lines = []
        h = x
        for i in range(self.count):
            lines.append(f"h = {h} + self.attention[{i}](self.attention_norm[{i}]({h}){extra})")
            h = "h"
            last = i == self.count - 1
            if i == self.moe_input:
                lines.append(f"normed = self.ffn_norm[{i}](h)")
                lines.append("shortcut = self.moe(normed)")
                ffn = f"self.feed_forward[{i}](normed)"
            else:
                ffn = f"self.feed_forward[{i}](self.ffn_norm[{i}](h))"
            if last:
                lines.append(f"return h + {ffn} + shortcut")
            else:
                lines.append(f"h = h + {ffn}")
        return statements("\n".join(lines))


def _docstring(count: int, moe_input: int) -> str:
    which = ("first", "second", "third", "fourth")
    nth = which[moe_input] if moe_input < len(which) else f"{moe_input}-th"
    return (
        f"{count} attention sublayers, each followed by its own dense feed-forward (pre-norm"
        f" residuals),\n    and a shortcut MoE: it reads the {nth} feed-forward's normed input"
        " and its output joins\n    the layer's last residual sum."
    )


def _with_body(function: cst.FunctionDef, body: list) -> cst.FunctionDef:
    kept = [s for s in list(function.body.body)[:1] if _is_docstring(s)]
    if kept and body and _is_docstring(body[0]):
        kept = []
    return function.with_changes(body=function.body.with_changes(body=[*kept, *body]))


def _is_docstring(statement) -> bool:
    return m.matches(statement, m.SimpleStatementLine(body=[m.Expr(value=m.SimpleString())]))


def _self_assign(statement) -> tuple[str | None, cst.BaseExpression | None]:
    """`self.<name> = <value>` -> (name, value), else (None, None)."""
    if not m.matches(
        statement,
        m.SimpleStatementLine(
            body=[m.Assign(targets=[m.AssignTarget(m.Attribute(value=m.Name("self")))])]
        ),
    ):
        return None, None
    assign = statement.body[0]
    return assign.targets[0].target.attr.value, assign.value


def _builds(node, name: str) -> bool:
    return bool(
        m.findall(
            node, m.Assign(targets=[m.AssignTarget(m.Attribute(m.Name("self"), m.Name(name)))])
        )
    )


def _branch_calls(branch: cst.If) -> tuple[cst.BaseExpression, cst.BaseExpression]:
    """The reference's `if self.is_moe: self.moe = MoE(...) else: self.feed_forward = ...`:
    the MoE's and the dense feed-forward's constructor calls."""
    found: dict[str, cst.BaseExpression] = {}
    for statement in m.findall(branch, m.SimpleStatementLine()):
        target, value = _self_assign(statement)
        if target in ("moe", "feed_forward"):
            found[target] = value
    if set(found) != {"moe", "feed_forward"}:
        raise EditError(f"{_BLOCK}.__init__'s MoE branch builds no dense feed_forward beside it")
    return found["moe"], found["feed_forward"]


def _listed(name: str, value: cst.BaseExpression, count: int) -> cst.SimpleStatementLine:
    listed = expression(f"nn.ModuleList({code_of(value)} for _ in range({count}))")
    return statements(f"self.{name} = {code_of(listed)}")[0]


class _IndexRows(EditDict):
    """Adapter rows of the listed parts get the list index on both sides, the checkpoint's
    module list named as the target names it (`self_attn`, `mlps`, `input_layernorm`...)."""

    def __init__(self, names: dict[str, str]):
        self.names = names
        super().__init__("from_hf_map", self._rewrite)

    def _rewrite(self, key: str, value: str):
        house = value.strip().removeprefix("(").removesuffix(")").strip().strip('"')
        parts = house.split(".")
        if len(parts) < 4 or parts[:2] != ["layers", "{}"] or parts[2] not in self.names:
            return [(key, value)]
        hf = key.strip('"').split(".")
        at = hf.index("{}") if "{}" in hf else -1
        if at < 0 or at + 2 >= len(hf):
            return [(key, value)]
        hf_key = ".".join([*hf[: at + 1], self.names[parts[2]], "{}", *hf[at + 2 :]])
        house_key = ".".join([*parts[:3], "{}", *parts[3:]])
        return [(f'"{hf_key}"', f'"{house_key}"')]


class _FfnComment(cst.CSTTransformer):
    """The comment above ModelArgs' `hidden_dim` says what builds the dense feed-forwards now
    (the reference's said which layers are dense)."""

    def __init__(self, count: int):
        super().__init__()
        self.count = count
        self.hits = 0

    def leave_SimpleStatementLine(self, original, updated):
        if not m.matches(
            updated, m.SimpleStatementLine(body=[m.AnnAssign(target=m.Name("hidden_dim"))])
        ):
            return updated
        lines = [line for line in updated.leading_lines if line.comment is None]
        if len(lines) == len(updated.leading_lines):
            return updated
        self.hits += 1
        text = (
            f"# feed-forward: each of a layer's {self.count} sublayers has a dense SwiGLU;"
            " every layer, the MoE"
        )
        return updated.with_changes(
            leading_lines=[*lines, cst.EmptyLine(comment=cst.Comment(text))]
        )
