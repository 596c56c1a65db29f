"""Which norm forwards multiply the weight into the fp32 values and cast last: in one return
(OLMo-2), or through a local (gemma4: `out = out * self.weight.float()`,
`return out.type_as(x)`), but not a product whose values were cast back first."""

from __future__ import annotations

import libcst as cst
import pytest

from codegen.analyze.norm_cast import cast_last_return


def _forward(body: str) -> cst.FunctionDef:
    source = "def forward(self, x):\n" + "".join(f"    {line}\n" for line in body.splitlines())
    return cst.parse_module(source).body[0]


@pytest.mark.parametrize(
    ("body", "cast_last"),
    [
        ("return (self.weight * self._norm(x.float())).to(x.dtype)", True),
        (
            "out = self._norm(x.float())\nout = out * self.weight.float()\nreturn out.type_as(x)",
            True,
        ),
        ("return self.weight * self._norm(x.float()).to(x.dtype)", False),  # llama
        (
            "h = self._norm(x.float())\nh = self.weight * h.to(x.dtype)\nreturn h.to(x.dtype)",
            False,
        ),
        ("out = self._norm(x.float())\nreturn out.type_as(x)", False),
    ],
)
def test_cast_last_forms(body, cast_last):
    assert (cast_last_return(_forward(body)) is not None) is cast_last
