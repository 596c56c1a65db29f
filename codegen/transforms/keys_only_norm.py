"""Norm the keys only: the query's norm after its projection goes, the key's stays."""

from __future__ import annotations

from codegen.transforms import _attention_edits as edits
from codegen.transforms.base import Transform
from codegen.transforms.edits import EditError, assigns
from codegen.transforms.qk_norm import _DropCommentsMentioning


class KeysOnlyNorm(Transform):
    """Of the q/k norms (`q_norm`, `k_norm`) only the keys' is kept: the reference's
    `self.q_norm` (qwen3's) is no longer built, the query goes on from its projection as it
    is, and the adapter maps no `q_norm` key; a package whose keys' norm `set_qk_norm` built
    alone (`on="keys"`, from a reference without q/k norms) has no query norm to remove.
    Where the values are the keys (`values_are_keys`) they are normed with them, as
    DeepSeek-V4's `kv_norm` norms its one key/value latent; its latent query has a norm of
    its own (`low_rank_q`), which is no q/k norm and stays."""

    name = "keys_only_norm"

    def apply(self, package, features=None) -> None:
        body = _init_body(package)
        if not any(assigns("self.k_norm")(s) for s in body):
            raise EditError("Attention builds no k_norm to keep")
        if not any(assigns("self.q_norm")(s) for s in body):
            return  # the keys' norm built alone
        edits.remove_statements(
            package, "model.py", "Attention", "__init__", assigns("self.q_norm")
        )
        edits.replace_expressions(
            package,
            "model.py",
            "Attention",
            "forward",
            edits.call_of("self.q_norm"),
            lambda call: call.args[0].value,
        )
        edits.drop_rows(package, lambda house: house.endswith("attention.q_norm.weight"))
        package.edit("args.py", _DropCommentsMentioning("q_norm"))


def _init_body(package):
    method = edits.find_method(package.module("model.py"), "Attention", "__init__")
    if method is None:
        raise EditError("model.py has no Attention.__init__")
    return method.body.body
