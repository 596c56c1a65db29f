"""A small, safe interpreter for the plain-data subset of Python found in model `__init__`s.

It lets codegen "instantiate" a model statically: `nn.Linear(h, n * d, bias=config.attention_bias)`
becomes a `ModuleRec` whose `bias` is the value read from the config, `nn.ModuleList([... for i in
range(config.num_hidden_layers)])` becomes one record per layer, `self.mlp = MoE(config) if cond
else MLP(config)` takes the branch the config selects.

What it will evaluate: literals, names, attributes, subscripts, arithmetic, comparisons,
conditionals, comprehensions, calls of functions and classes *defined in the analysed sources*
(interpreted, never executed), a whitelist of builtins and of methods on plain data (dict.get,
list.append, ...), and inert stand-ins for torch constructors (`nn.Linear`, `nn.Parameter`,
`torch.zeros`, `ACT2FN[...]`). Everything else raises `Unknown`, and the caller records
"unknown" instead of guessing. A step budget bounds every run.
"""

from __future__ import annotations

import copy
import math
import operator
from dataclasses import dataclass, field, replace
from typing import Any

import libcst as cst
import libcst.matchers as m

from codegen.analyze.source import ClassInfo, Project, SourceFile, literal


def _in_stable_order(items: set | frozenset) -> list:
    """A set's members in an order that does not depend on the hash seed (Python iterates
    sets of strings in a per-process order), so the same source always analyses the same."""
    try:
        return sorted(items)
    except TypeError:
        return sorted(items, key=repr)


class Unknown(Exception):
    """The value of an expression cannot be determined statically."""


class BudgetExceeded(Unknown):
    """The interpreter's step budget ran out."""


class _Missing(Exception):
    """An attribute that does not exist (as opposed to one whose value is unknown)."""


class _UnknownValue:
    _inst = None

    def __new__(cls):
        if cls._inst is None:
            cls._inst = super().__new__(cls)
        return cls._inst

    def __repr__(self) -> str:
        return "UNKNOWN"


UNKNOWN = _UnknownValue()


class _Return(Exception):
    def __init__(self, value):
        self.value = value


class _Break(Exception):
    pass


class _Continue(Exception):
    pass


class _Abort(Exception):
    """A `raise` statement was reached: the function stops, its result is unknown."""


# ---------------------------------------------------------------------------- values
@dataclass(eq=False)
class Site:
    """Where a value was created: file and node, for evidence."""

    sf: SourceFile
    node: cst.CSTNode
    scope: cst.CSTNode | None = None  # enclosing top-level class/function, when known
    method: cst.CSTNode | None = None  # enclosing method of that class, when known

    def cite(self) -> str:
        return self.sf.cite(self.node, self.scope, self.method)

    @property
    def line(self) -> int:
        return self.sf.line(self.node, self.scope, self.method)

    def __repr__(self) -> str:
        return f"<{self.cite()}>"


# Class attributes of transformers' PreTrainedConfig / RotaryEmbeddingConfigMixin that model
# configs rely on (read here instead of importing or parsing the library).
NATIVE_CONFIG_ATTRS = {
    "default_theta": 10_000.0,
    "default_rope_type": "default",
    "ignore_keys_at_rope_validation": set(),
    "attribute_map": {},
    "base_config_key": "",
    "sub_configs": {},
    "is_composition": False,
}


class Obj:
    """An attribute namespace (a config or a module instance)."""

    cls: ClassInfo | None = None

    def __init__(self) -> None:
        self.attrs: dict[str, Any] = {}


class ConfigInt(int):
    """An int read from a config, with the fields it is the product of: kept while the code
    passes it on as it is (or multiplies two such), so a constructor argument says which field
    sized it (`nn.Embedding(config.n_tokens, ...)`: rows "n_tokens"). Any other arithmetic, a
    conditional or min/max gives a plain int: a size that is no plain read names no field."""

    fields: tuple[str, ...]

    def __new__(cls, value: int, fields: tuple[str, ...] = ()):
        made = super().__new__(cls, value)
        made.fields = fields
        return made


def read_field(value) -> str | None:
    """The config field `value` was read from as it is, else None."""
    fields = getattr(value, "fields", ())
    return fields[0] if isinstance(value, ConfigInt) and len(fields) == 1 else None


def _untagged(value):
    """`value` as a plain int where it is a ConfigInt (a value chosen, not read as it is)."""
    return int(value) if isinstance(value, ConfigInt) else value


class ConfigObj(Obj):
    """A config instance: defaults + config.json + `__post_init__`, with provenance per key."""

    def __init__(self, cls: ClassInfo | None, prefix: str = "") -> None:
        super().__init__()
        self.cls = cls
        self.prefix = prefix  # "text_config." for a nested sub-config
        self.attribute_map: dict[str, str] = {}
        self.origin: dict[str, str] = {}  # key -> "config.json" | "default" | "post_init"
        self.extra_kwargs: dict[str, Any] = {}  # config.json keys that are not declared fields
        self.read_log: list[str] | None = None

    def key(self, name: str) -> str:
        return self.attribute_map.get(name, name)

    def usual_name(self, name: str) -> str:
        """`name`, or the one usual name `attribute_map` answers with its field (ctrl's code
        reads `n_layer`, its config's `num_hidden_layers`): a read under the config's own
        name is no other field than the usual one."""
        if name in self.attribute_map:
            return name
        key = self.key(name)
        usual = [alias for alias, field in self.attribute_map.items() if field == key]
        return usual[0] if len(usual) == 1 else name

    def lookup(self, name: str):
        key = self.key(name)
        if self.read_log is not None:
            self.read_log.append(self.prefix + key)
        if key in self.attrs:
            value = self.attrs[key]
            if type(value) is int or isinstance(value, ConfigInt):
                # tagged with the name the code reads, never with one the config's own code
                # derived it from (llama's kv heads = heads)
                return ConfigInt(int(value), (self.prefix + self.usual_name(name),))
            return value
        raise _Missing(key)

    def __repr__(self) -> str:  # pragma: no cover
        return f"<config {self.cls.name if self.cls else '?'}>"


@dataclass(frozen=True)
class TableLookup:
    """A config field picking a value out of a table of the analysed sources
    (`ACT_FNS[config.afn]` with `ACT_FNS = {"relu": nn.ReLU(), "gelu": gelu_new, ...}`), and
    where: kept on what was picked, whatever its kind, so the choice can be pinned to the
    value the analysis saw."""

    field: str
    site: Site | None = None


class ModuleRec(Obj):
    """A statically instantiated module. `external` names a torch class (Linear, Embedding...)."""

    def __init__(self, cls: ClassInfo | None, external: str | None, site: Site | None) -> None:
        super().__init__()
        self.cls = cls
        self.external = external
        self.site = site
        self.args: tuple = ()
        self.kwargs: dict[str, Any] = {}
        self.ext_base: str | None = None  # e.g. "Linear" for `class FalconLinear(nn.Linear)`
        self.assign_sites: dict[str, Site] = {}
        self.config_reads: dict[str, list[str]] = {}  # attr -> config keys read to build it
        self.table_lookup: TableLookup | None = None  # picked out of a table by a config field
        # the attributes between where the module is held and this record: ("linear",) where
        # a wrapper that only delegates to it stands in its place (analyze/delegates.py)
        self.via: tuple[str, ...] = ()

    @property
    def kind(self) -> str:
        """The torch class this record stands for (own name or external base)."""
        return self.external or self.ext_base or (self.cls.name if self.cls else "?")

    def children(self) -> list[tuple[str, Any]]:
        return [
            (k, v)
            for k, v in self.attrs.items()
            if isinstance(v, ModuleRec | ModuleListRec | ParamRec)
        ]

    def __repr__(self) -> str:  # pragma: no cover
        return f"<module {self.kind}>"


@dataclass(eq=False)
class ParamRec:
    kind: str  # "parameter" | "buffer"
    shape: tuple
    persistent: bool
    site: Site | None
    value: Any = None  # for scalars built with torch.tensor(x)


@dataclass(eq=False)
class TensorRec:
    shape: tuple
    value: Any = None
    site: Site | None = None


@dataclass(eq=False)
class ModuleListRec:
    items: list
    site: Site | None = None
    keys: list | None = None  # ModuleDict keys
    # the config field the items are counted by (`[... for _ in range(config.X)]`), else None
    count_field: str | None = None


