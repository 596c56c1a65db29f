"""Add a fixed sinusoidal position table to the token embeddings (XGLM, fairseq, CTRL)."""

from __future__ import annotations

from codegen.transforms import _attention_edits as edits
from codegen.transforms.base import Transform
from codegen.transforms.edits import EditError, InsertStatements, run
from codegen.transforms.learned_positions import OFFSET, _embedding_target, _layer_loop

# tensor2tensor's table, computed per forward in fp32 as HF builds its buffer, then rounded
# to the activations' dtype (HF's buffer follows the model's dtype)
TABLE = '''
def sinusoidal_positions(positions: torch.Tensor, dim: int) -> torch.Tensor:
    """Rows of the [sin | cos] table: angle = position * exp(-k * log(10000) / (dim/2 - 1))."""
    half = dim // 2
    step = 9.210340371976184 / (half - 1)  # math.log(10000), in Python floats as HF
    freq = torch.exp(torch.arange(half, device=positions.device).float() * -step)
    angle = positions.float().unsqueeze(-1) * freq
    table = torch.cat([torch.sin(angle), torch.cos(angle)], dim=-1)
    if dim % 2:  # an odd width ends in a zero column
        table = F.pad(table, (0, 1))
    return table
'''
# CTRL's table: column i of angle p / 10000^(2 * (i // 2) / dim), sin of the even columns
# then cos of the odd ones, in fp32 as HF builds its buffer
TABLE_POW = '''
def sinusoidal_positions(positions: torch.Tensor, dim: int) -> torch.Tensor:
    """Rows of the [sin | cos] table: angle = position / 10000^(2 * (i // 2) / dim)."""
    column = torch.arange(dim, device=positions.device).float()
    rate = 1 / torch.pow(10000, (2 * (column // 2)) / dim)
    angle = positions.float().unsqueeze(-1) * rate
    return torch.cat([torch.sin(angle[..., 0::2]), torch.cos(angle[..., 1::2])], dim=-1)
'''
TABLES = {"tensor2tensor": TABLE, "pow": TABLE_POW}
ADD = "{h} = {h} + sinusoidal_positions(positions{plus}, self.args.dim).to({h}.dtype)"


class SinusoidalPositions(Transform):
    """`Model.forward` adds row `position + offset` of the fixed sinusoidal table
    (`sinusoidal_positions`: tensor2tensor's [sin | cos] halves, or with `form="pow"`
    CTRL's over 10000^(2k/dim)) to the embeddings before the first layer. Nothing is
    learned or stored: the adapter is unchanged."""

    name = "sinusoidal_positions"

    def apply(
        self, package, features=None, *, offset: int = 0, form: str = "tensor2tensor"
    ) -> None:
        if not isinstance(offset, int) or offset < 0:
            raise EditError(f"position offset {offset!r} is not a non-negative int")
        if form not in TABLES:
            raise EditError(f"sinusoidal table form {form!r} is not one of {sorted(TABLES)}")
        plus = " + POSITION_OFFSET" if offset else ""
        if offset:
            edits.insert_definition(package, "model.py", OFFSET.format(offset=offset))
        edits.insert_definition(package, "model.py", TABLES[form], before="Attention")
        forward = edits.find_method(package.module("model.py"), "Model", "forward")
        hidden = _embedding_target(forward)
        code = ADD.format(h=hidden, plus=plus)
        run(package, "model.py", InsertStatements("Model", "forward", _layer_loop, code, True))
