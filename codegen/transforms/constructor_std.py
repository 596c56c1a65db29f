"""Start the parameters HF's `_init_weights` leaves alone at their constructor's std (GPT-1's
Conv1D projections: normal(0, 0.02) whatever initializer_range)."""

from __future__ import annotations

import libcst as cst

from codegen.transforms import _attention_edits as edits
from codegen.transforms._ffn_edits import docstring_of
from codegen.transforms.base import Transform
from codegen.transforms.edits import EditError, add_import, run, statements
from codegen.transforms.keep_fp32_params import house_key

TABLE = """\
# parameters HF's _init_weights leaves as their module's constructor drew them: normal(0, std)
# whatever initializer_range (house names as globs)
CONSTRUCTOR_STDS = {{{entries}}}
"""
# after the plain table: those parameters drawn again at their constructor's std
DRAW = """\
for name, weight in self.named_parameters():  # as HF's constructors drew them
    std = next((s for p, s in CONSTRUCTOR_STDS.items() if fnmatchcase(name, p)), None)
    if std is not None:
        nn.init.normal_(weight, mean=0.0, std=std)
"""


class ConstructorStd(Transform):
    """Parameters HF's `_init_weights` never reaches start at their constructor's std.

    `stds` are (module key with `{}`, std) pairs, as the analysis reads them; the house names
    come from the adapter rows. `Model.init_weights` draws those parameters at their std after
    the `initializer_range` table: the target's `_init_weights` chain never reaches their
    modules (GPT-1's override has no branch for Conv1D, nor has PreTrainedModel's table), so
    HF's model keeps the constructor's draw for every config. A rule that re-draws some of
    them later (scaled_residual_init) runs after this one."""

    name = "constructor_std"

    def apply(self, package, features=None, *, stds: tuple[tuple[str, float], ...] = ()) -> None:
        if not stds:
            raise ValueError("constructor_std needs (module key, std) pairs")
        if edits.find_method(package.module("model.py"), "Model", "init_weights") is None:
            raise EditError("model.py: Model has no init_weights to extend")
        house = {}
        for key, std in stds:
            found = house_key(package, features, key)
            if found is None:
                raise EditError(f"no adapter row for {key}: cannot start it at std {std}")
            house[found.replace("{}", "*")] = float(std)
        entries = ", ".join(f'"{name}": {std!r}' for name, std in house.items())
        edits.insert_definition(package, "model.py", TABLE.format(entries=entries), before="Model")
        add_import(package, "model.py", "fnmatch", "fnmatchcase")
        edits.append_to_method(package, "model.py", "Model", "init_weights", DRAW)
        run(package, "model.py", _SayConstructorStds())


SAID = "The CONSTRUCTOR_STDS weights, which it never reaches, at their constructor's std."
INDENT = " " * 8  # a method's docstring lines in model.py


class _SayConstructorStds(cst.CSTTransformer):
    """`Model.init_weights`'s docstring names the weights it draws at their own std."""

    def __init__(self):
        super().__init__()
        self.hits, self.classes = 0, []

    def visit_ClassDef(self, node):
        self.classes.append(node.name.value)

    def leave_ClassDef(self, original, updated):
        self.classes.pop()
        return updated

    def leave_FunctionDef(self, original, updated):
        if self.classes[-1:] != ["Model"] or original.name.value != "init_weights":
            return updated
        body = list(updated.body.body)
        old = docstring_of(body[0]) if body else None
        if old is None:
            return updated
        self.hits += 1
        line = statements(f'"""{old.rstrip()}\n\n{INDENT}{SAID}\n{INDENT}"""')[0]
        return updated.with_changes(body=updated.body.with_changes(body=[line, *body[1:]]))
