"""DeepSeek-V3: multi-head latent attention and a grouped, bias-corrected sigmoid MoE."""

from .spec import SPEC

__all__ = ["SPEC"]
