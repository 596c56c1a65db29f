"""The last layers reuse the keys and values of the last earlier layer of their kind.

gemma3n / gemma4 (`num_kv_shared_layers`): a reusing layer has no key or value projection
(nor their norms) and attends with its own queries over the keys and values the last
non-reusing layer of its kind (sliding or full) computed; that layer stores them. The
package keeps every setting of the field (0: every layer projects its own):
`Attention.__init__` decides `self.reuses` / `self.stores` from `args.kv_shared_layers` and
`args.layer_types`, builds the key/value modules only where the layer does not reuse, and
`Attention.forward` takes or stores `(k, v)` in a dict the model's forward hands every layer
(keyed by layer kind). The statements computing k and v move, as they are, under the
`else` of `if self.reuses:`; a rotation written for q and k at once is split.
"""

from __future__ import annotations

import libcst as cst
import libcst.matchers as m

from codegen.transforms import _attention_edits as edits
from codegen.transforms._moe_edits import commented_statements
from codegen.transforms.base import Transform
from codegen.transforms.edits import EditError, code_of, run, statements

SHARED = "dict[str, tuple[torch.Tensor, torch.Tensor]]"

CHOICE = """
# the last kv_shared_layers layers reuse the keys and values of the last earlier layer of
# their kind, which stores them
self.kind = args.layer_types[{layer_id}]
first_shared = args.n_layers - args.kv_shared_layers
self.reuses = {layer_id} >= first_shared
self.stores = args.kv_shared_layers > 0 and {layer_id} == max(
    i for i in range(first_shared) if args.layer_types[i] == self.kind
)
"""

FIELD = (
    "# the last layers reuse the keys and values of the last earlier layer of their kind\n"
    "kv_shared_layers: int = 0"
)

KV = ("k", "v")


class KvSharing(Transform):
    """Reusing layers take (k, v) from the last earlier layer of their kind; that layer
    stores them in a dict the model's forward passes down."""

    name = "kv_sharing"

    def apply(self, package, features=None, *, sharing: dict) -> None:
        layer_id = edits.ensure_attention_layer_id(package)
        run(package, "model.py", _ShareInAttention(CHOICE.format(layer_id=layer_id)))
        edits.add_param(package, "Attention", "forward", f"shared: {SHARED}")
        edits.add_param(package, "TransformerBlock", "forward", f"shared: {SHARED}")
        edits.replace_expressions(
            package,
            "model.py",
            "TransformerBlock",
            "forward",
            edits.call_of("self.attention"),
            lambda call: edits.with_arg(call, "shared"),
        )
        run(package, "model.py", _ModelPassesShared())
        edits.free_after_layer_loop(package, "shared")
        edits.add_args_field(package, FIELD, f"kv_shared_layers=hf_config.{sharing['field']}")


def _self_attrs(node: cst.CSTNode) -> set[str]:
    return {n.attr.value for n in m.findall(node, m.Attribute(value=m.Name("self")))}


def _is_target(statement: cst.CSTNode, name: cst.Name) -> bool:
    for target in m.findall(statement, m.AssignTarget()):
        if any(n is name for n in m.findall(target, m.Name())):
            return True
    return False


def _assigned(statement) -> set[str]:
    out: set[str] = set()
    for target in m.findall(statement, m.AssignTarget()):
        out |= {n.value for n in m.findall(target.target, m.Name())}
    return out


def _read(statement) -> set[str]:
    out: set[str] = set()
    for name in m.findall(statement, m.Name()):
        if not _is_target(statement, name):
            out.add(name.value)
    return out


def _split_pair(statement):
    """`q, k = f(q, ...), f(k, ...)` -> [`q = f(q, ...)`, `k = f(k, ...)`]; else [statement]."""
    node = statement.body[0] if isinstance(statement, cst.SimpleStatementLine) else None
    if not (
        isinstance(node, cst.Assign)
        and len(node.targets) == 1
        and isinstance(node.targets[0].target, cst.Tuple)
        and isinstance(node.value, cst.Tuple)
    ):
        return [statement]
    names = [code_of(e.value) for e in node.targets[0].target.elements]
    values = [code_of(e.value) for e in node.value.elements]
    if "k" not in names or len(names) != len(values) or set(names) <= set(KV):
        return [statement]
    return [statements(f"{n} = {v}")[0] for n, v in zip(names, values, strict=True)]


