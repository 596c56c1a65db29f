"""Layer norms at a number of the code's own while the final norm reads the config's.

CTRL builds its block norms as `nn.LayerNorm(n_embd, eps=1e-6)` and only its final norm with
`eps=config.layer_norm_epsilon`; JetMoE builds its layer norms without an epsilon (its norm
class's default, 1e-6) and its final norm with `eps=config.rms_norm_eps`. In the default
config the two agree, so the values alone do not tell them apart: a config with another
epsilon changes the final norm only. Read from the construction sites
(`norm_eps_sources`): every block norm at the same literal or class default, the final norm
at a config field.
"""

from __future__ import annotations

from codegen.analyze.context import Ctx
from codegen.analyze.norm_eps_sources import Source, constant_layers


def detect(ctx: Ctx, found: dict[str, tuple[Source, ...]]) -> float | None:
    """The layer norms' epsilon when it is the code's number and the final norm's is a
    config field; else None."""
    layers = constant_layers(found)
    if layers is None:
        return None
    final = found["final"][0]
    if layers.how == "literal":
        said = f"eps={layers.value!r} in the code"
    else:
        said = f"no eps: its class's {layers.value!r}"
    ctx.cite(
        "norm.layer_eps",
        f"{layers.site} ({said}; the final norm's eps=config.{final.field}, {final.site})",
    )
    return layers.value
