"""Soft-cap the final logits: tanh(logits / cap) * cap (gemma2 `final_logit_softcapping`)."""

from __future__ import annotations

import re

import libcst as cst
import libcst.matchers as m

from codegen.transforms._rope_edits import add_args_field, hf_config_read, hf_source, rewrite_return
from codegen.transforms.base import Transform
from codegen.transforms.edits import EditError

SOFTCAP = """
logits = {logits}
cap = self.args.{field}
if cap is None:  # the config switches the cap off
    return logits
# with nothing recording the ops the cap runs in place: one logit-sized tensor
if not logits.requires_grad:
    return {divided}.div_(cap).tanh_().mul_(cap)
# tanh's backward reads its output, so the scale is out of place: two logit-sized tensors
logits = ({divided} / cap).tanh_()
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
    found = _module_cap(cst.parse_module(source))
    if found is not None:
        return found
    raise EditError("no `logits = logits / <softcap>` in the HF source; pass field")


# `logits = self.<attr>(logits)`: the cap as a module of the causal LM (inkling2)
_MODULE_CALL = m.Assign(
    targets=[m.AssignTarget(m.Name("logits"))],
    value=m.Call(
        func=m.Attribute(value=m.Name("self"), attr=m.Name()),
        args=[m.Arg(m.Name("logits"))],
    ),
)
# `logits = <...>.float()`: the logits upcast before the cap
_UPCAST = m.Assign(
    targets=[m.AssignTarget(m.Name("logits"))],
    value=m.Call(func=m.Attribute(attr=m.Name("float")), args=[]),
)


def _module_cap(tree: cst.Module) -> tuple[str, bool] | None:
    """(the config field, upcast) where a method caps its logits with a module of its own
    (`logits = self.<cap>(logits)`), built as `self.<cap> = <Class>(config.<field>)` by a
    class whose forward takes a tanh; the cap runs in fp32 where the method upcasts the
    logits (`logits = <...>.float()`) before it."""
    classes = {c.name.value: c for c in m.findall(tree, m.ClassDef())}
    for function in m.findall(tree, m.FunctionDef()):
        body = [s.body[0] for s in function.body.body if m.matches(s, m.SimpleStatementLine())]
        for at, statement in enumerate(body):
            if not m.matches(statement, _MODULE_CALL):
                continue
            attr = statement.value.func.attr.value
            field = _built_from_field(tree, attr, classes)
            if field is not None:
                upcast = any(m.matches(s, _UPCAST) for s in body[:at])
                return field, upcast
    return None


def _built_from_field(tree: cst.Module, attr: str, classes: dict) -> str | None:
    """`<field>` of `self.<attr> = <Class>(config.<field>)`, `<Class>`'s forward taking a
    tanh; None otherwise."""
    built = m.Assign(
        targets=[m.AssignTarget(m.Attribute(value=m.Name("self"), attr=m.Name(attr)))],
        value=m.Call(
            func=m.Name(),
            args=[m.Arg(m.Attribute(value=m.Name("config"), attr=m.Name()))],
        ),
    )
    tanh = m.Call(func=m.Attribute(attr=m.Name("tanh")) | m.Name("tanh"))
    for assign in m.findall(tree, built):
        cls = classes.get(assign.value.func.value)
        forwards = [
            f
            for f in (cls.body.body if cls is not None else ())
            if m.matches(f, m.FunctionDef(name=m.Name("forward")))
        ]
        if forwards and m.findall(forwards[0], tanh):
            return assign.value.args[0].value.attr.value
    return None
