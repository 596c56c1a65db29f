"""What a module *is*, from its structure: norm, attention, mlp, moe, experts, router, mixer...

Roles are decided from what a class owns (linear layers, 3-D expert parameters, an activation)
and what its `forward` computes (rsqrt of a mean square, a softmax over scores, a top-k), never
from the model's name. Class-name suffixes are not consulted either, so a renamed copy of a
modeling file gets the same roles.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import libcst as cst

from codegen.analyze.evaluate import ActRec, ModuleListRec, ModuleRec, ParamRec
from codegen.analyze.source import ClassInfo, Project, SourceFile, dotted
from codegen.analyze.walk import visit as read_only_visit

NORM = "norm"
ATTENTION = "attention"
MIXER = "mixer"  # a token mixer that is not softmax attention (SSM, linear attention, conv)
DEPTH = "depth"  # attention over a stack of earlier states with learned queries, not tokens
MLP = "mlp"
MOE = "moe"
EXPERTS = "experts"
ROUTER = "router"
ROTARY = "rotary"
LINEAR = "linear"
EMBEDDING = "embedding"
ACT = "act"
PASSTHROUGH = "passthrough"
LAYER = "layer"
CONTAINER = "container"
OTHER = "other"

_EXTERNAL_ROLES = {
    "Linear": LINEAR,
    "Conv1D": LINEAR,
    "Embedding": EMBEDDING,
    "EmbeddingBag": EMBEDDING,
    "LayerNorm": NORM,
    "RMSNorm": NORM,
    "GroupNorm": NORM,
    "Dropout": PASSTHROUGH,
    "Identity": PASSTHROUGH,
    "GELU": ACT,
    "SiLU": ACT,
    "ReLU": ACT,
    "Tanh": ACT,
    "Sigmoid": ACT,
    "Mish": ACT,
    "Softplus": ACT,
    "Conv1d": OTHER,
    "Conv2d": OTHER,
    "Conv3d": OTHER,
    "MultiheadAttention": ATTENTION,
    "LSTM": MIXER,
    "GRU": MIXER,
    "RNN": MIXER,
}
_MIXER_HINTS = (
    "scan",
    "chunk_",
    "recurrent",
    "delta_rule",
    "causal_conv1d",
    "ssd",
    "selective",
    "lightning",
    "linear_attention",
    "mamba",
    "rwkv",
    "retention",
    "wkv",
)
_ATTENTION_CALLS = ("get_interface", "scaled_dot_product_attention", "flash_attn", "flex_attention")


def attention_calls(ops: set[str]) -> set[str]:
    """The softmax-attention kernels among `ops`: `flash_attn_func`, `flash_attn_varlen_func`
    and the like count as `flash_attn` (a flash-only class is still softmax attention)."""
    return {op for op in ops if op.startswith(_ATTENTION_CALLS)}


@dataclass
class Signals:
    """What a class's forward (and the helpers it calls) does, as sets of names."""

    ops: set[str] = field(default_factory=set)  # last component of every call: softmax, topk...
    functions: set[str] = field(default_factory=set)  # module-level functions called
    self_attrs: set[str] = field(default_factory=set)
    names: set[str] = field(default_factory=set)
    matmul: bool = False
    step2: bool = False  # x[..., ::2] style slicing
    pairs: bool = False  # x.view(..., d // 2, 2): adjacent pairs moved to a last dim of 2
    power: bool = False  # a `**` in the body
    params: set[str] = field(default_factory=set)  # parameter names of the functions


class _Collector(cst.CSTVisitor):
    def __init__(self, sig: Signals) -> None:
        self.sig = sig
        self.self_calls: set[str] = set()
        self.func_calls: set[str] = set()

    def visit_Call(self, node: cst.Call) -> None:
        name = dotted(node.func)
        if name is None and isinstance(node.func, cst.Attribute):
            name = node.func.attr.value
        if not name:
            return
        last = name.rsplit(".", 1)[-1]
        self.sig.ops.add(last)
        if last in ("view", "reshape", "unflatten") and node.args:
            final = node.args[-1].value
            if isinstance(final, cst.Tuple | cst.List) and final.elements:
                final = final.elements[-1].value
            if isinstance(final, cst.Integer) and final.value == "2":
                self.sig.pairs = True
        if name.startswith("self.") and name.count(".") == 1:
            self.self_calls.add(last)
        elif "." not in name:
            self.func_calls.add(name)
            self.sig.functions.add(name)

    def visit_Attribute(self, node: cst.Attribute) -> None:
        if isinstance(node.value, cst.Name) and node.value.value == "self":
            self.sig.self_attrs.add(node.attr.value)

    def visit_Name(self, node: cst.Name) -> None:
        self.sig.names.add(node.value)

    def visit_BinaryOperation(self, node: cst.BinaryOperation) -> None:
        if isinstance(node.operator, cst.MatrixMultiply):
            self.sig.matmul = True
        elif isinstance(node.operator, cst.Power):
            self.sig.power = True

    def visit_Slice(self, node: cst.Slice) -> None:
        if isinstance(node.step, cst.Integer) and node.step.value == "2":
            self.sig.step2 = True


