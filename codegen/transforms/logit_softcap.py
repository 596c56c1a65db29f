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
logits = (logits / cap).tanh_()  # in place: two logit-sized tensors at most
return logits * cap
"""

# HF: `logits = logits / self.config.final_logit_softcapping; logits = torch.tanh(logits); ...`
_HF_DIVIDE = re.compile(r"logits\s*=\s*logits\s*/\s*((?:self|config)(?:\.\w+)+)")


class LogitSoftcap(Transform):
    """`Model.forward` returns `tanh(logits / cap) * cap`; the cap is the ModelArgs field
    `field`, named as the HF config field (gemma2 "final_logit_softcapping").

    Without `field` it is read from the HF source's `logits = logits / <cap>` line.
    """

    name = "logit_softcap"

    def apply(self, package, features=None, *, field: str | None = None) -> None:
        field = field or detect(features)
        add_args_field(
            package,
            field,
            "float | None = 30.0  # logits = tanh(logits / cap) * cap; None: no cap",
            f"hf_config.{field}",
        )
        rewrite_return(
            package, "Model", "forward", lambda logits: SOFTCAP.format(logits=logits, field=field)
        )


def detect(features) -> str:
    source = hf_source(features)
    for match in _HF_DIVIDE.finditer(source):
        field = hf_config_read(source, match.group(1))
        if field and "softcap" in field:
            return field
    raise EditError("no `logits = logits / <softcap>` in the HF source; pass field")
