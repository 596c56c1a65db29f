"""libcst edits shared by the MoE transforms (no Transform here).

They name their anchors the way `edits.py` does (class, method, statement) and raise
`EditError` through `edits.run` when the anchor is missing.
"""

from __future__ import annotations

import json
from importlib.util import find_spec
from pathlib import Path

import libcst as cst
import libcst.matchers as m

from codegen.transforms._attention_edits import find_method
from codegen.transforms._ffn_edits import drop_import
from codegen.transforms.edits import (
    EditDict,
    EditError,
    InsertStatements,
    ReplaceStatements,
    ScopedTransformer,
    add_import,
    code_of,
    expression,
    findall,
    run,
    statements,
)


def add_args_fields(package, code: str) -> None:
    """Append dataclass fields (with their comments) to ModelArgs, after the last field."""
    run(package, "args.py", _AfterLastField(commented_statements(code)))


def commented_statements(code: str) -> list[cst.BaseStatement]:
    """`statements(code)`, keeping comment lines above the first statement on it."""
    module = cst.parse_module(code.strip() + "\n")
    body = list(module.body)
    if module.header and body:
        body[0] = body[0].with_changes(leading_lines=[*module.header, *body[0].leading_lines])
    return body


def add_config_kwargs(package, kwargs: dict[str, str]) -> None:
    """Append `name=<expr>` keywords to the `cls(...)` call of `ModelArgs.from_hf_config`."""
    run(package, "args.py", _ClsKeywords(kwargs))


def add_method(package, filename: str, class_name: str, code: str) -> None:
    """Append a method to a class body (after its last statement)."""
    run(package, filename, _AppendToClass(class_name, statements(code)))


def insert_after_class(package, filename: str, class_name: str, code: str) -> None:
    """Insert module-level statements (classes, functions) right after `class_name`."""
    run(package, filename, _AfterClass(class_name, statements(code)))


def insert_before_class(package, filename: str, class_name: str, code: str) -> None:
    """Insert module-level statements right before `class_name`."""
    run(package, filename, _AfterClass(class_name, statements(code), before=True))


def remove_class(package, filename: str, class_name: str) -> None:
    run(package, filename, _RemoveClass(class_name))


def has_class(package, filename: str, class_name: str) -> bool:
    return any(
        isinstance(statement, cst.ClassDef) and statement.name.value == class_name
        for statement in package.module(filename).body
    )


def replace_self_attribute(package, class_name: str, method: str, attr: str, new: str) -> None:
    """In `class_name.method` of model.py, every `self.<attr>` read becomes `new`."""
    run(package, "model.py", _ReplaceSelfAttr(class_name, method, attr, expression(new)))


def replace_statement(package, filename, class_name, method, anchor, code: str) -> None:
    """Replace the statements of `class_name.method` matching `anchor` (an `edits` anchor)
    by `code` (comment lines above its first statement kept)."""
    edit = ReplaceStatements(class_name, method, anchor, code)
    edit.new = commented_statements(code) if code.strip() else []
    run(package, filename, edit)


def insert_statements(package, class_name, method, anchor, code: str, before=False):
    """Insert `code` into model.py's `class_name.method` after (or before) the statement
    matching `anchor` (comment lines above its first statement kept)."""
    edit = InsertStatements(class_name, method, anchor, code, before=before)
    edit.new = commented_statements(code)
    run(package, "model.py", edit)


def replace_leading_statements(package, class_name, method, stop, code: str):
    """In model.py's `class_name.method`, replace the statements after the docstring up to
    the first one matching the anchor `stop` by `code` (so running twice converges)."""
    run(package, "model.py", _ReplaceLeading(class_name, method, stop, commented_statements(code)))


def insert_rows_after(package, house_key: str, rows: list[tuple[str, str]]) -> None:
    """Insert `from_hf_map` rows (source strings) right after the row mapping to `house_key`
    (a house template such as `layers.{}.moe.experts.w2`)."""
    rewrite_row(package, house_key, lambda found, _: [found, *rows])


# the router's weight in the house layout: the row the router transforms rewrite
GATE_WEIGHT = "layers.{}.moe.gate.weight"