class RoleBook:
    """Memoised signals and roles for one analysis."""

    def __init__(self, project: Project) -> None:
        self.project = project
        self._signals: dict[int, Signals] = {}
        self._roles: dict[int, str] = {}
        self._fn_signals: dict[int, Signals] = {}
        self._self_calls: dict[int, set[str]] = {}  # function id -> helpers it calls on self

    # -- signals -----------------------------------------------------------------------
    def function_signals(self, sf: SourceFile, fn: cst.FunctionDef, depth: int = 0) -> Signals:
        key = id(fn)
        if key in self._fn_signals:
            return self._fn_signals[key]
        sig = Signals()
        self._fn_signals[key] = sig
        collector = _Collector(sig)
        read_only_visit(fn.body, collector)
        self._self_calls[key] = collector.self_calls
        sig.params |= {p.name.value for p in fn.params.params}
        if depth < 2:
            for name in collector.func_calls:
                kind, value = self.project.resolve_name(sf, name)
                if kind == "function":
                    _merge(sig, self.function_signals(value[0], value[1], depth + 1))
        return sig

    def method_signals(self, cls: ClassInfo, name: str = "forward") -> Signals:
        key = (id(cls), name)
        cache = self._signals
        if key in cache:
            return cache[key]
        sig = Signals()
        cache[key] = sig
        found = self.project.find_method(cls, name)
        if found is None:
            return sig
        owner, fn = found
        _merge(sig, self.function_signals(owner.sf, fn))
        # helpers called on self (self._split_heads, self.route_tokens_to_experts)
        for helper in self._self_calls[id(fn)]:
            if helper != name and self.project.find_method(cls, helper) is not None:
                _merge(sig, self.method_signals(cls, helper))
        return sig

    # -- roles -----------------------------------------------------------------------------
    def role(self, rec) -> str:
        if isinstance(rec, ModuleListRec):
            return CONTAINER
        if isinstance(rec, ActRec):
            return ACT
        if not isinstance(rec, ModuleRec):
            return OTHER
        key = id(rec)
        if key not in self._roles:
            self._roles[key] = OTHER  # recursion guard
            self._roles[key] = self._role(rec)
        return self._roles[key]

    def _role(self, rec: ModuleRec) -> str:
        if rec.cls is None:
            if rec.external and rec.external.startswith("AutoModel"):
                return CONTAINER
            return _EXTERNAL_ROLES.get(rec.external or "", OTHER)
        sig = self.method_signals(rec.cls)
        kids = rec.children()
        linears = [v for _, v in kids if isinstance(v, ModuleRec) and self.role(v) == LINEAR]
        params = [v for _, v in kids if isinstance(v, ParamRec) and v.kind == "parameter"]
        mods = [v for _, v in kids if isinstance(v, ModuleRec)]
        lists = [v for _, v in kids if isinstance(v, ModuleListRec)]
        child_roles = {self.role(v) for v in mods}
        if rec.ext_base is not None and rec.ext_base in _EXTERNAL_ROLES:
            base_role = _EXTERNAL_ROLES[rec.ext_base]
            if base_role in (LINEAR, EMBEDDING, NORM):
                return base_role
        has_act = any(isinstance(v, ActRec) for v in rec.attrs.values()) or bool(
            sig.ops & {"silu", "gelu", "relu", "act", "act_fn", "activation_fn", "swiglu"}
        )
        # a clamped SwiGLU written out: `gate.clamp(max=l) * sigmoid(alpha * gate)` (a bare
        # sigmoid is no sign: hyper-connection mixers gate with one too)
        has_act = has_act or {"sigmoid", "clamp"} <= sig.ops
        # norm: a normalisation over the last dim with at most a weight/bias
        if not linears and not lists and len(params) <= 3 and not (child_roles - {PASSTHROUGH}):
            if sig.ops & {"rsqrt", "layer_norm", "rms_norm", "group_norm"} or (
                {"pow", "mean"} <= sig.ops or {"var", "mean"} <= sig.ops
            ):
                return NORM
            if ({"cos", "sin"} <= sig.ops or "polar" in sig.ops) and not params:
                return ROTARY
        if (
            ({"cos", "sin"} <= sig.ops or "polar" in sig.ops)
            and not linears
            and "inv_freq" in rec.attrs
        ):
            return ROTARY
        three_d = [p for p in params if len(p.shape) == 3]
        if ROUTER in child_roles and any(
            isinstance(g, ModuleRec) and self.role(g) == MLP for lst in lists for g in lst.items
        ):
            return MOE  # a router module beside a list of expert MLPs (hand-written MoE)
        expert_loop = bool(sig.ops & {"index_add_", "one_hot", "grouped_mm", "_grouped_mm"})
        if expert_loop and (three_d or lists or params or child_roles & {MLP}):
            if not sig.ops & {"topk"} or three_d:
                return EXPERTS
        hinted_mixer = any(h in op.lower() for op in sig.ops | sig.functions for h in _MIXER_HINTS)
        # stacked per-expert weights; a recurrence's per-head gate matrices (recurrent_gemma's
        # RG-LRU, run by a scan) are 3-D too, but make a token mixer
        if three_d and not linears and not mods and "topk" not in sig.ops and not hinted_mixer:
            return EXPERTS
        # a layer holding its router and experts itself beside its attention (gemma4's
        # enable_moe_block) stays a layer
        mixes = bool(child_roles & {ATTENTION, MIXER})
        if any(self.role(v) == EXPERTS for v in mods) and not mixes:
            return MOE
        if "topk" in sig.ops and (lists or child_roles & {MLP, EXPERTS}):
            return MOE
        if ROUTER in child_roles and (three_d or lists or child_roles & {EXPERTS, MLP}):
            if not mixes:
                return MOE
        if "topk" in sig.ops and (linears or params) and not attention_calls(sig.ops):
            return ROUTER
        attention_like = bool(attention_calls(sig.ops)) or any(
            "attention" in f.lower() and "forward" in f.lower() for f in sig.functions
        )
        products = sig.matmul or bool(sig.ops & {"matmul", "bmm", "baddbmm", "einsum"})
        softmax = bool({"softmax", "Softmax", "log_softmax"} & sig.ops)
        if not attention_like and softmax and products and len(linears) >= 2:
            attention_like = True
        if attention_like and child_roles <= {NORM} and depth_attention(rec):
            return DEPTH  # mixes a stack of states with learned queries: no token mixer
        if attention_like and (linears or params or child_roles & {LINEAR}):
            if hinted_mixer and not attention_calls(sig.ops):
                return MIXER
            return ATTENTION
        # sequence mixing without softmax: k^T v products / decays over projected q, k, v
        if len(linears) >= 2 and not three_d and not expert_loop:
            if sig.matmul or sig.ops & {"matmul", "bmm", "einsum", "cumsum", "cumprod"}:
                if not softmax:
                    return MIXER
        conv = [v for v in mods if v.kind in ("Conv1d",)]
        if (hinted_mixer or conv) and linears and ("A_log" in rec.attrs or hinted_mixer or conv):
            if not has_act or hinted_mixer or conv:
                if not ({MLP} & child_roles and not hinted_mixer and not conv):
                    return MIXER
        token_mixers = [v for v in mods if self.role(v) in (ATTENTION, MIXER)]
        ffns = [v for v in mods if self.role(v) in (MLP, MOE)]
        for lst in lists:  # e.g. two attentions in a ModuleList
            token_mixers += [
                g
                for g in lst.items
                if isinstance(g, ModuleRec) and self.role(g) in (ATTENTION, MIXER)
            ]
        # an nn.Sequential(Linear, act, Linear) feed-forward counts by its linears
        nested_linears = sum(
            1
            for lst in lists
            for g in lst.items
            if isinstance(g, ModuleRec) and self.role(g) == LINEAR
        )
        for v in mods:  # one level of nesting (e.g. a norm-attention-norm wrapper)
            if self.role(v) in (CONTAINER, OTHER):
                grand = [g for _, g in v.children() if isinstance(g, ModuleRec)]
                token_mixers += [g for g in grand if self.role(g) in (ATTENTION, MIXER)]
                ffns += [g for g in grand if self.role(g) in (MLP, MOE)]
                nested_linears += sum(1 for g in grand if self.role(g) == LINEAR)
        if token_mixers and (
            ffns
            or len(linears) + nested_linears >= 2
            or all(self.role(t) == MIXER for t in token_mixers)
        ):
            return LAYER
        if (len(linears) >= 2 or (params and len(params) >= 2)) and has_act and not token_mixers:
            return MLP
        if any(isinstance(v, ModuleListRec) and v.items for v in lists):
            return CONTAINER
        if token_mixers or ffns or mods:
            return CONTAINER
        return OTHER