@dataclass(eq=False)
class ActRec:
    name: Any  # activation name from config (str) or UNKNOWN
    site: Site | None = None
    # the config field the name was read from (`ACT2FN[config.<field>]`,
    # `get_activation(config.<field>)`), None when the code names it itself
    field: str | None = None


@dataclass(eq=False)
class ClassRef:
    cls: ClassInfo
    table_lookup: TableLookup | None = None


@dataclass(eq=False, repr=False)
class FuncRef:
    sf: SourceFile
    node: cst.FunctionDef | cst.Lambda
    owner: ClassInfo | None = None
    bound: Any = None
    closure: dict | None = None
    scope: cst.CSTNode | None = None  # enclosing top-level statement of a nested def/lambda
    table_lookup: TableLookup | None = None

    @property
    def name(self) -> str:
        return self.node.name.value if isinstance(self.node, cst.FunctionDef) else "<lambda>"


@dataclass(eq=False)
class ExtRef:
    """A name from outside the analysed sources (torch, library helpers): opaque."""

    name: str
    table_lookup: TableLookup | None = None

    @property
    def last(self) -> str:
        return self.name.rsplit(".", 1)[-1]


@dataclass(eq=False)
class CallRec:
    """An inert record of a call to an external callable (e.g. `WeightRenaming(a, b)`)."""

    name: str
    args: tuple
    kwargs: dict
    table_lookup: TableLookup | None = None


@dataclass(eq=False)
class BoundBuiltin:
    obj: Any
    name: str


@dataclass(eq=False)
class NativeMethod:
    """A method of the transformers base config, reimplemented here on plain data."""

    fn: Any
    obj: Any


@dataclass(eq=False)
class _ClassCtor:
    """`SomeModel._from_config`: builds the class from a config."""

    cls: ClassInfo


@dataclass(eq=False)
class SuperRef:
    obj: Any
    owner: ClassInfo


@dataclass
class Frame:
    sf: SourceFile
    locals: dict = field(default_factory=dict)
    owner: ClassInfo | None = None  # class whose method is running (for super())
    scope: cst.CSTNode | None = None  # top-level statement holding the code (for line numbers)
    method: cst.CSTNode | None = None  # the method of `scope` being run, if any

    def site(self, node: cst.CSTNode) -> Site:
        scope = self.scope if self.scope is not None else (self.owner.node if self.owner else None)
        return Site(self.sf, node, scope, self.method)


# the required `__init__` parameters of the torch modules the analysis reads sizes from, in
# order: a module built with keywords (`nn.Linear(in_features=d, out_features=r)`) gets the
# same positional record as one built positionally (`with_positions`); flags with defaults
# (`bias`, `eps`) stay keywords, as callers mostly spell them
_TORCH_PARAMETERS: dict[str, tuple[str, ...]] = {
    "Linear": ("in_features", "out_features"),
    "Embedding": ("num_embeddings", "embedding_dim"),
    "LayerNorm": ("normalized_shape",),
    "RMSNorm": ("normalized_shape",),
    "GroupNorm": ("num_groups", "num_channels"),
    "Conv1d": ("in_channels", "out_channels", "kernel_size"),
    "Conv1D": ("nf", "nx"),
}


def with_positions(args, kwargs: dict, parameters) -> tuple:
    """`args` extended by the keywords that continue them in `parameters`' order: the
    required arguments a call binds to the leading positions, however it spelled them."""
    bound = list(args)
    for name in list(parameters)[len(bound) :]:
        if name not in kwargs:
            break
        bound.append(kwargs[name])
    return tuple(bound)


def _init_parameters(fn: cst.FunctionDef) -> list[str]:
    """A method's required positional-or-keyword parameters after `self` (those with no
    default: the sizes and the config a module is built from, not its flags)."""
    return [param.name.value for param in fn.params.params[1:] if param.default is None]


_TORCH_MODULES = {
    "Linear",
    "Embedding",
    "LayerNorm",
    "RMSNorm",
    "GroupNorm",
    "BatchNorm1d",
    "BatchNorm2d",
    "Conv1d",
    "Conv2d",
    "Conv3d",
    "ConvTranspose1d",
    "ConvTranspose2d",
    "Dropout",
    "Identity",
    "GELU",
    "SiLU",
    "ReLU",
    "Tanh",
    "Sigmoid",
    "Softplus",
    "Softmax",
    "LSTM",
    "GRU",
    "RNN",
    "MultiheadAttention",
    "EmbeddingBag",
    "AvgPool1d",
    "AvgPool2d",
    "MaxPool2d",
    "AdaptiveAvgPool2d",
    "Upsample",
    "PixelShuffle",
    "Unfold",
    "Flatten",
    "Mish",
    "LeakyReLU",
    "ELU",
    "GLU",
    "ZeroPad2d",
}
_TENSOR_CTORS = {"empty", "zeros", "ones", "randn", "rand", "full", "arange", "linspace", "eye"}
_ACT_LOOKUPS = {"ACT2FN", "ACT2CLS"}
_ACT_FACTORIES = {"get_activation"}
_AUTO_MODELS = {"from_config", "from_pretrained"}

_BUILTIN_METHODS = {
    dict: {"get", "setdefault", "items", "keys", "values", "pop", "update", "copy"},
    list: {"append", "extend", "index", "count", "copy", "insert", "pop", "remove", "sort"},
    tuple: {"index", "count"},
    str: {
        "startswith",
        "endswith",
        "lower",
        "upper",
        "replace",
        "split",
        "strip",
        "join",
        "isdigit",
        "format",
        "rstrip",
        "lstrip",
    },
    set: {"add", "union", "intersection", "difference", "issubset", "copy", "update"},
    frozenset: {"union", "intersection", "difference", "issubset"},
    int: {"bit_length"},
    float: {"is_integer"},
}

_BINOPS = {
    cst.Add: operator.add,
    cst.Subtract: operator.sub,
    cst.Multiply: operator.mul,
    cst.Divide: operator.truediv,
    cst.FloorDivide: operator.floordiv,
    cst.Modulo: operator.mod,
    cst.Power: operator.pow,
    cst.BitAnd: operator.and_,
    cst.BitOr: operator.or_,
    cst.BitXor: operator.xor,
    cst.LeftShift: operator.lshift,
    cst.RightShift: operator.rshift,
    cst.MatrixMultiply: operator.matmul,
}
_CMPOPS = {
    cst.Equal: operator.eq,
    cst.NotEqual: operator.ne,
    cst.LessThan: operator.lt,
    cst.LessThanEqual: operator.le,
    cst.GreaterThan: operator.gt,
    cst.GreaterThanEqual: operator.ge,
}
_PLAIN = (int, float, str, bool, type(None), tuple, list, dict, set, frozenset)
_MAX_SEQ = 20000


def is_plain(value) -> bool:
    if isinstance(value, tuple | list | set | frozenset):
        return all(is_plain(v) for v in value)
    if isinstance(value, dict):
        return all(is_plain(k) and is_plain(v) for k, v in value.items())
    return isinstance(value, _PLAIN)


def freeze(value):
    """A hashable key for memoising instantiation; raises TypeError when impossible."""
    if isinstance(value, list | tuple):
        return tuple(freeze(v) for v in value)
    if isinstance(value, dict):
        return tuple(sorted((str(k), freeze(v)) for k, v in value.items()))
    if isinstance(value, ConfigInt):
        return ("int", int(value))
    if isinstance(value, int | float | str | bool | type(None)):
        return (type(value).__name__, value)
    return ("id", id(value))