def rewrite_row(package, house_key: str, rows) -> None:
    """Replace the `from_hf_map` row mapping to `house_key` (a house template such as
    `layers.{}.moe.gate.weight`) by `rows(row, prefix)`: `row` that entry as source strings
    (key, value), `prefix` the HF module holding the tensor (its key without the last part).
    The table must have such a row."""
    found = []
    wanted = f'"{house_key}"'

    def rewrite(key, value):
        if house_of(value) != wanted:
            return [(key, value)]
        found.append(key)
        return rows((key, value), house_of(key).strip('"').rsplit(".", 1)[0])

    run(package, "state_dict_adapter.py", EditDict("from_hf_map", rewrite))
    if not found:
        raise EditError(f"state_dict_adapter.py has no row for {house_key}")


def drop_rows(package, house_fragment: str) -> None:
    """Remove the `from_hf_map` rows whose house key contains `house_fragment`."""
    run(
        package,
        "state_dict_adapter.py",
        EditDict("from_hf_map", lambda k, v: [] if house_fragment in v else [(k, v)]),
    )


def drop_unreferenced_classes(package) -> None:
    """Remove model.py's classes no code of the package names any more (the MoE block, then
    its router; the dense feed-forward), until none is left."""
    while True:
        model = package.module("model.py")
        classes = [s for s in model.body if isinstance(s, cst.ClassDef)]
        names = [
            node.value
            for module in package.files.values()
            for node in m.findall(module, m.Name() | m.Attribute())
            if isinstance(node, cst.Name)
        ]
        dead = [c for c in classes if c.name.value != "Model" and names.count(c.name.value) == 1]
        if not dead:
            return
        body = [s for s in model.body if s not in dead]
        package.files["model.py"] = model.with_changes(body=body)


def house_of(value: str) -> str:
    """A table value's source without wrapping parentheses: `("x")` -> `"x"`."""
    return value.strip().removeprefix("(").removesuffix(")").strip()


def row(hf: str, house: str) -> tuple[str, str]:
    """A `from_hf_map` entry as source strings; a value that would overflow the table's
    100-column line is parenthesised so ruff can wrap it (as the references do)."""
    if len(f'        "{hf}": "{house}",') > 100:
        return f'"{hf}"', f'(\n"{house}"\n)'
    return f'"{hf}"', f'"{house}"'


class _AfterLastField(cst.CSTTransformer):
    def __init__(self, new):
        super().__init__()
        self.new, self.hits = new, 0

    def leave_ClassDef(self, original, updated):
        if updated.name.value != "ModelArgs":
            return updated
        body = list(updated.body.body)
        last = max(
            (
                index
                for index, line in enumerate(body)
                if isinstance(line, cst.SimpleStatementLine)
                and isinstance(line.body[0], cst.AnnAssign)
            ),
            default=None,
        )
        if last is None:
            return updated
        self.hits += 1
        body[last + 1 : last + 1] = self.new
        return updated.with_changes(body=updated.body.with_changes(body=body))


class _ClsKeywords(cst.CSTTransformer):
    def __init__(self, kwargs: dict[str, str]):
        super().__init__()
        self.kwargs, self.hits = kwargs, 0
        self._in_from_hf = False

    def visit_FunctionDef(self, node):
        if node.name.value == "from_hf_config":
            self._in_from_hf = True

    def leave_FunctionDef(self, original, updated):
        if original.name.value == "from_hf_config":
            self._in_from_hf = False
        return updated

    def leave_Call(self, original, updated):
        if not (
            self._in_from_hf and isinstance(updated.func, cst.Name) and updated.func.value == "cls"
        ):
            return updated
        self.hits += 1
        args = list(updated.args)
        comma = args[-1].comma if args else cst.MaybeSentinel.DEFAULT
        if args:
            args[-1] = args[-1].with_changes(comma=cst.Comma())
        new = [
            cst.Arg(
                keyword=cst.Name(name),
                value=expression(value),
                equal=cst.AssignEqual(
                    whitespace_before=cst.SimpleWhitespace(""),
                    whitespace_after=cst.SimpleWhitespace(""),
                ),
                comma=cst.Comma(),
            )
            for name, value in self.kwargs.items()
        ]
        new[-1] = new[-1].with_changes(comma=comma)
        return updated.with_changes(args=[*args, *new])


class _AppendToClass(cst.CSTTransformer):
    def __init__(self, class_name, new):
        super().__init__()
        self.class_name, self.new, self.hits = class_name, new, 0

    def leave_ClassDef(self, original, updated):
        if updated.name.value != self.class_name:
            return updated
        self.hits += 1
        body = [*updated.body.body, *self.new]
        return updated.with_changes(body=updated.body.with_changes(body=body))


