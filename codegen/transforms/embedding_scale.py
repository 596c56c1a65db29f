"""Scale the token embeddings before the first layer (gemma: sqrt(dim); granite: a config value)."""

from __future__ import annotations

import libcst as cst
import libcst.matchers as m

from codegen.transforms._hf_source import (
    assigned_values,
    config_field,
    dotted_chain,
    evidence_line,
    hf_config_read,
    hf_source,
    leading_config_field,
    on_evidence_line,
    parsed,
    scaled_operand_at,
)
from codegen.transforms._rope_edits import InMethod, add_args_field
from codegen.transforms.base import Transform
from codegen.transforms.edits import (
    EditError,
    code_of,
    findall,
    is_name,
    run,
    statements,
)

# gemma: the scale is rounded to the model dtype before the multiply (HF's
# `embed_scale.to(self.weight.dtype)`); in bf16 sqrt(3072) = 55.43 becomes 55.5.
SQRT_DIM = "{h} = {h} * torch.tensor(self.args.dim**0.5, dtype={h}.dtype)"

# BioGPT, XGLM: `math.sqrt(config.hidden_size)` as a Python float, not rounded to the dtype
SQRT_DIM_FLOAT = "{h} = {h} * self.args.dim**0.5"

KINDS = ("sqrt_dim", "sqrt_dim_float", "config")


class EmbeddingScale(Transform):
    """`Model.forward` multiplies the embeddings: by sqrt(dim) rounded to the model dtype
    (`kind="sqrt_dim"`, gemma), by sqrt(dim) as a float (`kind="sqrt_dim_float"`, BioGPT's
    `math.sqrt(config.hidden_size)`) or by a config value (`kind="config"`, `field` e.g. granite's
    "embedding_multiplier", which becomes a ModelArgs field of the same name).

    Without params the kind and field are read from the target's HF source line that
    `features.evidence["embedding.scale"]` points at.
    """

    name = "embedding_scale"

    def apply(self, package, features=None, *, kind: str | None = None, field: str | None = None):
        if kind is None:
            kind, field = detect(features)
        if kind not in KINDS:
            raise ValueError(f"embedding_scale kind {kind!r}: one of {KINDS}")
        if kind == "config":
            if not field:
                raise ValueError("embedding_scale kind 'config' needs the config field")
            add_args_field(
                package,
                field,
                "float = 1.0  # token embeddings are multiplied by this",
                f"hf_config.{field}",
            )
        run(package, "model.py", _ScaleEmbeddings(kind, field))


# the config fields the model width is read from
WIDTH_FIELDS = ("hidden_size", "d_model", "n_embd")
# `<x>.sqrt(<one argument>)` or `sqrt(<one argument>)`
_SQRT = m.Call(func=m.Name("sqrt") | m.Attribute(attr=m.Name("sqrt")), args=[m.Arg(keyword=None)])


def detect(features) -> tuple[str, str | None]:
    found = scaled_operand_at(features, "embedding.scale", "*")
    operand = _uncast(found[1]) if found else None
    source = hf_source(features)
    field = hf_config_read(source, operand) if operand else None
    if field is None and operand and operand.startswith("self."):
        # a scaled-embedding module built with its scale: `Embedding(..., embed_scale=config.x)`
        field = _built_with(source, operand.split(".")[-1])
    if field is not None:
        return "config", field
    if _width_to_the_half(source):
        return "sqrt_dim", None
    if _sqrt_of_width(source) or _sqrt_of_width_attr(features, source):
        return "sqrt_dim_float", None
    line = evidence_line(features, "embedding.scale")
    raise EditError(f"cannot tell how the embeddings are scaled from {line!r}")


def _uncast(operand: str) -> str:
    """`self.scale.to` / `self.scale.type_as` (a cast: the same value) -> `self.scale`."""
    head, _, last = operand.rpartition(".")
    return head if head and last in ("to", "type_as") else operand


def _built_with(source: str, attr: str) -> str | None:
    """`<field>` of the first `<attr>=config.<field>` keyword argument in the HF source."""
    for arg in findall(parsed(source), m.Arg(keyword=m.Name(attr))):
        field = config_field(arg.value)
        if field is not None:
            return field
    return None


def _width_to_the_half(source: str) -> bool:
    """`<...>hidden_size ** 0.5` anywhere in the HF source (gemma's embed_scale)."""
    width = m.Name("hidden_size") | m.Attribute(attr=m.Name("hidden_size"))
    power = m.BinaryOperation(left=width, operator=m.Power(), right=m.Float())
    return any(
        float(node.right.value) == 0.5 and not node.left.rpar
        for node in findall(parsed(source), power)
    )


def _sqrt_of_width(source: str) -> bool:
    """`sqrt(config.hidden_size)` (or d_model, n_embd) anywhere in the HF source (BioGPT)."""
    return any(
        config_field(call.args[0].value) in WIDTH_FIELDS for call in findall(parsed(source), _SQRT)
    )


def _sqrt_of_width_attr(features, source: str) -> bool:
    """`h *= np.sqrt(self.width)` where the module set `self.width = config.n_embd` (CTRL)."""
    for call in on_evidence_line(features, "embedding.scale", _SQRT):
        chain = dotted_chain(call.args[0].value)
        if chain and len(chain) == 2 and chain[0] == "self":
            values = assigned_values(source, chain[1])
            return any(leading_config_field(value) in WIDTH_FIELDS for value in values)
    return False


class _ScaleEmbeddings(InMethod):
    """After `h = self.tok_embeddings(tokens)` in Model.forward, scale `h`."""

    def __init__(self, kind: str, field: str | None):
        super().__init__("Model", "forward")
        self.kind, self.field = kind, field

    def leave_SimpleStatementLine(self, original, updated):
        statement = updated.body[0]
        if not (
            self.inside
            and isinstance(statement, cst.Assign)
            and isinstance(statement.value, cst.Call)
            and is_name(statement.value.func, "self.tok_embeddings")
        ):
            return updated
        self.hits += 1
        target = code_of(statement.targets[0].target)
        if self.kind == "config":
            scaled = f"{target} = {code_of(statement.value)} * self.args.{self.field}"
            return updated.with_changes(body=statements(scaled)[0].body)
        scale = SQRT_DIM if self.kind == "sqrt_dim" else SQRT_DIM_FLOAT
        return cst.FlattenSentinel([updated, *statements(scale.format(h=target))])
