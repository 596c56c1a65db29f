"""Add a learned absolute position table to the token embeddings (GPT-2 `wpe`, OPT)."""

from __future__ import annotations

import json

import libcst as cst

from codegen.transforms import _attention_edits as edits
from codegen.transforms.base import Transform
from codegen.transforms.edits import EditDict, EditError, InsertStatements, assigns, is_name, run

FIELD = "max_position_embeddings: int = 2048  # rows of the learned position table"
TABLE = "self.pos_embeddings = nn.Embedding(args.max_position_embeddings{plus}, args.dim)"
# OPT, BioGPT: the table has `offset` more rows and position p reads row p + offset
OFFSET = "POSITION_OFFSET = {offset}  # position p is row p + POSITION_OFFSET of HF's table"
ADD = "{h} = {h} + self.pos_embeddings(positions{plus})"
HOUSE_KEY = "pos_embeddings.weight"


class LearnedPositions(Transform):
    """`Model` owns `pos_embeddings`, an `nn.Embedding(max_position_embeddings + offset,
    dim)`, and adds the row of each token's position to the embeddings before the first
    layer (`positions` as given, or 0..n-1; row `position + offset`). `table` is the HF
    module path of the table (`transformer.wpe`): the adapter maps its weight."""

    name = "learned_positions"

    def apply(self, package, features=None, *, table: str, offset: int = 0) -> None:
        if not isinstance(offset, int) or offset < 0:
            raise EditError(f"position offset {offset!r} is not a non-negative int")
        if not table:
            raise EditError("learned positions need the HF module path of the table")
        plus = " + POSITION_OFFSET" if offset else ""
        if offset:
            edits.insert_definition(package, "model.py", OFFSET.format(offset=offset))
        edits.add_args_field(
            package, FIELD, "max_position_embeddings=hf_config.max_position_embeddings"
        )
        build = TABLE.format(plus=plus)
        run(
            package,
            "model.py",
            InsertStatements("Model", "__init__", assigns("self.tok_embeddings"), build),
        )
        forward = edits.find_method(package.module("model.py"), "Model", "forward")
        hidden = _embedding_target(forward)
        run(
            package,
            "model.py",
            InsertStatements(
                "Model", "forward", _layer_loop, ADD.format(h=hidden, plus=plus), before=True
            ),
        )
        _map_table(package, f"{table}.weight")


def _embedding_target(forward: cst.FunctionDef | None) -> str:
    """The name `Model.forward` assigns the token embeddings to (`h`)."""
    for statement in forward.body.body if forward is not None else ():
        if (
            isinstance(statement, cst.SimpleStatementLine)
            and isinstance(statement.body[0], cst.Assign)
            and edits.mentions("self.tok_embeddings")(statement)
        ):
            target = statement.body[0].targets[0].target
            if isinstance(target, cst.Name):
                return target.value
    raise EditError("Model.forward assigns no token embeddings")


def _layer_loop(statement: cst.CSTNode) -> bool:
    return isinstance(statement, cst.For) and is_name(statement.iter, "self.layers")


def _map_table(package, hf_key: str) -> None:
    """The table's row right after the token embedding's."""
    found = []

    def rewrite(key, value):
        if value == json.dumps("tok_embeddings.weight"):
            found.append(key)
            return [(key, value), (json.dumps(hf_key), json.dumps(HOUSE_KEY))]
        return [(key, value)]

    run(package, "state_dict_adapter.py", EditDict("from_hf_map", rewrite))
    if not found:
        raise EditError("state_dict_adapter.py has no row for tok_embeddings.weight")