class _AfterClass(cst.CSTTransformer):
    def __init__(self, class_name, new, before: bool = False):
        super().__init__()
        self.class_name, self.new, self.before, self.hits = class_name, new, before, 0

    def leave_Module(self, original, updated):
        body = list(updated.body)
        for index, statement in enumerate(body):
            if isinstance(statement, cst.ClassDef) and statement.name.value == self.class_name:
                self.hits += 1
                at = index if self.before else index + 1
                body[at:at] = self.new
                return updated.with_changes(body=body)
        return updated


class _RemoveClass(cst.CSTTransformer):
    def __init__(self, class_name):
        super().__init__()
        self.class_name, self.hits = class_name, 0

    def leave_ClassDef(self, original, updated):
        if updated.name.value == self.class_name:
            self.hits += 1
            return cst.RemoveFromParent()
        return updated


class _ReplaceSelfAttr(ScopedTransformer):
    def __init__(self, class_name, method, attr, new):
        super().__init__(class_name, method)
        self.attr, self.new = attr, new

    def leave_Attribute(self, original, updated):
        if (
            self.in_scope()
            and isinstance(updated.value, cst.Name)
            and updated.value.value == "self"
            and updated.attr.value == self.attr
        ):
            self.hits += 1
            return self.new
        return updated


class _ReplaceLeading(cst.CSTTransformer):
    def __init__(self, class_name, method, stop, new):
        super().__init__()
        self.class_name, self.method, self.stop, self.new = class_name, method, stop, new
        self._class: list[str] = []
        self.hits = 0

    def visit_ClassDef(self, node):
        self._class.append(node.name.value)

    def leave_ClassDef(self, original, updated):
        self._class.pop()
        return updated

    def leave_FunctionDef(self, original, updated):
        if self._class[-1:] != [self.class_name] or updated.name.value != self.method:
            return updated
        body = list(updated.body.body)
        start = 1 if body and _is_docstring(body[0]) else 0
        end = next((i for i in range(start, len(body)) if self.stop(body[i])), None)
        if end is None or end == start:
            return updated
        self.hits += 1
        body[start:end] = self.new
        return updated.with_changes(body=updated.body.with_changes(body=body))


def _is_docstring(statement) -> bool:
    return (
        isinstance(statement, cst.SimpleStatementLine)
        and isinstance(statement.body[0], cst.Expr)
        and isinstance(statement.body[0].value, cst.SimpleString | cst.ConcatenatedString)
    )


SHARED_EXPERTS_MODULE = "codegen.layers.experts"
GROUPED_MM_MODULE = "codegen.layers.grouped_mm"  # the experts' product, shared by every MoE


def own_experts(package) -> None:
    """Make model.py hold its own `Experts` class to edit: a package that imports the shared
    one (`codegen.layers.experts`) gets a copy of it in place of the import, right before
    `MoE`. A transform that changes the experts' maths for one target calls this first."""
    if has_class(package, "model.py", "Experts"):
        return
    # located, not imported: scaffold stays free of torch
    shared = cst.parse_module(Path(find_spec(SHARED_EXPERTS_MODULE).origin).read_text())
    (experts_class,) = [s for s in shared.body if m.matches(s, m.ClassDef(name=m.Name("Experts")))]
    experts_class = experts_class.visit(_PlainSwiglu())
    if not has_class(package, "model.py", "MoE"):
        raise EditError("model.py has no Experts class and no MoE class (run add_moe first)")
    run(package, "model.py", _AfterClass("MoE", [experts_class], before=True))
    add_import(package, "model.py", GROUPED_MM_MODULE, "grouped_mm")
    drop_import(package, "model.py", SHARED_EXPERTS_MODULE, "Experts")


