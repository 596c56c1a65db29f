"""The generated args speak of the norms the model builds: PhiMoE, copied from the
qwen3_moe reference, builds nn.LayerNorm everywhere, so no comment of its args.py may call
its norms RMSNorms (the reference's `norm_eps` comment once did)."""

from __future__ import annotations

import pytest

pytest.importorskip("transformers.models.phimoe")


def test_a_layernorm_package_names_no_rmsnorm_in_its_args(tmp_path):
    from codegen.cli import main

    assert main(["scaffold", "phimoe", "--out", str(tmp_path / "models")]) == 0
    package = tmp_path / "models" / "phimoe"
    model = (package / "model.py").read_text()
    assert "nn.LayerNorm(" in model and "RMSNorm(" not in model
    args = (package / "args.py").read_text()
    assert "norm_eps" in args
    assert "RMSNorm" not in args
