"""Queries and keys rescaled to a fixed L2 norm before RoPE, the keys then scaled by a learned
vector per kv head (zaya's q/k norm)."""

from __future__ import annotations

from codegen.transforms import _attention_edits as edits
from codegen.transforms.base import Transform
from codegen.transforms.edits import EditError, InsertStatements, assigns, calls, run

RESCALE = '''
def rescale(x: torch.Tensor, norm: float) -> torch.Tensor:
    """`x` rescaled to the L2 norm `norm` over its last dim (its own norm floored at the
    dtype's eps)."""
    return x * (norm / x.norm(p=2, dim=-1, keepdim=True).clamp_min(torch.finfo(x.dtype).eps))
'''

KEY_SCALE = "self.key_scale = nn.Parameter(torch.zeros(args.n_kv_heads))  # per kv head"

ZERO_INIT = """
def init_parameters(self, std: float) -> None:
    nn.init.zeros_(self.key_scale)  # HF's _init_weights starts the key scale at zero
"""

FORWARD = """q = rescale(q, {scale})  # to the norm {doc}
# the keys alike, then each scaled by its kv head's learned scale
k = rescale(k, {scale}) * self.key_scale[:, None, None]"""


class L2QkNorm(Transform):
    """`Attention` rescales its queries and keys (heads first) to the L2 norm `scale` over
    the head dim (`rescale`, the norm floored at the dtype's eps) just before RoPE, then
    multiplies the keys by `key_scale`, a learned entry per kv head that `init_weights`
    starts at zero, as HF does. `norm` is the analysed `attention.l2_qk_norm`: the HF module
    and its parameter (the adapter maps it), and the norm (`"head_dim"`: sqrt(head_dim))."""

    name = "l2_qk_norm"

    def apply(self, package, features=None, *, norm: dict) -> None:
        if not {"module", "key_scale", "scale"} <= set(norm):
            raise EditError(f"the L2 q/k norm needs its module, key scale and norm, got {norm}")
        scale = norm["scale"]
        if scale == "head_dim":
            code = FORWARD.format(doc="sqrt(head_dim)", scale="self.head_dim**0.5")
        else:
            code = FORWARD.format(doc=repr(float(scale)), scale=repr(float(scale)))
        edits.insert_definition(package, "model.py", RESCALE, before="Attention")
        run(
            package,
            "model.py",
            InsertStatements("Attention", "__init__", assigns("self.wo"), KEY_SCALE),
        )
        edits.add_method_after_init(package, "Attention", ZERO_INIT)
        run(
            package,
            "model.py",
            InsertStatements("Attention", "forward", calls("apply_rotary"), code, before=True),
        )
        rows = _key_scale_row(package, norm)
        edits.insert_rows_after(package, "layers.{}.attention.wo.weight", rows)


def _key_scale_row(package, norm: dict) -> list[tuple[str, str]]:
    """The adapter row of the key scale, under the HF attention's path (`wo`'s row)."""
    from codegen.transforms._ffn_edits import rewrite_adapter

    found = []

    def collect(hf, house):
        if house == "layers.{}.attention.wo.weight":
            found.append(hf.rsplit(".", 2)[0])
        return [(hf, house)]

    rewrite_adapter(package, collect)
    if len(found) != 1:
        raise EditError("state_dict_adapter.py has no row for layers.{}.attention.wo.weight")
    return [(f"{found[0]}.{norm['module']}.{norm['key_scale']}", "layers.{}.attention.key_scale")]
