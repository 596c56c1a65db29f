"""Give SDPA the target's softmax scale from the config instead of head_dim ** -0.5."""

from __future__ import annotations

import re

import libcst as cst

from codegen.transforms._rope_edits import (
    InMethod,
    add_args_field,
    hf_source,
    insert_after,
    is_super_init,
)
from codegen.transforms.base import Transform
from codegen.transforms.edits import (
    EditError,
    assigns,
    code_of,
    expression,
    is_name,
    run,
    set_call_keyword,
)

# HF `self.scaling = config.<field>` or `config.<field>**-0.5`
_HF_SCALING = re.compile(r"self\.scaling\s*=\s*config\.(\w+)\s*(\*\*\s*\(?\s*-0\.5\s*\)?)?")
# HF `self.scaling = <number>` (gemma4: its q/k norms set the scores' scale, 1.0)
_HF_CONSTANT = re.compile(r"self\.scaling\s*=\s*(\d+(?:\.\d*)?)\s*$", re.MULTILINE)
# HF `self.scaling = 1.0 / self.head_dim` (inkling: q/k RMS-normed per head, 1/d not 1/sqrt(d))
_HF_INVERSE_HEAD = re.compile(
    r"self\.scaling\s*=\s*1(?:\.0*)?\s*/\s*self\.head_dim\s*$", re.MULTILINE
)

_FORMS = {
    "multiplier": ("{args}", "float = 1.0  # softmax scale (not head_dim ** -0.5)"),
    "inverse_sqrt": (
        "{args}**-0.5",
        "float = {default}  # softmax scale is its inverse square root (not head_dim's)",
    ),
}


class AttentionScale(Transform):
    """`Attention` passes `scale=self.scale` to SDPA, with `self.scale` the ModelArgs field
    `field` (named as the HF config field) as is (`form="multiplier"`, granite
    "attention_multiplier") or to the power -0.5 (`form="inverse_sqrt"`, gemma2/3
    "query_pre_attn_scalar").

    `form="constant"`: `field` is a number (gemma4's 1.0) SDPA gets as its scale.
    `form="inverse_head_dim"`: the scale is 1 / the layer's head size (inkling), `field`
    unused.

    Without params both are read from the HF attention's `self.scaling = ...` line.
    """

    name = "attention_scale"

    def apply(self, package, features=None, *, field: str | None = None, form: str | None = None):
        if field is None or form is None:
            field, form = detect(features)
        if form == "constant":
            run(package, "model.py", UseScale(repr(float(field))))
            return
        if form == "inverse_head_dim":
            scale = "self.scale = 1.0 / self.head_dim  # q/k normed per head: 1/d, not 1/sqrt(d)"
            insert_after(package, "model.py", "Attention", "__init__", _is_head_dim, scale)
            run(package, "model.py", UseScale())
            return
        if form not in _FORMS:
            raise ValueError(f"attention_scale form {form!r}: one of {tuple(_FORMS)}")
        value, declaration = _FORMS[form]
        add_args_field(
            package,
            field,
            declaration.format(default=_head_dim_default(package)),
            f"hf_config.{field}",
        )
        scale = f"self.scale = {value.format(args=f'args.{field}')}"
        try:  # beside the other per-head sizes when the attention keeps them
            insert_after(package, "model.py", "Attention", "__init__", _is_head_dim, scale)
        except EditError:
            insert_after(package, "model.py", "Attention", "__init__", is_super_init, scale)
        run(package, "model.py", UseScale())


def detect(features) -> tuple[str, str]:
    source = hf_source(features)
    found = _HF_SCALING.search(source)
    if found is None and (constant := _HF_CONSTANT.search(source)) is not None:
        return constant.group(1), "constant"
    if found is None and _HF_INVERSE_HEAD.search(source) is not None:
        return "head_dim", "inverse_head_dim"
    if found is None:
        raise EditError("the HF attention sets no `self.scaling = config...`; pass field/form")
    return found.group(1), "inverse_sqrt" if found.group(2) else "multiplier"


def _is_head_dim(statement) -> bool:
    return assigns("self.head_dim")(statement)


def _head_dim_default(package) -> str:
    """The reference's head_dim default, so default ModelArgs keep the default scale."""
    for statement in package.module("args.py").body:
        if isinstance(statement, cst.ClassDef) and statement.name.value == "ModelArgs":
            for line in statement.body.body:
                if not isinstance(line, cst.SimpleStatementLine):
                    continue
                node = line.body[0]
                if isinstance(node, cst.AnnAssign) and is_name(node.target, "head_dim"):
                    return code_of(node.value)
    return "128"


class UseScale(InMethod):
    """SDPA gets `scale=self.scale` (or `scale`, code); written-out attention (softcapping)
    multiplies the scores by it instead of `self.head_dim**-0.5`."""

    def __init__(self, scale: str = "self.scale"):
        super().__init__("Attention", "forward")
        self.scale = scale

    def leave_Call(self, original, updated):
        if self.inside and is_name(updated.func, "F.scaled_dot_product_attention"):
            self.hits += 1
            return set_call_keyword(updated, "scale", expression(self.scale))
        return updated

    def leave_BinaryOperation(self, original, updated):
        if self.inside and code_of(updated).replace(" ", "") == "self.head_dim**-0.5":
            self.hits += 1
            return expression(self.scale)
        return updated
