"""What a model package pins: the ModelArgs fields every accepted config gives one value,
and where the package's code reads them.

A field is pinned when `from_hf_config`'s `cls(...)` call passes it a constant expression,
or does not pass it and its default is a literal, and nothing else in the package assigns
it (`args.x = ...`, `__post_init__`) or builds ModelArgs / `replace`s it with that keyword.
Reads are `X.field` loads where X holds the ModelArgs instance: a parameter annotated
`ModelArgs`, `self` in ModelArgs' own methods, or `self.args`-style attributes `__init__`
sets from such a parameter. An attribute `__init__` sets once, at its top level, to a
pinned value (`self.norm_topk_prob = args.norm_topk_prob`) is pinned within its class.

One visit per module collects everything (scaffold runs this a few times per package, so
it stays a single pass); positions are resolved only when a finding needs a line. Node
identities are the module's own, so a transformer over the same module sees the same nodes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import libcst as cst
import libcst.matchers as m
from libcst.metadata import MetadataWrapper, PositionProvider

from codegen.quality.conditions import CONDITIONALS
from codegen.quality.evaluate import UNKNOWN, value

ARGS_CLASS = "ModelArgs"
_ANNOTATED_ARGS = m.Param(
    annotation=m.Annotation(annotation=m.Name(ARGS_CLASS) | m.SimpleString(value=f'"{ARGS_CLASS}"'))
)
# calls through which a field may get another value than from_hf_config gives it
_REBUILDS = m.Call(
    func=m.Name(ARGS_CLASS) | m.Name("replace") | m.Attribute(attr=m.Name("replace"))
)
_SELF_STORE = m.SimpleStatementLine(
    body=[m.Assign(targets=[m.AssignTarget(target=m.Attribute(value=m.Name("self")))])]
)
# `getattr(obj, "name", ...)`: a read by name (the adapter base reads tie_word_embeddings so)
_GETATTR = m.Call(
    func=m.Name("getattr"), args=[m.Arg(), m.Arg(value=m.SimpleString()), m.ZeroOrMore()]
)


@dataclass(frozen=True)
class Pinned:
    """A ModelArgs field's one value, and why (shown in findings)."""

    value: Any
    why: str  # "from_hf_config passes False" / "from_hf_config never sets it (default ())"


@dataclass
class _SelfStore:
    cls: str
    attr: str
    value: cst.BaseExpression | None  # None: not a plain top-level `__init__` assignment
    from_args: bool  # `self.x = args` with args the ModelArgs parameter
    assign: cst.Assign | None = None  # the statement, for a plain top-level assignment


@dataclass
class ModuleFacts:
    module: cst.Module
    # every Attribute node with (enclosing class, ModelArgs-bound names of its function)
    attributes: list[tuple[cst.Attribute, str | None, frozenset[str]]] = field(default_factory=list)
    stores: set[cst.Attribute] = field(default_factory=set)  # attributes assigned to
    self_stores: list[_SelfStore] = field(default_factory=list)
    rebuilt: set[str] = field(default_factory=set)  # keywords of ModelArgs(...)/replace(...)
    getattr_names: set[str] = field(default_factory=set)
    # ModelArgs.__post_init__'s top-level `self.x = value` lines: (x, value)
    post_init: list[tuple[str, cst.BaseExpression]] = field(default_factory=list)
    conditionals: list[cst.CSTNode] = field(default_factory=list)  # see quality.conditions
    # node -> (value, label) for each read of a pinned field or attribute
    reads: dict[cst.CSTNode, tuple[Any, str]] = field(default_factory=dict)
    _positions: Any = None

    def line(self, node: cst.CSTNode) -> int:
        if self._positions is None:
            wrapper = MetadataWrapper(self.module, unsafe_skip_copy=True)
            self._positions = wrapper.resolve(PositionProvider)
        return self._positions[node].start.line

    def loads(self):
        """Attribute nodes read (not assigned to)."""
        return (node for node, _, _ in self.attributes if node not in self.stores)


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


_LAST: list = [None, None]  # (modules, facts) of the last call: tidy asks twice in a row


def package_facts(modules: dict[str, cst.Module]) -> PackageFacts:
    """Facts of the package whose (non-test) files are `modules` (filename -> module).
    Modules are immutable, so the same module objects always have the same facts."""
    key = [(name, module) for name, module in modules.items()]
    previous = _LAST[0]
    if previous is not None and len(previous) == len(key):
        if all(a[0] == b[0] and a[1] is b[1] for a, b in zip(previous, key, strict=True)):
            return _LAST[1]
    _LAST[:] = [key, _package_facts(modules)]
    return _LAST[1]


