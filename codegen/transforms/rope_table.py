"""Read RoPE's sin and cos from the position table the checkpoint stores (RoFormer)."""

from __future__ import annotations

import json

import libcst as cst

from codegen.transforms import _attention_edits as edits
from codegen.transforms.base import Transform
from codegen.transforms.edits import (
    EditDict,
    EditError,
    ReplaceStatements,
    assigns,
    calls,
    is_statement,
    run,
)

FIELD = "max_position_embeddings: int = 512  # rows of the stored position table"
TABLE = '''
class RopeTable(nn.Module):
    """The fixed position table the checkpoint stores: row p is [sin | cos] of
    p / 10000^(2k / dim) for k < dim / 2. A persistent buffer: loaded and saved with the
    weights, never trained; rows are read by sequence index."""

    def __init__(self, rows: int, dim: int):
        super().__init__()
        self.register_buffer("weight", sinusoid_rows(rows, dim), persistent=True)

    def init_parameters(self, std: float) -> None:
        """The table as HF's `_init_weights` writes it (after the lifecycle zeroes buffers)."""
        rows, dim = self.weight.shape
        self.weight.copy_(sinusoid_rows(rows, dim, self.weight.device))

    def forward(self, seq_len: int) -> tuple[torch.Tensor, torch.Tensor]:
        """cos/sin (1, seq_len, dim) in the cat(freqs, freqs) layout of the rotary tables."""
        sin, cos = self.weight[:seq_len].chunk(2, dim=-1)
        return torch.cat((cos, cos), dim=-1)[None], torch.cat((sin, sin), dim=-1)[None]
'''
ROWS = '''
def sinusoid_rows(rows: int, dim: int, device=None) -> torch.Tensor:
    """[sin | cos] of position / 10000^(2 * (i // 2) / dim): sin of the even columns i, cos of
    the odd ones, in float64 as HF computes the table, stored in fp32."""
    column = torch.arange(dim, dtype=torch.float64, device=device)
    position = torch.arange(rows, dtype=torch.float64, device=device)[:, None]
    angle = position / torch.pow(10000.0, 2 * (column // 2) / dim)
    return torch.cat((torch.sin(angle[:, 0::2]), torch.cos(angle[:, 1::2])), dim=-1).float()
'''
BUILD = "self.rope_table = RopeTable(args.max_position_embeddings, args.head_dim)"
LOOKUP = "rope = self.rope_table(tokens.shape[1])"
DEFAULT_POSITIONS = (
    "if positions is None:\n"
    "    positions = torch.arange(tokens.shape[1], device=tokens.device).unsqueeze(0)\n"
)
HOUSE_KEY = "rope_table.weight"


class RopeTable(Transform):
    """`Model` owns `rope_table` (`RopeTable`: the checkpoint's [sin | cos] position table,
    a persistent buffer the adapter maps from `{table}.weight`) and builds the cos/sin of
    every layer from its first rows: the rotation reads the table by sequence index, as HF's
    stack looks it up without position ids, so `positions` is not read (a packed document
    still starts at row 0). Nothing computes sin/cos from positions any more, so the
    `rope` frequency settings of ModelArgs (the field, its mapping, its checks) go."""

    name = "rope_table"

    def apply(self, package, features=None, *, table: str | None = None) -> None:
        if not table:
            raise EditError("rope_table needs the HF module path of the stored table")
        run(
            package,
            "model.py",
            ReplaceStatements("Model", "__init__", assigns("self.rotary"), BUILD),
        )
        run(
            package, "model.py", ReplaceStatements("Model", "forward", calls("self.rotary"), LOOKUP)
        )
        run(
            package,
            "model.py",
            ReplaceStatements("Model", "forward", is_statement(DEFAULT_POSITIONS), ""),
        )
        edits.insert_definition(package, "model.py", ROWS, before="Attention")
        edits.insert_definition(package, "model.py", TABLE, before="Attention")
        edits.add_args_field(
            package, FIELD, "max_position_embeddings=hf_config.max_position_embeddings"
        )
        edits.remove_rope_settings(package)  # nothing reads the frequencies any more
        _retell_rope_module(package)
        rows = [(json.dumps(f"{table}.weight"), json.dumps(HOUSE_KEY))]
        run(package, "state_dict_adapter.py", EditDict("from_hf_map", None, rows))


ROPE_DOC = '"""The rotation of q/k; its cos/sin are rows of the stored table (model.RopeTable)."""'


def _retell_rope_module(package) -> None:
    """A rope.py of the package (the rotation an earlier rule wrote) no longer says its
    tables come from the shared frequency code: its docstring names the stored table."""
    module = package.files.get("rope.py")
    if module is None or not module.body:
        return
    first = module.body[0]
    small = first.body[0] if isinstance(first, cst.SimpleStatementLine) else None
    if not (isinstance(small, cst.Expr) and isinstance(small.value, cst.SimpleString)):
        return
    doc = cst.SimpleStatementLine(body=[cst.Expr(cst.parse_expression(ROPE_DOC))])
    package.files["rope.py"] = module.with_changes(body=[doc, *module.body[1:]])
