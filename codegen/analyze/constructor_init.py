"""Parameters HF's `_init_weights` leaves as their module's own constructor drew them.

transformers builds the model, then hands every module to the model's `_init_weights`: the
modeling file's override and, where that calls `super()._init_weights(module)`, the base's
(PreTrainedModel's table: nn.Linear and the convolutions, nn.Embedding, norms by class name).
A module that no step of that chain reaches keeps what its `__init__` drew: transformers'
Conv1D under an override without a branch for it (GPT-1's) keeps
`nn.init.normal_(self.weight, std=0.02)` whatever initializer_range says, where GPT-2's
override re-draws it at initializer_range.

Read statically, nothing imported: the chain is followed through `super()` into the library
file the base is imported from (`...modeling_utils`, or the package as remote code spells it:
`transformers.PreTrainedModel`), and so is a library module's class (`...pytorch_utils`). Each
`if` on the module is decided by the names of its class and of that class's bases
(`isinstance(module, (A, b.B))`, `"Norm" in module.__class__.__name__`, with `not`, `and`,
`or`); a test that cannot be decided, or a statement on the module outside such a test, counts
as reaching it. A constructor's draw counts where it is an unconditional
`normal_(self.<parameter>, std=<number>)` with mean 0.
"""

from __future__ import annotations

from dataclasses import dataclass

import libcst as cst
import libcst.matchers as m

from codegen.analyze.evaluate import ModuleRec
from codegen.analyze.library_class import library_class
from codegen.analyze.model import walk_tree
from codegen.analyze.source import ClassInfo, Project, dotted

FEATURE = "state_dict.constructor_std"
METHOD = "_init_weights"
_NORMAL = m.Call(func=m.Attribute(attr=m.Name("normal_")) | m.Name("normal_"))
_SUPER_CALL = m.Call(func=m.Attribute(value=m.Call(func=m.Name("super")), attr=m.Name(METHOD)))
_NUMBER = m.Integer() | m.Float()


def detect(ctx, sd) -> tuple[tuple[str, float], ...]:
    """(module key template, std) for every checkpoint parameter HF's init chain leaves at
    its constructor's normal draw (`transformer.h.{}.attn.c_attn.weight`, 0.02)."""
    project = ctx.model.project
    keys = _checkpoint_keys(sd)
    drawn: dict[str, tuple] = {}  # checkpoint key -> (std, the class, its draw)
    draws_of: dict[int, dict] = {}
    for path, rec in walk_tree(ctx.model.entry):
        cls = module_class(project, rec) if isinstance(rec, ModuleRec) and path else None
        if cls is None:
            continue
        if id(cls) not in draws_of:
            draws_of[id(cls)] = constructor_draws(project, cls)
        for parameter, (std, call) in draws_of[id(cls)].items():
            key = _template(f"{path}.{parameter}", sd.prefix)
            if key in keys:
                drawn.setdefault(key, (std, cls, call))
    if not drawn:  # most models: the library's table is not even read
        ctx.cite(FEATURE, "no constructor draws a checkpoint tensor at a literal std")
        return ()
    chain = init_chain(project, ctx.model.entry_cls)
    if chain is None:
        ctx.cite(FEATURE, "no readable _init_weights chain: no constructor's draw is kept")
        return ()
    reached: dict[int, bool] = {}
    found: dict[str, float] = {}
    for key, (std, cls, call) in drawn.items():
        if id(cls) not in reached:
            reached[id(cls)] = reaches(chain, kind_of(project, cls))
        if reached[id(cls)]:
            continue
        if not found:
            owner, method = chain[0]
            ctx.cite(
                FEATURE,
                f"{cls.cite(call)} (std {std}); {owner.cite(method)} and its super() chain"
                f" never reach {cls.name}",
            )
        found[key] = std
    if not found:
        ctx.cite(FEATURE, "_init_weights re-draws every constructor's draw")
    return tuple(found.items())


def _checkpoint_keys(sd) -> set[str]:
    """The module key templates of the checkpoint's tensors the logits read."""
    layer = {f"{sd.prefix}.{{}}.{k.split(' [')[0]}" for k in sd.layer_keys}
    return (layer | set(sd.other_keys)) - set(sd.unused_keys)


