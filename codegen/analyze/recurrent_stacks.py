"""Two layer stacks run in nested cycles (the hierarchical recurrent model, HRM).

The backbone builds two stacks of the same class (a module list of layers, then a final
norm on its output) and a state of its own: a vector parameter the inner state starts from
(expanded over the tokens). The outer state starts as the token embeddings. Its forward
nests two loops over config fields: the inner loop runs one stack on the sum of both states
and keeps its output as the inner state, the outer loop then runs the other stack on the
sum and keeps its output as the outer state, which the backbone returns. Of the inner
loop's runs only the last few carry gradients, the others run under `torch.no_grad()`: a
list config field, left-padded with 1 to one entry per outer cycle, gives how many per
outer cycle.

Read from the backbone's source by its structure (loops over `range(self.config.X)`, the
stacks called on sums of the states, the no-grad context chosen by the inner loop index
against the count minus the padded list's entry), never by names. Anything else returns a
sentence saying what differs; `layer_stacks` names it unsupported.
"""

from __future__ import annotations

import libcst as cst
import libcst.matchers as m

from codegen.analyze.context import Ctx
from codegen.analyze.evaluate import ModuleRec, ParamRec


def detect(ctx: Ctx, paths: list[str]) -> dict | str:
    """The fact (see features.Block.recurrent_stacks) for two stacks at `paths`, or why
    they are not run as this form reads them."""
    parts = [path.split(".") for path in paths]
    if len(parts) != 2 or any(len(p) < 2 for p in parts):
        return "not two stacks of one backbone"
    owner_path = parts[0][:-2]
    if parts[1][:-2] != owner_path or parts[0][-1] != parts[1][-1]:
        return "whose stacks are not two modules of one backbone holding alike layer lists"
    backbone = _record(ctx.model.entry, owner_path)
    stacks = [_record(backbone, p[-2:-1]) if backbone is not None else None for p in parts]
    if backbone is None or backbone.cls is None or not all(_stack_like(s) for s in stacks):
        return "whose stacks are not two modules of one class"
    if stacks[0].cls is not stacks[1].cls:
        return "whose stacks are not two modules of one class"
    listed = parts[0][-1]
    stack_cls = stacks[0].cls
    norm = _final_norm(stack_cls, listed)
    count = _layer_count(stack_cls, listed)
    if norm is None or count is None:
        return "whose stack does not run its layers in order and norm their output"
    names = {parts[0][-2], parts[1][-2]}
    found = _schedule(backbone, names)
    if isinstance(found, str):
        return found
    init = backbone.attrs.get(found["init"])
    if not (isinstance(init, ParamRec) and len(init.shape) == 1):
        return f"whose inner state starts from self.{found['init']}, not a vector parameter"
    grad = _padded_list(backbone.cls, found["padded"], found["cycles"])
    if grad is None:
        return "whose no-grad schedule is not a config list left-padded to the outer cycles"
    ctx.cite(
        "block.recurrent_stacks",
        f"{found['site']} ({found['cycles']} x ({found['inner_cycles']} x {found['inner']},"
        f" then {found['outer']}); gradients through the last {grad} entry of the inner runs)",
    )
    return {
        "backbone": ".".join(owner_path),
        "inner": found["inner"],
        "outer": found["outer"],
        "layers": listed,
        "norm": norm,
        "layer_count": count,
        "cycles": found["cycles"],
        "inner_cycles": found["inner_cycles"],
        "grad_cycles": grad,
        "init": found["init"],
    }


def _record(rec, path: list[str]):
    for name in path:
        if not isinstance(rec, ModuleRec):
            return None
        rec = rec.attrs.get(name)
    return rec


def _stack_like(rec) -> bool:
    return isinstance(rec, ModuleRec) and rec.cls is not None


def _self_attr(node) -> str | None:
    if m.matches(node, m.Attribute(value=m.Name("self"), attr=m.Name())):
        return node.attr.value
    return None


def _config_field(node) -> str | None:
    """X of `self.config.X` or `config.X`."""
    if isinstance(node, cst.Attribute) and isinstance(node.attr, cst.Name):
        inner = node.value
        if m.matches(inner, m.Name("config")) or _self_attr(inner) == "config":
            return node.attr.value
    return None


