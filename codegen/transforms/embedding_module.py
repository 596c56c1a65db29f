"""Realise an embeddings module of its own (BERT's `bert.embeddings`): the token-type table's
row 0 added to the token embeddings, and the embeddings' own norm applied to their sum."""

from __future__ import annotations

import libcst as cst
import libcst.matchers as m

from codegen.transforms import _attention_edits as edits
from codegen.transforms._ffn_edits import adapter_rows, rewrite_adapter
from codegen.transforms.base import Transform
from codegen.transforms.edits import (
    EditError,
    InsertStatements,
    ScopedTransformer,
    assigns,
    code_of,
    expression,
    is_name,
    run,
)

TYPE_FIELD = "type_vocab_size: int = 2  # rows of the token-type table (a causal LM reads row 0)"
TYPE_TABLE = "self.token_type_embeddings = nn.Embedding(args.type_vocab_size, args.dim)"
# token_type_ids are all zeros: every token gets row 0 (one broadcast row, no gather)
TYPE_ADD = "{h} = {h} + self.token_type_embeddings.weight[0]  # token type 0 for every token"
NORM_APPLY = "{h} = self.embedding_norm({h})  # the sum of the tables, normed"
WIDTH_FIELD = "embedding_dim: int = 128  # width of the embedding tables, projected to dim"
PROJECTION = "self.embedding_proj = nn.Linear(args.embedding_dim, args.dim)  # tables -> dim"
PROJECT = "{h} = self.embedding_proj({h})"
# HF builds the projection only when the widths differ (ELECTRA): equal widths add nothing
SWITCHED_PROJECTION = (
    "# HF projects the tables only when they are narrower or wider than dim\n"
    "self.embedding_proj = (\n"
    "    nn.Linear(args.embedding_dim, args.dim)\n"
    "    if args.embedding_dim != args.dim\n"
    "    else nn.Identity()\n"
    ")"
)
TABLES = ("self.tok_embeddings", "self.token_type_embeddings", "self.pos_embeddings")


class EmbeddingModule(Transform):
    """The tables HF keeps in an embeddings module map to the house model's: the adapter
    reads the token embedding from `word_table`; with `token_type_table`, `Model` owns
    `token_type_embeddings` (`type_vocab_size` rows) and adds its row 0 right after the
    token embeddings (HF's order: tokens + token types, then positions); with `norm`,
    `Model` builds `embedding_norm` as the model's other norms and applies it to the
    summed embeddings before the first layer (run after the position rules). With `width`
    the tables are that config field wide and `projection` (HF path) maps them to `dim`
    before the first layer; `switched`: HF builds it only when the widths differ."""

    name = "embedding_module"

    def apply(
        self,
        package,
        features=None,
        *,
        word_table: str,
        token_type_table: str = "",
        norm="",
        width: str = "",
        projection: str = "",
        switched: bool = False,
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
        if bool(width) != bool(projection):
            raise EditError("narrower tables need both their width's field and the projection")
        if norm:
            built = norm_constructor(package.module("model.py"))
            if width:
                built = code_of(with_width(expression(built), "args.embedding_dim"))
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
        if width:
            _narrow_tables(package, width, projection, hidden, switched)


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


def _narrow_tables(package, width: str, projection: str, hidden: str, switched: bool) -> None:
    """Tables `embedding_dim` wide (the config's `width`), projected to `dim` by
    `embedding_proj` (HF's `projection`) after their sum and norm, before the first layer;
    `switched`: only when the widths differ, as HF builds it (an identity otherwise)."""
    edits.add_args_field(package, WIDTH_FIELD, f"embedding_dim=hf_config.{width}")
    widen = _TablesWidth()
    run(package, "model.py", widen)
    if widen.hits < 1:
        raise EditError("model.py: Model.__init__ builds no nn.Embedding(..., args.dim) table")
    run(
        package,
        "model.py",
        InsertStatements(
            "Model",
            "__init__",
            assigns("self.layers"),
            SWITCHED_PROJECTION if switched else PROJECTION,
            before=True,
        ),
    )
    run(
        package,
        "model.py",
        InsertStatements("Model", "forward", _layer_loop, PROJECT.format(h=hidden), before=True),
    )
    last = adapter_rows(package)
    anchor = next(
        house
        for house in (
            "embedding_norm.bias",
            "embedding_norm.weight",
            "token_type_embeddings.weight",
        )
        + ("pos_embeddings.weight", "tok_embeddings.weight")
        if any(value == house for _, value in last)
    )
    edits.insert_rows_after(
        package,
        anchor,
        [
            (f"{projection}.weight", "embedding_proj.weight"),
            (f"{projection}.bias", "embedding_proj.bias"),
        ],
    )


_DIM = m.Attribute(value=m.Name("args"), attr=m.Name("dim"))


def with_width(node: cst.CSTNode, width: str) -> cst.CSTNode:
    """`node` with every `args.dim` read as `width` (a norm or table built narrower)."""
    new = expression(width)

    class _Swap(cst.CSTTransformer):
        def leave_Attribute(self, original, updated):
            return new if m.matches(updated, _DIM) else updated

    return node.visit(_Swap())


class _TablesWidth(ScopedTransformer):
    """In `Model.__init__`, the embedding tables are built `args.embedding_dim` wide."""

    def __init__(self):
        super().__init__("Model", "__init__")

    def leave_Assign(self, original, updated):
        target = updated.targets[0].target
        if self.inside and any(is_name(target, name) for name in TABLES):
            self.hits += 1
            return updated.with_changes(value=with_width(updated.value, "args.embedding_dim"))
        return updated
