"""Draw every normal init truncated at +-cutoff stds, as HF's `_init_weights` does (ModernBERT)."""

from __future__ import annotations

from importlib.util import find_spec
from pathlib import Path

import libcst as cst
import libcst.matchers as m

from codegen.scaffold.source import parse_source
from codegen.transforms._rope_edits import add_args_field
from codegen.transforms.base import Transform
from codegen.transforms.edits import EditError, code_of, expression, run

SHARED_LIFECYCLE = "codegen.layers.lifecycle"
FIELD = "float = 3.0  # normal inits are truncated at +-init_cutoff stds"
_NORMAL = m.Call(
    func=m.Attribute(
        value=m.Attribute(value=m.Name("nn"), attr=m.Name("init")), attr=m.Name("normal_")
    )
)


class TruncatedInit(Transform):
    """Every `nn.init.normal_(w, mean=0.0, std=s)` of the package's init becomes
    `nn.init.trunc_normal_(w, mean=0.0, std=s, a=-cutoff * s, b=cutoff * s)`.

    `cutoff` is the `hf_config` expression of HF's bound (ModernBERT's
    `initializer_cutoff_factor`, 3 when None), mapped to `args.init_cutoff`. lifecycle.py's
    table takes it as a `cutoff` argument after every `std` (threaded through its own calls);
    `Model.init_weights` passes `self.args.init_cutoff` and truncates its own draws (the
    scaled residual projections) with it. A draw elsewhere in model.py is refused: it would
    stay untruncated.
    """

    name = "truncated_init"

    def apply(self, package, features=None, *, cutoff: str | None = None) -> None:
        if not cutoff:
            raise EditError("truncated_init needs the hf_config expression of the cutoff")
        add_args_field(package, "init_cutoff", FIELD, cutoff)
        _own_lifecycle(package)
        run(package, "lifecycle.py", _Truncate("cutoff"))
        run(package, "lifecycle.py", _SayTruncated())
        run(package, "lifecycle.py", _ThreadCutoff())
        run(package, "model.py", _PassCutoff())
        truncate = _Truncate("self.args.init_cutoff", scope=("Model", "init_weights"))
        run(package, "model.py", truncate, required=False)
        package.edit("model.py", _NoOtherDraws())


def _own_lifecycle(package) -> None:
    """The package gets its own copy of the shared init table (`codegen.layers.lifecycle`)
    to edit, imported relatively by model.py; vendoring then leaves it as it is."""
    if "lifecycle.py" in package.files:
        return
    # located, not imported: scaffold stays free of torch
    source = Path(find_spec(SHARED_LIFECYCLE).origin).read_text()
    package.files["lifecycle.py"] = parse_source(source)
    run(package, "model.py", _RelativeImport(SHARED_LIFECYCLE, "lifecycle"))


class _RelativeImport(cst.CSTTransformer):
    """`from <module> import ...` -> `from .<local> import ...`."""

    def __init__(self, module: str, local: str):
        super().__init__()
        self.module, self.local, self.hits = module, local, 0

    def leave_ImportFrom(self, original, updated):
        if updated.relative or updated.module is None or code_of(updated.module) != self.module:
            return updated
        self.hits += 1
        return updated.with_changes(module=cst.Name(self.local), relative=[cst.Dot()])