class _PlainSwiglu(cst.CSTTransformer):
    """The shared class's activation parameter made the silu it defaults to: `self.act(h)` ->
    `F.silu(h, inplace=True)` and `h = h * up` -> `h *= up` (silu's output may be written
    in place), the `act` parameter, its attribute and the docstring paragraph naming it go.
    A copy is edited for one target's experts maths, which is SwiGLU's."""

    _ACT = m.Attribute(value=m.Name("self"), attr=m.Name("act"))

    def leave_FunctionDef(self, original, updated):
        params = updated.params.params
        if not any(p.name.value == "act" for p in params):
            return updated
        kept = [
            p.with_changes(
                comma=cst.MaybeSentinel.DEFAULT, whitespace_after_param=cst.SimpleWhitespace("")
            )
            for p in params
            if p.name.value != "act"
        ]
        return updated.with_changes(
            params=updated.params.with_changes(params=kept),
            whitespace_before_params=cst.SimpleWhitespace(""),
        )

    def leave_SimpleStatementLine(self, original, updated):
        if m.matches(
            updated, m.SimpleStatementLine(body=[m.Assign(targets=[m.AssignTarget(self._ACT)])])
        ):
            return cst.RemoveFromParent()
        return updated

    def leave_Assign(self, original, updated):
        (target,) = updated.targets
        value = updated.value
        if not (
            m.matches(target.target, m.Name())
            and m.matches(value, m.BinaryOperation(operator=m.Multiply()))
            and m.matches(value.left, m.Name(target.target.value))
        ):
            return updated
        return cst.AugAssign(target.target, cst.MultiplyAssign(), value.right)

    def leave_Call(self, original, updated):
        if not m.matches(updated.func, self._ACT):
            return updated
        inplace = cst.Arg(
            cst.Name("True"),
            keyword=cst.Name("inplace"),
            equal=cst.AssignEqual(cst.SimpleWhitespace(""), cst.SimpleWhitespace("")),
        )
        first = updated.args[0].with_changes(comma=cst.MaybeSentinel.DEFAULT)
        return updated.with_changes(func=expression("F.silu"), args=[first, inplace])

    def leave_ClassDef(self, original, updated):
        first = updated.body.body[0]
        if not _is_docstring(first):
            return updated
        inner = first.body[0].value.value[3:-3]
        tail = inner[len(inner.rstrip()) :]
        kept = "\n\n".join(p for p in inner.rstrip().split("\n\n") if "`act`" not in p)
        string = first.body[0].with_changes(value=cst.SimpleString('"""' + kept + tail + '"""'))
        docstring = first.with_changes(body=[string])
        return updated.with_changes(
            body=updated.body.with_changes(body=[docstring, *updated.body.body[1:]])
        )


def rows_on_disk(package, features) -> None:
    """MoE rows (house keys under `.moe.`) keyed where the target's checkpoint keeps the
    tensor: a row whose HF key names (up to key synonyms) a module tensor the checkpoint
    stores under another name gets that name, as transformers' conversion mapping renames
    it on load (aria's `mlp.experts.gate_up_proj` is `mlp.experts.fc1.weight` on disk,
    granitemoe's router `block_sparse_moe.router.weight` is `...router.layer.weight`).
    Read from the analysed module keys and conversions (`conversion.analysed`: a remote
    folder's own registration), so a renamed copy of the modeling code that registers none
    keeps its module keys. Without Features: unchanged."""
    state = getattr(features, "state_dict", None)
    if state is None or not state.prefix:
        return
    from codegen.analyze.conversion import analysed, to_checkpoint
    from codegen.scaffold.table import load_names

    conversions = analysed(features)
    if not conversions:
        return
    canonical = {a: group[0] for group in load_names().KEY_SYNONYMS for a in group}

    def shape(key: str) -> tuple[str, ...]:
        return tuple(canonical.get(part, part) for part in key.split("."))

    module = [k.split(" [", 1)[0] for k in state.layer_keys]
    disk = {k.split(" [", 1)[0] for k in state.checkpoint_layer_keys}
    layer = f"{state.prefix}.{{}}."

    def rewrite(key, value):
        hf = json.loads(key)
        if ".moe." not in value or ".{}." not in hf:
            return [(key, value)]
        relative = hf.split(".{}.", 1)[1]
        paired = [k for k in module if shape(k) == shape(relative)]
        if len(paired) != 1 or paired[0] in disk:
            return [(key, value)]
        found, _ = to_checkpoint([layer + paired[0]], conversions)
        moved = [k for k in found if k.startswith(layer) and k[len(layer) :] in disk]
        if len(moved) != 1:
            return [(key, value)]
        return [(json.dumps(moved[0]), value)]

    run(package, "state_dict_adapter.py", EditDict("from_hf_map", rewrite))