def mixer_hinted(sig: Signals) -> bool:
    """A forward calling a state-space, recurrence or linear-attention kernel (by the
    kernel's name: `mlstm_chunkwise_...`, `selective_scan`, `chunk_gated_delta_rule`)."""
    return any(h in op.lower() for op in sig.ops | sig.functions for h in _MIXER_HINTS)


def depth_attention(rec: ModuleRec) -> bool:
    """An attention with nothing to project its inputs: its only parameters learned query
    vectors (1-D, or one row per query), beside at most a weightless norm. Its keys and
    values are its inputs as they are (inkling2's block attention residuals attend over
    the stacked block states, not over the tokens)."""
    kids = rec.children()
    params = [v for _, v in kids if isinstance(v, ParamRec) and v.kind == "parameter"]
    mods = [v for _, v in kids if isinstance(v, ModuleRec)]
    if len(params) != 1 or len(params[0].shape or ()) not in (1, 2):
        return False
    return all(not any(isinstance(p, ParamRec) for _, p in v.children()) for v in mods)


def _merge(into: Signals, other: Signals) -> None:
    into.ops |= other.ops
    into.functions |= other.functions
    into.self_attrs |= other.self_attrs
    into.names |= other.names
    into.matmul = into.matmul or other.matmul
    into.step2 = into.step2 or other.step2
    into.pairs = into.pairs or other.pairs
    into.power = into.power or other.power