def _template(key: str, prefix: str) -> str:
    """`transformer.h.3.attn.c_attn.weight` -> `transformer.h.{}.attn.c_attn.weight`."""
    if prefix and key.startswith(prefix + "."):
        index, _, tail = key[len(prefix) + 1 :].partition(".")
        if index.isdigit():
            return f"{prefix}.{{}}.{tail}"
    return key


# -- the chain of `_init_weights` methods ---------------------------------------------------


def init_chain(project: Project, cls: ClassInfo) -> list[tuple[ClassInfo, cst.FunctionDef]] | None:
    """The `_init_weights` methods HF runs for the model class `cls`, its own first, each
    next one reached by `super()._init_weights(...)`; None where one calls `super()` and no
    base defining the method can be read (or none defines it)."""
    found = _method_after(project, [cls])
    chain: list[tuple[ClassInfo, cst.FunctionDef]] = []
    while found is not None and not any(found[1] is method for _, method in chain):
        chain.append(found)
        if not m.findall(found[1], _SUPER_CALL):
            return chain
        found = _method_after(project, _bases(project, found[0]))
    return None


def _method_after(project: Project, classes: list[ClassInfo], depth: int = 0):
    """The first of `classes` (with their modeling-file bases) defining `_init_weights`,
    else the first of their library bases (`...modeling_utils.PreTrainedModel`) that does."""
    for cls in classes:
        found = project.find_method(cls, METHOD)
        if found is not None:
            return found
    library = [
        base
        for cls in classes
        for current in project.mro(cls)
        for base in _bases(project, current)
        if not any(base is known for known in project.mro(cls))
    ]
    return _method_after(project, library, depth + 1) if library and depth < 4 else None


def _bases(project: Project, cls: ClassInfo) -> list[ClassInfo]:
    """`cls`'s bases that can be read: modeling-file classes and library classes."""
    out = []
    for name in cls.bases:
        found = project.resolve_class(cls.sf, name) if "." not in name else None
        found = found or _imported_class(project, cls.sf, name)
        if found is not None:
            out.append(found)
    return out


def _imported_class(project: Project, sf, name: str) -> ClassInfo | None:
    """The class `name` (as spelled in `sf`) defined there or imported from the folder's files
    or transformers' (`from ...pytorch_utils import Conv1D`, `from transformers import
    PreTrainedModel`, `transformers.PreTrainedModel`), which name resolution leaves opaque;
    None for anything else (torch's classes)."""
    return library_class(project, sf, name)


def module_class(project: Project, rec: ModuleRec) -> ClassInfo | None:
    """The class a module record was built from: a modeling-file class, or a library class
    whose constructor call names it (`Conv1D(n_state * 3, nx)`, `transformers.Conv1D(...)`)."""
    if rec.cls is not None:
        return rec.cls
    call = rec.site.node if rec.site is not None else None
    spelled = dotted(call.func) if isinstance(call, cst.Call) else None
    return _imported_class(project, rec.site.sf, spelled) if spelled else None


@dataclass(frozen=True)
class Kind:
    """What the tests of `_init_weights` read of a module's class: its own name
    (`module.__class__.__name__`) and the names `isinstance` knows it by (its own and every
    base's, last component)."""

    own: str
    names: frozenset[str]


def kind_of(project: Project, cls: ClassInfo) -> Kind:
    names = set()
    for current in project.mro(cls):
        names.add(current.name)
        names.update(b.rsplit(".", 1)[-1] for b in project.bases_of(current) if isinstance(b, str))
    return Kind(cls.name, frozenset(names))


# -- does the chain reach a class? ----------------------------------------------------------


def reaches(chain: list[tuple[ClassInfo, cst.FunctionDef]], kind: Kind) -> bool:
    """Whether some method of the chain may re-draw a module of `kind`."""
    for _, method in chain:
        params = method.params.params
        if len(params) < 2:
            return True
        if _block_reaches(method.body.body, params[1].name.value, kind):
            return True
    return False


def _block_reaches(statements, module: str, kind: Kind) -> bool:
    for statement in statements:
        if isinstance(statement, cst.If):
            if _if_reaches(statement, module, kind):
                return True
        elif isinstance(statement, cst.With) and not _mentions(statement.items, module):
            if _block_reaches(statement.body.body, module, kind):
                return True
        elif _mentions(statement, module) and not m.findall(statement, _SUPER_CALL):
            return True
    return False


