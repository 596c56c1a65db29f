"""The analyzer's line numbers (`source._positions`) are libcst PositionProvider's start lines."""

from __future__ import annotations

import libcst as cst
from libcst.metadata import MetadataWrapper, PositionProvider

from codegen.analyze.source import _positions

SOURCE = '''\
"""Module docstring
over two lines."""
import os  # a comment


@decorator(
    "arg",
)
class Thing(Base):  # trailing
    """Doc."""

    value = (
        1
        + 2
    )

    @property
    def name(self, a, b=3, *args, **kwargs) -> str:
        text = """first
second
third"""
        other = a \\
            + b
        if a:
            return f"{a}{b!r:>{text}}"
        elif b:
            pass
        else:
            x = [i for i in range(3) if i]
        return lambda q: (q if q else None)


def outer():
    async def inner():
        await thing()
    return inner
'''


def provider_lines(module: cst.Module) -> dict:
    found = MetadataWrapper(module, unsafe_skip_copy=True).resolve(PositionProvider)
    return {node: pos.start.line for node, pos in found.items()}


def test_lines_match_the_position_provider() -> None:
    module = cst.parse_module(SOURCE)
    expected = provider_lines(module)
    got = _positions(module)
    assert got.keys() == expected.keys()
    assert {node: got[node] for node in expected} == expected
    inner = module.body[-1].body.body[0]
    assert got[inner] == 34 and got[inner.name] == 34  # `async def inner`
    assert got[module.body[2]] == 9  # a decorated class starts at `class`, as with the provider


def test_crlf_and_a_scope_rendered_alone() -> None:
    module = cst.parse_module(SOURCE.replace("\n", "\r\n"))
    assert _positions(module) == provider_lines(module)
    scope = cst.Module(body=[module.body[2]])  # the class alone, as SourceFile._resolve does
    lines = _positions(scope)
    assert lines == provider_lines(scope)
    assert lines[module.body[2].name] == 6  # its blank lines and decorator come first


def test_a_node_cited_without_its_scope_is_placed_from_its_method(tmp_path) -> None:
    from codegen.analyze.source import parse_file
    from codegen.analyze.walk import children

    path = tmp_path / "modeling_x.py"
    path.write_text(SOURCE)
    sf = parse_file(str(path))
    expected = provider_lines(sf.module)
    method = sf.classes["Thing"].methods["name"]
    stack, nodes = [method], []
    while stack:
        nodes.append(stack.pop())
        stack.extend(children(nodes[-1]))
    assert [sf.line(n) for n in nodes] == [expected[n] for n in nodes]
    assert not sf._full  # no pass over the whole file
    assert id(method) in sf._scoped
