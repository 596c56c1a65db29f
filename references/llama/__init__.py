"""Llama: the dense baseline every other reference is a delta of."""

from .spec import SPEC

__all__ = ["SPEC"]
