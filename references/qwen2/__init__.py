"""Qwen2: llama with q/k/v biases and an optional sliding window on some layers."""

from .spec import SPEC

__all__ = ["SPEC"]