class Interp:
    """Interprets functions of the analysed sources over plain values and inert records."""

    max_steps = 400_000
    max_depth = 40

    def __init__(self, project: Project, config_factory=None) -> None:
        self.project = project
        self.steps = 0
        self.depth = 0
        self.config_factory = config_factory  # (interp, ClassInfo, kwargs, site) -> ConfigObj
        self._memo: dict = {}
        self.uncertain: list[Site] = []  # branches taken without knowing the condition
        # Python stand-ins for PreTrainedConfig methods (transformers' own code is not read).
        self.native_config_methods: dict = {}

    # -- budget ----------------------------------------------------------------------
    def tick(self, n: int = 1) -> None:
        self.steps += n
        if self.steps > self.max_steps:
            raise BudgetExceeded("step budget exceeded")

    # -- statements ------------------------------------------------------------------
    def exec_block(self, body, frame: Frame) -> None:
        if isinstance(body, cst.IndentedBlock | cst.SimpleStatementSuite):
            stmts = body.body
        else:
            stmts = body
        for stmt in stmts:
            self.exec_stmt(stmt, frame)

    def exec_stmt(self, stmt, frame: Frame) -> None:
        self.tick()
        if isinstance(stmt, cst.SimpleStatementLine | cst.SimpleStatementSuite):
            for small in stmt.body:
                self.exec_small(small, frame)
        elif isinstance(stmt, cst.If):
            self.exec_if(stmt, frame)
        elif isinstance(stmt, cst.For):
            self.exec_for(stmt, frame)
        elif isinstance(stmt, cst.With):
            self.exec_block(stmt.body, frame)
        elif isinstance(stmt, cst.Try):
            try:
                self.exec_block(stmt.body, frame)
            except (_Abort, Unknown):
                pass
            if stmt.orelse is not None:
                self.exec_block(stmt.orelse.body, frame)
            if stmt.finalbody is not None:
                self.exec_block(stmt.finalbody.body, frame)
        elif isinstance(stmt, cst.FunctionDef):
            frame.locals[stmt.name.value] = FuncRef(
                frame.sf, stmt, closure=frame.locals, scope=frame.scope or _owner_node(frame)
            )
        elif isinstance(stmt, cst.While):
            raise _Abort()  # not interpreted: what follows it would be a guess
        # ClassDef, Match...: not interpreted.

    def exec_if(self, stmt: cst.If, frame: Frame) -> None:
        try:
            cond = self.truth(self.eval(stmt.test, frame))
        except Unknown:
            cond = self.unknown_branch(stmt, frame)
        if cond is None:
            return
        if cond:
            self.exec_block(stmt.body, frame)
        elif stmt.orelse is not None:
            if isinstance(stmt.orelse, cst.If):
                self.exec_if(stmt.orelse, frame)
            else:
                self.exec_block(stmt.orelse.body, frame)

    def unknown_branch(self, stmt: cst.If, frame: Frame) -> bool | None:
        """Policy for an `if` whose condition is unknown: take the first branch, remember it."""
        self.uncertain.append(frame.site(stmt))
        return True

    def exec_for(self, stmt: cst.For, frame: Frame) -> None:
        try:
            iterable = self.iterate(self.eval(stmt.iter, frame))
        except Unknown:
            return
        for item in iterable:
            self.tick()
            self.assign(stmt.target, item, frame)
            try:
                self.exec_block(stmt.body, frame)
            except _Break:
                break
            except _Continue:
                continue
        else:
            if stmt.orelse is not None:
                self.exec_block(stmt.orelse.body, frame)

    def exec_small(self, small, frame: Frame) -> None:
        if isinstance(small, cst.Assign):
            try:
                value = self.eval(small.value, frame)
            except Unknown:
                value = UNKNOWN
            for target in small.targets:
                self.assign(target.target, value, frame, stmt=small)
        elif isinstance(small, cst.AnnAssign):
            if small.value is not None:
                try:
                    value = self.eval(small.value, frame)
                except Unknown:
                    value = UNKNOWN
                self.assign(small.target, value, frame, stmt=small)
        elif isinstance(small, cst.AugAssign):
            try:
                current = self.eval(small.target, frame)
                rhs = self.eval(small.value, frame)
                op = type(small.operator).__name__.replace("Assign", "")
                value = self.binop(getattr(cst, op)(), current, rhs, small)
                if isinstance(current, list) and isinstance(small.operator, cst.AddAssign):
                    current[:] = value  # in-place like Python
                    value = current
            except (Unknown, AttributeError):
                value = UNKNOWN
            self.assign(small.target, value, frame, stmt=small)
        elif isinstance(small, cst.Expr):
            try:
                self.eval(small.value, frame)
            except BudgetExceeded:
                raise
            except Unknown:
                pass
        elif isinstance(small, cst.Return):
            if small.value is None:
                raise _Return(None)
            try:
                raise _Return(self.eval(small.value, frame))
            except Unknown:
                raise _Return(UNKNOWN) from None
        elif isinstance(small, cst.Raise):
            raise _Abort()
        elif isinstance(small, cst.Break):
            raise _Break()
        elif isinstance(small, cst.Continue):
            raise _Continue()

    def assign(self, target, value, frame: Frame, stmt=None) -> None:
        if isinstance(target, cst.Name):
            frame.locals[target.value] = value
        elif isinstance(target, cst.Tuple | cst.List):
            elements = target.elements
            try:
                items = self.unpack(value, len(elements))
            except Unknown:
                items = [UNKNOWN] * len(elements)
            for el, item in zip(elements, items, strict=False):
                self.assign(el.value, item, frame, stmt)
        elif isinstance(target, cst.Attribute):
            try:
                obj = self.eval(target.value, frame)
            except Unknown:
                return
            self.set_attr(obj, target.attr.value, value, frame, stmt)
        elif isinstance(target, cst.Subscript):
            try:
                obj = self.eval(target.value, frame)
                key = self.eval_slice(target.slice, frame)
                if isinstance(obj, dict | list) and not isinstance(key, slice | tuple):
                    obj[key] = value
                elif isinstance(obj, ModuleListRec) and obj.keys is not None:
                    _dict_set(obj, key, value)  # `self.blocks[name] = Block(config)`
            except (Unknown, TypeError, IndexError, KeyError):
                return
        elif isinstance(target, cst.StarredElement):
            self.assign(target.value, value, frame, stmt)

    def set_attr(self, obj, name: str, value, frame: Frame, stmt=None) -> None:
        if isinstance(obj, ConfigObj):
            name = obj.key(name)  # attribute_map aliases write through to the real field
            obj.attrs[name] = value
            obj.origin.setdefault(name, "post_init")
        elif isinstance(obj, Obj):
            obj.attrs[name] = value
            if isinstance(obj, ModuleRec) and stmt is not None:
                obj.assign_sites[name] = frame.site(stmt)

    def unpack(self, value, n: int) -> list:
        if isinstance(value, tuple | list) and len(value) == n:
            return list(value)
        if value is UNKNOWN:
            raise Unknown("unpack unknown")
        if isinstance(value, dict | set | frozenset | str) and len(value) == n:
            return list(value)
        raise Unknown("cannot unpack")

    def iterate(self, value) -> list:
        if isinstance(value, list | tuple | str):
            return list(value)
        if isinstance(value, set | frozenset):
            return _in_stable_order(value)
        if isinstance(value, dict):
            return list(value)
        if isinstance(value, range):
            if len(value) > _MAX_SEQ:
                raise Unknown("range too long")
            return list(value)
        if isinstance(value, ModuleListRec):
            return list(value.items)
        if isinstance(value, _Iter):
            return value.items
        raise Unknown("not iterable")

    # -- expressions -----------------------------------------------------------------
    def eval(self, node, frame: Frame):
        self.tick()
        method = getattr(self, "eval_" + type(node).__name__, None)
        if method is None:
            raise Unknown(type(node).__name__)
        return method(node, frame)

    def eval_Integer(self, node, frame):
        return literal(node)

    def eval_Float(self, node, frame):
        return literal(node)

    def eval_Imaginary(self, node, frame):
        raise Unknown("complex")

    def eval_SimpleString(self, node, frame):
        value = literal(node)
        if isinstance(value, bytes):
            raise Unknown("bytes")
        return value

    def eval_ConcatenatedString(self, node, frame):
        left = self.eval(node.left, frame)
        right = self.eval(node.right, frame)
        if isinstance(left, str) and isinstance(right, str):
            return left + right
        raise Unknown("string")

    def eval_FormattedString(self, node, frame):
        out = []
        for part in node.parts:
            if isinstance(part, cst.FormattedStringText):
                out.append(part.value)
            else:
                value = self.eval(part.expression, frame)
                if not isinstance(value, int | float | str | bool | type(None)):
                    raise Unknown("f-string")
                out.append(str(value))
        return "".join(out)

    def eval_Ellipsis(self, node, frame):
        return Ellipsis

    def eval_Name(self, node, frame):
        return self.lookup(node.value, frame)

    def lookup(self, name: str, frame: Frame):
        if name in frame.locals:
            return frame.locals[name]
        if name == "True":
            return True
        if name == "False":
            return False
        if name == "None":
            return None
        kind, value = self.project.resolve_name(frame.sf, name)
        if kind == "class":
            return ClassRef(value)
        if kind == "function":
            sf, fn = value
            return FuncRef(sf, fn)
        if kind == "assign":
            sf, expr = value
            key = ("global", id(expr))
            if key not in self._memo:
                self._memo[key] = UNKNOWN  # guards recursion
                try:
                    self._memo[key] = self.eval(expr, Frame(sf))
                except Unknown:
                    self._memo[key] = UNKNOWN
            result = self._memo[key]
            if result is UNKNOWN:
                raise Unknown(name)
            return result
        if name in _BUILTINS:
            return _BuiltinFn(name)
        return ExtRef(value)

    def eval_Attribute(self, node, frame):
        obj = self.eval(node.value, frame)
        return self.get_attr(obj, node.attr.value, node)

    def get_attr(self, obj, name: str, node=None):
        if obj is UNKNOWN:
            raise Unknown("attribute of unknown")
        if isinstance(obj, ConfigObj):
            try:
                return obj.lookup(name)
            except _Missing:
                pass
            if obj.cls is not None:
                method = self.project.find_method(obj.cls, name)
                if method is not None:
                    return self._method_value(method, obj)
                found = self.project.find_class_attr(obj.cls, name)
                if found is not None:
                    return self.class_attr_value(found[0], found[1])
            native = self.native_config_methods.get(name)
            if native is not None:
                return NativeMethod(native, obj)
            if name in NATIVE_CONFIG_ATTRS:
                return _deepcopy_plain(NATIVE_CONFIG_ATTRS[name])
            raise Unknown(f"config has no {name}")
        if isinstance(obj, ModuleRec):
            if name in obj.attrs:
                return obj.attrs[name]
            if name == "training":
                return False
            if obj.cls is not None:
                method = self.project.find_method(obj.cls, name)
                if method is not None:
                    return self._method_value(method, obj)
                found = self.project.find_class_attr(obj.cls, name)
                if found is not None:
                    return self.class_attr_value(found[0], found[1])
            if obj.kind in ("Linear", "Embedding", "LayerNorm", "RMSNorm") and name in (
                "weight",
                "bias",
            ):
                return ParamRec("parameter", (), True, obj.site)
            raise Unknown(f"module has no {name}")
        if isinstance(obj, ModuleListRec) and obj.keys is None and name in _LIST_GROWTH:
            # `self.layers = nn.ModuleList()` then `self.layers.append(Block(...))` in a loop
            return NativeMethod(_LIST_GROWTH[name], obj)
        if isinstance(obj, Obj):
            if name in obj.attrs:
                return obj.attrs[name]
            raise Unknown(name)
        if isinstance(obj, SuperRef):
            cls = self._next_in_mro(obj.obj, obj.owner, name)
            if cls is None:
                return _ExternalSuper(obj.obj, name, obj.owner)
            return FuncRef(cls.sf, cls.methods[name], owner=cls, bound=obj.obj)
        if isinstance(obj, ClassRef):
            method = self.project.find_method(obj.cls, name)
            if method is not None:
                return FuncRef(method[0].sf, method[1], owner=method[0])
            found = self.project.find_class_attr(obj.cls, name)
            if found is not None:
                return self.class_attr_value(found[0], found[1])
            if name == "__name__":
                return obj.cls.name
            if name in ("_from_config", "from_config"):
                return _ClassCtor(obj.cls)  # PreTrainedModel._from_config(config)
            raise Unknown(name)
        if isinstance(obj, ExtRef):
            if obj.name == "math" and isinstance(getattr(math, name, None), float):
                return getattr(math, name)  # math.pi, math.e: numbers (a written-out gelu)
            return ExtRef(f"{obj.name}.{name}")
        if isinstance(obj, ParamRec | TensorRec):
            if name == "shape":
                return obj.shape
            raise Unknown("tensor attribute")
        if isinstance(obj, _KwargsBag) and name in ("get", "pop", "items", "keys", "values"):
            return BoundBuiltin(obj.items, name)
        if isinstance(obj, NativeMethod):
            raise Unknown("attribute of method")
        if isinstance(obj, CallRec) and obj.name.rsplit(".", 1)[-1][:1].isupper():
            # an instance of an external class (a module-level `AttentionInterface()` of the
            # file's own): its attributes are the class's, read like the imported instance
            return ExtRef(f"{obj.name}.{name}")
        if isinstance(obj, ActRec | CallRec | FuncRef):
            raise Unknown("attribute of opaque value")
        for typ, methods in _BUILTIN_METHODS.items():
            if type(obj) is typ and name in methods:
                return BoundBuiltin(obj, name)
        if isinstance(obj, bool) and name in ("real",):
            return obj
        raise Unknown(f"attribute {name}")

    def _method_value(self, method, obj):
        owner, fn = method
        ref = FuncRef(owner.sf, fn, owner=owner, bound=obj)
        if any(
            isinstance(d.decorator, cst.Name)
            and d.decorator.value in ("property", "cached_property")
            for d in fn.decorators
        ):
            return self.call_function(ref, [obj], {})
        return ref

    def class_attr_value(self, cls: ClassInfo, expr):
        key = ("classattr", id(expr))
        if key not in self._memo:
            self._memo[key] = UNKNOWN
            try:
                self._memo[key] = self.eval(expr, Frame(cls.sf, owner=cls))
            except Unknown:
                self._memo[key] = UNKNOWN
        value = self._memo[key]
        if value is UNKNOWN:
            raise Unknown("class attribute")
        # Mutable class-level defaults are copied per use, like dataclass default factories.
        if isinstance(value, dict | list):
            return _deepcopy_plain(value)
        return value

    def _next_in_mro(self, obj, owner: ClassInfo, name: str) -> ClassInfo | None:
        cls = getattr(obj, "cls", None)
        if cls is None:
            return None
        mro = self.project.mro(cls)
        after = False
        for c in mro:
            if after and name in c.methods:
                return c
            if c is owner:
                after = True
        return None

    def eval_Subscript(self, node, frame):
        obj = self.eval(node.value, frame)
        key = self.eval_slice(node.slice, frame)
        return self.get_item(obj, key, node, frame)

    def eval_slice(self, elements, frame):
        keys = []
        for el in elements:
            sl = el.slice
            if isinstance(sl, cst.Index):
                keys.append(self.eval(sl.value, frame))
            else:
                lower = self.eval(sl.lower, frame) if sl.lower is not None else None
                upper = self.eval(sl.upper, frame) if sl.upper is not None else None
                step = self.eval(sl.step, frame) if sl.step is not None else None
                keys.append(slice(lower, upper, step))
        return keys[0] if len(keys) == 1 else tuple(keys)

    def get_item(self, obj, key, node, frame):
        if isinstance(obj, ExtRef) and obj.last in _ACT_LOOKUPS:
            index = node.slice[0].slice if isinstance(node, cst.Subscript) else None
            field = self.config_field(index.value, frame) if isinstance(index, cst.Index) else None
            return ActRec(key if isinstance(key, str) else UNKNOWN, frame.site(node), field)
        if isinstance(obj, ExtRef):
            # typing subscripts (`list[int]`) and the like
            raise Unknown("subscript of external")
        if isinstance(obj, ModuleListRec):
            if obj.keys is not None and key in obj.keys:
                return obj.items[obj.keys.index(key)]
            try:
                result = obj.items[key]
            except (TypeError, IndexError) as err:
                raise Unknown("module list index") from err
            return ModuleListRec(result, obj.site) if isinstance(key, slice) else result
        if isinstance(obj, dict | list | tuple | str | range):
            if isinstance(key, ModuleRec | ConfigObj):
                raise Unknown("unhashable")
            try:
                value = obj[key]
            except (KeyError, IndexError, TypeError) as err:
                raise Unknown("subscript") from err
            return self.table_entry(value, obj, node, frame)
        if isinstance(obj, ParamRec | TensorRec):
            raise Unknown("tensor subscript")
        raise Unknown("subscript")

    def table_entry(self, value, table, node, frame):
        """`value`, what a dict of the analysed sources maps a config field's value to,
        carrying that lookup (`with_lookup`); else as is."""
        if not isinstance(table, dict):
            return value
        index = node.slice[0].slice if isinstance(node, cst.Subscript) else None
        field = self.config_field(index.value, frame) if isinstance(index, cst.Index) else None
        if field is None:
            return value
        return with_lookup(value, TableLookup(field, frame.site(node)))

    def eval_Call(self, node: cst.Call, frame):
        func = self.eval(node.func, frame)
        args: list = []
        kwargs: dict = {}
        for arg in node.args:
            if arg.star == "*":
                args.extend(self.star_items(arg.value, frame))
            elif arg.star == "**":
                value = self.eval(arg.value, frame)
                if isinstance(value, dict):
                    kwargs.update(value)
                elif isinstance(value, _KwargsBag):
                    kwargs.update(value.items)
                else:
                    raise Unknown("** of non-dict")
            elif arg.keyword is not None:
                kwargs[arg.keyword.value] = self.eval_arg(arg.value, frame)
            else:
                args.append(self.eval_arg(arg.value, frame))
        result = self.call_value(func, args, kwargs, frame.site(node), frame)
        if isinstance(func, ExtRef) and func.last in _ACT_FACTORIES and isinstance(result, ActRec):
            head = node.args[0] if node.args else None
            named = head is not None and head.keyword is None and not head.star
            result.field = self.config_field(head.value, frame) if named else None
        if isinstance(result, ModuleListRec) and len(node.args) == 1 and not node.args[0].star:
            result.count_field = self._range_field(node.args[0].value, frame)
        return result

    def _range_field(self, node, frame) -> str | None:
        """The config field `[... for _ in range(<field>)]` (or a generator alike) counts by:
        its one `range` argument, evaluated where the comprehension's iterable is."""
        if not isinstance(node, cst.ListComp | cst.GeneratorExp) or node.for_in.inner_for_in:
            return None
        count = node.for_in.iter
        if not (
            m.matches(count, m.Call(func=m.Name("range"), args=[m.Arg(keyword=None, star="")]))
        ):
            return None
        try:
            return read_field(self.eval(count.args[0].value, frame))
        except BudgetExceeded:
            raise
        except Unknown:
            return None

    def config_field(self, node, frame) -> str | None:
        """The config field `node` reads (`<any config object>.<field>`), else None."""
        if not isinstance(node, cst.Attribute):
            return None
        try:
            owner = self.eval(node.value, frame)
        except Unknown:
            return None
        return owner.key(node.attr.value) if isinstance(owner, ConfigObj) else None

    def star_items(self, node, frame) -> list:
        return list(self.iterate(self.eval(node, frame)))

    def eval_arg(self, node, frame):
        """Arguments that cannot be evaluated are passed as UNKNOWN rather than failing the call."""
        try:
            return self.eval(node, frame)
        except BudgetExceeded:
            raise
        except Unknown:
            return UNKNOWN

    def call_value(self, func, args: list, kwargs: dict, site: Site, frame: Frame):
        result = self._call_value(func, args, kwargs, site, frame)
        # what a picked class or factory builds (`ACT_CLASSES[config.afn]()`) stays picked
        lookup = getattr(func, "table_lookup", None)
        return result if lookup is None else with_lookup(result, lookup)

    def _call_value(self, func, args: list, kwargs: dict, site: Site, frame: Frame):
        if isinstance(func, FuncRef):
            if func.bound is not None:
                if not self._is_static(func):
                    args = [func.bound, *args]
            return self.call_function(func, args, kwargs)
        if isinstance(func, ClassRef):
            return self.instantiate(func.cls, args, kwargs, site)
        if isinstance(func, BoundBuiltin):
            return self.call_builtin_method(func, args, kwargs)
        if isinstance(func, _BuiltinFn):
            return func(self, args, kwargs, frame)
        if isinstance(func, _ExternalSuper):
            return func.call(self, args, kwargs, site)
        if isinstance(func, ExtRef):
            return self.call_external(func, args, kwargs, site)
        if isinstance(func, NativeMethod):
            return func.fn(self, func.obj, args, kwargs)
        if isinstance(func, _ClassCtor):
            return self.instantiate(func.cls, list(args[:1]), {}, site)
        if isinstance(func, ActRec):
            return func  # ACT2CLS["xielu"](dtype=...): constructing the activation module
        if isinstance(func, ModuleRec):
            raise Unknown("module call in static context")
        raise Unknown("call of unknown")

    def _is_static(self, func: FuncRef) -> bool:
        if not isinstance(func.node, cst.FunctionDef):
            return False
        return any(
            isinstance(d.decorator, cst.Name) and d.decorator.value == "staticmethod"
            for d in func.node.decorators
        )

    def call_function(self, func: FuncRef, args: list, kwargs: dict):
        if self.depth >= self.max_depth:
            raise Unknown("recursion depth")
        node = func.node
        frame = Frame(
            func.sf,
            dict(func.closure or {}),
            owner=func.owner,
            scope=_scope(func),
            method=_method(func),
        )
        self.bind_params(node.params, args, kwargs, frame)
        self.depth += 1
        try:
            if isinstance(node, cst.Lambda):
                return self.eval(node.body, frame)
            self.exec_block(node.body, frame)
        except _Return as ret:
            return ret.value
        except _Abort:
            return UNKNOWN
        finally:
            self.depth -= 1
        return None

    def capture(self, func: FuncRef, args: list, kwargs: dict) -> Frame:
        """Run `func` and return its frame (locals as they were when it returned)."""
        frame = Frame(
            func.sf,
            dict(func.closure or {}),
            owner=func.owner,
            scope=_scope(func),
            method=_method(func),
        )
        self.bind_params(func.node.params, args, kwargs, frame)
        self.depth += 1
        try:
            self.exec_block(func.node.body, frame)
        except (_Return, _Abort, Unknown):
            pass
        finally:
            self.depth -= 1
        return frame

    def bind_params(self, params: cst.Parameters, args: list, kwargs: dict, frame: Frame) -> None:
        positional = list(params.posonly_params) + list(params.params)
        kwargs = dict(kwargs)
        args = list(args)
        for p in positional:
            name = p.name.value
            if args:
                frame.locals[name] = args.pop(0)
            elif name in kwargs:
                frame.locals[name] = kwargs.pop(name)
            elif p.default is not None:
                frame.locals[name] = self.eval_arg(p.default, frame)
            else:
                frame.locals[name] = UNKNOWN
        if isinstance(params.star_arg, cst.Param):
            frame.locals[params.star_arg.name.value] = tuple(args)
        for p in params.kwonly_params:
            name = p.name.value
            if name in kwargs:
                frame.locals[name] = kwargs.pop(name)
            elif p.default is not None:
                frame.locals[name] = self.eval_arg(p.default, frame)
            else:
                frame.locals[name] = UNKNOWN
        if params.star_kwarg is not None:
            frame.locals[params.star_kwarg.name.value] = dict(kwargs)

    def call_builtin_method(self, func: BoundBuiltin, args, kwargs):
        if any(a is UNKNOWN for a in args) or any(v is UNKNOWN for v in kwargs.values()):
            if func.name not in ("append", "get", "setdefault", "pop", "update", "extend"):
                raise Unknown("unknown argument")
        if func.name == "format":
            if not all(is_plain(a) for a in args):
                raise Unknown("format")
        try:
            result = getattr(func.obj, func.name)(*args, **kwargs)
        except Exception as err:  # noqa: BLE001 - plain-data method failed: value unknown
            raise Unknown(str(err)) from None
        if isinstance(result, type({}.items()) | type({}.keys()) | type({}.values())):
            return list(result)
        if isinstance(result, str | list) and len(result) > _MAX_SEQ:
            raise Unknown("too long")
        return result

    def call_external(self, func: ExtRef, args, kwargs, site: Site):
        last = func.last
        parts = func.name.split(".")
        in_torch = parts[0] in ("torch", "nn") or "nn" in parts
        if last == "Parameter" and in_torch:
            data = args[0] if args else kwargs.get("data")
            return ParamRec("parameter", _shape(data), True, site, _value(data))
        if last == "Buffer" and in_torch:
            data = args[0] if args else kwargs.get("data")
            persistent = kwargs.get("persistent", True) is not False
            return ParamRec("buffer", _shape(data), persistent, site, _value(data))
        if last == "ModuleList" and in_torch:
            items = list(self.iterate(args[0])) if args else []
            return ModuleListRec(items, site)
        if last == "ModuleDict" and in_torch:
            mapping = args[0] if args else {}
            if not isinstance(mapping, dict):
                raise Unknown("ModuleDict")
            return ModuleListRec(list(mapping.values()), site, keys=list(mapping))
        if last == "Sequential" and in_torch:
            return ModuleListRec(list(args), site)
        if last == "Conv1D":  # transformers.pytorch_utils.Conv1D: a Linear with (in, out) weight
            rec = ModuleRec(None, "Conv1D", site)
            rec.args = with_positions(args, kwargs, _TORCH_PARAMETERS["Conv1D"])
            rec.kwargs = dict(kwargs)
            return rec
        if last in _TORCH_MODULES and in_torch:
            rec = ModuleRec(None, last, site)
            rec.args = with_positions(args, kwargs, _TORCH_PARAMETERS.get(last, ()))
            rec.kwargs = dict(kwargs)
            return rec
        if last in _TENSOR_CTORS and parts[0] == "torch":
            dims = args
            if len(args) == 1 and isinstance(args[0], tuple | list):
                dims = list(args[0])
            return TensorRec(tuple(dims), site=site)
        if last == "tensor" and parts[0] == "torch":
            return TensorRec((), value=args[0] if args else UNKNOWN, site=site)
        if last.endswith("_like") and parts[0] == "torch":
            return TensorRec(_shape(args[0]) if args else (), site=site)
        if last in _ACT_FACTORIES:
            return ActRec(args[0] if args and isinstance(args[0], str) else UNKNOWN, site)
        if last in _AUTO_MODELS and len(parts) >= 2 and parts[-2].startswith("AutoModel"):
            rec = ModuleRec(None, parts[-2], site)
            rec.args = tuple(args)
            rec.kwargs = dict(kwargs)
            return rec
        if args and (
            isinstance(args[0], ClassRef)
            or (isinstance(args[0], ExtRef) and args[0].last in _TORCH_MODULES)
        ):
            # `skip_init(nn.Linear, d, d)`, `init_method(Cls, ...)`: a helper handed a module
            # class and its arguments builds that module
            return self.call_value(args[0], list(args[1:]), kwargs, site, None)
        if last.startswith("is_") and last.endswith(("_available", "_requested", "_compiling")):
            # Feature probes (`is_flash_attention_requested`, `is_torch_fx_available`): the
            # analysis follows the plain eager PyTorch path.
            return False
        if parts[0] == "copy" and last in ("copy", "deepcopy") and args:
            if isinstance(args[0], ConfigObj):  # `config = copy.deepcopy(config)`, then edited
                return _copied_config(args[0])
        if parts[0] == "math" and hasattr(math, last):
            fn = getattr(math, last)
            if callable(fn) and all(isinstance(a, int | float) for a in args):
                try:
                    return fn(*args)
                except (ValueError, OverflowError) as err:
                    raise Unknown("math") from err
            raise Unknown("math")
        return CallRec(func.name, tuple(args), dict(kwargs))

    # -- instantiation -------------------------------------------------------------------
    def is_config_class(self, cls: ClassInfo) -> bool:
        return any(
            b.endswith("PreTrainedConfig") or b.endswith("PretrainedConfig")
            for b in self.project.external_bases(cls)
        ) or cls.name.endswith("Config")

    def instantiate(self, cls: ClassInfo, args: list, kwargs: dict, site: Site):
        if self.is_config_class(cls):
            if self.config_factory is None:
                raise Unknown("config construction")
            return self.config_factory(self, cls, args, kwargs, site)
        try:  # one record per construction site: norms alike in value stay apart by source
            key = (
                id(cls),
                id(site.node) if site is not None else None,
                freeze(args),
                freeze(kwargs),
            )
        except TypeError:
            key = None
        if key is not None and key in self._memo:
            return self._memo[key]
        rec = ModuleRec(cls, None, site)
        rec.args = tuple(args)
        rec.kwargs = dict(kwargs)
        if key is not None:
            self._memo[key] = rec
        init = self.project.find_method(cls, "__init__")
        if init is None:
            self._external_init(rec, cls, args, kwargs)
            return rec
        owner, fn = init
        rec.args = with_positions(args, kwargs, _init_parameters(fn))
        try:
            self.call_function(FuncRef(owner.sf, fn, owner=owner), [rec, *args], kwargs)
        except BudgetExceeded:
            raise
        except Unknown:
            pass
        return rec

    def _external_init(self, rec: ModuleRec, cls: ClassInfo, args, kwargs) -> None:
        for base in self.project.external_bases(cls):
            last = base.rsplit(".", 1)[-1]
            if last in _TORCH_MODULES:
                rec.ext_base = last
                rec.args = with_positions(args, kwargs, _TORCH_PARAMETERS.get(last, ()))
                rec.kwargs = dict(kwargs)
                return

    # -- operators -----------------------------------------------------------------------
    def eval_BinaryOperation(self, node, frame):
        left = self.eval(node.left, frame)
        right = self.eval(node.right, frame)
        return self.binop(node.operator, left, right, node)

    def binop(self, op, left, right, node):
        fn = _BINOPS.get(type(op))
        if fn is None:
            raise Unknown("operator")
        if isinstance(op, cst.Add) and (
            (isinstance(left, list) and isinstance(right, list))
            or (isinstance(left, tuple) and isinstance(right, tuple))
        ):
            if len(left) + len(right) > _MAX_SEQ:
                raise Unknown("too long")
            return left + right  # sequences of records concatenate like any other
        if not (is_plain(left) and is_plain(right)):
            raise Unknown("operand")
        if isinstance(op, cst.Power) and isinstance(right, int | float) and abs(right) > 512:
            raise Unknown("power")
        if isinstance(op, cst.Multiply) and isinstance(left, str | list | tuple):
            if isinstance(right, int) and right * max(len(left), 1) > _MAX_SEQ:
                raise Unknown("too long")
        if isinstance(op, cst.Multiply) and isinstance(right, str | list | tuple):
            if isinstance(left, int) and left * max(len(right), 1) > _MAX_SEQ:
                raise Unknown("too long")
        try:
            result = fn(left, right)
        except Exception as err:  # noqa: BLE001 - e.g. ZeroDivisionError, TypeError
            raise Unknown(str(err)) from None
        if isinstance(op, cst.Multiply) and isinstance(left, ConfigInt):
            if isinstance(right, ConfigInt):  # heads * head_dim: both fields size it
                return ConfigInt(result, left.fields + right.fields)
        return result

    def eval_UnaryOperation(self, node, frame):
        value = self.eval(node.expression, frame)
        if isinstance(node.operator, cst.Not):
            return not self.truth(value)
        if not isinstance(value, int | float | bool):
            raise Unknown("unary")
        if isinstance(node.operator, cst.Minus):
            return -value
        if isinstance(node.operator, cst.Plus):
            return +value
        if isinstance(node.operator, cst.BitInvert) and isinstance(value, int):
            return ~value
        raise Unknown("unary")

    def eval_BooleanOperation(self, node, frame):
        left = self.eval(node.left, frame)
        if isinstance(node.operator, cst.And):
            return _untagged(self.eval(node.right, frame) if self.truth(left) else left)
        return _untagged(left if self.truth(left) else self.eval(node.right, frame))

    def eval_Comparison(self, node, frame):
        left = self.eval(node.left, frame)
        for target in node.comparisons:
            right = self.eval(target.comparator, frame)
            if not self.compare(target.operator, left, right):
                return False
            left = right
        return True

    def compare(self, op, left, right) -> bool:
        if isinstance(op, cst.Is | cst.IsNot):
            if left is UNKNOWN or right is UNKNOWN:
                raise Unknown("is")
            if right is None or left is None:
                result = left is right
            elif isinstance(left, bool) or isinstance(right, bool):
                result = left is right
            else:
                raise Unknown("identity")
            return result if isinstance(op, cst.Is) else not result
        if isinstance(op, cst.In | cst.NotIn):
            # membership of a plain value; containers may hold records (compared by identity)
            if not is_plain(left) or isinstance(left, list | dict | set):
                raise Unknown("in")
            if isinstance(right, dict):
                if not all(is_plain(k) for k in right):
                    raise Unknown("in")
            elif not isinstance(right, list | tuple | set | frozenset | str | range):
                raise Unknown("in")
            if isinstance(right, str) and not isinstance(left, str):
                raise Unknown("in")
            try:
                result = left in right
            except TypeError as err:
                raise Unknown("in") from err
            return result if isinstance(op, cst.In) else not result
        fn = _CMPOPS.get(type(op))
        if fn is None or not (is_plain(left) and is_plain(right)):
            raise Unknown("compare")
        try:
            return bool(fn(left, right))
        except TypeError as err:
            raise Unknown("compare") from err

    def truth(self, value) -> bool:
        if value is UNKNOWN:
            raise Unknown("truth of unknown")
        if is_plain(value):
            return bool(value)
        if isinstance(value, ModuleRec | ConfigObj | ParamRec | ModuleListRec | ActRec):
            return True
        raise Unknown("truth")

    def eval_IfExp(self, node, frame):
        try:
            cond = self.truth(self.eval(node.test, frame))
        except Unknown:
            self.uncertain.append(frame.site(node))
            cond = True
        return _untagged(self.eval(node.body if cond else node.orelse, frame))

    def eval_NamedExpr(self, node, frame):
        value = self.eval(node.value, frame)
        self.assign(node.target, value, frame)
        return value

    def eval_Lambda(self, node, frame):
        return FuncRef(
            frame.sf, node, closure=dict(frame.locals), scope=frame.scope or _owner_node(frame)
        )

    # -- containers ----------------------------------------------------------------------
    def _elements(self, elements, frame) -> list:
        out = []
        for el in elements:
            if isinstance(el, cst.StarredElement):
                out.extend(self.star_items(el.value, frame))
            else:
                out.append(self.eval_arg(el.value, frame))
        return out

    def eval_List(self, node, frame):
        return self._elements(node.elements, frame)

    def eval_Tuple(self, node, frame):
        return tuple(self._elements(node.elements, frame))

    def eval_Set(self, node, frame):
        items = self._elements(node.elements, frame)
        try:
            return set(items)
        except TypeError as err:
            raise Unknown("set") from err

    def eval_Dict(self, node, frame):
        out = {}
        for el in node.elements:
            if isinstance(el, cst.StarredDictElement):
                value = self.eval(el.value, frame)
                if not isinstance(value, dict):
                    raise Unknown("** in dict")
                out.update(value)
            else:
                key = self.eval(el.key, frame)
                try:
                    out[key] = self.eval_arg(el.value, frame)
                except TypeError as err:
                    raise Unknown("dict key") from err
        return out

    def _comprehension(self, for_in, frame, emit) -> None:
        iterable = self.iterate(self.eval(for_in.iter, frame))
        for item in iterable:
            self.tick()
            self.assign(for_in.target, item, frame)
            if all(self.truth(self.eval(cond.test, frame)) for cond in for_in.ifs):
                if for_in.inner_for_in is not None:
                    self._comprehension(for_in.inner_for_in, frame, emit)
                else:
                    emit()

    def eval_ListComp(self, node, frame):
        inner = Frame(frame.sf, dict(frame.locals), frame.owner, frame.scope, frame.method)
        out: list = []
        self._comprehension(node.for_in, inner, lambda: out.append(self.eval_arg(node.elt, inner)))
        return out

    eval_GeneratorExp = eval_ListComp

    def eval_SetComp(self, node, frame):
        return set(self.eval_ListComp(node, frame))

    def eval_DictComp(self, node, frame):
        inner = Frame(frame.sf, dict(frame.locals), frame.owner, frame.scope, frame.method)
        out: dict = {}

        def emit():
            out[self.eval(node.key, inner)] = self.eval_arg(node.value, inner)

        self._comprehension(node.for_in, inner, emit)
        return out


