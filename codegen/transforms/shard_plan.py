"""Carry the shard plan through scaffold: the rules' entries in, removed modules' entries out."""

from __future__ import annotations

import re
import textwrap

import libcst as cst
import libcst.matchers as m

from codegen.transforms._prose_edits import drop_prose
from codegen.transforms.base import Transform
from codegen.transforms.edits import EditError, findall

_FILE = "parallelize.py"
_DOCSTRING = m.SimpleStatementLine(body=[m.Expr(value=m.SimpleString())])
# the words of a plan docstring's prose about MoE layers (experts, router, the `ep` dim)
MOE_WORDS = r"[Ee]xperts?\b|[Rr]outer|\bMoE\b|`ep`"
# what a plan that splits stacked experts says of its MoE layers, when its docstring says
# nothing of them (a dense reference's plan given the MoE rows by the rules)
MOE_PARAGRAPH = (
    "MoE layers: the router is replicated; the stacked routed experts are split over `ep` by"
    " expert (tokens dispatched and combined by all-to-all), or over `tp` by their hidden dim"
    " (every rank seeing every token, the partial outputs summed).{shared}"
)
SHARED = " The shared expert's SwiGLU is split as the dense one."


class SyncShardPlan(Transform):
    """parallelize.py's `PLAN` gets the entries the applied rules add (`adds`: pattern ->
    style, from `rules/sharding.py`) and loses every entry naming a module or parameter that
    model.py no longer builds (a path segment its class does not assign); `optional`
    patterns join `OPTIONAL`. Where model.py holds a part in an `nn.ModuleList` (a layer's
    listed sublayers), each entry through it gets the list's `*` (`layers.*.attention.wq`
    -> `layers.*.attention.*.wq`). A package without parallelize.py is left alone.
    """

    name = "sync_shard_plan"

    def apply(self, package, features=None, *, adds=None, optional=()) -> None:
        if _FILE not in package.files:
            return
        structure = _Structure(package.module("model.py"), package.index)
        editor = _PlanEditor(dict(adds or {}), set(optional), structure)
        package.edit(_FILE, editor)
        if not editor.found:
            raise EditError(f"{_FILE} has no PLAN dict literal")
        _describe_experts(package, editor.kept_styles)


def _describe_experts(package, styles: dict[str, str]) -> None:
    """The plan's prose says what it does with experts: a plan without stacked experts
    loses the MoE prose and the `ep` dim (`drop_prose`); one with them that its docstring
    does not mention gains a paragraph on them and the `ep` dim."""
    if "experts" not in styles.values():
        drop_prose(package, _FILE, MOE_WORDS)
        return
    module = package.module(_FILE)
    if "`ep`" in module.code:
        return
    shared = any(".shared_expert" in key for key in styles)
    paragraph = MOE_PARAGRAPH.format(shared=SHARED if shared else "")
    package.files[_FILE] = module.visit(_WithEp(textwrap.fill(paragraph, 92)))


class _WithEp(cst.CSTTransformer):
    """The module docstring gains `paragraph`; the mesh dims its summary and the
    parallelize docstring list (`tp`, `dp_shard`) gain `ep`."""

    def __init__(self, paragraph: str):
        super().__init__()
        self.paragraph = paragraph

    def leave_Module(self, original, updated):
        if not (updated.body and m.matches(updated.body[0], _DOCSTRING)):
            return updated
        string = updated.body[0].body[0].value
        summary, *rest = _with_ep(string.value[3:-3].strip("\n")).split("\n\n")
        if max(map(len, summary.splitlines())) > 94:  # `ep` pushed it past the line
            summary = textwrap.fill(" ".join(summary.split()), 94, break_on_hyphens=False)
        text = "\n\n".join([summary, *rest, self.paragraph])
        return updated.with_deep_changes(string, value=f'"""{text}\n"""')

    def leave_FunctionDef(self, original, updated):
        body = getattr(updated.body, "body", ())
        if not (body and m.matches(body[0], _DOCSTRING)):
            return updated
        string = body[0].body[0].value
        return updated.with_deep_changes(string, value=_with_ep(string.value))


