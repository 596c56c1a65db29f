"""Parameters HF loads in fp32 in a bf16/fp16 model stay fp32 when the package is cast."""

from __future__ import annotations

import libcst as cst
import libcst.matchers as m

from codegen.transforms._attention_edits import call_of, insert_definition, replace_expressions
from codegen.transforms.align_hf_keys import row_named
from codegen.transforms.base import Transform
from codegen.transforms.edits import EditError, add_import, code_of, expression, run, statements

# a cast of the whole model (`.to(torch.bfloat16)`) moves these but keeps them fp32, as
# transformers loads `_keep_in_fp32_modules_strict` tensors
APPLY = '''
def _apply(self, fn, recurse=True):
    """Casts keep FP32_TENSORS in fp32 (moved, not rounded), as HF loads them."""
    kept = {name: tensor.data for name, tensor in self._fp32_tensors()}
    super()._apply(fn, recurse)
    for name, tensor in self._fp32_tensors():
        old = kept.get(name)  # None: a tied weight, listed once before `to_empty` unties it
        if old is not None and old.dtype == torch.float32 and tensor.dtype != old.dtype:
            moved = torch.empty_like(old, device=tensor.device) if old.is_meta else old
            tensor.data = moved.to(tensor.device)
    return self

def _fp32_tensors(self) -> list[tuple[str, torch.Tensor]]:
    """The parameters and buffers FP32_TENSORS names."""
    named = [*self.named_parameters(), *self.named_buffers()]
    return [(n, t) for n, t in named if any(fnmatchcase(n, p) for p in FP32_TENSORS)]
'''


class KeepFp32Params(Transform):
    """`Model._apply` keeps the parameters and buffers whose HF keys are `keys` (module keys
    with `{}`) in fp32 through dtype casts: `FP32_TENSORS` lists their house names as globs,
    read from the adapter rows. HF's bf16 model holds them in fp32 (flint's router weight and
    sinks, GLM-4-MoE's router correction bias); rounding them picks other experts on near
    ties. A tensor whose own module already keeps it (a reference router's `_apply` naming
    it) is left to that module."""

    name = "keep_fp32_params"

    def apply(self, package, features=None, *, keys: tuple[str, ...] = ()) -> None:
        if not keys:
            raise ValueError("keep_fp32_params needs the HF keys kept in fp32")
        kept_by_modules = _kept_by_modules(package)
        house = []
        for key in keys:
            found = house_key(package, features, key)
            if found is None:
                raise EditError(f"no adapter row for {key}: cannot keep it in fp32")
            if found.rsplit(".", 1)[-1] not in kept_by_modules:
                house.append(found.replace("{}", "*"))
        if not house:
            return
        names = ", ".join(f'"{name}"' for name in house)
        insert_definition(
            package,
            "model.py",
            "# tensors HF loads in fp32 in a bf16/fp16 model (_keep_in_fp32_modules_strict)\n"
            f"FP32_TENSORS = ({names},)\n",
            before="Model",
        )
        add_import(package, "model.py", "fnmatch", "fnmatchcase")
        run(package, "model.py", _AddMethod("Model", APPLY))
        if "output.weight" in house:
            # an fp32 head takes the hidden state in its own dtype (HF's, else a dtype error)
            replace_expressions(
                package,
                "model.py",
                "Model",
                "forward",
                call_of("self.output"),
                _head_input_cast,
            )


def _head_input_cast(call: cst.Call) -> cst.Call:
    """`self.output(h)` -> `self.output(h.to(self.output.weight.dtype))`."""
    if len(call.args) != 1:
        raise EditError("the output head takes more than the hidden state")
    hidden = code_of(call.args[0].value)
    cast = expression(f"{hidden}.to(self.output.weight.dtype)")
    return call.with_changes(args=[call.args[0].with_changes(value=cast)])