@dataclass(eq=False)
class _KwargsBag:
    """`**kwargs` of an interpreted function: supports get/pop/items like a dict."""

    items: dict

    def get(self, key, default=None):
        return self.items.get(key, default)


@dataclass(eq=False)
class _Iter:
    items: list


@dataclass(eq=False)
class _ExternalSuper:
    """`super().method` where the parent is outside the analysed sources."""

    obj: Any
    name: str
    owner: ClassInfo

    def call(self, interp: Interp, args, kwargs, site):
        hook = getattr(interp, "external_super_" + self.name.strip("_"), None)
        if hook is not None and isinstance(self.obj, ConfigObj):
            return hook(self.obj, self.owner, args, kwargs, site)
        native = interp.native_config_methods.get(self.name)
        if native is not None and isinstance(self.obj, ConfigObj):
            # a config override ending in `super().convert_rope_params_to_dict(**kwargs)`
            return native(interp, self.obj, args, kwargs)
        if self.name == "__init__" and isinstance(self.obj, ModuleRec) and self.owner is not None:
            for base in interp.project.external_bases(self.owner):
                last = base.rsplit(".", 1)[-1]
                if last.endswith("PreTrainedModel") and args and isinstance(args[0], ConfigObj):
                    self.obj.attrs.setdefault("config", args[0])  # PreTrainedModel.__init__
                    break
                if last in _TORCH_MODULES:
                    self.obj.ext_base = last
                    self.obj.args = tuple(args)
                    self.obj.kwargs = dict(kwargs)
                    break
        return None


