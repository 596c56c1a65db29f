"""Load routed experts a checkpoint holds as one 2-D matrix per projection (DBRX's w1/v1/w2).

Each tensor stacks the experts' rows ([num_experts * ffn, hidden]); the house experts are
3-D. Which matrix is the gate, the up or the down projection, and whether an expert's block
is stored transposed, is read from the forward that multiplies by them: the matrix whose
product goes through the activation is the gate, the one the activated product is multiplied
by is the down projection, and a block used as `x @ w` (no `.T`) is stored [in, out]. A down
projection stored [in, out] is held that way ([num_experts, hidden_dim, dim]) and multiplied
as stored, as HF does: its product is then a plain (not transposed) matmul.
"""

from __future__ import annotations

import ast
from pathlib import Path

from codegen.errors import CodegenError
from codegen.transforms import _moe_edits as moe_edits
from codegen.transforms._ffn_edits import ReplaceExpressions, SetClassDocstring, rewrite_adapter
from codegen.transforms.base import Transform
from codegen.transforms.edits import EditError, ReplaceStatements, assigns, run
from codegen.transforms.transposed_linears import AfterFromHfMap

NOTE = (
    "# expert projections stored as one [num_experts * rows, cols] matrix each: split into\n"
    "# one block per expert on load (transposed where True), flattened on save\n"
)
HOUSE = {"gate": "w1", "down": "w2", "up": "w3"}


class FlatExperts(Transform):
    """The three stacked per-expert rows of the adapter become one row per checkpoint matrix
    (`prefix.{}.<path of the parameter>`), listed in the adapter's `flat_experts` with
    whether each expert's block is stored transposed; the base adapter splits and flattens."""

    name = "flat_experts"

    def apply(self, package, features=None) -> None:
        path = features.get("source.modeling") if features is not None else None
        state = getattr(features, "state_dict", None)
        if not path or not Path(path).is_file() or state is None:
            raise EditError("flat experts need the target's modeling source and its keys")
        roles = flat_roles(Path(path).read_text(), path)
        layer = f"{state.prefix}.{{}}."
        keys = [k.split(" [", 1)[0] for k in state.layer_keys]
        rows: dict[str, tuple[str, bool]] = {}
        for attr, (role, transposed) in roles.items():
            found = [k for k in keys if k.rsplit(".", 1)[-1] == attr and ".experts." in f".{k}"]
            if len(found) != 1:
                raise EditError(f"expert parameter {attr!r}: checkpoint keys {found}")
            rows[HOUSE[role]] = (layer + found[0], transposed)
        done = []

        def rewrite(hf: str, house: str | None):
            name = house.rsplit(".", 1)[-1] if house else None
            if house is None or ".experts." not in house or name not in rows:
                return [(hf, house)]
            done.append(name)
            return [(rows[name][0], house)]

        rewrite_adapter(package, rewrite)
        if sorted(done) != sorted(rows):
            raise EditError(f"the adapter's expert rows are {sorted(done)}, not w1, w2, w3")
        if rows["w2"][1]:
            _down_as_stored(package)
            rows["w2"] = (rows["w2"][0], False)
        listed = ", ".join(f'"{hf}": {transposed}' for hf, transposed in rows.values())
        run(package, "state_dict_adapter.py", AfterFromHfMap(f"{NOTE}flat_experts = {{{listed}}}"))


def _down_as_stored(package) -> None:
    """The experts hold `w2` as the checkpoint stores each block, [in, out], and multiply by
    it as it is (not by its transpose), as the target's forward does."""
    moe_edits.own_experts(package)
    shape = "self.w2 = nn.Parameter(torch.empty(num_experts, hidden_dim, dim))"
    run(package, "model.py", ReplaceStatements("Experts", "__init__", assigns("self.w2"), shape))
    run(package, "model.py", ReplaceExpressions("Experts", "forward", "self.w2.mT", "self.w2"))
    run(package, "model.py", SetClassDocstring("Experts", _docstring))


def _docstring(old: str | None) -> str:
    layout = "as stacked weights [num_experts, out, in]."
    if old is None or layout not in old:
        raise EditError(f"the Experts docstring does not say it holds its weights {layout}")
    stored = (
        "as stacked weights.\n\n    w1 (gate) and w3 (up) are [num_experts, out, in]; w2 (down) is"
        " [num_experts, in, out],\n    as the checkpoint stores it, and multiplied as it is."
    )
    return old.replace(layout, stored, 1)