def _kept_by_modules(package) -> set[str]:
    """Attribute names a module's own `_apply` keeps (`self.<name>` read inside it)."""
    names: set[str] = set()
    for function in m.findall(package.module("model.py"), m.FunctionDef(m.Name("_apply"))):
        for attribute in m.findall(function, m.Attribute(value=m.Name("self"))):
            names.add(attribute.attr.value)
    return names


def house_key(package, features, key: str) -> str | None:
    """The house key (`layers.{}.attention.wqkv.weight`) of the adapter row for the module
    key `key` (`model.layers.{}.self_attn.qkv.weight`): its own row, else one ending like
    it, else the row `align_hf_keys` will pair with it; None when there is none."""
    rows = _rows(package)
    return rows.get(key) or _by_suffix(rows, key) or _renamed(package, features, key)


def _rows(package) -> dict[str, str]:
    """The adapter's `from_hf_map` string rows: HF key -> house key."""
    out: dict[str, str] = {}
    for assign in m.findall(package.module("state_dict_adapter.py"), m.Assign()):
        target = assign.targets[0].target
        if not m.matches(target, m.Name("from_hf_map")) or not isinstance(assign.value, cst.Dict):
            continue
        for element in assign.value.elements:
            key, value = element.key, element.value
            if isinstance(key, cst.SimpleString) and isinstance(value, cst.SimpleString):
                out[key.evaluated_value] = value.evaluated_value
    return out


def _renamed(package, features, key: str) -> str | None:
    """The house key of the row that pairs with `key` (a module key of the analysed
    checkpoint) as `align_hf_keys`, a later step, pairs rows with the target's keys: a row
    still under the reference's name (qwen3's `k_norm` for DeepSeek-V4's `kv_norm`) by
    synonym, or as the one left over."""
    checkpoint = features.get("state_dict") if features is not None else None
    if checkpoint is None:
        return None
    layer_keys = [key.split(" [", 1)[0] for key in checkpoint.layer_keys]
    other = [*checkpoint.other_keys, *checkpoint.tied_keys]
    row = row_named(package, features, key, checkpoint.prefix, layer_keys, other)
    return _rows(package).get(row) if row is not None else None


def _by_suffix(rows: dict[str, str], key: str) -> str | None:
    """The one row whose HF key ends like `key`: its last two components, else its last
    alone (a checkpoint that stores `mlp.gate.e_score_correction_bias` as
    `mlp.e_score_correction_bias`), else the one whose house key ends in that name."""
    # not a tensor of a module nested under the key's own module (DeepSeek-V4's attention
    # `kv_norm` is not its compressor's `compressor.kv_norm`)
    parent = key.rsplit(".", 2)[0] + "."
    rows = {
        hf: house
        for hf, house in rows.items()
        if not (hf.startswith(parent) and hf.count(".") > key.count("."))
    }
    for depth in (2, 1):
        tail = "." + ".".join(key.split(".")[-depth:])
        found = [house for hf, house in rows.items() if ("." + hf).endswith(tail)]
        if len(found) == 1:
            return found[0]
    # a checkpoint that renames it (Hunyuan-V3's `mlp.expert_bias`): the one house tensor
    # that kept the module's own name
    tail = "." + key.rsplit(".", 1)[-1]
    found = [house for house in rows.values() if ("." + house).endswith(tail)]
    return found[0] if len(found) == 1 else None


class _AddMethod(cst.CSTTransformer):
    def __init__(self, cls: str, code: str):
        super().__init__()
        self.cls, self.code, self.hits = cls, code, 0

    def leave_ClassDef(self, original, updated):
        if updated.name.value != self.cls:
            return updated
        body = list(updated.body.body)
        index = next(
            (i + 1 for i, s in enumerate(body) if m.matches(s, m.FunctionDef(m.Name("__init__")))),
            len(body),
        )
        self.hits += 1
        new = statements(self.code)
        return updated.with_changes(
            body=updated.body.with_changes(body=body[:index] + new + body[index:])
        )
