"""Keys and values an attention does not compute: read from an input of its forward.

A layer that takes another layer's keys and values (gemma3n / gemma4 KV sharing: the last
layers reuse the states an earlier layer stored in `shared_kv_states`) has projections no
package built from a reference would skip. The form realised is read from the attention
class and the config class, whatever the names:

- `__init__` sets two flags from a per-layer config list, `config.<modes>[layer_idx] ==
  "reuse"` and `== "store"`, and the layer's kind from `config.layer_types[layer_idx]`;
- `forward` takes keys and values from an input, `k, v = <input>[self.<kind>]`, under the
  reuse flag, and writes them there, `<input>[self.<kind>] = k, v`, under the store flag;
- the config property `<modes>` is `KV_SHARING_MODES`: the last `<field>` layers reuse, the
  last earlier layer of each kind stores, none of either where `<field>` is 0.

Found, that is the fact `attention.kv_sharing` = {"field": <field>, "input": <input>} (the
configured value may be 0: the code reads it all the same). Where a traced attention's keys
and values depend on no projection, both on the same non-primary input of its forward, in
any other form (mllama's cross-attention cache), it is "other", named unsupported.
"""

from __future__ import annotations

import ast

from codegen.analyze.context import Ctx
from codegen.analyze.dataflow import Term, strip, walk
from codegen.analyze.ffn_sparsity import normalised

# transformers' Gemma3nTextConfig.kv_sharing_modes (gemma4's is the same), comments aside;
# locals and `self.` fields compare by position
KV_SHARING_MODES = """
def f(self):
    if self.n == 0:
        return [None] * self.num_hidden_layers
    first = self.num_hidden_layers - self.n
    modes = [None if i < first else 'reuse' for i in range(self.num_hidden_layers)]
    earlier = self.layer_types[0:first][::-1]
    if sorted(set(earlier)) != sorted(set(self.layer_types)):
        raise ValueError(
            'The set of layer types producing a cache is different than the set of layer'
            ' types using them'
        )
    last = [first - 1 - earlier.index(k) for k in set(self.layer_types)]
    for index in last:
        modes[index] = 'store'
    return modes
"""


def detect(ctx: Ctx, shared: dict) -> dict | str | None:
    """{"field", "input"} of the KV sharing realised, "other" for another form, else None."""
    for layer in shared.get("per_layer", ()):
        info = layer.get("info")
        rec = getattr(info, "rec", None)
        if rec is None or rec.cls is None:
            continue
        found = _structural(rec.cls, ctx.model.config_cls)
        if found is not None:
            fact, where = found
            ctx.cite("attention.kv_sharing", f"{where} (config.{fact['field']})")
            return fact
        break
    for layer in shared.get("per_layer", ()):
        info = layer.get("info")
        kernel = getattr(info, "kernel", None)
        if kernel is None:
            continue
        qkv = [strip(t) for t in kernel.args if isinstance(t, Term)][:3]
        if len(qkv) != 3 or not any(t.op == "call" for t in walk(qkv[0])):
            continue  # no query projected here: not a q/k/v kernel call
        keys, values = _borrowed(qkv[1]), _borrowed(qkv[2])
        if keys is None or values is None or keys[0] != values[0]:
            continue
        name, site = keys
        ctx.cite(
            "attention.kv_sharing",
            f"{site or (kernel.site.cite() if kernel.site else ctx.class_site(info.rec))}"
            f" (keys/values from {name!r})",
        )
        return "other"
    return None


def _borrowed(term: Term) -> tuple[str, str | None] | None:
    """(name, where read) of the non-primary input `term` comes from, when no call computes
    it."""
    terms = list(walk(term))
    if any(t.op == "call" for t in terms):
        return None
    inputs = [t for t in terms if t.op == "input" and not t.kwargs.get("primary")]
    if not inputs:
        return None
    read = next((t.site.cite() for t in terms if t.op == "index" and t.site), None)
    return inputs[0].name, read


def _parse(info, name: str) -> ast.FunctionDef | None:
    fn = info.methods.get(name) if info is not None else None
    if fn is None:
        return None
    try:
        node = ast.parse(info.sf.code(fn)).body[0]
    except SyntaxError:
        return None
    return node if isinstance(node, ast.FunctionDef) else None


