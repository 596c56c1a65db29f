"""Drop the attention's k/v repeat where every query head has its own kv head.

`make_attention_explicit` writes the grouped-query repeat (`GQA_REPEAT`: `groups = ...`,
then `k, v = k.repeat_interleave(groups, dim=1), ...`) into an attention that keeps an
`n_kv_heads` count. It runs among the rules, before `align_config_fields`, when
`from_hf_config` still reads the reference's kv-head field. A target whose config has no
kv-head count gets `n_kv_heads=` the same expression as `n_heads=` from that alignment
(`hf_config.num_attention_heads` for both): there `groups` is always 1 and the repeat only
copies k and v once each per layer, a copy the HF model does not make. After the transforms
this removes the two lines, in each class whose `__init__` takes both counts straight from
ModelArgs (a per-layer count, `layer_n_kv_heads`, may differ and keeps the repeat), when
nothing else reads `groups` and `ModelArgs` itself never resets `n_kv_heads`. Where it
removes them, and likewise SDPA's `enable_gqa=self.n_heads != self.n_kv_heads` (always
False there), the package no longer handles fewer kv heads than query heads, so
`ModelArgs.__post_init__` refuses `n_kv_heads != n_heads` in one line (`from_hf_config`
never gives that, a ModelArgs built by hand may).
"""

from __future__ import annotations

import libcst as cst
import libcst.matchers as m

from codegen.transforms._attention_edits import GQA_REPEAT, append_to_method
from codegen.transforms.base import Transform
from codegen.transforms.edits import is_statement

_TAKES_COUNTS = (
    is_statement("self.n_heads = args.n_heads"),
    is_statement("self.n_kv_heads = args.n_kv_heads"),
)
_REPEAT = tuple(is_statement(line) for line in GQA_REPEAT.strip().splitlines())
# ModelArgs.__post_init__ of a package whose attention lost the repeat
SAME_COUNTS = """
if self.n_kv_heads != self.n_heads:
    raise NotImplementedError(
        f"n_kv_heads={self.n_kv_heads} with n_heads={self.n_heads} is not supported"
        " (each query head needs a kv head of its own)"
    )
"""


class DropKvRepeat(Transform):
    """Remove the k/v repeat of an attention whose kv heads are its query heads: written out,
    or SDPA's `enable_gqa` flag."""

    name = "drop_kv_repeat"

    def apply(self, package, features=None) -> None:
        if "args.py" not in package.files or not _same_counts(package.module("args.py")):
            return
        drop = _DropRepeat()
        package.edit("model.py", drop)
        if drop.hits:
            append_to_method(package, "args.py", "ModelArgs", "__post_init__", SAME_COUNTS)
            package.edit("args.py", _Comment("n_kv_heads", KV_COMMENT))


KV_COMMENT = "# one per query head: n_heads (__post_init__ refuses another count)"


class _Comment(cst.CSTTransformer):
    """The trailing comment of the class-level field `name: ... = ...` becomes `comment`."""

    def __init__(self, name: str, comment: str):
        super().__init__()
        self.field = m.SimpleStatementLine(body=[m.AnnAssign(target=m.Name(name))])
        self.comment = comment

    def leave_SimpleStatementLine(self, original, updated):
        if not m.matches(updated, self.field):
            return updated
        trailing = updated.trailing_whitespace.with_changes(
            whitespace=cst.SimpleWhitespace("  "), comment=cst.Comment(self.comment)
        )
        return updated.with_changes(trailing_whitespace=trailing)


_N_KV_HEADS = m.Attribute(attr=m.Name("n_kv_heads"))
_RESETS = (
    m.AssignTarget(target=_N_KV_HEADS),
    m.AugAssign(target=_N_KV_HEADS),
    m.AnnAssign(target=_N_KV_HEADS),
)


def _same_counts(args: cst.Module) -> bool:
    """Whether `from_hf_config`'s `cls(...)` gives `n_kv_heads=` the same expression as
    `n_heads=` (compared as syntax trees) and nothing else in args.py sets `n_kv_heads`."""
    given = {
        arg.keyword.value: arg.value
        for call in m.findall(args, m.Call(func=m.Name("cls")))
        for arg in call.args
        if arg.keyword is not None and arg.keyword.value in ("n_heads", "n_kv_heads")
    }
    if len(given) != 2 or not given["n_heads"].deep_equals(given["n_kv_heads"]):
        return False
    return not any(m.findall(args, reset) for reset in _RESETS)


class _DropRepeat(cst.CSTTransformer):
    """Drops the repeat (and the `enable_gqa` flag) in each class taking both counts from
    ModelArgs; `hits`: how many methods lost one."""

    def __init__(self):
        super().__init__()
        self.hits = 0

    def leave_ClassDef(self, original, updated):
        methods = [s for s in updated.body.body if isinstance(s, cst.FunctionDef)]
        init = next((f for f in methods if f.name.value == "__init__"), None)
        if init is None or not all(any(t(s) for s in init.body.body) for t in _TAKES_COUNTS):
            return updated
        body = [_without_repeat(s) if s in methods else s for s in updated.body.body]
        body = [s.visit(_DropGqaFlag()) if s in methods else s for s in body]
        self.hits += sum(
            not new.deep_equals(old) for new, old in zip(body, updated.body.body, strict=True)
        )
        return updated.with_changes(body=updated.body.with_changes(body=body))


_SELF_COUNT = {
    name: m.Attribute(value=m.Name("self"), attr=m.Name(name)) for name in ("n_heads", "n_kv_heads")
}
# SDPA's own k/v repeat, switched on by comparing the counts: always off where they are equal
_GQA_FLAG = m.Arg(
    keyword=m.Name("enable_gqa"),
    value=m.Comparison(
        left=_SELF_COUNT["n_heads"],
        comparisons=[m.ComparisonTarget(m.NotEqual(), _SELF_COUNT["n_kv_heads"])],
    ),
)


class _DropGqaFlag(cst.CSTTransformer):
    """`enable_gqa=self.n_heads != self.n_kv_heads` leaves the calls that pass it."""

    def leave_Call(self, original, updated):
        args = [arg for arg in updated.args if not m.matches(arg, _GQA_FLAG)]
        if len(args) == len(updated.args):
            return updated
        if args:  # the new last argument ends as the dropped one did (comma, line break)
            last = updated.args[-1]
            args[-1] = args[-1].with_changes(
                comma=last.comma, whitespace_after_arg=last.whitespace_after_arg
            )
        return updated.with_changes(args=args)


def _without_repeat(function: cst.FunctionDef) -> cst.FunctionDef:
    statements = list(function.body.body)
    starts = [
        i
        for i in range(len(statements) - 1)
        if _REPEAT[0](statements[i]) and _REPEAT[1](statements[i + 1])
    ]
    if len(starts) != 1:
        return function
    start = starts[0]
    rest = statements[:start] + statements[start + 2 :]
    if any(m.findall(statement, m.Name("groups")) for statement in rest):
        return function
    return function.with_changes(body=function.body.with_changes(body=rest))