class _Truncate(cst.CSTTransformer):
    """`nn.init.normal_(w, mean=0.0, std=s)` -> `nn.init.trunc_normal_(..., a=-c * s, b=c * s)`,
    inside `scope` (class, method) when given."""

    def __init__(self, cutoff: str, scope: tuple[str, str] | None = None):
        super().__init__()
        self.cutoff, self.scope, self.hits = cutoff, scope, 0
        self.path: list[str] = []

    def visit_ClassDef(self, node):
        self.path.append(node.name.value)

    def leave_ClassDef(self, original, updated):
        self.path.pop()
        return updated

    def visit_FunctionDef(self, node):
        self.path.append(node.name.value)

    def leave_FunctionDef(self, original, updated):
        self.path.pop()
        return updated

    def leave_Call(self, original, updated):
        if not m.matches(original, _NORMAL):
            return updated
        if self.scope is not None and tuple(self.path[:2]) != self.scope:
            return updated
        std = next((a.value for a in updated.args if a.keyword and a.keyword.value == "std"), None)
        if std is None:
            raise EditError(f"{code_of(original)}: a normal draw without std=")
        self.hits += 1
        s, c = code_of(std), self.cutoff
        args = ", ".join(
            f"{a.keyword.value}={code_of(a.value)}" if a.keyword else code_of(a.value)
            for a in updated.args
        )
        return expression(f"nn.init.trunc_normal_({args}, a=-{c} * {s}, b={c} * {s})")


class _SayTruncated(cst.CSTTransformer):
    """The module docstring says the table's normals are truncated."""

    hits = 0
    NOTE = "Every normal draw here is truncated at +-`cutoff` stds, as HF's `trunc_normal_` is."

    def leave_Module(self, original, updated):
        docstring = m.SimpleStatementLine(body=[m.Expr(m.SimpleString())])
        if not updated.body or not m.matches(updated.body[0], docstring):
            return updated
        string = updated.body[0].body[0].value
        text = string.value
        if not text.endswith('"""'):
            return updated
        self.hits += 1
        new = string.with_changes(value=text[:-3].rstrip() + f"\n\n{self.NOTE}\n" + '"""')
        first = updated.body[0].with_changes(body=[updated.body[0].body[0].with_changes(value=new)])
        return updated.with_changes(body=[first, *updated.body[1:]])


class _ThreadCutoff(cst.CSTTransformer):
    """lifecycle.py: every function taking `std` takes `cutoff` after it, and every call of
    a plain name (a table rule, `_own_tensors`) passing `std` passes `cutoff` after it."""

    hits = 0

    def leave_FunctionDef(self, original, updated):
        params = list(updated.params.params)
        names = [p.name.value for p in params]
        if "std" not in names:
            return updated
        self.hits += 1
        at = names.index("std") + 1
        cutoff = cst.Param(cst.Name("cutoff"), annotation=cst.Annotation(cst.Name("float")))
        params.insert(at, cutoff)
        return updated.with_changes(params=updated.params.with_changes(params=params))

    def leave_Call(self, original, updated):
        if not isinstance(updated.func, cst.Name):
            return updated
        args = list(updated.args)
        at = next(
            (
                i
                for i, a in enumerate(args)
                if a.keyword is None and m.matches(a.value, m.Name("std"))
            ),
            None,
        )
        if at is None:
            return updated
        args.insert(at + 1, cst.Arg(cst.Name("cutoff")))
        return updated.with_changes(args=_commas(args))


class _PassCutoff(cst.CSTTransformer):
    """model.py: `init_module_weights(self, std, ...)` passes `self.args.init_cutoff` after std."""

    hits = 0

    def leave_Call(self, original, updated):
        if not m.matches(updated.func, m.Name("init_module_weights")) or len(updated.args) < 2:
            return updated
        self.hits += 1
        args = list(updated.args)
        args.insert(2, cst.Arg(expression("self.args.init_cutoff")))
        return updated.with_changes(args=_commas(args))


class _NoOtherDraws(cst.CSTVisitor):
    """A normal draw left in model.py would start untruncated: refused."""

    def visit_Call(self, node):
        if m.matches(node, _NORMAL):
            raise EditError(f"model.py: {code_of(node)} would stay untruncated")


def _commas(args: list[cst.Arg]) -> list[cst.Arg]:
    comma = cst.Comma(whitespace_after=cst.SimpleWhitespace(" "))
    return [a.with_changes(comma=comma) for a in args[:-1]] + [
        args[-1].with_changes(comma=cst.MaybeSentinel.DEFAULT)
    ]
