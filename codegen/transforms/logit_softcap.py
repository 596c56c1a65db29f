"""Soft-cap the final logits: tanh(logits / cap) * cap (gemma2 `final_logit_softcapping`)."""

from __future__ import annotations

import re

from codegen.transforms._rope_edits import add_args_field, hf_config_read, hf_source, rewrite_return
from codegen.transforms.base import Transform
from codegen.transforms.edits import EditError

SOFTCAP = """
logits = {logits}
cap = self.args.{field}
if cap is None:  # the config switches the cap off
    return logits
logits = ({divided} / cap).tanh_()  # in place: two logit-sized tensors at most
return logits * cap
"""
# the source upcasts the logits first (`logits.float() / cap`): the cap runs in fp32
FP32 = "logits.float()"

# HF: `logits = logits / self.config.final_logit_softcapping; logits = torch.tanh(logits); ...`
_HF_DIVIDE = re.compile(r"logits\s*=\s*logits(\.float\(\))?\s*/\s*((?:self|config)(?:\.\w+)+)")


class LogitSoftcap(Transform):
    """`Model.forward` returns `tanh(logits / cap) * cap`; the cap is the ModelArgs field
    `field`, named as the HF config field (gemma2 "final_logit_softcapping").

    Without `field` it is read from the HF source's `logits = logits / <cap>` line; where
    that line upcasts first (`logits.float() / <cap>`, beam) the package caps in fp32 too.
    """

    name = "logit_softcap"

    def apply(self, package, features=None, *, field: str | None = None) -> None:
        fp32 = False
        if not field:
            field, fp32 = _detect(features)
        add_args_field(
            package,
            field,
            "float | None = 30.0  # logits = tanh(logits / cap) * cap; None: no cap",
            f"hf_config.{field}",
        )
        rewrite_return(
            package,
            "Model",
            "forward",
            lambda logits: SOFTCAP.format(
                logits=logits, field=field, divided=FP32 if fp32 else "logits"
            ),
        )


def detect(features) -> str:
    return _detect(features)[0]


def _detect(features) -> tuple[str, bool]:
    """(the cap's config field, whether the source upcasts the logits before dividing)."""
    source = hf_source(features)
    for match in _HF_DIVIDE.finditer(source):
        field = hf_config_read(source, match.group(2))
        if field and "softcap" in field:
            return field, bool(match.group(1))
    raise EditError("no `logits = logits / <softcap>` in the HF source; pass field")