def _package_facts(modules: dict[str, cst.Module]) -> PackageFacts:
    files = {}
    for filename, module in modules.items():
        scan = _Scan(ModuleFacts(module))
        module.visit(scan)
        files[filename] = scan.facts
    args_class = _args_class(modules.get("args.py"))
    fields = _fields(args_class) if args_class is not None else {}
    builder = _from_hf_config(args_class) if args_class is not None else None
    hf_param, pinned = None, {}
    if builder is not None:
        function, call = builder
        params = function.params.params
        hf_param = params[1].name.value if len(params) > 1 else None
        pinned = _pinned(fields, call, files)
    stored_names: dict[str, int] = {}
    for module_facts in files.values():
        for node in module_facts.stores:
            stored_names[node.attr.value] = stored_names.get(node.attr.value, 0) + 1
    for module_facts in files.values():
        _resolve_reads(module_facts, pinned, stored_names)
    return PackageFacts(files, fields, pinned, hf_param)


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


def _pinned(fields, call, files) -> dict[str, Pinned]:
    if any(arg.keyword is None for arg in call.args):
        return {}  # positional or ** arguments: which field gets what is not static
    passed = {arg.keyword.value: arg.value for arg in call.args}
    free = set()  # fields something other than from_hf_config may set
    stores: dict[str, int] = {}  # stores that free a field, per field
    for module_facts in files.values():
        free |= module_facts.rebuilt
        for node, cls, _ in module_facts.attributes:
            if node in module_facts.stores and (
                cls == ARGS_CLASS or not m.matches(node.value, m.Name("self"))
            ):
                free.add(node.attr.value)  # `self.x = ...` of another class is its own x
                stores[node.attr.value] = stores.get(node.attr.value, 0) + 1
    # `__post_init__`'s one plain `self.x = f(self.x, ...)` per field: x is pinned when f of
    # the pinned values is (a normalisation: `tuple(self.layer_types or ...)`)
    normalised = [
        (name, expression)
        for module_facts in files.values()
        for name, expression in module_facts.post_init
        if stores.get(name) == 1
    ]
    free -= {name for name, _ in normalised}
    pinned = {}
    for name, statement in fields.items():
        if name in free:
            continue
        if name in passed:
            known = value(passed[name])
            why = f"from_hf_config passes {code(passed[name])}"
        elif statement.value is not None:
            known = value(statement.value)
            why = f"from_hf_config never sets it (default {code(statement.value)})"
        else:
            continue
        if known is not UNKNOWN:
            pinned[name] = Pinned(known, why)
    for name, expression in normalised:
        if name not in pinned:
            continue

        def own(node, pinned=pinned):
            is_field = m.matches(node, m.Attribute(value=m.Name("self")))
            found = pinned.get(node.attr.value) if is_field else None
            return UNKNOWN if found is None else found.value

        known = value(expression, own)
        if known is UNKNOWN:
            del pinned[name]
        else:
            pinned[name] = Pinned(known, f"{pinned[name].why}, kept by __post_init__")
    return pinned


def code(node: cst.CSTNode) -> str:
    return cst.Module([]).code_for_node(node)


