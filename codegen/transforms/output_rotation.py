"""Rotate the attention output back by the query's rotary factors before `wo`."""

from __future__ import annotations

import libcst as cst
import libcst.matchers as m

from codegen.transforms._attention_edits import find_method
from codegen.transforms.base import Transform
from codegen.transforms.edits import EditError, InsertStatements, code_of, run

_TURNED_BACK = "  # undo the rotation the values carry"


class OutputRotation(Transform):
    """`out = apply_rotary(out, cos, -sin)` before the heads are joined for `self.wo`.

    DeepSeek-V4 hands one rotated tensor to the attention as its keys and its values, so
    the output's rotary slice carries the keys' rotation; HF turns it back at the query's
    position (the conjugate rotation, `sin` negated) before the output projection. The
    call is the one that rotates `q` (whatever layout and partial width earlier rules gave
    it), applied to the heads the attention returns (`out` before `.transpose(1, 2)`).
    """

    name = "output_rotation"

    def apply(self, package, features=None) -> None:
        forward = find_method(package.module("model.py"), "Attention", "forward")
        if forward is None:
            raise EditError("output_rotation: model.py has no Attention.forward")
        rotation = _query_rotation(forward)
        heads = _output_heads(forward)
        call = rotation.with_changes(
            args=[
                arg.with_changes(value=cst.Name(heads))
                if index == 0
                else arg.with_changes(value=cst.UnaryOperation(cst.Minus(), arg.value))
                if m.matches(arg.value, m.Name("sin"))
                else arg
                for index, arg in enumerate(rotation.args)
            ]
        )
        code = f"{heads} = {code_of(call)}{_TURNED_BACK}\n"
        run(package, "model.py", InsertStatements("Attention", "forward", _projects, code, True))


def _query_rotation(forward: cst.FunctionDef) -> cst.Call:
    """The call rotating the query: `q` its first argument, `cos` and `sin` among the rest."""
    for call in m.findall(forward, m.Call()):
        names = [arg.value for arg in call.args]
        if (
            names
            and m.matches(names[0], m.Name("q"))
            and any(m.matches(n, m.Name("cos")) for n in names[1:])
            and any(m.matches(n, m.Name("sin")) for n in names[1:])
        ):
            return call
    raise EditError("output_rotation: Attention.forward rotates no `q` by `cos`, `sin`")


def _projects(statement: cst.CSTNode) -> bool:
    return bool(m.findall(statement, _WO))


_WO = m.Call(func=m.Attribute(value=m.Name("self"), attr=m.Name("wo")))


def _output_heads(forward: cst.FunctionDef) -> str:
    """The name of the heads `self.wo` reads: `self.wo(out.transpose(1, 2).reshape(...))`."""
    for call in m.findall(forward, _WO):
        node = call.args[0].value if call.args else None
        while isinstance(node, cst.Call) and isinstance(node.func, cst.Attribute):
            if m.matches(node.func, m.Attribute(value=m.Name(), attr=m.Name("transpose"))):
                return node.func.value.value
            node = node.func.value
    raise EditError("output_rotation: `self.wo` reads no `<heads>.transpose(...)`")
