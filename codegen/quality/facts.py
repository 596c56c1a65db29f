"""What a model package pins: the ModelArgs fields every accepted config gives one value,
and where the package's code reads them.

A field is pinned when `from_hf_config`'s `cls(...)` call passes it a constant expression,
or does not pass it and its default is a literal, and nothing else in the package assigns
it (`args.x = ...`, `__post_init__`) or builds ModelArgs / `replace`s it with that keyword.
Reads are `X.field` loads where X holds the ModelArgs instance: a parameter annotated
`ModelArgs`, `self` in ModelArgs' own methods, or `self.args`-style attributes `__init__`
sets once from such a parameter. An attribute `__init__` sets once, at its top level, to a
pinned value (`self.norm_topk_prob = args.norm_topk_prob`) is pinned within its class.

Positions, expression contexts and node identities come from one `MetadataWrapper` per
module (built without copying, so a transformer running over the same module sees the
same nodes).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import libcst as cst
import libcst.matchers as m
from libcst.metadata import (
    ExpressionContext,
    ExpressionContextProvider,
    MetadataWrapper,
    PositionProvider,
)

from codegen.quality.evaluate import UNKNOWN, value

ARGS_CLASS = "ModelArgs"
_ANNOTATED_ARGS = m.Param(
    annotation=m.Annotation(annotation=m.Name(ARGS_CLASS) | m.SimpleString(value=f'"{ARGS_CLASS}"'))
)
# calls through which a field may get another value than from_hf_config gives it
_REBUILDS = m.Call(
    func=m.Name(ARGS_CLASS) | m.Name("replace") | m.Attribute(attr=m.Name("replace"))
)


@dataclass(frozen=True)
class Pinned:
    """A ModelArgs field's one value, and why (shown in findings)."""

    value: Any
    why: str  # "from_hf_config passes False" / "from_hf_config never sets it (default ())"


@dataclass
class ModuleFacts:
    module: cst.Module
    positions: dict
    contexts: dict
    reads: dict[cst.CSTNode, tuple[Any, str]] = field(
        default_factory=dict
    )  # node -> (value, label)

    def line(self, node: cst.CSTNode) -> int:
        return self.positions[node].start.line


@dataclass
class PackageFacts:
    files: dict[str, ModuleFacts]
    fields: dict[str, cst.AnnAssign]  # ModelArgs fields in declaration order
    pinned: dict[str, Pinned]
    hf_param: str | None  # from_hf_config's config parameter (`hf_config`)

    def lookup(self, filename: str):
        reads = self.files[filename].reads

        def lookup(node: cst.BaseExpression) -> Any:
            found = reads.get(node)
            return UNKNOWN if found is None else found[0]

        return lookup


def package_facts(modules: dict[str, cst.Module]) -> PackageFacts:
    """Facts of the package whose (non-test) files are `modules` (filename -> module)."""
    files = {}
    for filename, module in modules.items():
        wrapper = MetadataWrapper(module, unsafe_skip_copy=True)
        resolved = wrapper.resolve_many([PositionProvider, ExpressionContextProvider])
        files[filename] = ModuleFacts(
            module, resolved[PositionProvider], resolved[ExpressionContextProvider]
        )
    args_class = _args_class(modules.get("args.py"))
    fields = _fields(args_class) if args_class is not None else {}
    builder = _from_hf_config(args_class) if args_class is not None else None
    hf_param = None
    pinned: dict[str, Pinned] = {}
    if builder is not None:
        function, call = builder
        params = function.params.params
        hf_param = params[1].name.value if len(params) > 1 else None
        pinned = _pinned(fields, call, files, modules, args_class)
    facts = PackageFacts(files, fields, pinned, hf_param)
    for module_facts in files.values():
        _resolve_reads(module_facts, facts)
    return facts


def _args_class(module: cst.Module | None) -> cst.ClassDef | None:
    if module is None:
        return None
    for statement in module.body:
        if m.matches(statement, m.ClassDef(name=m.Name(ARGS_CLASS))):
            return statement
    return None


