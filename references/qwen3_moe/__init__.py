"""Qwen3-MoE: llama + per-head QK RMSNorm + softmax top-k routed SwiGLU experts."""

from .spec import SPEC

__all__ = ["SPEC"]
