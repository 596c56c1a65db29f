"""Forward data flow, symbolically: which module is applied to what.

`Tracer.trace(rec)` interprets a module's `forward` with its inputs as symbolic `Term`s and
everything else (config values, attributes set in `__init__`, branch conditions) concrete where
the static instantiation knows them. Module calls become `call` terms, `a + b` an `add` term,
`x * s` a `mul` term; tensor methods that only reshape or cast pass the term through. The result
answers "is the norm applied to the sublayer input, to its output, or to the residual sum?"
without pattern-matching attribute names.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import libcst as cst

from codegen.analyze.evaluate import (
    UNKNOWN,
    ActRec,
    BudgetExceeded,
    CallRec,
    ExtRef,
    Frame,
    FuncRef,
    Interp,
    ModuleListRec,
    ModuleRec,
    ParamRec,
    Site,
    TableLookup,
    TensorRec,
    Unknown,
    _Abort,
    _ExternalSuper,
    _Return,
)
from codegen.analyze.roles import CONTAINER, OTHER, PASSTHROUGH, RoleBook
from codegen.analyze.walk import visit as read_only_visit

# tensor methods that keep the values (shape/dtype/device changes only)
PASSTHROUGH_METHODS = {
    "view",
    "reshape",
    "transpose",
    "permute",
    "contiguous",
    "to",
    "float",
    "half",
    "bfloat16",
    "type",
    "type_as",
    "clone",
    "squeeze",
    "unsqueeze",
    "flatten",
    "unflatten",
    "view_as",
    "expand",
    "expand_as",
    "detach",
    "requires_grad_",
    "cuda",
    "cpu",
    "movedim",
}
_SPLITS = {"chunk", "split", "unbind", "tensor_split"}
# names that are tensor methods (called) rather than fields of output objects
_TENSOR_METHODS = (
    PASSTHROUGH_METHODS
    | _SPLITS
    | {
        "softmax",
        "sigmoid",
        "tanh",
        "topk",
        "sum",
        "mean",
        "pow",
        "sqrt",
        "rsqrt",
        "exp",
        "log",
        "abs",
        "max",
        "min",
        "norm",
        "square",
        "masked_fill",
        "masked_fill_",
        "clamp",
        "clamp_",
        "clip",
        "gather",
        "scatter",
        "scatter_",
        "index_add_",
        "index_select",
        "matmul",
        "mul",
        "add",
        "div",
        "sub",
        "neg",
        "cos",
        "sin",
        "argmax",
        "argsort",
        "repeat",
        "repeat_interleave",
        "new_empty",
        "new_zeros",
        "new_ones",
        "copy_",
        "fill_",
        "zero_",
        "mul_",
        "add_",
        "div_",
        "sub_",
        "bool",
        "long",
        "int",
        "item",
        "nonzero",
        "cumsum",
        "cumprod",
        "softplus",
        "relu",
        "silu",
        "gelu",
        "narrow",
        "roll",
        "split_with_sizes",
        "all",
        "any",
        "size",
        "dim",
        "numel",
        "sort",
        "where",
        "reciprocal",
        "float_power",
        "lerp",
        "einsum",
        "bmm",
        "baddbmm",
        "addmm",
        "outer",
        "tril",
        "triu",
        "masked_scatter",
        "index_put_",
        "type_as",
        "logsumexp",
        "log_softmax",
        "argmin",
        "unfold",
        "pad",
    }
)


@dataclass(eq=False)
class Term:
    """A symbolic tensor. `op`: input | call | add | sub | mul | div | matmul | pow | neg | fn |
    index | split | attn | param | act | attr."""

    op: str
    args: tuple = ()
    module: Any = None  # ModuleRec for `call`, ParamRec for `param`, ActRec for `act`
    name: str = ""  # function / method / attribute name, or slice text for `index`
    kwargs: dict = field(default_factory=dict)
    site: Site | None = None
    # computed by something a config field picked out of a table (`ACT_FNS[config.afn](x)`,
    # or inside such a function of the analysed sources, inlined)
    picked: TableLookup | None = None
    # returned by a function of the analysed sources applied to one tensor, inlined: that
    # tensor (its activation is read from what the body computes: written_activation)
    written_from: Term | None = None
    written_site: Site | None = None
    # the function (FuncRef) or module class (ClassInfo) of the analysed sources that
    # returned it (inlined), on any number of tensors: one written on two is named by it
    written_by: Any = None

    def __repr__(self) -> str:  # pragma: no cover - debugging aid
        inner = ", ".join(repr(a) if isinstance(a, Term) else type(a).__name__ for a in self.args)
        return f"{self.op}:{self.name}({inner})"


def terms_in(value) -> list[Term]:
    if isinstance(value, Term):
        return [value]
    if isinstance(value, tuple | list):
        out: list[Term] = []
        for v in value:
            out.extend(terms_in(v))
        return out
    if isinstance(value, dict):
        return terms_in(list(value.values()))
    return []


def walk(term: Term):
    """Every term reachable from `term` (each once)."""
    seen: set[int] = set()
    stack = [term]
    while stack:
        t = stack.pop()
        if id(t) in seen:
            continue
        seen.add(id(t))
        yield t
        for a in t.args:
            stack.extend(terms_in(a))
        if t.kwargs:
            stack.extend(terms_in(list(t.kwargs.values())))


def depends_on(term: Term, target: Term) -> bool:
    return any(t is target for t in walk(term))


@dataclass(eq=False)
class _TermMethod:
    term: Term
    name: str


class LeadingAxes:
    """`x.shape[:-1]` / `x.size()[:-2]` of a symbolic tensor: its leading axes, how many
    unknown. Added to a tuple of sizes (`x.shape[:-1] + (heads, -1)`) it gives those sizes
    alone, as `view(*x.shape[:-1], heads, -1)` records them: views are read from the last
    axes, whatever the leading ones."""


def _shape_slice(node: cst.Subscript) -> tuple[cst.BaseExpression, cst.Slice] | None:
    """The tensor and the slice of `x.shape[a:b]` or `x.size()[a:b]`, else None."""
    if len(node.slice) != 1 or not isinstance(node.slice[0].slice, cst.Slice):
        return None
    value = node.value
    if isinstance(value, cst.Call) and not value.args and isinstance(value.func, cst.Attribute):
        value = value.func if value.func.attr.value == "size" else value
    if isinstance(value, cst.Attribute) and value.attr.value in ("shape", "size"):
        if value.attr.value == "shape" or value is not node.value:
            return value.value, node.slice[0].slice
    return None


class Tracer(Interp):
    """An interpreter whose tensors are Terms (see module docstring)."""

    max_steps = 150_000

    def __init__(self, base: Interp, roles: RoleBook, inline: bool = True) -> None:
        super().__init__(base.project, base.config_factory)
        self.native_config_methods = base.native_config_methods
        self.roles = roles
        self.inline = inline
        self.terms: list[Term] = []  # every term created, in order
        self.func_calls: list[tuple[FuncRef, list]] = []  # analysed functions applied to terms
        self.uncertain_ifs: list[Site] = []
        self.views: dict[int, list[tuple]] = {}  # id(term) -> the shapes it was viewed as
        self._inlining = 0
        self._picking: list[TableLookup] = []  # the table lookups of the calls being traced

    def new(self, *args, **kwargs) -> Term:
        t = Term(*args, **kwargs)
        if self._picking:
            t.picked = self._picking[-1]
        self.terms.append(t)
        return t

    # -- entry point --------------------------------------------------------------------
    def trace(self, rec: ModuleRec, method: str = "forward", inputs: dict | None = None):
        """Interpret `rec.<method>`; returns what it returns (Terms inside), or None."""
        if rec.cls is None:
            return None
        found = self.project.find_method(rec.cls, method)
        if found is None:
            return None
        owner, fn = found
        frame = Frame(owner.sf, owner=owner, method=fn)
        frame.locals["self"] = rec
        first = True
        for p in list(fn.params.params)[1:]:
            name = p.name.value
            if inputs and name in inputs:
                frame.locals[name] = inputs[name]
            elif first:
                frame.locals[name] = self.new("input", name=name, kwargs={"primary": True})
            elif p.default is not None:
                value = self.eval_arg(p.default, frame)
                # `x: Tensor | None = None` is an optional tensor input: usable as a tensor,
                # absent for `is None` tests (the analysis follows the default call)
                if value is None:
                    frame.locals[name] = self.new("input", name=name, kwargs={"optional": True})
                else:
                    frame.locals[name] = value
            else:
                frame.locals[name] = self.new("input", name=name)
            first = False
        if isinstance(fn.params.star_arg, cst.Param):
            frame.locals[fn.params.star_arg.name.value] = ()
        for p in fn.params.kwonly_params:
            name = p.name.value
            if inputs and name in inputs:
                frame.locals[name] = inputs[name]
            elif p.default is not None:
                frame.locals[name] = self.eval_arg(p.default, frame)
            else:
                frame.locals[name] = self.new("input", name=name)
        if fn.params.star_kwarg is not None:
            frame.locals[fn.params.star_kwarg.name.value] = {}
        self.depth += 1
        try:
            self.exec_block(fn.body, frame)
        except _Return as ret:
            return ret.value
        except (_Abort, Unknown):
            return None
        finally:
            self.depth -= 1
        return None

    # -- statement policy ---------------------------------------------------------------
    def unknown_branch(self, stmt, frame):
        """Unknown condition: skip early exits (`continue`, `raise`...), else take the body."""
        self.uncertain_ifs.append(frame.site(stmt))
        body = stmt.body.body if isinstance(stmt.body, cst.IndentedBlock) else stmt.body.body
        smalls = []
        for line in body:
            if isinstance(line, cst.SimpleStatementLine):
                smalls.extend(line.body)
            else:
                return True
        if smalls and all(
            isinstance(s, cst.Continue | cst.Break | cst.Raise | cst.Return | cst.Pass)
            for s in smalls
        ):
            return False
        return True

    # -- values ---------------------------------------------------------------------------
    def truth(self, value) -> bool:
        if isinstance(value, Term | TensorRec | CallRec):
            raise Unknown("truth of tensor")
        return super().truth(value)

    def compare(self, op, left, right) -> bool:
        if isinstance(left, Term | TensorRec | ParamRec) or isinstance(right, Term | TensorRec):
            if isinstance(op, cst.Is | cst.IsNot) and (right is None or left is None):
                term = left if isinstance(left, Term) else right
                if isinstance(term, Term) and term.op == "input" and term.kwargs.get("optional"):
                    return isinstance(op, cst.Is)  # defaulted to None
                if (
                    isinstance(term, Term)
                    and term.op == "input"
                    and not term.kwargs.get("primary")
                    and not term.kwargs.get("given")  # the caller hands a tensor
                ):
                    # a required input that may be None (alibi): depends on the caller
                    raise Unknown("optional input")
                return not isinstance(op, cst.Is)
            raise Unknown("tensor comparison")
        return super().compare(op, left, right)

    def get_attr(self, obj, name: str, node=None):
        if isinstance(obj, Term):
            if name in ("shape", "dtype", "device", "ndim", "is_cuda", "requires_grad"):
                raise Unknown("tensor metadata")
            if name in ("T", "mT", "data", "real", "values"):
                return obj
            if name in _TENSOR_METHODS:
                return _TermMethod(obj, name)
            if obj.op == "fn" and name in obj.kwargs:  # field of an output object
                return obj.kwargs[name]
            return self.new("attr", (obj,), name=name)
        if isinstance(obj, ParamRec):
            if name == "shape":
                return obj.shape
            return _TermMethod(self.new("param", module=obj), name)
        if isinstance(obj, CallRec) and name in obj.kwargs:
            return obj.kwargs[name]
        return super().get_attr(obj, name, node)

    def eval_Subscript(self, node, frame):
        found = _shape_slice(node)
        if found is not None:
            axes = self._axes(found, frame)
            if axes is not None:
                return axes
        obj = self.eval(node.value, frame)
        if isinstance(obj, Term | ParamRec):
            try:
                key = self.eval_slice(node.slice, frame)
            except BudgetExceeded:
                raise
            except Unknown:
                key = UNKNOWN  # x[..., : x.shape[-1] // 2]: the slice is unknown, the data flows
            return self.get_item(obj, key, node, frame)
        key = self.eval_slice(node.slice, frame)
        return self.get_item(obj, key, node, frame)

    def _axes(self, found, frame):
        """`x.shape[:-k]` -> LeadingAxes; `x.shape[:k]`, `x.shape[-k:]` -> k unknown sizes,
        for a symbolic `x`; None for anything else (read as before)."""
        tensor, sl = found
        bounds = []
        for part in (sl.lower, sl.upper, sl.step):
            try:
                bounds.append(None if part is None else self.eval(part, frame))
            except BudgetExceeded:
                raise
            except Unknown:
                return None
        lower, upper, step = bounds
        if step is not None or not all(
            b is None or (isinstance(b, int) and not isinstance(b, bool)) for b in (lower, upper)
        ):
            return None
        if not isinstance(self.eval_arg(tensor, frame), Term):
            return None
        if lower is None and upper is not None and upper < 0:
            return LeadingAxes()
        if lower is None and upper is not None and upper <= 8:
            return (UNKNOWN,) * upper
        if upper is None and lower is not None and -8 <= lower < 0:
            return (UNKNOWN,) * -lower
        return None

    def get_item(self, obj, key, node, frame):
        if isinstance(obj, Term):
            return self.new("index", (obj,), name=_slice_repr(key), site=frame.site(node))
        if isinstance(obj, ParamRec):
            p = self.new("param", module=obj)
            return self.new("index", (p,), name=_slice_repr(key), site=frame.site(node))
        return super().get_item(obj, key, node, frame)

    def unpack(self, value, n: int) -> list:
        if isinstance(value, Term):
            if value.op == "call":
                return [value] + [self.new("index", (value,), name=str(i)) for i in range(1, n)]
            return [self.new("index", (value,), name=str(i)) for i in range(n)]
        return super().unpack(value, n)

    def star_items(self, node, frame) -> list:
        """`f(*x.shape[:-1], -1)`: shapes are unknown; keep the call, drop the starred part."""
        try:
            return super().star_items(node, frame)
        except BudgetExceeded:
            raise
        except Unknown:
            return []

    def iterate(self, value):
        if isinstance(value, LeadingAxes):
            return []  # `view(*x.shape[:-1], ...)`: the leading axes are not read
        if isinstance(value, Term):
            return [self.new("index", (value,), name="iter")]  # one symbolic iteration
        return super().iterate(value)

    def binop(self, op, left, right, node):
        if isinstance(left, LeadingAxes) and isinstance(op, cst.Add):
            if isinstance(right, tuple | list):
                return tuple(right)
            raise Unknown("leading axes plus a non-tuple")
        if isinstance(left, Term | ParamRec) or isinstance(right, Term | ParamRec):
            left = self.new("param", module=left) if isinstance(left, ParamRec) else left
            right = self.new("param", module=right) if isinstance(right, ParamRec) else right
            kind = {
                cst.Add: "add",
                cst.Subtract: "sub",
                cst.Multiply: "mul",
                cst.Divide: "div",
                cst.MatrixMultiply: "matmul",
                cst.Power: "pow",
            }.get(type(op), "fn")
            return self.new(kind, (left, right), name=type(op).__name__)
        return super().binop(op, left, right, node)

    def eval_BinaryOperation(self, node, frame):
        result = super().eval_BinaryOperation(node, frame)
        if isinstance(result, Term) and result.site is None:
            result.site = frame.site(node)
        return result

    def exec_small(self, small, frame):
        if isinstance(small, cst.AugAssign):
            before = len(self.terms)
            super().exec_small(small, frame)
            for t in self.terms[before:]:
                if t.site is None:
                    t.site = frame.site(small)
            return
        super().exec_small(small, frame)

    def eval_UnaryOperation(self, node, frame):
        value = self.eval(node.expression, frame)
        if isinstance(value, Term):
            return self.new("neg", (value,)) if isinstance(node.operator, cst.Minus) else value
        if isinstance(value, TensorRec | CallRec):
            raise Unknown("unary of tensor")
        return super().eval_UnaryOperation(node, frame)

    def eval_IfExp(self, node, frame):
        try:
            cond = self.truth(self.eval(node.test, frame))
        except Unknown:
            self.uncertain_ifs.append(frame.site(node))
            cond = True
        return self.eval(node.body if cond else node.orelse, frame)

    # -- calls ------------------------------------------------------------------------------
    def call_value(self, func, args, kwargs, site, frame):
        """A call; what a callable picked out of a table by a config field computes (its own
        term, or the terms of its inlined body) keeps that lookup (`Term.picked`)."""
        lookup = getattr(func, "table_lookup", None)
        if lookup is None:
            return self.traced_call(func, args, kwargs, site, frame)
        self._picking.append(lookup)
        try:
            return self.traced_call(func, args, kwargs, site, frame)
        finally:
            self._picking.pop()

    def traced_call(self, func, args, kwargs, site, frame):
        has_terms = bool(terms_in(list(args)) or terms_in(list(kwargs.values())))
        if isinstance(func, ModuleRec):
            return self.module_call(func, args, kwargs, site)
        if isinstance(func, ModuleListRec):
            if func.keys is not None or not func.items or not args:
                raise Unknown("call of module list")
            value = args[0]  # nn.Sequential: the items applied in turn
            for item in func.items:
                if not isinstance(item, ModuleRec):
                    raise Unknown("sequential item")
                value = self.module_call(item, [value], {}, site)
            return value
        if isinstance(func, ActRec):
            return self.new("act", tuple(args), module=func, name=str(func.name), site=site)
        if isinstance(func, _TermMethod):
            return self.term_method(func, args, kwargs, site)
        if isinstance(func, _ExternalSuper) and func.name == "forward" and has_terms:
            # `super().forward(x)` of a torch base class (nn.Embedding, nn.Linear...)
            return self.new("fn", tuple(args), name="super.forward", kwargs=dict(kwargs), site=site)
        if isinstance(func, Term) and func.op == "attr" and func.args:
            if func.name == "update" and len(terms_in(list(args))) >= 2:
                # `past_key_values.update(k, v, layer_idx)` hands back k and v
                return tuple(a for a in args if isinstance(a, Term))
            # `cache.update(k, v)`: a method of an object we only know symbolically
            return self.new(
                "fn", (func.args[0], *args), name=func.name, kwargs=dict(kwargs), site=site
            )
        if isinstance(func, FuncRef) and has_terms:
            return self.function_call(func, args, kwargs, site)
        if isinstance(func, CallRec):
            kind = "attn" if is_attention_name(func.name) else "fn"
            term = self.new(kind, tuple(args), name=func.name, kwargs=dict(kwargs), site=site)
            default = [a for a in func.args if isinstance(a, FuncRef)]
            if kind == "attn" and default:  # get_interface(impl, eager_attention_forward)
                term.kwargs["_default"] = default[0]
            return term
        if isinstance(func, ExtRef) and func.last == "arange" and not has_terms:
            # token indices 0..n-1 over a length the analysis cannot know (a tensor's shape):
            # a symbolic term, so what is computed from them (Llama4's per-position query
            # temperature) stays readable
            if any(a is UNKNOWN for a in [*args, *kwargs.values()]):
                return self.new("fn", tuple(args), name=func.name, kwargs=dict(kwargs), site=site)
        if isinstance(func, ExtRef) and args and isinstance(args[0], FuncRef) and has_terms:
            # an external helper handed a method of the module and tensors applies it to the
            # last tensors, one per parameter (transformers' apply_chunking_to_forward runs
            # the feed-forward chunk by chunk along the sequence: the same function)
            method = args[0]
            wanted = _arity(method)
            if method.bound is not None and wanted and len(args) > wanted:
                return self.function_call(method, list(args[-wanted:]), {}, site)
        if isinstance(func, ExtRef):
            if func.last == "get_interface":
                return CallRec(func.name, tuple(args), dict(kwargs))
            if has_terms or is_attention_name(func.name):
                last = func.last
                if last in ("dropout", "dropout1d", "dropout2d", "alpha_dropout") and args:
                    return args[0]
                kind = "attn" if is_attention_name(func.name) else "fn"
                return self.new(kind, tuple(args), name=func.name, kwargs=dict(kwargs), site=site)
        return super().call_value(func, args, kwargs, site, frame)

    def module_call(self, rec: ModuleRec, args, kwargs, site):
        role = self.roles.role(rec)
        if role == PASSTHROUGH and args:
            return args[0]
        if rec.cls is None and rec.external in ("Softmax", "Sigmoid", "Tanh") and args:
            # nn.Softmax(dim=-1)(x) reads like the functional form
            name = rec.external.lower()
            return self.new("fn", tuple(args), name=name, kwargs=dict(kwargs), site=site)
        if (
            self.inline
            and role in (CONTAINER, OTHER)
            and rec.cls is not None
            and self._inlining < 3
        ):
            self._inlining += 1
            try:
                result = self.trace(rec, inputs=self._bind_inputs(rec, args, kwargs))
            finally:
                self._inlining -= 1
            if result is not None and result is not UNKNOWN:
                # a module of the analysed sources on one tensor (`self.act = OwnAct()`):
                # read like a written-out function, by what its forward computes
                _note_written(result, args, kwargs, site, rec.cls)
                return result
        if rec.cls is not None:
            args, kwargs = self._value_inputs(rec, args, kwargs)
        return self.new("call", tuple(args), module=rec, kwargs=dict(kwargs), site=site)

    def _value_inputs(self, rec: ModuleRec, args, kwargs) -> tuple[list, dict]:
        """The arguments whose values the module uses: `rotary_emb(value_states, seq_len)`
        reads only the dtype and device of `value_states`, so v does not flow into cos/sin
        (nor, through them, into q and k)."""
        found = self.project.find_method(rec.cls, "forward")
        if found is None:
            return list(args), dict(kwargs)
        fn = found[1]
        meta = _metadata_only(fn, self.roles.__dict__.setdefault("_metadata_only", {}))
        if not meta:
            return list(args), dict(kwargs)
        params = [p.name.value for p in fn.params.params][1:]
        args = [
            None if i < len(params) and params[i] in meta and isinstance(a, Term) else a
            for i, a in enumerate(args)
        ]
        kwargs = {k: (None if k in meta and isinstance(v, Term) else v) for k, v in kwargs.items()}
        return args, kwargs

    def _bind_inputs(self, rec: ModuleRec, args, kwargs) -> dict:
        found = self.project.find_method(rec.cls, "forward")
        if found is None:
            return {}
        params = [p.name.value for p in found[1].params.params][1:]
        bound = dict(zip(params, args, strict=False))
        for k, v in kwargs.items():
            if k in params or k in {p.name.value for p in found[1].params.kwonly_params}:
                bound[k] = v
        return bound

    def function_call(self, func: FuncRef, args, kwargs, site):
        self.func_calls.append((func, list(args) + list(kwargs.values())))
        if is_attention_name(func.name):
            return self.new("attn", tuple(args), name=func.name, kwargs=dict(kwargs), site=site)
        if self._inlining < 6:
            self._inlining += 1
            try:
                args = list(args)
                if func.bound is not None and not self._is_static(func):
                    args = [func.bound, *args]
                result = self.call_function(func, args, dict(kwargs))
            except BudgetExceeded:
                raise
            except Unknown:
                result = None
            finally:
                self._inlining -= 1
            if result is not None and result is not UNKNOWN:
                _note_written(result, args, kwargs, site, func)
                return result
        return self.new("fn", tuple(args), name=func.name, kwargs=dict(kwargs), site=site)

    def call_value_bound(self, func, args, kwargs, site, frame):  # pragma: no cover
        return self.call_value(func, args, kwargs, site, frame)

    def term_method(self, method: _TermMethod, args, kwargs, site):
        name = method.name
        if name in ("view", "reshape", "unflatten"):
            shape = tuple(args[0]) if len(args) == 1 and isinstance(args[0], tuple | list) else args
            if name == "unflatten" and len(args) == 2 and isinstance(args[1], tuple | list):
                shape = (name, args[0], *args[1])
            self.views.setdefault(id(method.term), []).append(tuple(shape))
        if name in PASSTHROUGH_METHODS:
            return method.term
        if name in _SPLITS:
            return self.new("split", (method.term, *args), name=name, site=site)
        return self.new("fn", (method.term, *args), name=name, kwargs=dict(kwargs), site=site)


def _note_written(result, args, kwargs, site, written_by) -> None:
    """Mark what an inlined function (or module) of the analysed sources returned with its
    name and call site, and, on one tensor, with that tensor, so its activation is read from
    the whole body, not from one op inside it."""
    tensors = terms_in(list(args)) + terms_in(list(kwargs.values()))
    if not isinstance(result, Term) or any(result is t for t in tensors):
        return
    if len(tensors) == 1:
        result.written_from = tensors[0]
    result.written_site, result.written_by = site, written_by


_METADATA = {"dtype", "device", "shape", "ndim", "size", "dim", "is_cuda", "is_floating_point"}


def _arity(func: FuncRef) -> int:
    """Positional parameters of a method after `self` (0 when it takes *args)."""
    node = func.node
    if not isinstance(node, cst.FunctionDef) or not isinstance(
        node.params.star_arg, cst.MaybeSentinel
    ):
        return 0
    return max(len(node.params.params) - 1, 0)


def _metadata_only(fn: cst.FunctionDef, cache: dict) -> frozenset:
    """Parameters of `fn` read only for their metadata (`x.dtype`, `x.device`, `x.shape`);
    `cache` lives as long as the analysis (keyed by node id)."""
    key = id(fn)
    if key not in cache:
        names = {p.name.value for p in fn.params.params[1:]} | {
            p.name.value for p in fn.params.kwonly_params
        }
        uses: dict[str, int] = {}
        meta: dict[str, int] = {}

        class V(cst.CSTVisitor):
            def visit_Name(self, node: cst.Name) -> None:
                if node.value in names:
                    uses[node.value] = uses.get(node.value, 0) + 1

            def visit_Attribute(self, node: cst.Attribute) -> None:
                value = node.value
                if isinstance(value, cst.Name) and value.value in names:
                    if node.attr.value in _METADATA:
                        meta[value.value] = meta.get(value.value, 0) + 1

        read_only_visit(fn.body, V())
        cache[key] = frozenset(n for n, count in meta.items() if uses.get(n) == count)
    return cache[key]


def is_attention_name(name: str) -> bool:
    low = name.lower()
    return (
        "attention_forward" in low
        or "get_interface" in low
        or "scaled_dot_product_attention" in low
        or "flash_attn" in low
        or low.endswith("attention_interface")
    )


def _slice_repr(key) -> str:
    if isinstance(key, slice):
        parts = [key.start, key.stop, key.step]
        return ":".join("" if p is None else (str(p) if isinstance(p, int) else "?") for p in parts)
    if isinstance(key, tuple):
        return ",".join(_slice_repr(k) for k in key)
    if key is Ellipsis:
        return "..."
    return repr(key) if isinstance(key, int | str | type(None)) else "?"


# ---------------------------------------------------------------------------- queries
def first_output(value):
    """The hidden-state output of a forward: the first Term of a returned tuple/object."""
    while isinstance(value, tuple | list) and value:
        value = value[0]
    if isinstance(value, dict):
        for v in value.values():
            if isinstance(v, Term):
                return v
    if isinstance(value, CallRec):
        for v in list(value.args) + list(value.kwargs.values()):
            if isinstance(v, Term):
                return v
    if isinstance(value, Term) and value.op == "fn" and value.kwargs and not value.args:
        for v in value.kwargs.values():  # ModelOutput(last_hidden_state=...)
            if isinstance(v, Term):
                return v
    return value if isinstance(value, Term) else None


def primary_input(term: Term):
    """The hidden-state argument of a call term."""
    for a in term.args:
        if isinstance(a, Term):
            return a
    for key in ("hidden_states", "x", "input", "hidden_state", "inputs_embeds"):
        if isinstance(term.kwargs.get(key), Term):
            return term.kwargs[key]
    for v in term.kwargs.values():
        if isinstance(v, Term):
            return v
    return None


def parents(root: Term) -> dict[int, list[Term]]:
    out: dict[int, list[Term]] = {}
    for t in walk(root):
        for a in terms_in(list(t.args)) + terms_in(list(t.kwargs.values())):
            out.setdefault(id(a), []).append(t)
    return out


def strip(term):
    """Drop `index 0`-style wrappers that do not change values."""
    while isinstance(term, Term) and term.op == "index" and term.name in ("0", "iter"):
        inner = term.args[0]
        if isinstance(inner, Term) and inner.op in ("call", "fn", "attn"):
            term = inner
        else:
            break
    return term


def is_call_of(term, roles: RoleBook, *role_names: str) -> bool:
    term = strip(term)
    return (
        isinstance(term, Term)
        and term.op == "call"
        and isinstance(term.module, ModuleRec)
        and roles.role(term.module) in role_names
    )
