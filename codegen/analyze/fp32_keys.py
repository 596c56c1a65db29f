"""Checkpoint keys HF keeps in fp32 in a bf16/fp16 model (`_keep_in_fp32_modules_strict`).

transformers loads the parameters and buffers whose names match one of the model class's
`_keep_in_fp32_modules_strict` patterns (a glob searched in the module key: flint's
`gate.weight` and `sinks`, GLM-4-MoE's `e_score_correction_bias`) in fp32 whatever dtype the
rest is loaded in; a package cast to bf16 as a whole rounds them and, for a router's weight
or correction bias, picks other experts on near ties.
The patterns are matched against the module keys (as the package's adapter rows name them
before the checkpoint's own names are aligned).
"""

from __future__ import annotations

import re

import libcst as cst

ATTRIBUTE = "_keep_in_fp32_modules_strict"


def patterns(model) -> tuple[str, ...]:
    """The entry class's (or a base's) literal `_keep_in_fp32_modules_strict` strings."""
    found = model.project.find_class_attr(model.entry_cls, ATTRIBUTE)
    if found is None:
        return ()
    value = found[1]
    if not isinstance(value, cst.List | cst.Tuple | cst.Set):
        return ()
    out = []
    for element in value.elements:
        if isinstance(element.value, cst.SimpleString):
            out.append(element.value.evaluated_value)
    return tuple(out)


def where(model) -> str | None:
    """`file:line` of the class attribute, when the entry class (or a base) sets it."""
    found = model.project.find_class_attr(model.entry_cls, ATTRIBUTE)
    return None if found is None else found[0].sf.cite(found[1])


def _regex(pattern: str) -> re.Pattern:
    return re.compile(re.escape(pattern).replace(r"\*", ".*"))


def detect(model, sd) -> tuple[str, ...]:
    """Full module key templates (`model.layers.{}.mlp.gate.weight`) HF keeps in fp32."""
    wanted = [_regex(p) for p in patterns(model)]
    if not wanted:
        return ()
    names = [k.split(" [")[0] for k in sd.layer_keys]
    # buffers too: a router's correction bias HF keeps fp32 picks the experts
    layer = [f"{sd.prefix}.{{}}.{k}" for k in names]
    keys = [k for k in layer + list(sd.other_keys) if any(w.search(k) for w in wanted)]
    return tuple(dict.fromkeys(keys))