def _fields(args_class: cst.ClassDef) -> dict[str, cst.AnnAssign]:
    found = {}
    for line in args_class.body.body:
        if m.matches(line, m.SimpleStatementLine(body=[m.AnnAssign(target=m.Name())])):
            found[line.body[0].target.value] = line.body[0]
    return found


def _from_hf_config(args_class: cst.ClassDef) -> tuple[cst.FunctionDef, cst.Call] | None:
    """from_hf_config and the one `cls(...)` call it returns (None when not that shape)."""
    for statement in args_class.body.body:
        if m.matches(statement, m.FunctionDef(name=m.Name("from_hf_config"))):
            calls = m.findall(statement, m.Call(func=m.Name("cls")))
            if len(calls) == 1:
                return statement, calls[0]
    return None


def _pinned(fields, call, files, modules, args_class) -> dict[str, Pinned]:
    passed = {arg.keyword.value: arg.value for arg in call.args if arg.keyword is not None}
    if any(arg.keyword is None for arg in call.args):
        return {}  # positional or ** arguments: which field gets what is not static
    free = set()  # fields something other than from_hf_config may set
    own = set(m.findall(args_class, m.Attribute(value=m.Name("self"))))
    for filename, module_facts in files.items():
        for node, context in module_facts.contexts.items():
            if not isinstance(node, cst.Attribute) or context is ExpressionContext.LOAD:
                continue
            if node in own or not m.matches(node.value, m.Name("self")):
                free.add(node.attr.value)  # `self.x = ...` of another class is its own x
        for rebuild in m.findall(modules[filename], _REBUILDS):
            free.update(a.keyword.value for a in rebuild.args if a.keyword is not None)
    pinned = {}
    for name, statement in fields.items():
        if name in free:
            continue
        if name in passed:
            known = value(passed[name])
            why = f"from_hf_config passes {_code(passed[name])}"
        elif statement.value is not None:
            known = value(statement.value)
            why = f"from_hf_config never sets it (default {_code(statement.value)})"
        else:
            continue
        if known is not UNKNOWN:
            pinned[name] = Pinned(known, why)
    return pinned


def _code(node: cst.CSTNode) -> str:
    return cst.Module([]).code_for_node(node)


def _resolve_reads(module_facts: ModuleFacts, facts: PackageFacts) -> None:
    """Fill `module_facts.reads`: first field reads, then reads of attributes pinned in
    their class through them (a second pass, since those are set from field reads)."""
    collector = _Reads(module_facts, facts, {})
    module_facts.module.visit(collector)
    pinned_attributes = _pinned_attributes(module_facts, collector.self_stores, facts)
    if pinned_attributes:
        module_facts.module.visit(_Reads(module_facts, facts, pinned_attributes))