def _resolve_reads(module_facts: ModuleFacts, pinned, stored_names) -> None:
    """Fill `module_facts.reads`: field reads, then reads of attributes pinned in their
    class through them."""
    aliases: dict[str, set[str]] = {}  # class -> attributes holding ModelArgs
    for store in module_facts.self_stores:
        if store.from_args:
            aliases.setdefault(store.cls, set()).add(store.attr)
    reads = module_facts.reads
    own: list[tuple[cst.Attribute, str]] = []  # `self.x` loads, by class
    for node, cls, bound in module_facts.attributes:
        if node in module_facts.stores:
            continue
        name = node.attr.value
        holder = node.value
        if isinstance(holder, cst.Name) and holder.value == "self" and cls is not None:
            own.append((node, cls))
        if name not in pinned:
            continue
        holds_args = (isinstance(holder, cst.Name) and holder.value in bound) or (
            isinstance(holder, cst.Attribute)
            and m.matches(holder.value, m.Name("self"))
            and holder.attr.value in aliases.get(cls, ())
        )
        if holds_args:
            reads[node] = (pinned[name].value, f"ModelArgs.{name}: {pinned[name].why}")
    counts: dict[tuple[str, str], int] = {}
    for store in module_facts.self_stores:
        counts[(store.cls, store.attr)] = counts.get((store.cls, store.attr), 0) + 1

    def known(node):
        found = reads.get(node)
        return UNKNOWN if found is None else found[0]

    pinned_attributes = {}
    for store in module_facts.self_stores:
        key = (store.cls, store.attr)
        if store.value is None or counts[key] != 1 or stored_names.get(store.attr) != 1:
            continue
        result = value(store.value, known)
        if result is UNKNOWN:
            continue
        labels = [reads[n][1] for n in m.findall(store.value, m.Attribute()) if n in reads]
        label = f"self.{store.attr} = {code(store.value)}" + (f" ({labels[0]})" if labels else "")
        pinned_attributes[key] = (result, label)
    for node, cls in own:
        found = pinned_attributes.get((cls, node.attr.value))
        if found is not None:
            reads[node] = found


class _Scan(cst.CSTVisitor):
    """One pass over a module: attributes with their context, stores, rebuild calls."""

    def __init__(self, facts: ModuleFacts):
        super().__init__()
        self.facts = facts
        self.classes: list[str] = []
        self.functions: list[tuple[str, frozenset[str]]] = []  # (name, ModelArgs names)
        self.top_level: set[cst.Assign] = set()  # plain assignments directly in __init__

    def visit_ClassDef(self, node):
        self.classes.append(node.name.value)

    def leave_ClassDef(self, node):
        self.classes.pop()

    def visit_FunctionDef(self, node):
        params = node.params.params
        bound = {p.name.value for p in params if m.matches(p, _ANNOTATED_ARGS)}
        in_args_class = self.classes and self.classes[-1] == ARGS_CLASS and not self.functions
        if in_args_class and params and not node.decorators:  # an instance method: self
            bound.add(params[0].name.value)
        self.functions.append((node.name.value, frozenset(bound)))
        if self.classes and node.name.value == "__init__":
            for line in node.body.body:
                if m.matches(line, m.SimpleStatementLine(body=[m.Assign()])):
                    self.top_level.add(line.body[0])
        if in_args_class and node.name.value == "__post_init__":
            for line in node.body.body:
                if m.matches(line, _SELF_STORE):
                    assign = line.body[0]
                    self.facts.post_init.append((assign.targets[0].target.attr.value, assign.value))

    def leave_FunctionDef(self, node):
        self.functions.pop()

    def on_visit(self, node: cst.CSTNode) -> bool:
        if isinstance(node, CONDITIONALS):
            self.facts.conditionals.append(node)
        return super().on_visit(node)

    def visit_Attribute(self, node):
        cls = self.classes[-1] if self.classes else None
        bound = self.functions[-1][1] if self.functions else frozenset()
        self.facts.attributes.append((node, cls, bound))

    def visit_Assign(self, node):
        for target in node.targets:
            self._store(target.target, node)

    def visit_AugAssign(self, node):
        self._store(node.target, None)

    def visit_AnnAssign(self, node):
        self._store(node.target, None)

    def visit_For(self, node):
        self._store(node.target, None)

    def visit_Del(self, node):
        self._store(node.target, None)

    def _store(self, target, assign: cst.Assign | None) -> None:
        if isinstance(target, (cst.Tuple, cst.List)):
            for element in target.elements:
                self._store(element.value, None)
            return
        if not isinstance(target, cst.Attribute):
            return
        self.facts.stores.add(target)
        if self.classes and m.matches(target.value, m.Name("self")):
            top = assign is not None and assign in self.top_level
            bound = self.functions[-1][1] if self.functions else frozenset()
            self.facts.self_stores.append(
                _SelfStore(
                    self.classes[-1],
                    target.attr.value,
                    assign.value if top else None,
                    top and isinstance(assign.value, cst.Name) and assign.value.value in bound,
                    assign if top else None,
                )
            )

    def visit_Call(self, node):
        if m.matches(node, _REBUILDS):
            self.facts.rebuilt.update(a.keyword.value for a in node.args if a.keyword)
        elif m.matches(node, _GETATTR):
            self.facts.getattr_names.add(node.args[1].value.evaluated_value)
