"""Realise an embeddings module of its own (BERT's `bert.embeddings`): the token-type table's
row 0 added to the token embeddings, and the embeddings' own norm applied to their sum."""

from __future__ import annotations

import libcst as cst
import libcst.matchers as m

from codegen.transforms import _attention_edits as edits
from codegen.transforms._ffn_edits import adapter_rows, rewrite_adapter
from codegen.transforms.base import Transform
from codegen.transforms.edits import EditError, InsertStatements, assigns, code_of, is_name, run

TYPE_FIELD = "type_vocab_size: int = 2  # rows of the token-type table (a causal LM reads row 0)"
TYPE_TABLE = "self.token_type_embeddings = nn.Embedding(args.type_vocab_size, args.dim)"
# token_type_ids are all zeros: every token gets row 0 (one broadcast row, no gather)
TYPE_ADD = "{h} = {h} + self.token_type_embeddings.weight[0]  # token type 0 for every token"
NORM_APPLY = "{h} = self.embedding_norm({h})  # the sum of the tables, normed"


class EmbeddingModule(Transform):
    """The tables HF keeps in an embeddings module map to the house model's: the adapter
    reads the token embedding from `word_table`; with `token_type_table`, `Model` owns
    `token_type_embeddings` (`type_vocab_size` rows) and adds its row 0 right after the
    token embeddings (HF's order: tokens + token types, then positions); with `norm`,
    `Model` builds `embedding_norm` as the model's other norms and applies it to the
    summed embeddings before the first layer (run after the position rules)."""

    name = "embedding_module"

    def apply(
        self, package, features=None, *, word_table: str, token_type_table: str = "", norm=""
    ) -> None:
        if not word_table:
            raise EditError("an embeddings module needs the HF path of its word table")
        _rename_row(package, "tok_embeddings.weight", f"{word_table}.weight")
        forward = edits.find_method(package.module("model.py"), "Model", "forward")
        hidden = _embedding_target(forward)
        if token_type_table:
            edits.add_args_field(package, TYPE_FIELD, "type_vocab_size=hf_config.type_vocab_size")
            run(
                package,
                "model.py",
                InsertStatements("Model", "__init__", assigns("self.tok_embeddings"), TYPE_TABLE),
            )
            run(
                package,
                "model.py",
                InsertStatements("Model", "forward", _assigns_tokens, TYPE_ADD.format(h=hidden)),
            )
            edits.insert_rows_after(
                package,
                "tok_embeddings.weight",
                [(f"{token_type_table}.weight", "token_type_embeddings.weight")],
            )
        if norm:
            built = norm_constructor(package.module("model.py"))
            anchor = "self.token_type_embeddings" if token_type_table else "self.tok_embeddings"
            run(
                package,
                "model.py",
                InsertStatements(
                    "Model",
                    "__init__",
                    assigns(anchor),
                    f"# the embeddings module's own norm, on the summed tables\n"
                    f"self.embedding_norm = {built}",
                ),
            )
            run(
                package,
                "model.py",
                InsertStatements(
                    "Model", "forward", _layer_loop, NORM_APPLY.format(h=hidden), before=True
                ),
            )
            last = "token_type_embeddings.weight" if token_type_table else "tok_embeddings.weight"
            edits.insert_rows_after(
                package,
                last,
                [
                    (f"{norm}.weight", "embedding_norm.weight"),
                    (f"{norm}.bias", "embedding_norm.bias"),
                ],
            )


def _rename_row(package, house: str, hf_key: str) -> None:
    if not any(value == house for _, value in adapter_rows(package)):
        raise EditError(f"state_dict_adapter.py has no row for {house}")
    rewrite_adapter(package, lambda hf, value: [(hf_key if value == house else hf, value)])


_TOKENS = m.SimpleStatementLine(
    body=[
        m.Assign(
            value=m.Call(func=m.Attribute(value=m.Name("self"), attr=m.Name("tok_embeddings")))
        )
    ]
)


def _assigns_tokens(statement: cst.CSTNode) -> bool:
    """`h = self.tok_embeddings(tokens)`."""
    return m.matches(statement, _TOKENS)


def _embedding_target(forward: cst.FunctionDef | None) -> str:
    for statement in forward.body.body if forward is not None else ():
        if _assigns_tokens(statement):
            target = statement.body[0].targets[0].target
            if isinstance(target, cst.Name):
                return target.value
    raise EditError("Model.forward assigns no `h = self.tok_embeddings(...)`")


def _layer_loop(statement: cst.CSTNode) -> bool:
    return isinstance(statement, cst.For) and is_name(statement.iter, "self.layers")


_NORM_ASSIGN = m.Assign(
    targets=[m.AssignTarget(target=m.Attribute(value=m.Name("self")))], value=m.Call()
)


def norm_constructor(module: cst.Module) -> str:
    """The code building the model's norms: `Model`'s final `self.norm`, else the first norm
    a `TransformerBlock` builds (a Post-LN model has no final norm)."""
    found: dict[str, list[cst.Call]] = {"Model": [], "TransformerBlock": []}

    class _Find(cst.CSTVisitor):
        def __init__(self):
            self.cls = None

        def visit_ClassDef(self, node):
            self.cls = node.name.value

        def visit_Assign(self, node):
            if self.cls not in found or not m.matches(node, _NORM_ASSIGN):
                return
            attr = node.targets[0].target.attr.value
            if (self.cls == "Model" and attr == "norm") or (
                self.cls == "TransformerBlock" and attr.endswith("norm")
            ):
                found[self.cls].append(node.value)

    module.visit(_Find())
    calls = found["Model"] or found["TransformerBlock"]
    if not calls:
        raise EditError("model.py builds no norm to copy (no Model.norm, no block norm)")
    return code_of(calls[0])
