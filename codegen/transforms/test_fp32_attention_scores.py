"""Fp32AttentionScores: written-out scores and SDPA run in fp32, outputs in the model dtype."""

import pytest
import torch

from codegen.models import references_dir
from codegen.scaffold.source import SourcePackage
from codegen.transforms.attention_sinks import AddAttentionSinks
from codegen.transforms.edits import EditError
from codegen.transforms.fp32_attention_scores import Fp32AttentionScores
from codegen.transforms.sliding_window import SetSlidingWindow
from codegen.transforms.testing import package_of


def _qwen3() -> SourcePackage:
    return SourcePackage.from_directory(references_dir() / "qwen3")


def test_written_out_sink_attention_takes_q_and_k_to_fp32():
    package = _qwen3()
    AddAttentionSinks().apply(package)
    before = package.render()["model.py"]
    assert "scores = q @ k.transpose(2, 3)" in before
    Fp32AttentionScores().apply(package)
    after = package.render()["model.py"]
    assert "scores = q.float() @ k.float().transpose(2, 3)" in after
    assert ".to(v.dtype)" in after  # the probabilities go back to v's dtype before @ v


def test_the_additive_mask_is_built_in_the_fp32_of_the_scores():
    """The model's -inf/0 table is added in place to the scores: in the scores' dtype, fp32
    once they are upcast, also where a later window rebuilds the tables."""
    package = SourcePackage.from_directory(references_dir() / "llama")
    AddAttentionSinks().apply(package)
    assert "dtype=h.dtype" in package.render()["model.py"]
    Fp32AttentionScores().apply(package)
    model = package.render()["model.py"]
    assert "dtype=h.dtype" not in model and model.count("dtype=torch.float32,") == 1
    SetSlidingWindow().apply(package, mode="pattern")
    model = package.render()["model.py"]
    assert "dtype=h.dtype" not in model and model.count("dtype=torch.float32,") == 1
    assert "future.new_full(window.shape" in model


def test_sdpa_runs_in_fp32_and_returns_the_model_dtype():
    package = _qwen3()
    Fp32AttentionScores().apply(package)
    code = package.render()["model.py"]
    assert (
        "F.scaled_dot_product_attention(\n            q.float(),\n            k.float(),\n"
        "            v.float(),\n"
    ) in code
    assert "        ).to(v.dtype)\n" in code


_SNIPPET = """
class Attention(nn.Module):
    def forward(self, q, k, v):
        scores = q @ k.transpose(2, 3) * 0.5
        probs = torch.softmax(scores, dim=-1).to(v.dtype)
        return scores, probs @ v
"""


def test_the_scores_are_fp32_and_the_output_keeps_v_dtype():
    package = package_of({"model.py": _SNIPPET})
    Fp32AttentionScores().apply(package)
    namespace = {"nn": torch.nn, "torch": torch}
    exec(package.render()["model.py"], namespace)  # noqa: S102 - the rendered snippet
    q, k, v = (torch.randn(1, 2, 5, 8, dtype=torch.bfloat16) for _ in range(3))
    scores, out = namespace["Attention"]().forward(q, k, v)
    assert scores.dtype == torch.float32 and out.dtype == torch.bfloat16
    torch.testing.assert_close(scores, q.float() @ k.float().transpose(2, 3) * 0.5)


def test_an_attention_without_scores_is_an_error():
    package = package_of(
        {"model.py": "class Attention:\n    def forward(self, x):\n        return x\n"}
    )
    with pytest.raises(EditError):
        Fp32AttentionScores().apply(package)