def _final_norm(cls, listed: str) -> str | None:
    """The attribute the stack's forward returns its loop's output through, where the loop
    runs every layer of `self.<listed>` in order."""
    forward = cls.methods.get("forward")
    if forward is None:
        return None
    loops = m.findall(forward, m.For(iter=m.Attribute(value=m.Name("self"), attr=m.Name(listed))))
    returns = m.findall(forward, m.Return(value=m.Call(func=m.Attribute(value=m.Name("self")))))
    if len(loops) != 1 or len(returns) != 1:
        return None
    return _self_attr(returns[0].value.func)


def _layer_count(cls, listed: str) -> str | None:
    """The config field `range(...)` reads where __init__ builds `self.<listed>`."""
    init = cls.methods.get("__init__")
    for node in m.findall(init, m.Assign()) if init is not None else ():
        if len(node.targets) == 1 and _self_attr(node.targets[0].target) == listed:
            ranges = m.findall(node.value, m.Call(func=m.Name("range"), args=[m.Arg()]))
            fields = [_config_field(r.args[0].value) for r in ranges]
            if len(fields) == 1 and fields[0] is not None:
                return fields[0]
    return None


def _range_field(loop: cst.For) -> str | None:
    if m.matches(loop.iter, m.Call(func=m.Name("range"), args=[m.Arg()])):
        return _config_field(loop.iter.args[0].value)
    return None


def _names(node) -> set[str]:
    return {n.value for n in m.findall(node, m.Name())}


def _root(node) -> str | None:
    """The name a chain of calls and attributes starts from (`x.to(y.device)` -> x)."""
    while isinstance(node, cst.Call | cst.Attribute):
        node = node.func if isinstance(node, cst.Call) else node.value
    return node.value if isinstance(node, cst.Name) else None


def _stack_call(statement, stacks: set[str]) -> tuple[str, str, cst.Call] | None:
    """(target name, stack attribute, call) of `x = self.<stack>(...)`."""
    for node in m.findall(statement, m.Assign(targets=[m.AssignTarget(target=m.Name())])):
        if isinstance(node.value, cst.Call) and _self_attr(node.value.func) in stacks:
            return node.targets[0].target.value, _self_attr(node.value.func), node.value
    return None


def _schedule(backbone: ModuleRec, stacks: set[str]) -> dict | str:
    forward = backbone.cls.methods.get("forward")
    if forward is None:
        return "whose backbone has no forward"
    outer = [
        loop
        for loop in m.findall(forward, m.For(target=m.Name()))
        if _range_field(loop) and m.findall(loop.body, m.For())
    ]
    if len(outer) != 1:
        return "whose stacks are not run in two nested loops over config counts"
    outer = outer[0]
    inner = [loop for loop in m.findall(outer.body, m.For(target=m.Name())) if _range_field(loop)]
    if len(inner) != 1:
        return "whose stacks are not run in two nested loops over config counts"
    inner = inner[0]
    inner_call = _stack_call(inner.body, stacks)
    later = [s for s in outer.body.body if s is not inner]
    outer_calls = [found for s in later if (found := _stack_call(s, stacks))]
    if inner_call is None or len(outer_calls) != 1 or inner_call[1] == outer_calls[0][1]:
        return "whose loops do not run one stack inside the inner loop and the other after it"
    low, high = inner_call[0], outer_calls[0][0]
    for call in (inner_call[2], outer_calls[0][2]):
        first = call.args[0].value if call.args else None
        if not (
            isinstance(first, cst.BinaryOperation)
            and isinstance(first.operator, cst.Add)
            and {_root(first.left), _root(first.right)} == {low, high}
        ):
            return "whose stacks do not each run on the sum of both states"
    returns = m.findall(forward, m.Return())
    if not returns or not all(high in _names(r) and low not in _names(r) for r in returns):
        return "whose backbone does not return the outer stack's state"
    init = _starts(forward, low, outer)
    if init is None:
        return "whose inner state does not start from a parameter of the backbone"
    padded = _no_grad(forward, inner, inner_call[2], inner.target.value, outer.target.value)
    if padded is None or padded[1] != _range_field(inner):
        return "whose inner runs are not cut from gradients by a padded config list"
    return {
        "inner": inner_call[1],
        "outer": outer_calls[0][1],
        "cycles": _range_field(outer),
        "inner_cycles": _range_field(inner),
        "init": init,
        "padded": padded[0],
        "site": backbone.cls.cite(outer),
    }