def _kv_block(body: list) -> list:
    """The forward's statements with those computing k and v (and locals only they read)
    under `if self.reuses: k, v = shared[self.kind]` / `else:` (storing them there)."""
    flat = [piece for statement in body for piece in _split_pair(statement)]
    first_use = next(
        (i for i, s in enumerate(flat) if _read(s) & set(KV) and not _assigned(s) & set(KV)),
        None,
    )
    if first_use is None:
        raise EditError("Attention.forward: no statement reads k and v")
    head = flat[:first_use]
    kv = {i for i, s in enumerate(head) if _assigned(s) & set(KV)}
    changed = True
    while changed:  # locals only the k/v statements read (`keys = self.wk(x)`)
        changed = False
        for i, s in enumerate(head):
            names = _assigned(s)
            if i in kv or not names:
                continue
            readers = {j for j, t in enumerate(flat) if j != i and _read(t) & names}
            if readers and readers <= kv:
                kv.add(i)
                changed = True
    if not kv:
        raise EditError("Attention.forward: no statement computes k and v")
    block = statements("if self.reuses:\n    k, v = shared[self.kind]\nelse:\n    pass\n")[0]
    store = statements("if self.stores:\n    shared[self.kind] = k, v\n")[0]
    inner = [s for i, s in enumerate(head) if i in kv] + [store]
    block = block.with_changes(
        orelse=block.orelse.with_changes(body=block.orelse.body.with_changes(body=inner))
    )
    rest = [s for i, s in enumerate(head) if i not in kv]
    return [*rest, block, *flat[first_use:]]


class _ShareInAttention(cst.CSTTransformer):
    """Attention: the choice after `super().__init__()`, the k/v modules built under `if not
    self.reuses:`, and the forward's k/v statements under `if self.reuses: ... else:`."""

    def __init__(self, choice: str):
        super().__init__()
        self.choice = commented_statements(choice)
        self.hits = 0
        self._class: list[str] = []
        self.kv_modules: set[str] = set()

    def visit_ClassDef(self, node):
        self._class.append(node.name.value)

    def leave_ClassDef(self, original, updated):
        self._class.pop()
        if original.name.value != "Attention":
            return updated
        methods = {s.name.value: s for s in updated.body.body if isinstance(s, cst.FunctionDef)}
        if "forward" not in methods or "__init__" not in methods:
            raise EditError("Attention has no __init__ and forward")
        forward = methods["forward"]
        new_forward_body = _kv_block(list(forward.body.body))
        block = next(s for s in new_forward_body if isinstance(s, cst.If))
        used = _self_attrs(block.orelse) - set().union(
            *(_self_attrs(s) for s in new_forward_body if s is not block),
            _self_attrs(block.body),
        )
        init = methods["__init__"]
        body = list(init.body.body)
        at = next((i + 1 for i, s in enumerate(body) if "super" in _read(s)), 0)
        own, rest = [], []
        for s in body[at:]:
            targets = {
                t.target.attr.value
                for t in m.findall(s, m.AssignTarget(target=m.Attribute(value=m.Name("self"))))
            }
            (own if targets and targets <= used else rest).append(s)
        if not own:
            raise EditError("Attention.__init__ builds no key/value module")
        guard = statements("if not self.reuses:\n    pass\n")[0]
        guard = guard.with_changes(body=guard.body.with_changes(body=own))
        # the modules a reusing layer does not build go after the ones every layer builds
        new_init = [*body[:at], *self.choice, *rest, guard]
        self.hits += 1
        new_body = []
        for s in updated.body.body:
            if s is methods["__init__"]:
                s = init.with_changes(body=init.body.with_changes(body=new_init))
            elif s is forward:
                s = forward.with_changes(body=forward.body.with_changes(body=new_forward_body))
            new_body.append(s)
        return updated.with_changes(body=updated.body.with_changes(body=new_body))


class _ModelPassesShared(cst.CSTTransformer):
    """Model.forward: `shared = {}` before the layer loop, `shared` appended to the layer
    call inside it."""

    def __init__(self):
        super().__init__()
        self.hits = 0
        self._stack: list[str] = []

    def visit_ClassDef(self, node):
        self._stack.append(node.name.value)

    def leave_ClassDef(self, original, updated):
        self._stack.pop()
        return updated

    def visit_FunctionDef(self, node):
        self._stack.append(node.name.value)

    def leave_FunctionDef(self, original, updated):
        self._stack.pop()
        if self._stack != ["Model"] or original.name.value != "forward":
            return updated
        body = list(updated.body.body)
        for i, s in enumerate(body):
            if isinstance(s, cst.For) and code_of(s.iter) == "self.layers":
                layer = code_of(s.target)
                loop = s.visit(_AppendArg(layer))
                if loop is s:
                    raise EditError("Model.forward: the layer loop calls no layer")
                self.hits += 1
                new = commented_statements(
                    "# keys and values the sharing layers reuse, by layer kind\n"
                    f"shared: {SHARED} = {{}}\n"
                )
                body[i : i + 1] = [*new, loop]
                return updated.with_changes(body=updated.body.with_changes(body=body))
        raise EditError("Model.forward has no `for ... in self.layers` loop")


class _AppendArg(cst.CSTTransformer):
    def __init__(self, func: str):
        super().__init__()
        self.func = func

    def leave_Call(self, original, updated):
        if code_of(updated.func) != self.func:
            return updated
        return edits.with_arg(updated, "shared")