def flat_roles(source: str, path: str = "<modeling>") -> dict[str, tuple[str, bool]]:
    """{parameter: (gate | up | down, stored transposed)} of the one class holding its expert
    projections as 2-D `nn.Parameter`s whose rows are a product (`n_experts * ffn`), read from
    the forward that takes their per-expert blocks as arguments (`expert_<name>`)."""
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.ClassDef):
            continue
        params = _flat_parameters(node)
        forward = next(
            (f for f in node.body if isinstance(f, ast.FunctionDef) and f.name == "forward"), None
        )
        if len(params) != 3 or forward is None:
            continue
        args = [a.arg for a in forward.args.args[1:]]
        named = {p: [a for a in args if a == p or a.endswith(f"_{p}")] for p in params}
        if any(len(v) != 1 for v in named.values()) or len(args) != 4:
            raise CodegenError(
                f"{node.name}.forward: arguments {args} do not name {params}", path=path
            )
        return _roles(forward, args[0], {v[0]: p for p, v in named.items()}, node.name, path)
    raise CodegenError("no class holds three flat expert matrices", path=path)


def _flat_parameters(cls: ast.ClassDef) -> list[str]:
    """`self.<name> = nn.Parameter(torch.<f>(a * b, c))` in `__init__`, in order."""
    found = []
    for fn in cls.body:
        if not (isinstance(fn, ast.FunctionDef) and fn.name == "__init__"):
            continue
        for stmt in ast.walk(fn):
            if not (isinstance(stmt, ast.Assign) and isinstance(stmt.value, ast.Call)):
                continue
            target, call = stmt.targets[0], stmt.value
            if _name(call.func) != "Parameter" or not call.args:
                continue
            inner = call.args[0]
            if (
                isinstance(target, ast.Attribute)
                and isinstance(inner, ast.Call)
                and len(inner.args) == 2
                and isinstance(inner.args[0], ast.BinOp)
                and isinstance(inner.args[0].op, ast.Mult)
            ):
                found.append(target.attr)
    return found


def _roles(forward, x: str, weight_of: dict[str, str], owner: str, path: str):
    """Each matmul `a.matmul(w)` / `a @ w` with `w` (or `w.T`) one of the blocks: `a` the
    input `x` -> gate or up (gate when its result is activated), else down."""
    products: dict[str, tuple[str, bool, str]] = {}  # result name -> (param, transposed, left)
    activated: set[str] = set()
    for stmt in ast.walk(forward):
        if isinstance(stmt, ast.Return) and stmt.value is not None:
            result, value = "<returned>", stmt.value
        elif isinstance(stmt, ast.Assign) and isinstance(stmt.targets[0], ast.Name):
            result, value = stmt.targets[0].id, stmt.value
        else:
            continue
        found = _matmul(value)
        if found is not None:
            left, right = found
            block, plain = _block(right)
            if block in weight_of:
                products[result] = (weight_of[block], plain, _name(left))
                continue
        if isinstance(value, ast.Call) and len(value.args) == 1:
            arg = value.args[0]
            if isinstance(arg, ast.Name) and arg.id in products:
                activated.add(arg.id)
    roles = {}
    for result, (param, plain, left) in products.items():
        role = ("gate" if result in activated else "up") if left == x else "down"
        roles[param] = (role, plain)
    if sorted(r for r, _ in roles.values()) != ["down", "gate", "up"]:
        raise CodegenError(
            f"{owner}.forward: expert roles {roles} are not gate, up, down", path=path
        )
    if any(stored for role, stored in roles.values() if role != "down"):
        raise CodegenError(f"{owner}.forward: a gate or up block is used [in, out]", path=path)
    return roles


def _matmul(value) -> tuple | None:
    if isinstance(value, ast.BinOp) and isinstance(value.op, ast.MatMult):
        return value.left, value.right
    if isinstance(value, ast.Call) and _name(value.func) == "matmul":
        func = value.func
        if (
            isinstance(func, ast.Attribute)
            and len(value.args) == 1
            and _name(func.value) != "torch"
        ):
            return func.value, value.args[0]
        if len(value.args) == 2:
            return value.args[0], value.args[1]
    return None


def _block(node) -> tuple[str | None, bool]:
    """(name, stored [in, out]): `w.T` / `w.t()` / `w.mT` is [out, in] as used, `w` is [in, out]."""
    if isinstance(node, ast.Attribute) and node.attr in ("T", "mT"):
        return _name(node.value), False
    if isinstance(node, ast.Call) and _name(node.func) == "t" and not node.args:
        return _name(node.func.value), False
    return _name(node), True


def _name(node) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return node.attr
    return None