def _with_ep(text: str) -> str:
    return re.sub(r"`dp_shard`(?=[);])", "`dp_shard`, `ep`", text)


class _Structure:
    """Which attributes each class of model.py assigns (`self.<name> = ...`, its bases' of
    the file included) and which of the file's classes each attribute builds
    (`self.attention = Attention(args)`, also inside `nn.ModuleList(TransformerBlock(...)
    for ...)`)."""

    def __init__(self, module: cst.Module, index=None):
        self.assigns: dict[str, set[str]] = {}
        self.builds: dict[tuple[str, str], set[str]] = {}
        self.listed: set[tuple[str, str]] = set()  # (class, attribute) assigned a ModuleList
        classes = findall(module, m.ClassDef(), index)
        local = {c.name.value for c in classes}
        target = m.Attribute(value=m.Name("self"), attr=m.Name())
        for cls in classes:
            names = self.assigns.setdefault(cls.name.value, set())
            for node in findall(cls, m.Assign() | m.AnnAssign(), index):
                targets = (
                    [t.target for t in node.targets]
                    if isinstance(node, cst.Assign)
                    else [node.target]
                )
                for t in targets:
                    if m.matches(t, target) and node.value is not None:
                        names.add(t.attr.value)
                        # the classes called, also where the call picks one
                        # (`(Attention if self.sliding else LogScaledAttention)(args)`)
                        called = {
                            name.value
                            for c in findall(node.value, m.Call(), index)
                            for name in findall(c.func, m.Name(), index)
                            if name.value in local
                        }
                        self.builds.setdefault((cls.name.value, t.attr.value), set()).update(called)
                        if m.matches(node.value, _MODULE_LIST):
                            self.listed.add((cls.name.value, t.attr.value))
        bases = {
            cls.name.value: [b.value.value for b in cls.bases if m.matches(b.value, m.Name())]
            for cls in classes
        }
        for cls in classes:
            self._inherit(cls.name.value, bases, local)
        self.root = "Model" if "Model" in local else None

    def _inherit(self, name: str, bases: dict[str, list[str]], local: set[str]) -> None:
        """`name` also assigns what its bases of this file assign (`class OverlapCompressor(
        Compressor)` builds the Compressor's parts), theirs first gathered from their bases."""
        for base in bases.get(name, ()):
            if base not in local or base == name:
                continue
            self._inherit(base, {**bases, name: []}, local)  # no cycle back to `name`
            self.assigns[name] |= self.assigns[base]
            for (owner, attr), built in list(self.builds.items()):
                if owner == base:
                    self.builds.setdefault((name, attr), set()).update(built)
            self.listed |= {(name, attr) for owner, attr in self.listed if owner == base}

    def live(self, pattern: str) -> bool:
        """Every named segment is assigned by a class the path can reach from the root
        (a class the file does not define, e.g. nn.Linear, ends the check: it is live)."""
        if self.root is None:
            return True
        current = {self.root}
        for part in pattern.split("."):
            if part == "*":
                continue
            if not current:
                return True  # below a module class this file does not define
            if not any(part in self.assigns.get(c, ()) for c in current):
                return False
            current = set().union(*(self.builds.get((c, part), set()) for c in current))
        return True

    def placed(self, pattern: str) -> list[str]:
        """`pattern` under each root attribute whose class assigns the pattern's first
        segment, where the root itself does not (alike layer stacks: `layers.*.attention.wq`
        -> `inner.layers.*.attention.wq`, `outer.layers.*.attention.wq`); else itself."""
        head = pattern.split(".")[0]
        if self.root is None or head == "*" or head in self.assigns.get(self.root, ()):
            return [pattern]
        holders = [
            attr
            for attr in sorted(self.assigns.get(self.root, ()))
            if any(head in self.assigns.get(c, ()) for c in self.builds.get((self.root, attr), ()))
        ]
        return [f"{attr}.{pattern}" for attr in holders] or [pattern]

    def indexed(self, pattern: str) -> str:
        """`pattern` with a `*` after each segment a class assigns an nn.ModuleList, where
        the pattern does not already index it."""
        if self.root is None:
            return pattern
        parts, out, current = pattern.split("."), [], {self.root}
        for at, part in enumerate(parts):
            out.append(part)
            if part == "*":
                continue
            listed = any((c, part) in self.listed for c in current)
            current = set().union(*(self.builds.get((c, part), set()) for c in current))
            if listed and parts[at + 1 : at + 2] != ["*"]:
                out.append("*")
        return ".".join(out)