class _Reads(cst.CSTVisitor):
    """Records pinned reads into `module_facts.reads` and, per class, `self.X = v` stores."""

    def __init__(self, module_facts: ModuleFacts, facts: PackageFacts, pinned_attributes):
        super().__init__()
        self.module_facts = module_facts
        self.facts = facts
        self.pinned_attributes = pinned_attributes  # (class, attr) -> (value, label)
        self.classes: list[str] = []
        self.functions: list[tuple[str, set[str]]] = []  # (name, ModelArgs-bound names)
        self.args_aliases: dict[str, set[str]] = {}  # class -> attrs holding ModelArgs
        self.self_stores: dict[tuple[str, str], list] = {}  # (class, attr) -> [(value, top)]

    def visit_ClassDef(self, node):
        self.classes.append(node.name.value)
        self.args_aliases[node.name.value] = _args_aliases(node)

    def leave_ClassDef(self, node):
        self.classes.pop()

    def visit_FunctionDef(self, node):
        bound = {p.name.value for p in node.params.params if m.matches(p, _ANNOTATED_ARGS)}
        if self.classes and self.classes[-1] == ARGS_CLASS and not self.functions:
            if node.params.params and not node.decorators:  # an instance method: self
                bound.add(node.params.params[0].name.value)
        self.functions.append((node.name.value, bound))
        if self.classes and node.name.value == "__init__":
            for statement in node.body.body:
                self._record_store(statement, top=True)

    def leave_FunctionDef(self, node):
        self.functions.pop()

    def visit_Assign(self, node):
        if self.classes and self.functions and self.functions[-1][0] != "__init__":
            for target in node.targets:
                self._note(target.target, None, top=False)

    def _record_store(self, statement, top: bool) -> None:
        if m.matches(statement, m.SimpleStatementLine(body=[m.Assign()])):
            assign = statement.body[0]
            for target in assign.targets:
                self._note(target.target, assign.value if top else None, top)
        else:  # stores nested in if/for/with of __init__ are never pinned
            for nested in m.findall(statement, m.Assign()):
                for target in nested.targets:
                    self._note(target.target, None, top=False)

    def _note(self, target, stored_value, top: bool) -> None:
        for attribute in m.findall(target, m.Attribute(value=m.Name("self"))):
            key = (self.classes[-1], attribute.attr.value)
            self.self_stores.setdefault(key, []).append((stored_value, top))

    def _holds_args(self, node: cst.BaseExpression) -> bool:
        if isinstance(node, cst.Name):
            return bool(self.functions) and node.value in self.functions[-1][1]
        return (
            m.matches(node, m.Attribute(value=m.Name("self")))
            and bool(self.classes)
            and node.attr.value in self.args_aliases.get(self.classes[-1], ())
        )

    def visit_Attribute(self, node):
        if self.module_facts.contexts.get(node) is not ExpressionContext.LOAD:
            return
        name = node.attr.value
        pinned = self.facts.pinned.get(name)
        if pinned is not None and self._holds_args(node.value):
            self.module_facts.reads[node] = (pinned.value, f"ModelArgs.{name}: {pinned.why}")
        elif self.classes and m.matches(node.value, m.Name("self")):
            found = self.pinned_attributes.get((self.classes[-1], name))
            if found is not None:
                self.module_facts.reads[node] = found


def _args_aliases(node: cst.ClassDef) -> set[str]:
    """Attributes `__init__` sets from its ModelArgs parameter (`self.args = args`)."""
    aliases = set()
    for statement in node.body.body:
        if not m.matches(statement, m.FunctionDef(name=m.Name("__init__"))):
            continue
        bound = {p.name.value for p in statement.params.params if m.matches(p, _ANNOTATED_ARGS)}
        for assign in m.findall(statement, m.Assign(value=m.Name())):
            if assign.value.value in bound:
                for target in assign.targets:
                    if m.matches(target.target, m.Attribute(value=m.Name("self"))):
                        aliases.add(target.target.attr.value)
    return aliases


def _pinned_attributes(module_facts, self_stores, facts: PackageFacts) -> dict:
    """(class, attr) -> (value, label) for attributes set once, at the top of `__init__`,
    to a value every accepted config fixes; the attribute name is assigned nowhere else."""
    stored_names: dict[str, int] = {}
    for other in facts.files.values():
        for node, context in other.contexts.items():
            if isinstance(node, cst.Attribute) and context is ExpressionContext.STORE:
                stored_names[node.attr.value] = stored_names.get(node.attr.value, 0) + 1
    reads = module_facts.reads

    def known(node):
        found = reads.get(node)
        return UNKNOWN if found is None else found[0]

    pinned = {}
    for (cls, attr), stores in self_stores.items():
        if len(stores) != 1 or stored_names.get(attr) != 1:
            continue
        stored_value, top = stores[0]
        if not top or stored_value is None:
            continue
        result = value(stored_value, known)
        if result is UNKNOWN:
            continue
        labels = [reads[n][1] for n in m.findall(stored_value, m.Attribute()) if n in reads]
        label = f"self.{attr} = {_code(stored_value)}" + (f" ({labels[0]})" if labels else "")
        pinned[(cls, attr)] = (result, label)
    return pinned
