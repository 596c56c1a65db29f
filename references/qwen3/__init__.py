"""Qwen3: llama with per-head QK RMSNorm and an optional sliding window on some layers."""

from .spec import SPEC

__all__ = ["SPEC"]