def _structural(attention, config_cls) -> tuple[dict, str] | None:
    init, forward = _parse(attention, "__init__"), _parse(attention, "forward")
    if init is None or forward is None:
        return None
    flags, kind = _flags(init)
    if kind is None or sorted(mode for mode, _ in flags.values()) != ["reuse", "store"]:
        return None
    reuse = next(a for a, (mode, _) in flags.items() if mode == "reuse")
    store = next(a for a, (mode, _) in flags.items() if mode == "store")
    params = {a.arg for a in forward.args.args[1:] + forward.args.kwonlyargs}
    read = _under(forward, reuse, lambda s: _reads(s, kind, params))
    written = _under(forward, store, lambda s: _writes(s, kind, params))
    if read is None or written is None or read[0] != written[0]:
        return None
    field = _modes_field(config_cls, flags[reuse][1])
    if field is None:
        return None
    start = int(attention.cite(attention.methods["forward"]).rsplit(":", 1)[1])
    where = f"{attention.sf.name}:{start + read[1] - forward.lineno}"
    return {"field": field, "input": read[0]}, where


def _config_list(node: ast.expr, locals_: dict) -> str | None:
    """`config.<name>[...]` (or a local holding it): <name>."""
    if isinstance(node, ast.Name) and node.id in locals_:
        node = locals_[node.id]
    if (
        isinstance(node, ast.Subscript)
        and isinstance(node.value, ast.Attribute)
        and isinstance(node.value.value, ast.Name)
        and node.value.value.id == "config"
    ):
        return node.value.attr
    return None


def _flags(init: ast.FunctionDef) -> tuple[dict, str | None]:
    """({flag attribute: (mode, config list)}, the kind attribute) set in `__init__`."""
    locals_: dict = {}
    flags: dict = {}
    kind = None
    for node in ast.walk(init):
        if not (isinstance(node, ast.Assign) and len(node.targets) == 1):
            continue
        target, value = node.targets[0], node.value
        if isinstance(target, ast.Name):
            locals_[target.id] = value
            continue
        if not (
            isinstance(target, ast.Attribute)
            and isinstance(target.value, ast.Name)
            and target.value.id == "self"
        ):
            continue
        if isinstance(value, ast.IfExp):  # `... if hasattr(config, "layer_types") else None`
            value = value.body
        if _config_list(value, {}) == "layer_types":
            kind = target.attr
        elif (
            isinstance(value, ast.Compare)
            and len(value.ops) == 1
            and isinstance(value.ops[0], ast.Eq)
            and isinstance(value.comparators[0], ast.Constant)
            and value.comparators[0].value in ("reuse", "store")
            and (modes := _config_list(value.left, locals_)) is not None
        ):
            flags[target.attr] = (value.comparators[0].value, modes)
    return flags, kind


def _is_self(node: ast.expr, attr: str) -> bool:
    return (
        isinstance(node, ast.Attribute)
        and isinstance(node.value, ast.Name)
        and node.value.id == "self"
        and node.attr == attr
    )


def _under(forward: ast.FunctionDef, flag: str, found):
    """The first `found(statement)` among the statements run under `if self.<flag>:`."""
    for node in ast.walk(forward):
        if isinstance(node, ast.If) and _is_self(node.test, flag):
            for statement in node.body:
                hit = found(statement)
                if hit is not None:
                    return hit
    return None


def _keyed(node: ast.expr, kind: str, params: set) -> str | None:
    """`<input>[self.<kind>]` for an input of the forward: <input>."""
    if (
        isinstance(node, ast.Subscript)
        and isinstance(node.value, ast.Name)
        and node.value.id in params
        and _is_self(node.slice, kind)
    ):
        return node.value.id
    return None


def _reads(statement: ast.stmt, kind: str, params: set):
    """`k, v = <input>[self.<kind>]`."""
    if (
        isinstance(statement, ast.Assign)
        and len(statement.targets) == 1
        and isinstance(statement.targets[0], ast.Tuple)
        and len(statement.targets[0].elts) == 2
        and (name := _keyed(statement.value, kind, params)) is not None
    ):
        return name, statement.lineno
    return None


def _writes(statement: ast.stmt, kind: str, params: set):
    """`<input>[self.<kind>] = k, v`."""
    if (
        isinstance(statement, ast.Assign)
        and len(statement.targets) == 1
        and (name := _keyed(statement.targets[0], kind, params)) is not None
        and isinstance(statement.value, ast.Tuple)
        and len(statement.value.elts) == 2
    ):
        return name, statement.lineno
    return None


def _modes_field(config_cls, modes: str) -> str | None:
    """The config field counting the sharing layers, where the config class's `<modes>` is
    KV_SHARING_MODES."""
    method = _parse(config_cls, modes)
    if method is None:
        return None
    got, attrs = normalised(method)
    expected, _ = normalised(ast.parse(KV_SHARING_MODES.strip()).body[0])
    return attrs[0] if got == expected and attrs else None