def with_lookup(value, lookup: TableLookup):
    """`value` (picked out of a table by `lookup`) carrying the lookup, for every kind a table
    can hold that computes something: an external function or class, a function or class of
    the analysed sources, a module instance (`nn.ReLU()`: a copy, so two lookups of one entry
    keep their own fields), an external object, an activation (`ACT2FN["gelu"]`, unless it is
    looked up by a field of its own). Plain data is returned as is."""
    if isinstance(value, ActRec):
        return value if value.field else replace(value, site=lookup.site, field=lookup.field)
    if isinstance(value, ModuleRec):
        picked = copy.copy(value)
        picked.attrs = dict(value.attrs)
        picked.table_lookup = lookup
        return picked
    if isinstance(value, ExtRef | FuncRef | ClassRef | CallRec):
        return replace(value, table_lookup=lookup)
    return value


def _shape(value) -> tuple:
    if isinstance(value, TensorRec | ParamRec):
        return tuple(value.shape)
    return ()


def _method(func: FuncRef):
    """The method node when `func` is a method defined directly in its owner class."""
    if func.owner is not None and func.scope is None and isinstance(func.node, cst.FunctionDef):
        if func.owner.methods.get(func.node.name.value) is func.node:
            return func.node
    return None


def _scope(func: FuncRef):
    if func.scope is not None:
        return func.scope
    if func.owner is not None:
        return func.owner.node
    return func.node if isinstance(func.node, cst.FunctionDef) else None


