"""Language adapters: a bottleneck feed-forward per language in every layer, the one of each
sample's language applied after the FFN's residual sum (X-MOD).

Read from the module records and the source's structure, not from names:

* a sublayer of the layer that is not itself a part (BERT's `output`, holding the FFN's down
  projection and its norm) holds a ModuleDict of feed-forwards (MLP records) filled in a loop
  over a list field of the config (`for language in config.languages`);
* each of them is `up(act(down(x)))`: two biased Linears, `hidden -> hidden // config.<r>`
  and back, and the FFN's own activation (the FFN's linears biased too: the package builds
  each adapter as its FFN class);
* the sublayer's method that runs them selects each one's rows by comparing an input (the
  language ids) with the adapter's position, adds a residual, and before that norms its input
  with a norm of its own (built when a bool field is set) or else with the sublayer's norm
  (when another bool field is set); a third bool field says whether the residual is taken
  after that norm (`if not self.x: residual = h` before it, `if self.x: residual = h` after);
* the backbone defaults the language ids to the position of a config field (`default_language`)
  among the adapters' keys.

Anything else leaves the value None, and `layer_extras` names the ModuleDict as unsupported.
"""

from __future__ import annotations

import libcst as cst
import libcst.matchers as m

from codegen.analyze.config import attr
from codegen.analyze.context import Ctx
from codegen.analyze.evaluate import ActRec, ModuleListRec, ModuleRec
from codegen.analyze.features import Ffn
from codegen.analyze.roles import ATTENTION, EXPERTS, MIXER, MLP, MOE, NORM

_PARTS = (ATTENTION, MIXER, MLP, MOE, EXPERTS)


def detect(ctx: Ctx, ffn: Ffn) -> dict | None:
    """The language adapters' parts (see features.Block.language_adapters), or None."""
    model = ctx.model
    layers = [rec for rec in model.layers or () if isinstance(rec, ModuleRec)]
    if not layers or layers[0].cls is None:
        return None
    layer = layers[0]
    for owner_name, owner in layer.children():
        if not isinstance(owner, ModuleRec) or owner.cls is None:
            continue
        if ctx.roles.role(owner) in _PARTS:
            continue
        for bank_name, bank in owner.attrs.items():
            if not _is_bank(ctx, bank):
                continue
            found = _read(ctx, ffn, owner, bank_name, bank)
            if found is None:
                return None
            ctx.cite("block.language_adapters", found.pop("site"))
            return {"owner": owner_name, "bank": bank_name, **found}
    return None


def bank_path(found: dict) -> str:
    """The ModuleDict's path in the layer (`output.adapter_modules`)."""
    return f"{found['owner']}.{found['bank']}"


def _is_bank(ctx: Ctx, value) -> bool:
    return (
        isinstance(value, ModuleListRec)
        and value.keys is not None
        and bool(value.items)
        and all(isinstance(x, ModuleRec) and ctx.roles.role(x) == MLP for x in value.items)
    )


def _read(ctx: Ctx, ffn: Ffn, owner: ModuleRec, bank_name: str, bank) -> dict | None:
    adapter = bank.items[0]
    linears = _linears_in_order(ctx, adapter)
    if linears is None:
        return None
    (down_name, down), (up_name, up) = linears
    dim = attr(ctx.model.config, "hidden_size")
    width = down.args[1] if len(down.args) > 1 else None
    if not isinstance(dim, int) or down.args[:1] != (dim,) or tuple(up.args[:2]) != (width, dim):
        return None
    if not all(_biased(rec) for rec in (down, up)):
        return None
    act = next((v.name for v in adapter.attrs.values() if isinstance(v, ActRec)), None)
    if act is None or act != ffn.activation or ffn.bias is not True:
        return None
    reduction = _reduction_field(ctx, adapter, down)
    languages = _loop_field(owner, bank_name)
    if reduction is None or languages is None:
        return None
    if list(attr(ctx.model.config, languages) or ()) != list(bank.keys):
        return None
    switches = _norm_switches(ctx, owner, bank_name)
    default = _default_field(ctx)
    if switches is None or default is None:
        return None
    return {
        "down": down_name,
        "up": up_name,
        "reduction": reduction,
        "languages": languages,
        "default": default,
        **switches,
        "site": (bank.site.cite() if bank.site else ctx.class_site(owner))
        + f" ({len(bank.items)} adapters over config.{languages})",
    }


