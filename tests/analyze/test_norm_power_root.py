"""An RMSNorm that writes its reciprocal root as a power (`torch.pow(ms, -0.5)`, gemma4's
norm, whose weight is optional by a `with_scale` flag) is an RMSNorm, not an unknown norm;
a power of another exponent is no root."""

from __future__ import annotations

import pytest
from analyze_helpers import write_synth

from codegen.analyze.analysis import analyze

_RSQRT = "hidden_states = hidden_states * torch.rsqrt(variance + self.variance_epsilon)"


@pytest.mark.parametrize(
    ("root", "kind"),
    [
        ("torch.pow(variance + self.variance_epsilon, -0.5)", "rmsnorm"),
        ("(variance + self.variance_epsilon).pow(-0.5)", "rmsnorm"),
        ("torch.pow(variance + self.variance_epsilon, -2.0)", "unknown"),
    ],
    ids=["torch.pow", "method", "not-a-root"],
)
def test_power_root_norm_kind(tmp_path, root, kind):
    path = write_synth(
        str(tmp_path), q_norm=False, qkv_bias=False, o_bias=False, mlp_bias=False, post_norm=False
    )
    source = open(path, encoding="utf-8").read()
    assert _RSQRT in source
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(source.replace(_RSQRT, f"hidden_states = hidden_states * {root}"))
    assert analyze(path).norm.kind == kind