def _owner_node(frame: Frame):
    return frame.owner.node if frame.owner is not None else None


def _value(data):
    return data.value if isinstance(data, TensorRec) else None


def _copied_config(config: ConfigObj) -> ConfigObj:
    """A copy of a config whose edits stay its own; its reads still go to the analysis' log."""
    copied = ConfigObj(config.cls, config.prefix)
    copied.attrs = {k: _deepcopy_plain(v) for k, v in config.attrs.items()}
    copied.attribute_map = dict(config.attribute_map)
    copied.origin = dict(config.origin)
    copied.extra_kwargs = dict(config.extra_kwargs)
    copied.read_log = config.read_log
    return copied


def _deepcopy_plain(value):
    if isinstance(value, dict):
        return {k: _deepcopy_plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_deepcopy_plain(v) for v in value]
    return value


# ---------------------------------------------------------------------------- builtins
class _BuiltinFn:
    def __init__(self, name: str) -> None:
        self.name = name

    def __call__(self, interp: Interp, args, kwargs, frame: Frame):
        return getattr(self, "b_" + self.name)(interp, args, kwargs, frame)

    @staticmethod
    def _plain(args):
        if not all(is_plain(a) for a in args):
            raise Unknown("non-plain argument")

    def b_len(self, interp, args, kwargs, frame):
        value = args[0]
        if isinstance(value, ModuleListRec):
            return len(value.items)
        if isinstance(value, _KwargsBag):
            return len(value.items)
        if not isinstance(value, str | list | tuple | dict | set | frozenset | range):
            raise Unknown("len")
        return len(value)

    def b_range(self, interp, args, kwargs, frame):
        self._plain(args)
        if not all(isinstance(a, int) for a in args):
            raise Unknown("range")
        result = range(*args)
        if len(result) > _MAX_SEQ:
            raise Unknown("range too long")
        return result

    def _reduce(self, fn, args, kwargs):
        if len(args) == 1:
            items = args[0]
            if isinstance(items, range):
                items = list(items)
        else:
            items = args
        self._plain([items])
        try:
            return _untagged(fn(items, **{k: v for k, v in kwargs.items() if k == "default"}))
        except (ValueError, TypeError) as err:
            raise Unknown(fn.__name__) from err

    def b_min(self, interp, args, kwargs, frame):
        return self._reduce(min, args, kwargs)

    def b_max(self, interp, args, kwargs, frame):
        return self._reduce(max, args, kwargs)

    def b_sum(self, interp, args, kwargs, frame):
        items = list(args[0]) if isinstance(args[0], range) else args[0]
        self._plain([items])
        try:
            return sum(items, *args[1:])
        except TypeError as err:
            raise Unknown("sum") from err

    def _convert(self, fn, args):
        self._plain(args)
        try:
            return fn(*args)
        except (ValueError, TypeError, OverflowError) as err:
            raise Unknown(fn.__name__) from err

    def b_abs(self, interp, args, kwargs, frame):
        return self._convert(abs, args)

    def b_int(self, interp, args, kwargs, frame):
        return self._convert(int, args)

    def b_float(self, interp, args, kwargs, frame):
        return self._convert(float, args)

    def b_round(self, interp, args, kwargs, frame):
        return self._convert(round, args)

    def b_divmod(self, interp, args, kwargs, frame):
        return self._convert(divmod, args)

    def b_bool(self, interp, args, kwargs, frame):
        return interp.truth(args[0]) if args else False

    def b_str(self, interp, args, kwargs, frame):
        return self._convert(str, args)

    def b_list(self, interp, args, kwargs, frame):
        return list(interp.iterate(args[0])) if args else []

    def b_tuple(self, interp, args, kwargs, frame):
        return tuple(interp.iterate(args[0])) if args else ()

    def b_set(self, interp, args, kwargs, frame):
        return self._convert(set, [list(interp.iterate(args[0]))] if args else [])

    def b_frozenset(self, interp, args, kwargs, frame):
        return self._convert(frozenset, [list(interp.iterate(args[0]))] if args else [])

    def b_dict(self, interp, args, kwargs, frame):
        out = dict(args[0]) if args and isinstance(args[0], dict) else {}
        if args and isinstance(args[0], list):
            out = self._convert(dict, [args[0]])
        out.update(kwargs)
        return out

    def b_sorted(self, interp, args, kwargs, frame):
        return self._convert(sorted, [list(interp.iterate(args[0]))])

    def b_reversed(self, interp, args, kwargs, frame):
        return list(reversed(interp.iterate(args[0])))

    def b_enumerate(self, interp, args, kwargs, frame):
        return list(enumerate(interp.iterate(args[0]), *args[1:]))

    def b_zip(self, interp, args, kwargs, frame):
        return list(zip(*[interp.iterate(a) for a in args], strict=False))

    def b_map(self, interp, args, kwargs, frame):
        """`map(lambda i: Block(config, i), range(n))`: the calls made, eagerly."""
        if len(args) < 2:
            raise Unknown("map")
        site = frame.site(frame.method) if frame is not None and frame.method else None
        rows = zip(*[interp.iterate(a) for a in args[1:]], strict=False)
        return [interp.call_value(args[0], list(row), {}, site, frame) for row in rows]

    def b_any(self, interp, args, kwargs, frame):
        return any(interp.truth(v) for v in interp.iterate(args[0]))

    def b_all(self, interp, args, kwargs, frame):
        return all(interp.truth(v) for v in interp.iterate(args[0]))

    def b_print(self, interp, args, kwargs, frame):
        return None

    def b_isinstance(self, interp, args, kwargs, frame):
        value, types = args[0], args[1]
        types = types if isinstance(types, tuple) else (types,)
        for typ in types:
            if isinstance(typ, _BuiltinFn) and typ.name in _TYPE_NAMES:
                if isinstance(value, _TYPE_NAMES[typ.name]) and not (
                    typ.name == "int" and isinstance(value, bool)
                ):
                    return True
                if value is UNKNOWN:
                    raise Unknown("isinstance")
            elif isinstance(typ, ClassRef):
                cls = getattr(value, "cls", None)
                if cls is not None and any(c is typ.cls for c in interp.project.mro(cls)):
                    return True
                if value is UNKNOWN:
                    raise Unknown("isinstance")
            elif isinstance(typ, ExtRef) and typ.name in _ABSTRACT_TYPES and is_plain(value):
                # `isinstance(config.intermediate_size, Sequence)` (gemma3n's __post_init__)
                if isinstance(value, _ABSTRACT_TYPES[typ.name]):
                    return True
            else:
                raise Unknown("isinstance")
        return False

    def b_getattr(self, interp, args, kwargs, frame):
        obj, name = args[0], args[1]
        if not isinstance(name, str):
            raise Unknown("getattr name")
        if isinstance(obj, ConfigObj):
            try:
                return obj.lookup(name)
            except _Missing:
                if len(args) > 2:
                    return args[2]
        try:
            return interp.get_attr(obj, name)
        except Unknown:
            if len(args) > 2 and isinstance(obj, Obj) and name not in obj.attrs:
                return args[2]
            raise

    def b_hasattr(self, interp, args, kwargs, frame):
        obj, name = args[0], args[1]
        if isinstance(obj, ConfigObj):
            try:
                obj.lookup(name)
                return True
            except _Missing:
                pass
            if obj.cls is not None and (
                interp.project.find_class_attr(obj.cls, name) is not None
                or interp.project.find_method(obj.cls, name) is not None
            ):
                return True
            return False
        if isinstance(obj, ModuleRec):
            return name in obj.attrs
        raise Unknown("hasattr")

    def b_setattr(self, interp, args, kwargs, frame):
        if isinstance(args[0], Obj) and isinstance(args[1], str):
            interp.set_attr(args[0], args[1], args[2], frame)
            return None
        raise Unknown("setattr")

    def b_super(self, interp, args, kwargs, frame):
        self_obj = frame.locals.get("self")
        if self_obj is None or frame.owner is None:
            raise Unknown("super")
        return SuperRef(self_obj, frame.owner)


