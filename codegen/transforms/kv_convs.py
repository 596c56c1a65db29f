"""Causal depthwise convolutions over the attention's key and value projections, each added
back to its projection (inkling's short convolutions, before the key norm)."""

from __future__ import annotations

import libcst as cst

from codegen.transforms import _attention_edits as edits
from codegen.transforms._residual_conv import add_causal_conv
from codegen.transforms.base import Transform
from codegen.transforms.edits import EditError, InsertStatements, assigns, run

BUILD = "self.{name} = CausalConv(self.{proj}.out_features, args.conv_kernel)"


class KvConvs(Transform):
    """`Attention` builds a `CausalConv` (a causal depthwise Conv1d over the sequence, added
    back to its input) for each projection the analysis names, `k_conv` on `wk`'s output
    and `v_conv` on `wv`'s, and its forward reads `self.k_conv(self.wk(x))` where it read
    `self.wk(x)`: before the view into heads and the key norm, as HF filters the flat
    projection. `convs` is the analysed `attention.kv_convs`: the HF module and projection
    names (the adapter maps `<module>.<conv>.weight`), the kernel and its config field,
    and whether the filter runs in fp32."""

    name = "kv_convs"

    def apply(self, package, features=None, *, convs: dict) -> None:
        add_causal_conv(package, convs)

        def filter_one(proj: str, name: str, module: str) -> list[tuple[str, str]]:
            run(
                package,
                "model.py",
                InsertStatements(
                    "Attention",
                    "__init__",
                    assigns(f"self.{proj}"),
                    BUILD.format(name=name, proj=proj),
                ),
            )
            edits.replace_expressions(
                package,
                "model.py",
                "Attention",
                "forward",
                edits.call_of(f"self.{proj}"),
                lambda call, name=name: cst.Call(
                    func=cst.parse_expression(f"self.{name}"), args=[cst.Arg(call)]
                ),
            )
            return [
                (f"{module}.{convs['conv']}.weight", f"layers.{{}}.attention.{name}.conv.weight")
            ]

        filter_projections(package, convs["convs"], filter_one)


def filter_projections(package, convs, filter_one) -> list[str]:
    """For each (HF module, HF projection) of `convs`, the house projection its adapter row
    names (`wk`) and its filter's name (`k_conv`): `filter_one(proj, name, module)`, with
    `module` the HF module's full key prefix, edits model.py and returns the filter's adapter
    rows, which go after the attention's last row. Returns those key prefixes."""
    rows = _attention_rows(package)
    new, modules = [], []
    for module, projection in convs:
        hf = f"{rows['prefix']}.{projection}.weight"
        house = rows["by_hf"].get(hf)
        if house is None:
            raise EditError(f"state_dict_adapter.py has no row for {hf}")
        proj = house.split(".")[-2]  # layers.{}.attention.wk.weight -> wk
        modules.append(f"{rows['prefix']}.{module}")
        new += filter_one(proj, f"{proj.removeprefix('w')}_conv", modules[-1])
    edits.insert_rows_after(package, list(rows["by_hf"].values())[-1], new)
    return modules


def _attention_rows(package) -> dict:
    """The attention's adapter rows: HF key -> house key, and the HF prefix of its keys."""
    from codegen.transforms._ffn_edits import rewrite_adapter

    found: dict[str, str] = {}

    def collect(hf, house):
        if house is not None and house.startswith("layers.{}.attention."):
            found[hf] = house
        return [(hf, house)]

    rewrite_adapter(package, collect)
    wo = next((hf for hf, house in found.items() if house == "layers.{}.attention.wo.weight"), None)
    if wo is None:
        raise EditError("state_dict_adapter.py has no row for layers.{}.attention.wo.weight")
    return {"by_hf": found, "prefix": wo.rsplit(".", 2)[0]}
