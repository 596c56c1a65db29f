"""router_dtype: which router projections run on an fp32-cast input (source spellings)."""

from __future__ import annotations

import libcst as cst
import pytest

from codegen.analyze.router_dtype import fp32_projection, half_activation


def forward(body: str) -> cst.FunctionDef:
    lines = "\n".join("    " + line for line in body.strip().splitlines())
    return cst.parse_module(f"def forward(self, hidden_states):\n{lines}\n").body[0]


@pytest.mark.parametrize(
    "body",
    [
        "logits = F.linear(hidden_states.type(torch.float32), self.weight.type(torch.float32))",
        "logits = F.linear(hidden_states.float(), self.weight.float())",
        "logits = nn.functional.linear(hidden_states.to(torch.float32), self.weight.float())",
        "logits = torch.nn.functional.linear(hidden_states.to(dtype=torch.float), self.w.float())",
        "logits = F.linear(hidden_states.float().view(-1, 8), self.weight.float())",
        "with no_autocast():\n    logits = F.linear(hidden_states.float(), self.w.float())",
        "flat = hidden_states.reshape(-1, 8).float()\nlogits = F.linear(flat, self.weight.float())",
        "logits = self.gate(hidden_states.float())",
    ],
)
def test_upcast_before_the_projection(body):
    assert fp32_projection(forward(body), frozenset({"gate"})) is not None


@pytest.mark.parametrize(
    "body",
    [
        "logits = F.linear(hidden_states, self.weight)",
        # the logits are upcast after a half-precision projection: already rounded
        "logits = F.linear(hidden_states, self.weight).float()",
        "logits = self.gate(hidden_states)\nprobs = F.softmax(logits.float(), dim=-1)",
        "logits = F.linear(hidden_states.to(torch.bfloat16), self.weight)",
        # a Linear that is not a router projection
        "out = self.experts(hidden_states.float())",
    ],
)
def test_projection_in_the_model_dtype(body):
    assert fp32_projection(forward(body), frozenset({"gate"})) is None


class _Site:
    """A call site as the trace records it: the call node and the method holding it."""

    def __init__(self, body: str):
        self.method = forward(body)
        self.node = self.method.body.body[-1].body[0].value

    def cite(self) -> str:
        return "modeling_x.py:1"


@pytest.mark.parametrize(
    ("body", "half"),
    [
        ("scores = self.score_fn(logits)", True),
        ("scores = self.score_fn(logits.float())", False),
        ("scores = logits.sigmoid()", True),
        ("scores = logits.float().sigmoid()", False),
        ("scores = logits.float().softmax(-1)", False),
        ("scores = torch.sigmoid(logits)", True),
        ("up = logits.float()\nscores = F.softmax(up, dim=-1)", False),
    ],
)
def test_scores_taken_of_the_logits_upcast_or_not(body, half):
    """`half_activation`: an activation called on the logits or as the tensor's own method."""
    assert (half_activation(_Site(body)) is not None) is half