def _linears_in_order(ctx: Ctx, adapter: ModuleRec):
    """[(name, rec)] of the adapter's two Linears in the order its forward calls them."""
    names = {id(rec): name for name, rec in adapter.attrs.items() if isinstance(rec, ModuleRec)}
    called = [
        t.module
        for t in ctx.trace(adapter).terms
        if t.op == "call" and isinstance(t.module, ModuleRec) and t.module.kind == "Linear"
    ]
    if len(called) != 2 or called[0] is called[1] or any(id(r) not in names for r in called):
        return None
    return [(names[id(rec)], rec) for rec in called]


def _biased(rec: ModuleRec) -> bool:
    bias = rec.kwargs.get("bias", rec.args[2] if len(rec.args) > 2 else True)
    return bias is True


def _config_field(node) -> str | None:
    """`config.<field>` (or `self.config.<field>`) -> field."""
    if m.matches(node, m.Attribute(value=m.Name("config") | m.Attribute(attr=m.Name("config")))):
        return node.attr.value
    return None


def _reduction_field(ctx: Ctx, adapter: ModuleRec, down: ModuleRec) -> str | None:
    """r of the bottleneck width `config.hidden_size // config.<r>` (in place or through a
    `self.<width>` assigned it)."""
    call = down.site.node if down.site is not None else None
    if not isinstance(call, cst.Call) or len(call.args) < 2:
        return None
    width = call.args[1].value
    if m.matches(width, m.Attribute(value=m.Name("self"))):
        site = adapter.assign_sites.get(width.attr.value)
        assign = site.node if site is not None else None
        width = assign.value if isinstance(assign, cst.Assign) else None
    if not m.matches(width, m.BinaryOperation(operator=m.FloorDivide())):
        return None
    if _config_field(width.left) != "hidden_size":
        return None
    field = _config_field(width.right)
    value = attr(ctx.model.config, field) if field else None
    if not isinstance(value, int) or value <= 0:
        return None
    if down.args[1] != attr(ctx.model.config, "hidden_size") // value:
        return None
    return field


def _self_attr(name: str) -> m.Attribute:
    return m.Attribute(value=m.Name("self"), attr=m.Name(name))


def _loop_field(owner: ModuleRec, bank: str) -> str | None:
    """The config list the owner's `__init__` loops over to fill `self.<bank>[key]`."""
    init = owner.cls.methods.get("__init__")
    if init is None:
        return None
    for loop in m.findall(init, m.For()):
        field = _config_field(loop.iter)
        fills = m.findall(
            loop.body,
            m.AssignTarget(target=m.Subscript(value=_self_attr(bank))),
        )
        if field and fills:
            return field
    return None


def _init_fields(owner: ModuleRec) -> tuple[dict[str, str], dict[str, str]]:
    """From the owner's `__init__`: `self.x = config.f` (x -> f), and `if config.f: self.x =
    ...` (x -> f, the attribute built only where the field is set)."""
    init = owner.cls.methods.get("__init__")
    copied: dict[str, str] = {}
    built: dict[str, str] = {}
    if init is None:
        return copied, built
    for assign in m.findall(init, m.Assign(targets=[m.AssignTarget(target=m.Attribute())])):
        target = assign.targets[0].target
        field = _config_field(assign.value)
        if m.matches(target.value, m.Name("self")) and field:
            copied[target.attr.value] = field
    for branch in m.findall(init, m.If()):
        field = _config_field(branch.test)
        if not field:
            continue
        for assign in m.findall(branch.body, m.AssignTarget(target=_self_attr(m.DoNotCare()))):
            built[assign.target.attr.value] = field
    return copied, built