def _starts(forward, state: str, loop) -> str | None:
    """The backbone attribute `state` is assigned from before the loop (`self.<p>...`)."""
    for statement in forward.body.body:
        if statement is loop:
            break
        for node in m.findall(statement, m.Assign(targets=[m.AssignTarget(target=m.Name(state))])):
            attrs = [_self_attr(a) for a in m.findall(node.value, m.Attribute())]
            attrs = [a for a in attrs if a is not None]
            if len(attrs) == 1 and m.findall(node.value, m.Attribute(attr=m.Name("expand_as"))):
                return attrs[0]
    return None


def _assigned(body, name: str):
    found = m.findall(body, m.Assign(targets=[m.AssignTarget(target=m.Name(name))]))
    return found[0].value if len(found) == 1 else None


def _no_grad(forward, inner: cst.For, call, step: str, cycle: str) -> tuple[str, str] | None:
    """(the backbone's padded list attribute, the count field) where the inner stack's call
    runs inside `with ctx:`, ctx chosen by `step >= threshold` between no context and
    `torch.no_grad()`, threshold = `self.config.<count> - n`, n the list's entry for
    `cycle` (1 past its end)."""
    withs = [w for w in m.findall(inner.body, m.With()) if call in m.findall(w.body, m.Call())]
    if len(withs) != 1 or len(withs[0].items) != 1:
        return None
    chosen = withs[0].items[0].item
    if isinstance(chosen, cst.Name):
        chosen = _assigned(inner.body, chosen.value)
    if not isinstance(chosen, cst.IfExp):
        return None
    grad, no_grad = chosen.body, chosen.orelse
    test = chosen.test
    if not m.findall(no_grad, m.Attribute(attr=m.Name("no_grad"))) or m.findall(
        grad, m.Attribute(attr=m.Name("no_grad"))
    ):
        return None
    if not (
        isinstance(test, cst.Comparison)
        and m.matches(test.left, m.Name(step))
        and len(test.comparisons) == 1
        and isinstance(test.comparisons[0].operator, cst.GreaterThanEqual)
        and isinstance(test.comparisons[0].comparator, cst.Name)
    ):
        return None
    threshold = _assigned(forward, test.comparisons[0].comparator.value)
    if not (
        isinstance(threshold, cst.BinaryOperation)
        and isinstance(threshold.operator, cst.Subtract)
        and _config_field(threshold.left)
        and isinstance(threshold.right, cst.Name)
    ):
        return None
    count = _assigned(forward, threshold.right.value)
    indexed = m.Subscript(value=m.Attribute(value=m.Name("self")))
    subscripts = m.findall(count, indexed) if count is not None else []
    if not subscripts or not m.findall(subscripts[0].slice[0], m.Name(cycle)):
        return None
    return _self_attr(subscripts[0].value), _config_field(threshold.left)


def _padded_list(cls, attr: str, cycles: str) -> str | None:
    """The config list field of `self.<attr> = [1] * max(0, config.<cycles> - len(raw)) + raw`,
    raw = `list(config.<field>)`."""
    init = cls.methods.get("__init__")
    value = None
    for node in m.findall(init, m.Assign()) if init is not None else ():
        if len(node.targets) == 1 and _self_attr(node.targets[0].target) == attr:
            value = node.value
    if not (
        isinstance(value, cst.BinaryOperation)
        and isinstance(value.operator, cst.Add)
        and isinstance(value.left, cst.BinaryOperation)
        and isinstance(value.left.operator, cst.Multiply)
        and m.matches(value.left.left, m.List(elements=[m.Element(m.Integer("1"))]))
        and cycles in {_config_field(a) for a in m.findall(value.left.right, m.Attribute())}
        and isinstance(value.right, cst.Name)
    ):
        return None
    raw = _assigned(init, value.right.value)
    if not m.matches(raw, m.Call(func=m.Name("list"), args=[m.Arg()])):
        return None
    return _config_field(raw.args[0].value)