_TYPE_NAMES = {
    "dict": dict,
    "list": list,
    "tuple": tuple,
    "int": int,
    "float": float,
    "str": str,
    "bool": bool,
    "set": set,
}
# collections.abc types a config checks its plain values against (lists, tuples, dicts...)
_ABSTRACT_TYPES = {
    f"{module}.{name}": types
    for module in ("collections.abc", "typing")
    for name, types in {
        "Sequence": (list, tuple, str),
        "MutableSequence": (list,),
        "Mapping": (dict,),
        "MutableMapping": (dict,),
        "Iterable": (list, tuple, str, dict, set, frozenset),
    }.items()
}
_BUILTINS = {name[2:] for name in dir(_BuiltinFn) if name.startswith("b_")}


def _dict_set(rec: ModuleListRec, key, value) -> None:
    """`module_dict[key] = value`: a new key is added at the end, an existing one replaced."""
    if not isinstance(key, str) or not isinstance(value, ModuleRec | ModuleListRec):
        raise Unknown("module dict item")
    if key in rec.keys:
        rec.items[rec.keys.index(key)] = value
    else:
        rec.keys.append(key)
        rec.items.append(value)


def _list_append(interp, rec: ModuleListRec, args, kwargs) -> None:
    rec.items.append(args[0] if args else kwargs.get("module"))


def _list_extend(interp, rec: ModuleListRec, args, kwargs) -> None:
    rec.items.extend(interp.iterate(args[0]) if args else [])


def _list_insert(interp, rec: ModuleListRec, args, kwargs) -> None:
    if len(args) != 2 or not isinstance(args[0], int):
        raise Unknown("insert")
    rec.items.insert(args[0], args[1])


_LIST_GROWTH = {"append": _list_append, "extend": _list_extend, "insert": _list_insert}