def _if_reaches(node: cst.If, module: str, kind: Kind) -> bool:
    if not _mentions(node.test, module):  # a std chosen by the config: both ways run
        return _block_reaches(node.body.body, module, kind) or _else_reaches(
            node.orelse, module, kind
        )
    if _holds(node.test, module, kind) is False:
        return _else_reaches(node.orelse, module, kind)
    return True  # holds, or cannot be told


def _else_reaches(orelse, module: str, kind: Kind) -> bool:
    if orelse is None:
        return False
    if isinstance(orelse, cst.If):
        return _if_reaches(orelse, module, kind)
    return _block_reaches(orelse.body.body, module, kind)


def _holds(test: cst.BaseExpression, module: str, kind: Kind) -> bool | None:
    """Whether a test on the module holds for a module of `kind`; None: cannot tell."""
    if isinstance(test, cst.UnaryOperation) and isinstance(test.operator, cst.Not):
        inner = _holds(test.expression, module, kind)
        return None if inner is None else not inner
    if isinstance(test, cst.BooleanOperation):
        left, right = _holds(test.left, module, kind), _holds(test.right, module, kind)
        decisive = isinstance(test.operator, cst.Or)  # True decides `or`, False `and`
        if decisive in (left, right):
            return decisive
        return None if None in (left, right) else not decisive
    if m.matches(test, m.Call(func=m.Name("isinstance"), args=[m.Arg(m.Name(module)), m.Arg()])):
        kinds = test.args[1].value
        elements = [e.value for e in kinds.elements] if isinstance(kinds, cst.Tuple) else [kinds]
        spelled = [dotted(e) for e in elements]
        if None in spelled:
            return None  # a tuple held in a variable
        return any(s.rsplit(".", 1)[-1] in kind.names for s in spelled)
    class_name = m.Attribute(
        value=m.Attribute(value=m.Name(module), attr=m.Name("__class__")),
        attr=m.Name("__name__"),
    )
    if m.matches(
        test,
        m.Comparison(
            left=m.SimpleString(),
            comparisons=[m.ComparisonTarget(m.In() | m.NotIn(), comparator=class_name)],
        ),
    ):
        own = test.left.evaluated_value in kind.own
        return own if isinstance(test.comparisons[0].operator, cst.In) else not own
    return None


def _mentions(node, module: str) -> bool:
    """Whether the variable `module` (not an attribute so named) appears in `node`."""
    nodes = node if isinstance(node, list | tuple) else [node]
    for part in nodes:
        attributes = {id(a.attr) for a in m.findall(part, m.Attribute())}
        if any(id(n) not in attributes for n in m.findall(part, m.Name(module))):
            return True
    return False


# -- what the constructor draws ---------------------------------------------------------------


def constructor_draws(project: Project, cls: ClassInfo) -> dict[str, tuple[float, cst.Call]]:
    """parameter -> (std, the call) for each unconditional mean-0 normal draw with a literal
    std of `self.<parameter>` in the class's `__init__` (the last one per parameter)."""
    found = project.find_method(cls, "__init__")
    if found is None:
        return {}
    draws: dict[str, tuple[float, cst.Call]] = {}
    for statement in found[1].body.body:
        if not isinstance(statement, cst.SimpleStatementLine):
            continue
        for small in statement.body:
            if isinstance(small, cst.Expr) and m.matches(small.value, _NORMAL):
                drawn = _literal_draw(small.value)
                if drawn is not None:
                    draws[drawn[0]] = (drawn[1], small.value)
    return draws


def _literal_draw(call: cst.Call) -> tuple[str, float] | None:
    """(parameter, std) of `normal_(self.weight, mean=0.0, std=0.02)` (keywords or positions)."""
    positional = [a.value for a in call.args if a.keyword is None]
    keywords = {a.keyword.value: a.value for a in call.args if a.keyword is not None}
    if not positional or not m.matches(
        positional[0], m.Attribute(value=m.Name("self"), attr=m.Name())
    ):
        return None
    mean = keywords.get("mean", positional[1] if len(positional) > 1 else None)
    std = keywords.get("std", positional[2] if len(positional) > 2 else None)
    if mean is not None and not (m.matches(mean, _NUMBER) and float(mean.evaluated_value) == 0):
        return None
    if std is None or not m.matches(std, _NUMBER):
        return None  # torch's default std (1), or one read from elsewhere
    return positional[0].attr.value, float(std.evaluated_value)