def _norm_switches(ctx: Ctx, owner: ModuleRec, bank: str) -> dict | None:
    """The fields choosing the adapters' input norm and where their residual is taken: the
    method of the owner that runs `self.<bank>` is read statement by statement."""
    method = next(
        (
            fn
            for name, fn in owner.cls.methods.items()
            if name != "__init__" and m.findall(fn, _self_attr(bank))
        ),
        None,
    )
    if method is None or _selecting_input(method, bank) is None:
        return None
    copied, built = _init_fields(owner)
    norms = {
        name
        for name, rec in owner.attrs.items()
        if isinstance(rec, ModuleRec) and ctx.roles.role(rec) == NORM
    }
    found: dict[str, str] = {}
    normed_at = None
    before = after = None
    for index, statement in enumerate(method.body.body):
        if not isinstance(statement, cst.If):
            continue
        own = _own_norm_test(statement.test)
        if own is not None and own in built and _norms_with(statement.body, own):
            found["own_norm"] = built[own]
            found["own_norm_module"] = own
            orelse = statement.orelse
            if not isinstance(orelse, cst.If) or orelse.orelse is not None:
                return None
            reuse = _plain_test(orelse.test)
            used = _norm_called(orelse.body, norms)
            if reuse not in copied or used is None:
                return None
            found["reuse_norm"] = copied[reuse]
            normed_at = index
            continue
        residual = _residual_switch(statement)
        if residual is None:
            continue
        name, negated = residual
        if name not in copied:
            return None
        if negated:
            before = (index, copied[name])
        else:
            after = (index, copied[name])
    if normed_at is None or before is None or after is None or before[1] != after[1]:
        return None
    if not before[0] < normed_at < after[0]:
        return None
    found["residual_after_norm"] = after[1]
    return found


def _selecting_input(method: cst.FunctionDef, bank: str) -> str | None:
    """The parameter of `method` a loop over `self.<bank>` compares with the adapter's
    position (`lang_ids == index`): each sample's adapter is the one its id names."""
    params = {p.name.value for p in method.params.params}
    for loop in m.findall(method, m.For()):
        if not m.findall(loop.iter, _self_attr(bank)):
            continue
        for test in m.findall(
            loop.body, m.Comparison(comparisons=[m.ComparisonTarget(operator=m.Equal())])
        ):
            if isinstance(test.left, cst.Name) and test.left.value in params:
                return test.left.value
    return None


def _own_norm_test(test) -> str | None:
    """`self.x is not None` -> x."""
    if m.matches(
        test,
        m.Comparison(
            left=_self_attr(m.DoNotCare()),
            comparisons=[m.ComparisonTarget(operator=m.IsNot(), comparator=m.Name("None"))],
        ),
    ):
        return test.left.attr.value
    return None


def _plain_test(test) -> str | None:
    """`self.x` -> x."""
    return test.attr.value if m.matches(test, _self_attr(m.DoNotCare())) else None


def _norms_with(body, name: str) -> bool:
    """`h = self.<name>(h)` is the body."""
    return _norm_called(body, {name}) == name


def _norm_called(body, names: set[str]) -> str | None:
    """The one statement `h = self.<norm>(h)` of `body`, for a norm among `names`."""
    statements = body.body if isinstance(body, cst.IndentedBlock) else ()
    if len(statements) != 1 or not isinstance(statements[0], cst.SimpleStatementLine):
        return None
    small = statements[0].body[0]
    if not m.matches(
        small,
        m.Assign(
            targets=[m.AssignTarget(target=m.Name())],
            value=m.Call(func=_self_attr(m.DoNotCare()), args=[m.Arg(value=m.Name())]),
        ),
    ):
        return None
    name = small.value.func.attr.value
    same = small.value.args[0].value.value == small.targets[0].target.value
    return name if same and name in names else None


def _residual_switch(statement: cst.If) -> tuple[str, bool] | None:
    """`if [not] self.x: residual = h` -> (x, negated)."""
    test = statement.test
    negated = m.matches(test, m.UnaryOperation(operator=m.Not()))
    name = _plain_test(test.expression if negated else test)
    statements = statement.body.body if isinstance(statement.body, cst.IndentedBlock) else ()
    if name is None or statement.orelse is not None or len(statements) != 1:
        return None
    line = statements[0]
    if not isinstance(line, cst.SimpleStatementLine) or not m.matches(
        line.body[0], m.Assign(targets=[m.AssignTarget(target=m.Name())], value=m.Name())
    ):
        return None
    return name, negated


def _default_field(ctx: Ctx) -> str | None:
    """The config field whose position among the adapters' keys a module on the way from the
    entry to the layers takes as the language ids a caller did not pass:
    `keys.index(self.config.<field>)`."""
    recs = [ctx.model.entry]
    for name in (ctx.model.stack_owner_path or "").split("."):
        child = recs[-1].attrs.get(name) if name else None
        if isinstance(child, ModuleRec):
            recs.append(child)
    for rec in recs:
        found = ctx.model.project.find_method(rec.cls, "forward") if rec.cls else None
        if found is None:
            continue
        for call in m.findall(found[1], m.Call(func=m.Attribute(attr=m.Name("index")))):
            field = _config_field(call.args[0].value) if len(call.args) == 1 else None
            if field:
                return field
    return None
