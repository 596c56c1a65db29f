"""The bindings a name resolves to where a call uses it (`local_binding.lookup`), on small
written sources: the innermost function binding it or taking it as a parameter, else an
enclosing one, else the module; a class body is no scope for its methods; a comprehension's
loop target is its own."""

from __future__ import annotations

import textwrap

import libcst as cst
import libcst.matchers as m
import pytest

from codegen.analyze.local_binding import lookup

SOURCE = textwrap.dedent(
    """
    EPS = 1e-5
    eps = 0.5


    class Block:
        eps = 0.25

        def __init__(self, config, layer_eps, filled=None):
            filled = filled or 1e-6
            self.filled = Norm(4, eps=filled)
            once = config.rms_norm_eps
            self.once = Norm(4, eps=once)
            twice = 1e-6
            if config.flag:
                twice = 1e-5
            self.twice = Norm(4, eps=twice)
            self.param = Norm(4, eps=layer_eps)
            self.constant = Norm(4, eps=EPS)
            self.shadowed = Norm(4, eps=eps)
            more = 1e-6
            more += 1e-6
            self.more = Norm(4, eps=more)
            a, b = 1e-6, 1e-5
            self.unpacked = Norm(4, eps=a)
            outer = 1e-4

            def build():
                return Norm(4, eps=outer)

            self.closure = build()
            self.loop = [Norm(4, eps=x) for x in (1e-6, 1e-5)]
            self.free = Norm(4, eps=undefined)
    """
)


def _use(module: cst.Module, name: str) -> cst.Name:
    """The `eps=<name>` argument of the one call passing it."""
    (arg,) = m.findall(module, m.Arg(keyword=m.Name("eps"), value=m.Name(name)))
    return arg.value


def _lookup(name: str):
    module = cst.parse_module(SOURCE)
    found = lookup(module, _use(module, name), name)
    code = [module.code_for_node(b.value) if b.value is not None else None for b in found.bindings]
    return found.kind, code


@pytest.mark.parametrize(
    ("name", "kind", "values"),
    [
        ("once", "bound", ["config.rms_norm_eps"]),
        ("twice", "bound", ["1e-6", "1e-5"]),
        ("layer_eps", "parameter", []),
        ("filled", "parameter", ["filled or 1e-6"]),  # its default filled in, with it
        ("EPS", "bound", ["1e-5"]),  # the module's: the method binds no EPS
        ("eps", "bound", ["0.5"]),  # the module's, not the class body's 0.25
        ("more", "bound", ["1e-6", None]),  # the augmented assignment has no one value
        ("a", "bound", [None]),  # unpacked
        ("outer", "bound", ["1e-4"]),  # the enclosing function's
        ("x", "bound", [None]),  # the comprehension's own loop target
        ("undefined", "free", []),
    ],
)
def test_a_name_resolves_to_its_scopes_bindings(name, kind, values):
    assert _lookup(name) == (kind, values)