def router_rows(package, features) -> None:
    """The router rows (`moe.gate.weight`, `moe.gate.e_score_correction_bias`) keyed where the
    target's checkpoint keeps them: the selection bias at the analysed `moe.router_bias_key`
    under the MoE, the weight the one `.weight` tensor of the module holding that bias
    (LongCat-Flash's `mlp.router.classifier.weight` beside `mlp.router.e_score_correction_bias`).
    Without Features, or where the keys are not found so, unchanged (align_hf_keys pairs them)."""
    state = getattr(features, "state_dict", None)
    bias_key = getattr(getattr(features, "moe", None), "router_bias_key", None)
    if state is None or not state.prefix or not bias_key:
        return
    keys = [k.split(" [", 1)[0] for k in state.checkpoint_layer_keys or state.layer_keys]
    biases = [k for k in keys if k == bias_key or k.endswith("." + bias_key)]
    if len(biases) != 1:
        return
    router = biases[0].rsplit(".", 1)[0]
    weights = [k for k in keys if k.startswith(router + ".") and k.endswith(".weight")]
    if len(weights) != 1:
        return
    layer = f"{state.prefix}.{{}}."
    target = {
        '"layers.{}.moe.gate.weight"': layer + weights[0],
        '"layers.{}.moe.gate.e_score_correction_bias"': layer + biases[0],
    }

    def rewrite(key, value):
        found = target.get(house_of(value))
        return [(json.dumps(found), value)] if found else [(key, value)]

    run(package, "state_dict_adapter.py", EditDict("from_hf_map", rewrite))


# the model's loop over its blocks: `for layer in self.layers:`
LAYER_LOOP = m.For(iter=m.Attribute(value=m.Name("self"), attr=m.Name("layers")))


def chosen_ffn(package) -> str | None:
    """`x` where the block's forward picks its feed-forward as `x = self.moe if self.is_moe
    else self.feed_forward` (layers with and without an MoE), else None."""
    method = find_method(package.module("model.py"), "TransformerBlock", "forward")
    picked = m.Assign(
        targets=[m.AssignTarget(m.Name())],
        value=m.IfExp(body=m.Attribute(value=m.Name("self"), attr=m.Name("moe"))),
    )
    found = findall(method, picked) if method is not None else []
    return found[0].targets[0].target.value if found else None


def is_return(statement) -> bool:
    body = getattr(statement, "body", None)
    return isinstance(body, list | tuple) and bool(body) and isinstance(body[0], cst.Return)


def returned_expression(package, cls: str) -> str:
    """The code `cls.forward` returns last."""
    method = find_method(package.module("model.py"), cls, "forward")
    last = method.body.body[-1] if method is not None else None
    if not is_return(last):
        raise EditError(f"{cls}.forward does not end in a return")
    return code_of(last.body[0].value)


class InLoop(cst.CSTTransformer):
    """Apply `rewrite` to the statements inside `Model.forward`'s loop over `self.layers`."""

    def __init__(self, rewrite):
        super().__init__()
        self.rewrite, self.cls, self.depth, self.hits = rewrite, None, 0, 0

    def visit_ClassDef(self, node):
        self.cls = node.name.value

    def visit_For(self, node):
        if self.cls == "Model" and m.matches(node, LAYER_LOOP):
            self.depth += 1

    def leave_For(self, original, updated):
        if self.cls == "Model" and m.matches(original, LAYER_LOOP):
            self.depth -= 1
        return updated

    def leave_Assign(self, original, updated):
        if not self.depth:
            return updated
        new = self.rewrite(updated)
        if new is None:
            return updated
        self.hits += 1
        return new


# where the router rules write the router: (class, method); the scores and the renormalisation
# of the picked ones are computed there
ROUTER_SITES = (("Gate", "forward"), ("MoE", "route"), ("TableGate", "forward"))
_SUM = m.Call(func=m.Attribute(attr=m.Name("sum")))


class Renormalise(ScopedTransformer):
    """`<w> / <w>.sum(...)` or `<w> / (<w>.sum(...) + <number>)` in `cls.method` ->
    `<w> / (<w>.sum(...) + eps)`, or `<w> / <w>.sum(...)` where `eps` is None; a constant
    the sum is not added is left alone (`+ self.eps`: not the router's). `hits`: the
    divisions found."""

    def __init__(self, cls: str, method: str, eps: float | None):
        super().__init__(cls, method)
        self.eps = eps

    def leave_BinaryOperation(self, original, updated):
        if not self.in_scope() or not m.matches(updated.operator, m.Divide()):
            return updated
        right = updated.right
        number = m.Integer() | m.Float()
        added = m.matches(right, m.BinaryOperation(left=_SUM, operator=m.Add(), right=number))
        total = right.left if added else right
        if not m.matches(total, _SUM) or not total.func.value.deep_equals(updated.left):
            return updated
        self.hits += 1
        if self.eps is None:
            return updated.with_changes(right=total)
        return updated.with_changes(right=expression(f"({code_of(total)} + {self.eps!r})"))
