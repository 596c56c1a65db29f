"""Scale the token embeddings before the first layer (gemma: sqrt(dim); granite: a config value)."""

from __future__ import annotations

import re

import libcst as cst

from codegen.transforms._rope_edits import (
    InMethod,
    add_args_field,
    evidence_line,
    hf_config_read,
    hf_source,
    scaled_operand,
)
from codegen.transforms.base import Transform
from codegen.transforms.edits import (
    EditError,
    code_of,
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


def detect(features) -> tuple[str, str | None]:
    line = evidence_line(features, "embedding.scale")
    found = scaled_operand(line, "*")
    operand = re.sub(r"\.(to|type_as)$", "", found[1]) if found else None  # a cast: same value
    field = hf_config_read(hf_source(features), operand) if operand else None
    if field is None and operand and operand.startswith("self."):
        # a scaled-embedding module built with its scale: `Embedding(..., embed_scale=config.x)`
        attr = operand.split(".")[-1]
        built = re.search(rf"\b{attr}\s*=\s*(?:self\.)?config\.(\w+)\s*[,)]", hf_source(features))
        field = built.group(1) if built else None
    if field is not None:
        return "config", field
    if re.search(r"hidden_size\s*\*\*\s*0\.5", hf_source(features)):
        return "sqrt_dim", None
    if re.search(
        r"sqrt\(\s*(self\.)?config\.(hidden_size|d_model|n_embd)\s*\)", hf_source(features)
    ) or _sqrt_of_width_attr(line, hf_source(features)):
        return "sqrt_dim_float", None
    raise EditError(f"cannot tell how the embeddings are scaled from {line!r}")


def _sqrt_of_width_attr(line: str, source: str) -> bool:
    """`h *= np.sqrt(self.width)` where the module set `self.width = config.n_embd` (CTRL)."""
    found = re.search(r"sqrt\(\s*self\.(\w+)\s*\)", line)
    return bool(found) and bool(
        re.search(rf"self\.{found.group(1)}\s*=\s*config\.(hidden_size|d_model|n_embd)\b", source)
    )


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