_MODULE_LIST = m.Call(func=m.Attribute(attr=m.Name("ModuleList")) | m.Name("ModuleList"))


def _string(node) -> str | None:
    return node.evaluated_value if isinstance(node, cst.SimpleString) else None


class _PlanEditor(cst.CSTTransformer):
    def __init__(self, adds: dict[str, str], optional: set[str], structure: _Structure):
        super().__init__()
        self.adds, self.optional, self.structure = adds, optional, structure
        self.found = False
        self.kept_styles: dict[str, str] = {}

    def _live(self, pattern: str) -> bool:
        return self.structure.live(pattern)

    def leave_Assign(self, original, updated):
        name = updated.targets[0].target
        if m.matches(name, m.Name("PLAN")) and isinstance(updated.value, cst.Dict):
            self.found = True
            return updated.with_changes(value=self._plan(updated.value))
        return updated

    def leave_SimpleStatementLine(self, original, updated):
        statement = updated.body[0]
        if isinstance(statement, cst.Assign | cst.AnnAssign):
            target = statement.targets[0].target if isinstance(statement, cst.Assign) else None
            target = target or statement.target
            if m.matches(target, m.Name("OPTIONAL")):
                value = self._optional(statement.value)
                return updated.with_changes(body=[statement.with_changes(value=value)])
            if m.matches(target, m.Name("FSDP_BLOCKS")) and isinstance(statement.value, cst.Tuple):
                blocks = [_string(e.value) for e in statement.value.elements]
                placed = [p for b in blocks if b is not None for p in self.structure.placed(b)]
                if placed != blocks:
                    value = cst.parse_expression("(" + "".join(f"{p!r}, " for p in placed) + ")")
                    return updated.with_changes(body=[statement.with_changes(value=value)])
        return updated

    def _plan(self, plan: cst.Dict) -> cst.Dict:
        elements = []
        for element in plan.elements:
            key = _string(element.key) if isinstance(element, cst.DictElement) else None
            if key is None:
                continue
            if key in self.adds:
                element = element.with_changes(value=cst.SimpleString(repr(self.adds.pop(key))))
            for placed in self.structure.placed(key):
                if not self._live(placed):
                    continue
                indexed = self.structure.indexed(placed)
                if indexed != key:
                    element = element.with_changes(key=cst.SimpleString(repr(indexed)))
                elements.append(element.with_changes(comma=cst.Comma()))
        for key, style in self.adds.items():
            for placed in self.structure.placed(key):
                if not self._live(placed):  # added by one rule, removed by a later one (fused)
                    continue
                elements.append(
                    cst.DictElement(
                        cst.SimpleString(repr(self.structure.indexed(placed))),
                        cst.SimpleString(repr(style)),
                        comma=cst.Comma(),
                    )
                )
        self.kept = {_string(e.key) for e in elements}
        self.kept_styles = {_string(e.key): _string(e.value) for e in elements}
        return plan.with_changes(elements=elements)

    def _optional(self, old: cst.BaseExpression) -> cst.BaseExpression:
        """The old OPTIONAL's strings plus the rules', those still in PLAN."""
        names = {_string(node) for node in m.findall(old, m.SimpleString())} | self.optional
        names = {
            self.structure.indexed(placed)
            for name in names
            for placed in self.structure.placed(name)
            if self._live(placed)
        }
        names = sorted(names & getattr(self, "kept", set()))
        return cst.parse_expression(
            "frozenset({" + ", ".join(repr(n) for n in names) + "})" if names else "frozenset()"
        )
